#include "live_view.hpp"

#include "report.hpp"

#include <cmath>
#include <cstdio>

namespace bufpool::loadgen {

namespace {

nlohmann::json or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::uint64_t count_at(const nlohmann::json& totals, const char* k) {
  return totals.is_object() && totals.contains(k) && totals[k].is_number() ? totals[k].get<std::uint64_t>() : 0;
}

}  // namespace

progress_mode resolve_progress(const loadgen_settings& s, bool stderr_is_terminal) {
  if (s.quiet || s.progress == "off") return progress_mode::off;
  if (s.progress == "live") return progress_mode::live;
  if (s.progress == "lines") return progress_mode::lines;
  if (s.progress == "json") return progress_mode::json;
  return stderr_is_terminal ? progress_mode::live : progress_mode::lines;
}

nlohmann::json progress_json(const loadgen_settings& s, const second_stats& sec, const nlohmann::json& server_before,
                             const nlohmann::json& server) {
  using nlohmann::json;
  json errors = json::object();
  for (std::size_t i = 0; i < sec.failures.size(); ++i) errors[failure_names[i]] = sec.failures[i];
  json p = {{"second", sec.second + 1},  // the second that just ended, counted from 1
            {"requests", sec.requests},
            {"sent", sec.sent},
            {"errors_total", sec.errors},
            {"errors", errors},
            {"connections", sec.connections},
            {"p50_us", or_null(sec.latency.percentile(50))},
            {"p99_us", or_null(sec.latency.percentile(99))},
            {"p999_us", or_null(sec.latency.percentile(99.9))},
            {"max_us", sec.latency.count() ? json(sec.latency.max()) : json(nullptr)}};
  if (!s.plan.empty()) p["asked"] = s.plan.asked(static_cast<double>(sec.second), static_cast<double>(sec.second) + 1, s.shard_index, s.shard_count);
  else if (s.rate > 0) p["asked"] = s.rate;
  else p["asked"] = nullptr;  // closed loop: as fast as answers come
  // The server's pool between the last two fetches: gets, the share served from a cache, what is
  // out and what is pooled now.
  if (server.is_object() && server.contains("pool")) {
    const json& now = server["pool"]["totals"];
    const json empty = json::object();
    const json& before = server_before.is_object() && server_before.contains("pool") ? server_before["pool"]["totals"] : empty;
    const std::uint64_t gets = count_at(now, "gets") - count_at(before, "gets");
    const std::uint64_t misses = count_at(now, "misses") - count_at(before, "misses");
    p["server_pool"] = {{"gets", gets},
                        {"hit_share", gets > 0 ? 1.0 - static_cast<double>(misses) / static_cast<double>(gets) : 1.0},
                        {"outstanding", now.value("outstanding", std::int64_t{0})},
                        {"pooled_bytes", count_at(now, "pooled_bytes")}};
  }
  return p;
}

std::string progress_line(const nlohmann::json& p) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "[%4llus] %9llu req/s  errors %llu  p50 %s  p99 %s",
                static_cast<unsigned long long>(p["second"].get<std::uint64_t>()),
                static_cast<unsigned long long>(p["requests"].get<std::uint64_t>()),
                static_cast<unsigned long long>(p["errors_total"].get<std::uint64_t>()), format_us(p["p50_us"]).c_str(),
                format_us(p["p99_us"]).c_str());
  std::string out = buf;
  if (p["asked"].is_number()) out += "  asked " + std::to_string(std::llround(p["asked"].get<double>()));
  return out + "\n";
}

std::string progress_block(const loadgen_settings& s, const nlohmann::json& p) {
  std::string o;
  char buf[512];
  const double total_s = std::chrono::duration<double>(s.duration).count();
  if (s.requests > 0)
    std::snprintf(buf, sizeof buf, "bufpool-loadgen  %s  second %llu (until %llu requests)\n", s.url_text.c_str(),
                  static_cast<unsigned long long>(p["second"].get<std::uint64_t>()), static_cast<unsigned long long>(s.requests));
  else
    std::snprintf(buf, sizeof buf, "bufpool-loadgen  %s  %llus of %.0fs\n", s.url_text.c_str(),
                  static_cast<unsigned long long>(p["second"].get<std::uint64_t>()), total_s);
  o += buf;
  const std::string asked = p["asked"].is_number() ? std::to_string(std::llround(p["asked"].get<double>())) + "/s" : "-";
  std::snprintf(buf, sizeof buf, "  rate      asked %s   sent %llu/s   answered %llu/s\n", asked.c_str(),
                static_cast<unsigned long long>(p["sent"].get<std::uint64_t>()),
                static_cast<unsigned long long>(p["requests"].get<std::uint64_t>()));
  o += buf;
  std::snprintf(buf, sizeof buf, "  latency   p50 %s   p99 %s   p99.9 %s   max %s   (this second, corrected)\n",
                format_us(p["p50_us"]).c_str(), format_us(p["p99_us"]).c_str(), format_us(p["p999_us"]).c_str(),
                format_us(p["max_us"]).c_str());
  o += buf;
  std::string kinds;
  for (auto it = p["errors"].begin(); it != p["errors"].end(); ++it)
    if (it.value().get<std::uint64_t>() > 0) kinds += "  " + it.key() + " " + std::to_string(it.value().get<std::uint64_t>());
  o += "  errors    " + std::to_string(p["errors_total"].get<std::uint64_t>()) + (kinds.empty() ? "" : "  (" + kinds.substr(2) + ")") + "\n";
  std::snprintf(buf, sizeof buf, "  conns     %llu open of %zu\n", static_cast<unsigned long long>(p["connections"].get<std::uint64_t>()),
                s.connections);
  o += buf;
  if (p.contains("server_pool")) {
    const auto& sp = p["server_pool"];
    std::snprintf(buf, sizeof buf, "  server    pool gets %llu   from cache %.1f %%   outstanding %lld   pooled %.1f KiB\n",
                  static_cast<unsigned long long>(sp["gets"].get<std::uint64_t>()), 100.0 * sp["hit_share"].get<double>(),
                  static_cast<long long>(sp["outstanding"].get<std::int64_t>()),
                  static_cast<double>(sp["pooled_bytes"].get<std::uint64_t>()) / 1024.0);
    o += buf;
  } else if (!s.stats_url.empty()) {
    o += "  server    (no statistics from " + s.stats_url + " yet)\n";
  }
  return o;
}

}  // namespace bufpool::loadgen
