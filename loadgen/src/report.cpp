#include "report.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <map>
#include <cstdio>
#include <sstream>
#include <thread>

namespace bufpool::loadgen {

namespace {

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string fmt_us(const nlohmann::json& v) {
  if (v.is_null()) return "-";
  const double us = v.get<double>();
  char buf[32];
  if (us >= 1e6) std::snprintf(buf, sizeof buf, "%.2fs", us / 1e6);
  else if (us >= 1e3) std::snprintf(buf, sizeof buf, "%.2fms", us / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0fus", us);
  return buf;
}

std::uint64_t u64(const nlohmann::json& j, const char* k) { return j.contains(k) ? j[k].get<std::uint64_t>() : 0; }

// The pool's hit rates by tier over the window: after minus before.
nlohmann::json pool_window(const nlohmann::json& before, const nlohmann::json& after) {
  if (!before.is_object() || !after.is_object() || !before.contains("pool") || !after.contains("pool")) return nullptr;
  const auto& b = before["pool"]["totals"];
  const auto& a = after["pool"]["totals"];
  nlohmann::json out;
  const std::uint64_t gets = u64(a, "gets") - u64(b, "gets");
  out["gets"] = gets;
  for (const char* k : {"hits_private", "hits_shared", "hits_stolen", "hits_victim", "misses"}) {
    const std::uint64_t d = u64(a, k) - u64(b, k);
    out[k] = d;
    out[std::string(k) + "_share"] = gets ? static_cast<double>(d) / static_cast<double>(gets) : 0.0;
  }
  out["dropped"] = u64(a, "dropped") - u64(b, "dropped");
  return out;
}

}  // namespace

nlohmann::json latency_json(const histogram& h) {
  return {{"p50", number_or_null(h.percentile(50))},     {"p90", number_or_null(h.percentile(90))},
          {"p99", number_or_null(h.percentile(99))},     {"p99.9", number_or_null(h.percentile(99.9))},
          {"p99.99", number_or_null(h.percentile(99.99))}, {"max", h.count() ? nlohmann::json(h.max()) : nlohmann::json(nullptr)},
          {"mean", number_or_null(h.mean())},            {"count", h.count()}};
}

nlohmann::json fetch_json(const std::string& url, std::chrono::milliseconds timeout) {
  const auto t = parse_target(url);
  if (!t || t->echo) throw std::runtime_error("not an http:// URL: " + url);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(t->host.c_str(), std::to_string(t->port).c_str(), &hints, &res) != 0 || res == nullptr)
    throw std::runtime_error("cannot resolve " + t->host);
  const int fd = ::socket(res->ai_family, SOCK_STREAM, 0);
  const int rc = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (rc != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to " + url);
  }
  const std::string req = "GET " + t->path + " HTTP/1.1\r\nHost: " + t->host + "\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string got;
  char buf[16384];
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      ::close(fd);
      throw std::runtime_error("timed out reading " + url);
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  const auto split = got.find("\r\n\r\n");
  if (got.rfind("HTTP/1.1 200", 0) != 0 || split == std::string::npos)
    throw std::runtime_error(url + " did not answer 200: " + got.substr(0, got.find("\r\n")));
  return nlohmann::json::parse(got.substr(split + 4));
}

nlohmann::json make_report(const loadgen_settings& s, const run_result& r, const server_stats& st) {
  using nlohmann::json;
  utsname u{};
  ::uname(&u);
  json errors = json::object();
  for (std::size_t i = 0; i < r.failures.size(); ++i) errors[failure_names[i]] = r.failures[i];
  json status = json::object();
  for (std::size_t i = 0; i < r.status.size(); ++i) status[std::to_string(i + 1) + "xx"] = r.status[i];
  const double rps = r.elapsed_s > 0 ? static_cast<double>(r.requests) / r.elapsed_s : 0;
  json series = json::array();
  for (const auto& sec : r.series)
    series.push_back({{"second", sec.second},
                      {"requests", sec.requests},
                      {"errors", sec.errors},
                      {"p50_us", number_or_null(sec.latency.percentile(50))},
                      {"p99_us", number_or_null(sec.latency.percentile(99))},
                      {"histogram", sec.latency.encode()}});
  json summary{{"requests", r.requests},
               {"responses", status},
               {"errors", errors},
               {"errors_total", r.errors()},
               {"bytes_in", r.bytes_in},
               {"bytes_out", r.bytes_out},
               {"duration_s", r.elapsed_s},
               {"rps", rps},
               {"connections", {{"requested", s.connections},
                                {"attempts", r.connections_requested},
                                {"established", r.connections_established},
                                {"failed", r.connections_failed}}},
               {"in_flight_at_stop", r.in_flight_at_stop},
               {"sent", r.sent},
               {"lost", r.lost}};
  if (s.rate > 0) {
    summary["target_rps"] = s.rate;
    summary["achieved_rps"] = rps;
    summary["target_met"] = rps >= 0.95 * s.rate;
  }
  return json{{"schema", report_schema},
              {"config", s.effective},
              {"environment",
               {{"cores", std::thread::hardware_concurrency()},
                {"kernel", std::string(u.sysname) + " " + u.release},
                {"machine", u.machine},
                {"hostname", u.nodename}}},
              {"summary", summary},
              {"latency_us", {{"corrected", latency_json(r.corrected)}, {"uncorrected", latency_json(r.uncorrected)}}},
              {"timeseries", series},
              {"histogram", {{"corrected", r.corrected.encode()}, {"uncorrected", r.uncorrected.encode()}}},
              {"server_stats", {{"before", st.before}, {"after", st.after}, {"series", st.series}, {"pool_window", pool_window(st.before, st.after)}}}};
}

std::string summary(const nlohmann::json& rep) {
  std::ostringstream o;
  const auto& c = rep["config"];
  const auto& s = rep["summary"];
  o << "Target " << c.value("url", std::string("?")) << "\n";
  o << "  " << c.value("threads", 0) << " threads and " << c.value("connections", 0) << " connections, "
    << (c.value("rate", 0.0) > 0 ? "open loop at " + std::to_string(static_cast<long>(c["rate"].get<double>())) + " req/s"
                                 : std::string("closed loop"))
    << ", pipeline " << c.value("pipeline", 1) << "\n";
  for (const char* kind : {"corrected", "uncorrected"}) {
    const auto& l = rep["latency_us"][kind];
    o << "  Latency " << kind << ":" << std::string(12 - std::strlen(kind), ' ') << "p50 " << fmt_us(l["p50"])
      << "  p90 " << fmt_us(l["p90"]) << "  p99 " << fmt_us(l["p99"]) << "  p99.9 " << fmt_us(l["p99.9"])
      << "  p99.99 " << fmt_us(l["p99.99"]) << "  max " << fmt_us(l["max"]) << "\n";
  }
  char line[256];
  std::snprintf(line, sizeof line, "  %llu requests in %.2fs, %.2f MB read, %.2f MB written\n",
                static_cast<unsigned long long>(s["requests"].get<std::uint64_t>()), s["duration_s"].get<double>(),
                static_cast<double>(s["bytes_in"].get<std::uint64_t>()) / 1e6,
                static_cast<double>(s["bytes_out"].get<std::uint64_t>()) / 1e6);
  o << line;
  std::snprintf(line, sizeof line, "Requests/sec: %.2f\n", s["rps"].get<double>());
  o << line;
  if (s.contains("target_rps"))
    o << "  target " << s["target_rps"].get<double>() << " req/s: " << (s["target_met"].get<bool>() ? "met" : "NOT met") << "\n";
  o << "  Responses:";
  for (auto it = s["responses"].begin(); it != s["responses"].end(); ++it)
    if (it.value().get<std::uint64_t>() > 0) o << " " << it.key() << " " << it.value().get<std::uint64_t>();
  o << "\n  Errors: " << s["errors_total"].get<std::uint64_t>();
  for (auto it = s["errors"].begin(); it != s["errors"].end(); ++it)
    if (it.value().get<std::uint64_t>() > 0) o << " (" << it.key() << " " << it.value().get<std::uint64_t>() << ")";
  o << "\n  Connections: " << s["connections"]["established"] << " established, " << s["connections"]["failed"]
    << " failed; " << s["in_flight_at_stop"] << " requests in flight at stop, " << s.value("lost", 0)
    << " lost to closed connections\n";
  const auto& pw = rep["server_stats"]["pool_window"];
  if (pw.is_object()) {
    std::snprintf(line, sizeof line,
                  "  Server pool over the run: %llu gets: private %.1f%%, shared %.1f%%, stolen %.1f%%, victim %.1f%%, "
                  "miss %.1f%%\n",
                  static_cast<unsigned long long>(pw["gets"].get<std::uint64_t>()), 100 * pw["hits_private_share"].get<double>(),
                  100 * pw["hits_shared_share"].get<double>(), 100 * pw["hits_stolen_share"].get<double>(),
                  100 * pw["hits_victim_share"].get<double>(), 100 * pw["misses_share"].get<double>());
    o << line;
  }
  return o.str();
}

namespace {

// Every field merge_reports reads, with its type, so that a damaged report ends in an error naming the
// field rather than in reading a key that is not there (undefined behaviour on a const json).
void check_report(const nlohmann::json& r, std::size_t index) {
  using nlohmann::json;
  auto fail = [&](const std::string& what) {
    throw std::runtime_error("merge: report " + std::to_string(index + 1) + ": " + what);
  };
  auto need = [&](const json& parent, const char* key, bool (json::*is)() const noexcept, const std::string& where) -> const json& {
    if (!parent.is_object() || !parent.contains(key) || !(parent[key].*is)()) fail(where + key + " is missing or of the wrong type");
    return parent[key];
  };
  auto need_histogram = [&](const json& h, const std::string& where) {
    if (!h.is_object()) fail(where + " is not a histogram");
    need(h, "highest", &json::is_number_integer, where + ".");
    need(h, "max", &json::is_number_integer, where + ".");
    need(h, "min", &json::is_number_integer, where + ".");
    for (const auto& pair : need(h, "counts", &json::is_array, where + "."))
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_unsigned() || !pair[1].is_number_unsigned())
        fail(where + ".counts holds something other than [index, count] pairs");
  };
  if (!r.is_object() || r.value("schema", std::string()) != report_schema)
    fail("not a " + std::string(report_schema) + " report");
  const json& h = need(r, "histogram", &json::is_object, "");
  need_histogram(need(h, "corrected", &json::is_object, "histogram."), "histogram.corrected");
  need_histogram(need(h, "uncorrected", &json::is_object, "histogram."), "histogram.uncorrected");
  for (const auto& e : need(r, "timeseries", &json::is_array, "")) {
    need(e, "second", &json::is_number_unsigned, "timeseries[].");
    need(e, "requests", &json::is_number_unsigned, "timeseries[].");
    need(e, "errors", &json::is_number_unsigned, "timeseries[].");
    need_histogram(need(e, "histogram", &json::is_object, "timeseries[]."), "timeseries[].histogram");
  }
  const json& s = need(r, "summary", &json::is_object, "");
  need(s, "duration_s", &json::is_number, "summary.");
  for (const char* k : {"responses", "errors"})
    for (const auto& v : need(s, k, &json::is_object, "summary.").items())
      if (!v.value().is_number_unsigned()) fail(std::string("summary.") + k + "." + v.key() + " is not a count");
  const json& c = need(s, "connections", &json::is_object, "summary.");
  for (const char* k : {"requested", "attempts", "established", "failed"})
    need(c, k, &json::is_number_unsigned, "summary.connections.");
}

}  // namespace

nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports) {
  using nlohmann::json;
  if (reports.empty()) throw std::runtime_error("merge: no reports");
  for (std::size_t i = 0; i < reports.size(); ++i) check_report(reports[i], i);
  json out = reports.front();
  auto corrected = histogram::decode(reports.front()["histogram"]["corrected"]);
  auto uncorrected = histogram::decode(reports.front()["histogram"]["uncorrected"]);
  std::map<std::uint64_t, second_stats> seconds;
  auto add_series = [&](const json& r) {
    for (const auto& e : r["timeseries"]) {
      auto& sec = seconds[e["second"].get<std::uint64_t>()];
      sec.second = e["second"].get<std::uint64_t>();
      sec.requests += e["requests"].get<std::uint64_t>();
      sec.errors += e["errors"].get<std::uint64_t>();
      sec.latency.merge(histogram::decode(e["histogram"]));
    }
  };
  add_series(reports.front());
  auto& s = out["summary"];
  double max_duration = s["duration_s"].get<double>();
  for (std::size_t i = 1; i < reports.size(); ++i) {
    const auto& r = reports[i];
    const auto& rs = r["summary"];
    for (const char* k : {"requests", "errors_total", "bytes_in", "bytes_out", "in_flight_at_stop", "sent", "lost"})
      s[k] = s.value(k, std::uint64_t{0}) + rs.value(k, std::uint64_t{0});
    for (auto it = rs["responses"].begin(); it != rs["responses"].end(); ++it)
      s["responses"][it.key()] = s["responses"].value(it.key(), std::uint64_t{0}) + it.value().get<std::uint64_t>();
    for (auto it = rs["errors"].begin(); it != rs["errors"].end(); ++it)
      s["errors"][it.key()] = s["errors"].value(it.key(), std::uint64_t{0}) + it.value().get<std::uint64_t>();
    for (const char* k : {"requested", "attempts", "established", "failed"})
      s["connections"][k] = s["connections"][k].get<std::uint64_t>() + rs["connections"][k].get<std::uint64_t>();
    max_duration = std::max(max_duration, rs["duration_s"].get<double>());
    corrected.merge(histogram::decode(r["histogram"]["corrected"]));
    uncorrected.merge(histogram::decode(r["histogram"]["uncorrected"]));
    add_series(r);
  }
  // Machines run side by side: the merged rate is the total over the longest window.
  s["duration_s"] = max_duration;
  s["rps"] = max_duration > 0 ? static_cast<double>(s["requests"].get<std::uint64_t>()) / max_duration : 0.0;
  out["latency_us"] = {{"corrected", latency_json(corrected)}, {"uncorrected", latency_json(uncorrected)}};
  out["histogram"] = {{"corrected", corrected.encode()}, {"uncorrected", uncorrected.encode()}};
  json series = json::array();
  for (const auto& [k, sec] : seconds)
    series.push_back({{"second", k},
                      {"requests", sec.requests},
                      {"errors", sec.errors},
                      {"p50_us", number_or_null(sec.latency.percentile(50))},
                      {"p99_us", number_or_null(sec.latency.percentile(99))},
                      {"histogram", sec.latency.encode()}});
  out["timeseries"] = series;
  out["merged_from"] = reports.size();
  return out;
}

}  // namespace bufpool::loadgen
