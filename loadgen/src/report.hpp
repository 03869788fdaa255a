// report: the versioned JSON report ("schema": "bufpool-loadgen/3"), its wrk-like human summary, the
// fetch of a server's /stats, and the exact merge of reports from several machines.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "settings.hpp"

namespace bufpool::loadgen {

/// 2: outcome, started_at, status_codes, send_lag, errors.status, urls (1 had none of them).
inline constexpr const char* report_schema = "bufpool-loadgen/3";

/// Server statistics gathered around a run.
struct server_stats {
  nlohmann::json before;                         // null if not fetched
  nlohmann::json after;
  nlohmann::json series = nlohmann::json::array();  // [{"t_s": seconds since start, "stats": {...}}]
};

/// GET url (http://host:port/path) with a timeout; the body parsed as JSON. Throws std::runtime_error.
nlohmann::json fetch_json(const std::string& url, std::chrono::milliseconds timeout);

/// The JSON report of a run.
nlohmann::json make_report(const loadgen_settings& s, const run_result& r, const server_stats& st);
/// The human summary (stdout) of a report.
std::string summary(const nlohmann::json& report);
/// Merges reports exactly: counters add, histograms add, the time series adds second by second; the
/// rates are computed again. The reports must be compatible (same targets, loop kind, rate per
/// instance, durations within 10 % or 1 s): otherwise throws, naming the report (by `names`) and the
/// field, unless `force`.
nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names = {},
                             bool force = false);
/// The report as one self-contained HTML page (inline SVG charts; nothing fetched from elsewhere).
std::string html_report(const nlohmann::json& report);
/// The percentile spectrum of a histogram (us) in HdrHistogram's text layout, values in ms (the .hgrm
/// that wrk2 --latency prints and HdrHistogram's plotter reads).
std::string percentile_spectrum(const histogram& h);
/// Latency figures of a histogram: p50, p90, p99, p99.9, p99.99, max, mean (us; null when empty).
nlohmann::json latency_json(const histogram& h);
/// Microseconds as people read them: "850us", "1.25ms", "2.00s"; "-" for null, NaN or not a number.
std::string format_us(const nlohmann::json& us);
/// One second of the series as the report writes it (with "asked" when the plan asked a count).
nlohmann::json second_json(const second_stats& sec, bool with_asked);

}  // namespace bufpool::loadgen
