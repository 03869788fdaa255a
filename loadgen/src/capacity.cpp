#include "capacity.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "report.hpp"

namespace bufpool::loadgen {

namespace {

[[noreturn]] void bad(std::string_view text, const std::string& why) {
  throw config::error({"config: slo = \"" + std::string(text) + "\" is invalid: " + why +
                       " (conditions pNN<DURATION, max<DURATION or errors<RATE, comma-separated: p99<10ms,errors<0.1%)"});
}

std::string trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return std::string(s);
}

std::string rate_text(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", r);
  return buf;
}


}  // namespace

slo parse_slo(std::string_view text) {
  slo out;
  out.text = std::string(text);
  std::string_view rest = text;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    const std::string item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const auto lt = item.find('<');
    if (lt == std::string::npos || lt == 0) bad(text, "\"" + item + "\" has no '<'");
    const bool inclusive = lt + 1 < item.size() && item[lt + 1] == '=';
    const std::string what = trim(std::string_view(item).substr(0, lt));
    const std::string limit = trim(std::string_view(item).substr(lt + (inclusive ? 2 : 1)));
    if (what == "errors") {
      double v = 0;
      std::string_view num = limit;
      const bool percent = !num.empty() && num.back() == '%';
      if (percent) num.remove_suffix(1);
      const auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
      if (num.empty() || ec != std::errc() || p != num.data() + num.size() || v < 0 || (percent ? v > 100 : v > 1))
        bad(text, "\"" + item + "\": the error rate is a percentage (0.1%) or a fraction (0.001)");
      out.max_error_rate = percent ? v / 100 : v;
      out.errors_inclusive = inclusive;
      continue;
    }
    slo::condition c;
    c.text = item;
    c.inclusive = inclusive;
    if (what == "max") {
      c.percentile = 100;
    } else {
      double p = 0;
      const char* b = what.data() + 1;
      const auto [end, ec] = std::from_chars(b, what.data() + what.size(), p);
      if (what.size() < 2 || what[0] != 'p' || ec != std::errc() || end != what.data() + what.size() || !(p > 0 && p < 100))
        bad(text, "\"" + item + "\": expected pNN (p50, p99, p99.9) or max before '<'");
      c.percentile = p;
    }
    const auto d = config::parse_duration(limit);
    if (!d || d->count() <= 0) bad(text, "\"" + item + "\": the limit is a duration above 0 (500us, 10ms, 1s)");
    c.limit_us = static_cast<double>(d->count());
    out.latency.push_back(c);
  }
  if (out.latency.empty() && !out.max_error_rate) bad(text, "no condition");
  return out;
}

void judge(const slo& goal, trial& t) {
  const run_result& r = t.result;
  t.achieved = r.elapsed_s > 0 ? static_cast<double>(r.requests) / r.elapsed_s : 0;
  const double attempts = static_cast<double>(r.requests + r.transport_errors());
  t.error_rate = attempts > 0 ? static_cast<double>(r.errors()) / attempts : 0;
  t.met = false;
  if (r.requests == 0) {
    t.why = "nothing answered" + (r.first_error.empty() ? std::string() : " (" + r.first_error + ")");
    return;
  }
  if (r.interrupted != 0) {
    t.why = "interrupted";
    return;
  }
  // The rate itself: a service (or a generator) that cannot keep up answers less than was asked.
  if (t.achieved < 0.95 * t.asked) {
    t.why = "answered " + rate_text(t.achieved) + " req/s, under 95 % of the " + rate_text(t.asked) + " asked";
    return;
  }
  for (const auto& c : goal.latency) {
    const double v = c.percentile >= 100 ? static_cast<double>(r.corrected.max()) : r.corrected.percentile(c.percentile);
    if (!(c.inclusive ? v <= c.limit_us : v < c.limit_us)) {
      t.why = c.text + " not met: " + format_us(v);
      return;
    }
  }
  if (goal.max_error_rate) {
    const double m = *goal.max_error_rate;
    if (!(goal.errors_inclusive ? t.error_rate <= m : t.error_rate < m)) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "errors %.4f %% not under %.4f %%", 100 * t.error_rate, 100 * m);
      t.why = buf;
      return;
    }
  }
  t.met = true;
  t.why.clear();
}

