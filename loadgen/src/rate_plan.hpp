// rate_plan: a request rate that changes over the run (--stages, --steps), as a piecewise linear
// rate r(t) and its integral N(t), the number of requests due by time t. Request k (0-based, over
// the whole run) is intended at t_k = N^-1(k), so the requests intended in any interval [a, b) are
// exactly those with N(a) <= k < N(b): every second gets its asked rate to within one request,
// whichever connection sends it (connection c of C takes k = c, c + C, c + 2C, ...).
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <bufpool/config/config.hpp>

namespace bufpool::loadgen {

class rate_plan {
public:
  /// One piece: the rate goes linearly from `from` to `to` over `seconds`.
  struct segment {
    double seconds = 0, from = 0, to = 0;
  };

  rate_plan() = default;
  explicit rate_plan(std::vector<segment> segs) : segs_(std::move(segs)) {
    double t = 0, n = 0;
    for (const auto& s : segs_) {
      start_.push_back(t);
      count_.push_back(n);
      t += s.seconds;
      n += s.seconds * (s.from + s.to) / 2;
    }
    duration_ = t;
    total_ = n;
  }

  bool empty() const noexcept { return segs_.empty(); }
  const std::vector<segment>& segments() const noexcept { return segs_; }
  double duration() const noexcept { return duration_; }
  /// Requests due over the whole plan.
  double total() const noexcept { return total_; }

  /// The rate asked at time t (seconds from the start).
  double rate_at(double t) const noexcept {
    const std::size_t i = at(t);
    if (i == segs_.size()) return 0;
    const auto& s = segs_[i];
    return s.seconds > 0 ? s.from + (s.to - s.from) * (t - start_[i]) / s.seconds : s.to;
  }
  /// N(t): requests due by time t.
  double count_until(double t) const noexcept {
    if (t <= 0) return 0;
    if (t >= duration_) return total_;
    const std::size_t i = at(t);
    const auto& s = segs_[i];
    const double x = t - start_[i];
    return count_[i] + s.from * x + (s.to - s.from) * x * x / (2 * s.seconds);
  }
  /// Requests asked in [a, b): the count the run should send in that window.
  /// With a share `index` of `count` (--shard: request k goes to the instance k mod count, so N
  /// instances together send exactly the plan), those of the window that fall to it.
  std::uint64_t asked(double a, double b, std::size_t index = 0, std::size_t count = 1) const noexcept {
    return share_below(std::ceil(count_until(b)), index, count) - share_below(std::ceil(count_until(a)), index, count);
  }
  /// Requests of share `index` of `count` over the whole plan.
  std::uint64_t total_asked(std::size_t index = 0, std::size_t count = 1) const noexcept {
    return share_below(std::ceil(total_), index, count);
  }
  /// How many k in [0, x) have k mod count == index.
  static std::uint64_t share_below(double x, std::size_t index, std::size_t count) noexcept {
    const auto n = static_cast<std::uint64_t>(std::max(0.0, x));
    return n > index ? (n - index + count - 1) / count : 0;
  }
  /// When request k is intended (seconds from the start), or nullopt past the plan's end.
  std::optional<double> time_of(double k) const noexcept {
    if (k >= total_) return std::nullopt;
    // The last segment whose first request is at or before k, skipping empty ones (rate 0 throughout).
    auto it = std::upper_bound(count_.begin(), count_.end(), k);
    std::size_t i = static_cast<std::size_t>(it - count_.begin()) - 1;
    while (i + 1 < segs_.size() && count_[i + 1] <= k) ++i;
    const auto& s = segs_[i];
    const double m = k - count_[i];  // requests into this segment
    if (m <= 0) return start_[i];
    // Solve from*x + a*x^2 = m for x >= 0, a = (to - from) / (2 * seconds), in the form that stays
    // exact when a is 0 or tiny: x = 2m / (from + sqrt(from^2 + 4am)).
    const double a = (s.to - s.from) / (2 * s.seconds);
    const double disc = std::max(0.0, s.from * s.from + 4 * a * m);
    const double denom = s.from + std::sqrt(disc);
    const double x = denom > 0 ? 2 * m / denom : s.seconds;
    return start_[i] + std::min(x, s.seconds);
  }

