// The HTML page of a report: one self-contained file (inline SVG and style, no script, nothing fetched
// from elsewhere) with the run's figures over time, the latency percentile plot, errors over time and,
// when the server's statistics were fetched, the pool's hits by tier and its idle bytes over time.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "capacity.hpp"
#include "histogram.hpp"
#include "report.hpp"

namespace bufpool::loadgen {

namespace {

struct series {
  std::string name;
  std::string color;
  std::vector<std::pair<double, double>> points;  // (x, y)
};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v) {
  char b[32];
  const double a = std::fabs(v);
  if (a >= 1e9) std::snprintf(b, sizeof b, "%.3gG", v / 1e9);
  else if (a >= 1e6) std::snprintf(b, sizeof b, "%.3gM", v / 1e6);
  else if (a >= 1e4) std::snprintf(b, sizeof b, "%.3gk", v / 1e3);
  else std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

// A line chart. log_x: the x values are already log10 of what the tick labels show (percentile plot).
std::string chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                  const std::vector<series>& lines, const std::vector<std::pair<double, std::string>>& x_ticks = {}) {
  constexpr double W = 860, H = 300, L = 70, R = 20, T = 30, B = 45;
  double x0 = 1e300, x1 = -1e300, y1 = 0;
  std::size_t points = 0;
  for (const auto& l : lines)
    for (const auto& [x, y] : l.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y1 = std::max(y1, y);
      ++points;
    }
  std::ostringstream o;
  o << "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 "
    << W << ' ' << H << "\" role=\"img\" aria-label=\"" << esc(title) << "\">";
  o << "<text x=\"" << L << "\" y=\"18\" class=\"t\">" << esc(title) << "</text>";
  if (points == 0) {
    o << "<text x=\"" << W / 2 << "\" y=\"" << H / 2 << "\" text-anchor=\"middle\">no data</text></svg></figure>\n";
    return o.str();
  }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= 0) y1 = 1;
  y1 *= 1.08;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
  auto py = [&](double y) { return H - B - y / y1 * (H - T - B); };
  // Axes and grid.
  o << "<g class=\"g\">";
  for (int i = 0; i <= 4; ++i) {
    const double y = y1 * i / 4;
    o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << py(y) << "\" y2=\"" << py(y) << "\"/>";
    o << "<text x=\"" << L - 6 << "\" y=\"" << py(y) + 4 << "\" text-anchor=\"end\">" << num(y) << "</text>";
  }
  if (x_ticks.empty()) {
    for (int i = 0; i <= 5; ++i) {
      const double x = x0 + (x1 - x0) * i / 5;
      o << "<text x=\"" << px(x) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << num(x) << "</text>";
    }
  } else {
    for (const auto& [x, label] : x_ticks) {
      if (x < x0 || x > x1) continue;
      o << "<line x1=\"" << px(x) << "\" x2=\"" << px(x) << "\" y1=\"" << T << "\" y2=\"" << H - B << "\"/>";
      o << "<text x=\"" << px(x) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << esc(label) << "</text>";
    }
  }
  o << "</g>";
  o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">" << esc(x_label) << "</text>";
  o << "<text x=\"14\" y=\"" << (T + H - B) / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 14 " << (T + H - B) / 2
    << ")\">" << esc(y_label) << "</text>";
  o << "<line class=\"a\" x1=\"" << L << "\" x2=\"" << L << "\" y1=\"" << T << "\" y2=\"" << H - B << "\"/>";
  o << "<line class=\"a\" x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << H - B << "\" y2=\"" << H - B << "\"/>";
  // The lines, and a legend.
  double lx = L + 10;
  for (const auto& l : lines) {
    o << "<polyline fill=\"none\" stroke=\"" << l.color << "\" stroke-width=\"2\" points=\"";
    for (const auto& [x, y] : l.points)
      if (std::isfinite(x) && std::isfinite(y)) o << px(x) << ',' << py(y) << ' ';
    o << "\"/>";
    o << "<rect x=\"" << lx << "\" y=\"" << T + 2 << "\" width=\"12\" height=\"4\" fill=\"" << l.color << "\"/>";
    o << "<text x=\"" << lx + 16 << "\" y=\"" << T + 8 << "\">" << esc(l.name) << "</text>";
    lx += 24 + 7.0 * static_cast<double>(l.name.size());
  }
  o << "</svg></figure>\n";
  return o.str();
}

double as_num(const nlohmann::json& j) { return j.is_number() ? j.get<double>() : std::nan(""); }