capacity_result find_max(const loadgen_settings& s, const std::function<void(const trial&)>& on_trial,
                         const std::atomic<int>* interrupt, const trial_runner& runner) {
  capacity_result out;
  out.goal = parse_slo(s.slo);
  std::vector<double> met;  // the rates met, confirmed or not
  // One judgement of a rate: --trial-repeats trials, met when more than half of them met (with one
  // condition, the median trial's figure judged; a tie fails).
  const std::size_t repeats = std::max<std::size_t>(1, s.trial_repeats);
  auto run_at = [&](double rate, bool confirmation) -> bool {
    ++out.rates;
    std::size_t passed = 0;
    for (std::size_t i = 0; i < repeats; ++i) {
      loadgen_settings t = s;
      t.rate = rate;
      t.plan = {};
      t.requests = 0;
      t.duration = s.trial_duration;
      t.warmup = s.trial_warmup;
      trial tr;
      tr.asked = rate;
      tr.confirmation = confirmation;
      tr.repeat = i;
      tr.result = runner ? runner(t, interrupt) : run_load(t, {}, interrupt);
      judge(out.goal, tr);
      passed += tr.met ? 1 : 0;
      // Decided once a majority either way is certain (the rest cannot change it), or interrupted.
      const bool decided = 2 * passed > repeats || 2 * (i + 1 - passed) >= repeats;
      const bool last = i + 1 == repeats || decided || tr.result.interrupted != 0;
      tr.repeats = repeats;
      tr.closes = last;
      if (last) tr.rate_met = 2 * passed > repeats;
      out.trials.push_back(std::move(tr));
      if (on_trial) on_trial(out.trials.back());
      if (last) break;
    }
    return out.trials.back().rate_met;
  };
  auto stop = [&] {
    if (interrupt != nullptr && interrupt->load(std::memory_order_relaxed) != 0) {
      out.interrupted = interrupt->load(std::memory_order_relaxed);
      return true;
    }
    return out.rates >= s.max_trials;
  };
  double lo = 0, hi = 0;  // the highest rate met, the lowest failed (0: none yet)
  // Rising: double until a trial fails; a first failure halves instead, until one is met.
  double rate = std::min(s.start_rate, s.max_rate);
  while (!stop()) {
    if (run_at(rate, false)) {
      lo = rate;
      met.push_back(rate);
      if (hi > 0 || rate >= s.max_rate) break;
      rate = std::min(rate * 2, s.max_rate);
    } else {
      hi = rate;
      if (lo > 0) break;
      rate /= 2;
      if (rate < 1) break;
    }
  }
  // Bisecting, then confirming the highest rate met; a failed confirmation counts as a failure.
  bool confirmed = false;
  while (!stop() && lo > 0) {
    if (hi > 0 && hi - lo > s.precision * lo) {
      const double mid = (lo + hi) / 2;
      if (run_at(mid, false)) {
        lo = mid;
        met.push_back(mid);
      } else {
        hi = mid;
      }
      continue;
    }
    if (confirmed) break;
    if (run_at(lo, true)) {
      confirmed = true;
      continue;
    }
    hi = lo;
    met.erase(std::remove_if(met.begin(), met.end(), [&](double r) { return r >= hi; }), met.end());
    lo = met.empty() ? 0 : *std::max_element(met.begin(), met.end());
  }
  out.found = lo;
  out.lowest_failed = hi;
  if (lo > 0) {
    // The report stands for the last trial met at the rate found (its median one when repeated: of
    // that rate's trials met, the one with the middle p99).
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < out.trials.size(); ++i)
      if (out.trials[i].met && out.trials[i].asked == lo) at.push_back(i);
    if (!at.empty()) {
      if (repeats == 1) {
        out.best = at.back();
      } else {
        std::sort(at.begin(), at.end(), [&](std::size_t a, std::size_t b) {
          return out.trials[a].result.corrected.percentile(99) < out.trials[b].result.corrected.percentile(99);
        });
        out.best = at[at.size() / 2];
      }
    }
  }
  const std::string n = std::to_string(out.trials.size()) + " trials" +
                        (repeats > 1 ? ", " + std::to_string(out.rates) + " rates judged by a majority of " +
                                           std::to_string(repeats)
                                     : std::string());
  if (lo <= 0) {
    out.decision = "no rate met the goal " + out.goal.text + " (" + n + "; the lowest tried, " +
                   rate_text(out.trials.empty() ? 0 : out.trials.back().asked) + " req/s: " +
                   (out.trials.empty() ? std::string("none") : out.trials.back().why) + ")";
  } else {
    out.decision = "the highest rate that met " + out.goal.text + ": " + rate_text(lo) + " req/s" +
                   (confirmed ? " (met twice)" : " (not confirmed: the trials ran out)") +
                   (hi > 0 ? "; " + rate_text(hi) + " req/s did not" : "; the search stopped at --max-rate") + " (" + n + ")";
  }
  if (out.interrupted != 0) out.decision += "; interrupted";
  return out;
}