  /// "--stages 30s:1k,2m:10k,1m:10k,30s:0": each DURATION:RATE ramps linearly from the previous rate
  /// (0 at the start) to RATE over DURATION. Throws config::error naming the stage and what is allowed.
  static rate_plan parse_stages(std::string_view text) {
    std::vector<segment> out;
    double rate = 0;
    for (const auto& item : split(text, ',')) {
      const auto colon = item.find(':');
      const auto d = colon == std::string::npos ? std::nullopt : config::parse_duration(item.substr(0, colon));
      const auto r = colon == std::string::npos ? std::nullopt : parse_rate(item.substr(colon + 1));
      const double secs = d ? std::chrono::duration<double>(d.value()).count() : 0;
      if (!r || secs <= 0)
        fail("stages", text, "stage \"" + item + "\" is not DURATION:RATE with a duration above 0 (30s:1k, 2m:10000)");
      out.push_back({secs, rate, r.value()});
      rate = r.value();
    }
    if (out.empty()) fail("stages", text, "expected DURATION:RATE[,DURATION:RATE...], e.g. 30s:1k,2m:10k,30s:0");
    rate_plan p(std::move(out));
    if (p.total() < 1) fail("stages", text, "the stages ask for no request at all");
    return p;
  }

  /// "--steps 1k:10k:1k/20s": FROM, FROM+STEP, ... up to TO (TO included when a step lands on it),
  /// each rate held for the time after the '/'. Throws config::error.
  static rate_plan parse_steps(std::string_view text) {
    const auto slash = text.find('/');
    const auto parts = split(text.substr(0, slash), ':');
    const auto d = slash == std::string_view::npos ? std::nullopt : config::parse_duration(text.substr(slash + 1));
    std::optional<double> from, to, step;
    if (parts.size() == 3) {
      from = parse_rate(parts[0]);
      to = parse_rate(parts[1]);
      step = parse_rate(parts[2]);
    }
    const double secs = d ? std::chrono::duration<double>(d.value()).count() : 0;
    if (!from || !to || !step || secs <= 0 || *step <= 0 || *to < *from || (*from <= 0 && *to <= 0))
      fail("steps", text, "expected FROM:TO:STEP/DURATION with 0 < STEP and FROM <= TO, e.g. 1k:10k:1k/20s");
    std::vector<segment> out;
    for (int i = 0;; ++i) {
      const double r = *from + *step * i;
      if (r > *to * (1 + 1e-9)) break;
      if (out.size() >= 10000) fail("steps", text, "more than 10,000 steps");
      out.push_back({secs, r, r});
    }
    return rate_plan(std::move(out));
  }

  /// "5000", "2.5k", "1M": requests per second, at least 0; nullopt otherwise.
  static std::optional<double> parse_rate(std::string_view s) {
    double mult = 1;
    if (!s.empty() && (s.back() == 'k' || s.back() == 'K')) mult = 1e3, s.remove_suffix(1);
    else if (!s.empty() && s.back() == 'M') mult = 1e6, s.remove_suffix(1);
    double v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || !(v >= 0) || !std::isfinite(v)) return std::nullopt;
    return v * mult;
  }

private:
  std::size_t at(double t) const noexcept {
    if (segs_.empty() || t < 0 || t >= duration_) return segs_.size();
    auto it = std::upper_bound(start_.begin(), start_.end(), t);
    return static_cast<std::size_t>(it - start_.begin()) - 1;
  }
  static std::vector<std::string> split(std::string_view s, char sep) {
    std::vector<std::string> out;
    while (!s.empty()) {
      const auto p = s.find(sep);
      out.emplace_back(s.substr(0, p));
      if (p == std::string_view::npos) break;
      s.remove_prefix(p + 1);
    }
    return out;
  }
  [[noreturn]] static void fail(const char* key, std::string_view value, const std::string& why) {
    throw config::error({std::string("config: ") + key + " = \"" + std::string(value) + "\" is invalid: " + why});
  }

  std::vector<segment> segs_;
  std::vector<double> start_, count_;  // each segment's start time and the requests due before it
  double duration_ = 0, total_ = 0;
};

}  // namespace bufpool::loadgen