std::uint64_t u64_or0(const nlohmann::json& j, const char* k) {
  return j.is_object() && j.contains(k) && j[k].is_number_unsigned() ? j[k].get<std::uint64_t>() : 0;
}

}  // namespace

std::string html_report(const nlohmann::json& rep) {
  const auto& cfg = rep.at("config");
  const auto& sum = rep.at("summary");
  std::ostringstream o;
  o << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bufpool-loadgen: "
    << esc(cfg.value("url", std::string())) << "</title><style>"
    << "body{font:14px sans-serif;margin:24px;color:#222;max-width:900px}h1{font-size:20px}"
    << "table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd}"
    << "svg text{font:12px sans-serif;fill:#333}svg .t{font-weight:bold;font-size:13px}"
    << ".g line{stroke:#e4e4e4}.a{stroke:#444}figure{margin:18px 0}pre{font-size:12px;background:#f6f6f6;padding:8px}"
    << "</style></head><body>\n";
  o << "<h1>bufpool-loadgen report</h1>\n<table>";
  auto row = [&](const std::string& k, const std::string& v) { o << "<tr><th>" << esc(k) << "</th><td>" << esc(v) << "</td></tr>"; };
  std::string targets;
  for (const auto& u : cfg.value("urls", nlohmann::json::array())) targets += (targets.empty() ? "" : ", ") + u.get<std::string>();
  row("targets", targets);
  row("started", rep.value("started_at", std::string("?")));
  row("outcome", sum.value("outcome", std::string("?")));
  row("load", cfg.value("rate", 0.0) > 0 ? "open loop, " + num(cfg["rate"].get<double>()) + " req/s" : std::string("closed loop"));
  row("threads / connections", std::to_string(cfg.value("threads", 0)) + " / " + std::to_string(cfg.value("connections", 0)));
  row("requests", std::to_string(sum.value("requests", std::uint64_t{0})) + " in " + num(sum.value("duration_s", 0.0)) + " s, " +
                      num(sum.value("rps", 0.0)) + " req/s");
  row("errors", std::to_string(sum.value("errors_total", std::uint64_t{0})));
  if (sum.contains("plan")) row("rate plan", sum["plan"].get<std::string>());
  if (rep.contains("merged_from")) row("merged from", std::to_string(rep["merged_from"].get<int>()) + " reports");
  o << "</table>\n";

  // Over time: requests per second, p50 and p99 (corrected), errors.
  // With --stages / --steps the asked and the sent counts are drawn beside the answers.
  series rps{"requests/s", "#1f77b4", {}}, p50{"p50", "#2ca02c", {}}, p99{"p99", "#d62728", {}}, errs{"errors/s", "#d62728", {}};
  series asked{"asked/s", "#7f7f7f", {}}, sent{"sent/s", "#ff7f0e", {}};
  for (const auto& e : rep.value("timeseries", nlohmann::json::array())) {
    const double t = as_num(e["second"]) + 1;
    rps.points.emplace_back(t, as_num(e["requests"]));
    if (e.contains("asked")) {
      asked.points.emplace_back(t, as_num(e["asked"]));
      sent.points.emplace_back(t, as_num(e["sent"]));
    }
    errs.points.emplace_back(t, as_num(e["errors"]));
    p50.points.emplace_back(t, as_num(e["p50_us"]));
    p99.points.emplace_back(t, as_num(e["p99_us"]));
  }
  if (asked.points.empty()) o << chart("Requests per second", "second of the measured time", "requests/s", {rps});
  else o << chart("Requests per second: asked, sent, answered", "second of the measured time", "requests/s", {asked, sent, rps});
  o << chart("Latency over time (corrected)", "second of the measured time", "microseconds", {p50, p99});

  // --find-max: each trial's p99 against the rate it asked (met and failed apart), then the trials' table.
  if (rep.contains("capacity") && rep["capacity"].is_object()) {
    const auto& cap = rep["capacity"];
    std::vector<std::pair<double, double>> met_points, failed_points;
    for (const auto& t : cap["trials"]) {
      const auto& l = t["latency_us"];
      if (!l.contains("p99") || !l["p99"].is_number()) continue;
      (t.value("met", false) ? met_points : failed_points).emplace_back(as_num(t["asked_rps"]), as_num(l["p99"]));
    }
    std::sort(met_points.begin(), met_points.end());
    std::sort(failed_points.begin(), failed_points.end());
    o << "<h2>Capacity search: " << esc(cap.value("slo", std::string())) << "</h2>\n<p>"
      << esc(cap.value("decision", std::string())) << "</p>\n";
    o << chart("p99 of each trial against the rate asked", "requests/s asked", "p99, microseconds",
               {series{"met", "#2ca02c", met_points}, series{"failed", "#d62728", failed_points}});
    o << "<table><tr><th>trial</th><th>asked/s</th><th>answered/s</th><th>p50</th><th>p99</th><th>p99.9</th>"
         "<th>errors</th><th>outcome</th></tr>\n";
    int n = 0;
    for (const auto& t : cap["trials"]) {
      const auto& l = t["latency_us"];
      auto cell = [](const nlohmann::json& v) { return v.is_number() ? num(v.get<double>()) + " us" : std::string("-"); };
      o << "<tr><td>" << ++n << "</td><td>" << num(as_num(t["asked_rps"])) << "</td><td>" << num(as_num(t["achieved_rps"]))
        << "</td><td>" << cell(l["p50"]) << "</td><td>" << cell(l["p99"]) << "</td><td>" << cell(l["p99.9"]) << "</td><td>"
        << t.value("errors", std::uint64_t{0}) << "</td><td>"
        << esc(trial_verdict(t))
        << "</td></tr>\n";
    }
    o << "</table>\n";
  }

  // The percentile plot: x is log10(1 / (1 - p)), as HdrHistogram's plotter draws it.
  std::vector<series> pct;
  const std::pair<const char*, const char*> kinds[] = {{"corrected", "#d62728"}, {"uncorrected", "#1f77b4"}};
  for (const auto& [kind, color] : kinds) {
    if (!rep.contains("histogram") || !rep["histogram"].contains(kind)) continue;
    const histogram h = histogram::decode(rep["histogram"][kind]);
    if (h.count() == 0) continue;
    series s{kind, color, {}};
    for (double x = 0; x <= 5.0001; x += 0.05) {
      const double p = 100.0 * (1.0 - std::pow(10.0, -x));
      s.points.emplace_back(x, h.percentile(std::max(p, 0.0001)));
    }
    pct.push_back(std::move(s));
  }
  o << chart("Latency by percentile", "percentile", "microseconds", pct,
             {{0, "0%"}, {1, "90%"}, {2, "99%"}, {3, "99.9%"}, {4, "99.99%"}, {5, "99.999%"}});
  o << chart("Errors per second", "second of the measured time", "errors/s", {errs});

  // The server's pool, from the statistics fetched during the run: hits by tier per interval, and the
  // bytes it held idle.
  const auto& st = rep.value("server_stats", nlohmann::json::object());
  const auto& ser = st.value("series", nlohmann::json::array());
  if (!ser.empty()) {
    const char* tiers[] = {"hits_private", "hits_shared", "hits_stolen", "hits_victim", "misses"};
    const char* colors[] = {"#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#d62728"};
    std::vector<series> hits;
    for (std::size_t i = 0; i < 5; ++i) hits.push_back({tiers[i], colors[i], {}});
    series idle{"pooled bytes", "#1f77b4", {}};
    nlohmann::json prev = st.value("before", nlohmann::json());
    double prev_t = 0;
    for (const auto& e : ser) {
      const double t = as_num(e["t_s"]);
      const auto& s = e["stats"];
      if (!s.is_object() || !s.contains("pool")) continue;
      const auto& tot = s["pool"]["totals"];
      if (prev.is_object() && prev.contains("pool")) {
        const auto& ptot = prev["pool"]["totals"];
        const double dt = std::max(1e-3, t - prev_t);
        for (std::size_t i = 0; i < 5; ++i)
          hits[i].points.emplace_back(t, static_cast<double>(u64_or0(tot, tiers[i]) - std::min(u64_or0(tot, tiers[i]), u64_or0(ptot, tiers[i]))) / dt);
      }
      idle.points.emplace_back(t, static_cast<double>(u64_or0(tot, "pooled_bytes")));
      prev = s;
      prev_t = t;
    }
    o << chart("Server pool: gets per second by tier", "seconds since start", "gets/s", hits);
    o << chart("Server pool: idle bytes", "seconds since start", "bytes", {idle});
  } else {
    o << "<p>No server statistics in this run (give <code>--stats-url</code> to see the pool's tiers).</p>\n";
  }
  o << "<h2>Summary</h2><pre>" << esc(summary(rep)) << "</pre></body></html>\n";
  return o.str();
}

}  // namespace bufpool::loadgen