std::string trial_line(std::size_t index, const trial& t) {
  char buf[320];
  const std::string verdict = trial_verdict(trial_json(t));
  std::snprintf(buf, sizeof buf, "  trial %2zu  asked %9.0f  answered %9.0f req/s  p50 %8s  p99 %8s  p99.9 %8s  errors %6.3f %%  %s\n",
                index + 1, t.asked, t.achieved, format_us(t.result.corrected.percentile(50)).c_str(),
                format_us(t.result.corrected.percentile(99)).c_str(), format_us(t.result.corrected.percentile(99.9)).c_str(),
                100 * t.error_rate, verdict.c_str());
  return buf;
}

std::string capacity_text(const capacity_result& c) {
  std::string o = "Capacity search, goal " + c.goal.text + ":\n";
  for (std::size_t i = 0; i < c.trials.size(); ++i) o += trial_line(i, c.trials[i]);
  o += "  " + c.decision + "\n";
  return o;
}

std::string trial_verdict(const nlohmann::json& t) {
  // Appended piece by piece (GCC 12 at -O3 warns, falsely, on a chain of + here: -Wrestrict).
  const int repeats = t.value("repeats", 1);
  std::string out;
  if (repeats > 1) {
    out += '[';
    out += std::to_string(t.value("repeat", 0) + 1);
    out += '/';
    out += std::to_string(repeats);
    out += "] ";
  }
  if (t.value("met", false)) {
    out += t.value("confirmation", false) ? "met (confirmation)" : "met";
  } else {
    out += "failed: ";
    out += t.value("why", std::string());
  }
  if (repeats > 1 && t.contains("rate_met") && t["rate_met"].is_boolean())
    out += t["rate_met"].get<bool>() ? "; the rate: met" : "; the rate: failed";
  return out;
}

nlohmann::json trial_json(const trial& t) {
  using nlohmann::json;
  return {{"asked_rps", t.asked},
          {"achieved_rps", t.achieved},
          {"requests", t.result.requests},
          {"errors", t.result.errors()},
          {"error_rate", t.error_rate},
          {"latency_us", latency_json(t.result.corrected)},
          {"met", t.met},
          {"confirmation", t.confirmation},
          {"repeat", t.repeat},
          {"repeats", t.repeats},
          {"rate_met", t.closes ? json(t.rate_met) : json(nullptr)},
          {"why", t.why}};
}

nlohmann::json capacity_json(const capacity_result& c) {
  using nlohmann::json;
  json trials = json::array();
  for (const auto& t : c.trials) trials.push_back(trial_json(t));
  return {{"slo", c.goal.text},
          {"found_rps", c.found > 0 ? json(c.found) : json(nullptr)},
          {"lowest_failed_rps", c.lowest_failed > 0 ? json(c.lowest_failed) : json(nullptr)},
          {"decision", c.decision},
          {"trials", trials}};
}

}  // namespace bufpool::loadgen
