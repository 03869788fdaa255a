#include "report.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmath>
#include <ctime>
#include <cstring>
#include <functional>
#include <map>
#include <cstdio>
#include <sstream>
#include <thread>

namespace bufpool::loadgen {

namespace {

nlohmann::json number_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }


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

std::string format_us(const nlohmann::json& v) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) return "-";
  const double us = v.get<double>();
  char buf[32];
  if (us >= 1e6) std::snprintf(buf, sizeof buf, "%.2fs", us / 1e6);
  else if (us >= 1e3) std::snprintf(buf, sizeof buf, "%.2fms", us / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0fus", us);
  return buf;
}

nlohmann::json second_json(const second_stats& sec, bool with_asked) {
  nlohmann::json e = {{"second", sec.second},
                      {"requests", sec.requests},
                      {"errors", sec.errors},
                      {"sent", sec.sent},
                      {"p50_us", number_or_null(sec.latency.percentile(50))},
                      {"p99_us", number_or_null(sec.latency.percentile(99))},
                      {"p999_us", number_or_null(sec.latency.percentile(99.9))},
                      {"histogram", sec.latency.encode()}};
  if (with_asked) e["asked"] = sec.asked;
  return e;
}

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

std::string percentile_spectrum(const histogram& h) {
  std::string out = "       Value   Percentile   TotalCount 1/(1-Percentile)\n\n";
  char line[128];
  const std::uint64_t total = h.count();
  auto row = [&](double value_us, double pct, std::uint64_t count) {
    if (pct < 100.0)
      std::snprintf(line, sizeof line, "%12.3f %12.6f %12llu %12.2f\n", value_us / 1000.0, pct / 100.0,
                    static_cast<unsigned long long>(count), 1.0 / (1.0 - pct / 100.0));
    else
      std::snprintf(line, sizeof line, "%12.3f %12.6f %12llu\n", value_us / 1000.0, 1.0, static_cast<unsigned long long>(count));
    out += line;
  };
  if (total != 0) {
    // HdrHistogram's percentile iteration, 5 ticks per half distance: 0, 10, 20, ... 50, 55, ... 75,
    // 77.5, ... ever closer to 100 %, then the maximum at 100 %.
    const auto& counts = h.counts();
    double next = 0;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts.size() && next < 100.0; ++i) {
      if (counts[i] == 0) continue;
      seen += counts[i];
      const double value = static_cast<double>(std::min(histogram::highest_equivalent(histogram::value_at(i)), h.max()));
      while (next < 100.0 && static_cast<double>(seen) >= next / 100.0 * static_cast<double>(total)) {
        row(value, next, seen);
        if (seen == total) {
          next = 100.0;
          break;
        }
        const double ticks = 5.0 * std::pow(2.0, std::floor(std::log2(100.0 / (100.0 - next))) + 1);
        next += 100.0 / ticks;
      }
    }
    row(static_cast<double>(h.max()), 100.0, total);
  }
  double var = 0;
  const double mean = h.mean();
  for (std::size_t i = 0; i < h.counts().size(); ++i)
    if (h.counts()[i] != 0) {
      const double d = static_cast<double>(histogram::median_equivalent(histogram::value_at(i))) - mean;
      var += d * d * static_cast<double>(h.counts()[i]);
    }
  const double sd = total ? std::sqrt(var / static_cast<double>(total)) : 0.0;
  std::snprintf(line, sizeof line, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", total ? mean / 1000 : 0.0, sd / 1000);
  out += line;
  std::snprintf(line, sizeof line, "#[Max     = %12.3f, Total count    = %12llu]\n", static_cast<double>(h.max()) / 1000,
                static_cast<unsigned long long>(total));
  out += line;
  std::snprintf(line, sizeof line, "#[Buckets = %12zu, SubBuckets     = %12lld]\n",
                h.counts().size() / static_cast<std::size_t>(histogram::half_count) - 1,
                static_cast<long long>(histogram::sub_count));
  out += line;
  return out;
}

namespace {
std::string iso_utc(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}
}  // namespace

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
  // --stages / --steps: each second's asked count beside what was sent; the worst whole second's
  // relative difference (the last, partial second left out).
  double worst = 0;
  for (second_stats sec : r.series) {  // a copy: the plan's asked count is filled in
    if (!s.plan.empty()) {
      const auto a = static_cast<double>(sec.second);
      sec.asked = s.plan.asked(a, a + 1, s.shard_index, s.shard_count);
      if (a + 1 <= s.plan.duration() && sec.asked > 0)
        worst = std::max(worst, std::fabs(static_cast<double>(sec.sent) - static_cast<double>(sec.asked)) /
                                    static_cast<double>(sec.asked));
    }
    series.push_back(second_json(sec, !s.plan.empty()));
  }
  json codes = json::object();
  for (const auto& [code, n] : r.status_codes) codes[std::to_string(code)] = n;
  // What happened, in one word: completed, interrupted (a signal), target_lost (it stopped answering),
  // unreachable (no connection ever).
  const char* outcome = r.connections_established == 0 ? "unreachable"
                        : r.target_lost                  ? "target_lost"
                        : r.interrupted != 0             ? "interrupted"
                                                         : "completed";
  const std::string protocol = s.url.echo ? "echo" : !s.http2 ? "HTTP/1.1" : s.url.tls ? "h2" : "h2c";
  json summary{{"outcome", outcome},
               {"protocol", protocol},
               {"interrupted", r.interrupted != 0},
               {"requests", r.requests},
               {"responses", status},
               {"status_codes", codes},
               {"ok_status", s.ok_status_text},
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
  if (r.interrupted != 0) {
    summary["signal"] = r.interrupted == 2 ? "SIGINT" : r.interrupted == 15 ? "SIGTERM" : std::to_string(r.interrupted);
    summary["interrupted_at_s"] = r.interrupted_at_s;
  }
  if (r.target_lost) summary["target_lost_at_s"] = r.target_lost_at_s;
  if (!r.first_error.empty()) summary["first_error"] = r.first_error;
  if (!s.plan.empty()) {
    summary["plan"] = s.plan_text;
    summary["asked"] = s.plan.total_asked(s.shard_index, s.shard_count);
    if (s.shard_count > 1) summary["shard"] = {{"index", s.shard_index}, {"count", s.shard_count}};
    summary["worst_second_error"] = worst;  // max |sent - asked| / asked over the whole seconds
  }
  if (s.rate > 0) {
    summary["target_rps"] = s.rate;
    summary["achieved_rps"] = rps;
    summary["target_met"] = rps >= 0.95 * s.rate;
  }
  json lag = nullptr;
  if (s.rate > 0) lag = latency_json(r.send_lag);
  // TLS: the first handshake's version, cipher and ALPN; every handshake's time (warm-up included).
  json tls = nullptr;
  if (s.url.tls)
    tls = {{"version", r.tls_version},
           {"cipher", r.tls_cipher},
           {"alpn", r.tls_alpn},
           {"handshakes", r.handshakes},
           {"resumed", r.resumed},
           {"resumed_share", r.handshakes > 0 ? static_cast<double>(r.resumed) / static_cast<double>(r.handshakes) : 0.0},
           {"handshake_us", latency_json(r.handshake)},
           {"histogram", r.handshake.encode()}};
  // HTTP/2: streams per connection, the server's stream limit, what it reset or ended.
  json http2 = nullptr;
  if (s.http2)
    http2 = {{"streams_per_connection", s.streams},
             {"server_max_concurrent_streams", r.h2_server_max_streams >= 0 ? json(r.h2_server_max_streams) : json(nullptr)},
             {"resets_received", r.h2_resets_received},
             {"goaways_received", r.h2_goaways_received}};
  return json{{"schema", report_schema},
              {"started_at", iso_utc(r.started_at)},
              {"config", s.effective},
              {"environment",
               {{"cores", std::thread::hardware_concurrency()},
                {"kernel", std::string(u.sysname) + " " + u.release},
                {"machine", u.machine},
                {"hostname", u.nodename}}},
              {"summary", summary},
              {"tls", tls},
              {"http2", http2},
              {"latency_us", {{"corrected", latency_json(r.corrected)}, {"uncorrected", latency_json(r.uncorrected)},
                              {"send_lag", lag}}},
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
    << (s.contains("plan") ? "open loop, " + s["plan"].get<std::string>() +
                                 (s.contains("shard") ? " (share " + std::to_string(s["shard"].value("index", 0)) + " of " +
                                                            std::to_string(s["shard"].value("count", 1)) + ")"
                                                      : std::string())
        : c.value("rate", 0.0) > 0 ? "open loop at " + std::to_string(static_cast<long>(c["rate"].get<double>())) + " req/s"
                                   : std::string("closed loop"))
    << (c.value("http2", false) ? ", " + s.value("protocol", std::string("h2")) + ", " +
                                      std::to_string(c.value("streams", 1)) + " streams per connection"
                                : ", " + s.value("protocol", std::string("HTTP/1.1")) + ", pipeline " +
                                      std::to_string(c.value("pipeline", 1)))
    << "\n";
  for (const char* kind : {"corrected", "uncorrected"}) {
    const auto& l = rep["latency_us"][kind];
    o << "  Latency " << kind << ":" << std::string(12 - std::strlen(kind), ' ') << "p50 " << format_us(l["p50"])
      << "  p90 " << format_us(l["p90"]) << "  p99 " << format_us(l["p99"]) << "  p99.9 " << format_us(l["p99.9"])
      << "  p99.99 " << format_us(l["p99.99"]) << "  max " << format_us(l["max"]) << "\n";
  }
  char line[256];
  std::snprintf(line, sizeof line, "  %llu requests in %.2fs, %.2f MB read, %.2f MB written\n",
                static_cast<unsigned long long>(s["requests"].get<std::uint64_t>()), s["duration_s"].get<double>(),
                static_cast<double>(s["bytes_in"].get<std::uint64_t>()) / 1e6,
                static_cast<double>(s["bytes_out"].get<std::uint64_t>()) / 1e6);
  o << line;
  std::snprintf(line, sizeof line, "Requests/sec: %.2f\n", s["rps"].get<double>());
  o << line;
  if (rep["latency_us"].contains("send_lag") && rep["latency_us"]["send_lag"].is_object()) {
    const auto& l = rep["latency_us"]["send_lag"];
    o << "  Send lag (actual - intended send time): p50 " << format_us(l["p50"]) << "  p99 " << format_us(l["p99"])
      << "  max " << format_us(l["max"]) << "\n";
  }
  if (rep.contains("tls") && rep["tls"].is_object() && rep["tls"].value("handshakes", std::uint64_t{0}) > 0) {
    const auto& t = rep["tls"];
    const auto& h = t["handshake_us"];
    std::snprintf(line, sizeof line, "  TLS: %s %s, ALPN %s; %llu handshakes, %.0f %% resumed; handshake ",
                  t.value("version", std::string("-")).c_str(), t.value("cipher", std::string("-")).c_str(),
                  t.value("alpn", std::string()).empty() ? "none" : t["alpn"].get<std::string>().c_str(),
                  static_cast<unsigned long long>(t.value("handshakes", std::uint64_t{0})),
                  100.0 * t.value("resumed_share", 0.0));
    o << line << "p50 " << format_us(h["p50"]) << "  p99 " << format_us(h["p99"]) << "  max " << format_us(h["max"]) << "\n";
  }
  if (s.contains("plan")) {
    std::snprintf(line, sizeof line, "  asked %llu requests; the worst whole second sent %.2f %% off its asked count\n",
                  static_cast<unsigned long long>(s.value("asked", std::uint64_t{0})), 100.0 * s.value("worst_second_error", 0.0));
    o << line;
  }
  if (s.contains("target_rps"))
    o << "  target " << s["target_rps"].get<double>() << " req/s: " << (s["target_met"].get<bool>() ? "met" : "NOT met") << "\n";
  o << "  Responses:";
  for (auto it = s["responses"].begin(); it != s["responses"].end(); ++it)
    if (it.value().get<std::uint64_t>() > 0) o << " " << it.key() << " " << it.value().get<std::uint64_t>();
  o << "\n  Errors: " << s["errors_total"].get<std::uint64_t>();
  for (auto it = s["errors"].begin(); it != s["errors"].end(); ++it)
    if (it.value().get<std::uint64_t>() > 0 && it.key() != "status")
      o << " (" << it.key() << " " << it.value().get<std::uint64_t>() << ")";
  // Responses whose status --ok-status does not accept, by status.
  const auto ok = parse_status_set(s.value("ok_status", std::string("2xx,3xx")));
  if (s.contains("status_codes"))
    for (auto it = s["status_codes"].begin(); it != s["status_codes"].end(); ++it)
      if (ok && !ok->contains(std::stoi(it.key())))
        o << " (status " << it.key() << " " << it.value().get<std::uint64_t>() << ")";
  o << "\n  Connections: " << s["connections"]["established"] << " established, " << s["connections"]["failed"]
    << " failed; " << s["in_flight_at_stop"] << " requests in flight at stop, " << s.value("lost", 0)
    << " lost to closed connections\n";
  const std::string outcome = s.value("outcome", std::string("completed"));
  if (outcome == "interrupted") {
    std::snprintf(line, sizeof line, "  Outcome: INTERRUPTED by %s %.2fs into the measured time; the figures cover that part\n",
                  s.value("signal", std::string("a signal")).c_str(), s.value("interrupted_at_s", 0.0));
    o << line;
  } else if (outcome == "target_lost") {
    std::snprintf(line, sizeof line, "  Outcome: TARGET LOST: every attempt failed from %.2fs into the measured time",
                  s.value("target_lost_at_s", 0.0));
    o << line << (s.contains("first_error") ? " (first error: " + s["first_error"].get<std::string>() + ")" : "") << "\n";
  } else if (outcome == "unreachable") {
    o << "  Outcome: UNREACHABLE: no connection was ever established\n";
  }
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
void check_report(const nlohmann::json& r, const std::string& name) {
  using nlohmann::json;
  auto fail = [&](const std::string& what) { throw std::runtime_error("merge: " + name + ": " + what); };
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
  if (r.contains("tls") && r["tls"].is_object())
    need_histogram(need(r["tls"], "histogram", &json::is_object, "tls."), "tls.histogram");
  const json& cfg = need(r, "config", &json::is_object, "");
  need(cfg, "rate", &json::is_number, "config.");
  need(cfg, "urls", &json::is_array, "config.");
}

// Whether report `r` may be merged with `first`: the same targets, loop kind and rate per instance,
// and durations within 10 % (or 1 s). Throws naming the file and the field.
void check_compatible(const nlohmann::json& first, const std::string& first_name, const nlohmann::json& r,
                      const std::string& name) {
  auto refuse = [&](const std::string& field, const std::string& a, const std::string& b) {
    throw std::runtime_error("merge: " + name + ": " + field + " is " + b + " but " + first_name + " has " + a +
                             " (runs that differ do not merge into one meaningful report; --force merges anyway)");
  };
  if (first["config"]["urls"] != r["config"]["urls"]) refuse("config.urls", first["config"]["urls"].dump(), r["config"]["urls"].dump());
  for (const char* k : {"stages", "steps"}) {  // each instance a share of the same plan
    const std::string a = first["config"].value(k, std::string()), b = r["config"].value(k, std::string());
    if (a != b) refuse(std::string("config.") + k, "\"" + a + "\"", "\"" + b + "\"");
  }
  const std::string pa = first["summary"].value("protocol", std::string("HTTP/1.1"));
  const std::string pb = r["summary"].value("protocol", std::string("HTTP/1.1"));
  if (pa != pb) refuse("summary.protocol", pa, pb);
  const double ra = first["config"]["rate"].get<double>(), rb = r["config"]["rate"].get<double>();
  if ((ra > 0) != (rb > 0))
    refuse("the loop kind (config.rate)", ra > 0 ? "open loop" : "closed loop", rb > 0 ? "open loop" : "closed loop");
  if (std::fabs(ra - rb) > 1e-9 * std::max(ra, rb)) refuse("config.rate (per instance)", std::to_string(ra), std::to_string(rb));
  const double da = first["summary"]["duration_s"].get<double>(), db = r["summary"]["duration_s"].get<double>();
  if (std::fabs(da - db) > std::max(1.0, 0.1 * std::max(da, db)))
    refuse("summary.duration_s", std::to_string(da), std::to_string(db));
}

// Shares of one plan (--shard I/N): every report a share of the same N, each index once, all of them
// there, started within a second of each other (their seconds are added up by index). Throws naming
// the file and the field.
void check_shards(const std::vector<nlohmann::json>& reports, const std::function<std::string(std::size_t)>& name) {
  auto refuse = [](const std::string& msg) {
    throw std::runtime_error("merge: " + msg + " (shares of one plan merge only all together; --force merges anyway)");
  };
  std::size_t count = 0;
  std::vector<std::size_t> seen;
  for (std::size_t i = 0; i < reports.size(); ++i) {
    const auto& s = reports[i]["summary"];
    const bool has = s.contains("shard") && s["shard"].is_object();
    const std::size_t n = has ? s["shard"].value("count", std::size_t{1}) : 1;
    const std::size_t k = has ? s["shard"].value("index", std::size_t{0}) : 0;
    if (i == 0) {
      count = n;
      seen.assign(count, reports.size());
    } else if (n != count) {
      refuse(name(i) + ": summary.shard.count is " + std::to_string(n) + " but " + name(0) + " has " + std::to_string(count));
    }
    if (count == 1) continue;
    if (k >= count) refuse(name(i) + ": summary.shard.index " + std::to_string(k) + " is not below its count " + std::to_string(count));
    if (seen[k] != reports.size()) refuse(name(i) + ": share " + std::to_string(k) + "/" + std::to_string(count) + " is also " + name(seen[k]));
    seen[k] = i;
  }
  if (count > 1)
    for (std::size_t k = 0; k < count; ++k)
      if (seen[k] == reports.size())
        refuse("share " + std::to_string(k) + "/" + std::to_string(count) + " is missing: " + std::to_string(reports.size()) +
               " of " + std::to_string(count) + " reports given");
  if (count > 1 || reports.front()["summary"].contains("plan")) {
    std::optional<std::chrono::system_clock::time_point> first;
    for (std::size_t i = 0; i < reports.size(); ++i) {
      const auto at = parse_wall_time(reports[i].value("started_at", std::string()));
      if (!at) refuse(name(i) + ": started_at is not a time");
      if (!first) first = at;
      const double apart = std::chrono::duration<double>(*at - *first).count();
      if (std::fabs(apart) > 1.0)
        refuse(name(i) + ": started_at is " + reports[i]["started_at"].get<std::string>() + ", " +
               std::to_string(apart) + " s from " + name(0) + "'s " + reports[0]["started_at"].get<std::string>() +
               ": a plan's seconds add up only when the instances start together (--start-at)");
    }
  }
}

}  // namespace

nlohmann::json merge_reports(const std::vector<nlohmann::json>& reports, const std::vector<std::string>& names, bool force) {
  using nlohmann::json;
  if (reports.empty()) throw std::runtime_error("merge: no reports");
  auto name = [&](std::size_t i) { return i < names.size() ? names[i] : "report " + std::to_string(i + 1); };
  for (std::size_t i = 0; i < reports.size(); ++i) check_report(reports[i], name(i));
  if (!force)
    for (std::size_t i = 1; i < reports.size(); ++i) check_compatible(reports[0], name(0), reports[i], name(i));
  if (!force) check_shards(reports, name);
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
      sec.sent += e.value("sent", std::uint64_t{0});
      sec.asked += e.value("asked", std::uint64_t{0});
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
    if (rs.contains("status_codes") && rs["status_codes"].is_object())
      for (auto it = rs["status_codes"].begin(); it != rs["status_codes"].end(); ++it)
        s["status_codes"][it.key()] = s["status_codes"].value(it.key(), std::uint64_t{0}) + it.value().get<std::uint64_t>();
    for (const char* k : {"requested", "attempts", "established", "failed"})
      s["connections"][k] = s["connections"][k].get<std::uint64_t>() + rs["connections"][k].get<std::uint64_t>();
    max_duration = std::max(max_duration, rs["duration_s"].get<double>());
    corrected.merge(histogram::decode(r["histogram"]["corrected"]));
    uncorrected.merge(histogram::decode(r["histogram"]["uncorrected"]));
    add_series(r);
  }
  // Machines run side by side: the merged rate is the total over the longest window, and every rate
  // field is computed again from the merged counts (an open-loop target is the instances' sum).
  s["duration_s"] = max_duration;
  const double rps = max_duration > 0 ? static_cast<double>(s["requests"].get<std::uint64_t>()) / max_duration : 0.0;
  s["rps"] = rps;
  double target = 0;
  for (const auto& r : reports) target += r["config"]["rate"].get<double>();
  if (target > 0) {
    s["target_rps"] = target;
    s["achieved_rps"] = rps;
    s["target_met"] = rps >= 0.95 * target;
  } else {
    s.erase("target_rps");
    s.erase("achieved_rps");
    s.erase("target_met");
  }
  json outcomes = json::array();
  std::string outcome = "completed";
  for (const auto& r : reports) {
    const std::string o = r["summary"].value("outcome", std::string("completed"));
    outcomes.push_back(o);
    if (o != "completed" && outcome == "completed") outcome = o;
  }
  s["outcome"] = outcome;
  s["outcomes"] = outcomes;
  out["forced"] = force;
  out["latency_us"] = {{"corrected", latency_json(corrected)}, {"uncorrected", latency_json(uncorrected)}};
  out["histogram"] = {{"corrected", corrected.encode()}, {"uncorrected", uncorrected.encode()}};
  json series = json::array();
  const bool planned = s.contains("plan");
  std::uint64_t asked_total = 0;
  for (const auto& [k, sec] : seconds) series.push_back(second_json(sec, planned));
  // Several instances of one plan (each a share of the rate): the asked counts add up.
  if (planned) {
    for (const auto& r : reports) asked_total += r["summary"].value("asked", std::uint64_t{0});
    s["asked"] = asked_total;
    s.erase("shard");
    // The merged seconds: what the instances together were asked each whole second (the plan's own
    // count when they are its shares) against what they sent; the worst whole second, as for one.
    rate_plan plan;
    try {  // the plan as configured (check_compatible saw the same stages or steps in every report)
      const std::string stages = out["config"].value("stages", std::string());
      const std::string steps = out["config"].value("steps", std::string());
      if (!stages.empty()) plan = rate_plan::parse_stages(stages);
      else if (!steps.empty()) plan = rate_plan::parse_steps(steps);
    } catch (const config::error&) {
    }
    s.erase("worst_second_error");
    if (!plan.empty()) {
      double worst = 0;
      for (auto& e : series) {
        const auto a = static_cast<double>(e["second"].get<std::uint64_t>());
        if (a + 1 > plan.duration()) continue;
        const auto asked = e.value("asked", std::uint64_t{0});  // the instances' sum: the plan's, when shares
        const auto sent = e.value("sent", std::uint64_t{0});
        if (asked > 0) worst = std::max(worst, std::fabs(static_cast<double>(sent) - static_cast<double>(asked)) / static_cast<double>(asked));
      }
      s["worst_second_error"] = worst;
    }
  }
  out["timeseries"] = series;
  // TLS: handshakes add up, their times merge (a report without TLS figures leaves them out).
  if (std::all_of(reports.begin(), reports.end(), [](const json& r) {
        return r.contains("tls") && r["tls"].is_object() && r["tls"].contains("histogram");
      })) {
    auto hs = histogram::decode(reports.front()["tls"]["histogram"]);
    std::uint64_t handshakes = reports.front()["tls"].value("handshakes", std::uint64_t{0});
    std::uint64_t resumed = reports.front()["tls"].value("resumed", std::uint64_t{0});
    for (std::size_t i = 1; i < reports.size(); ++i) {
      hs.merge(histogram::decode(reports[i]["tls"]["histogram"]));
      handshakes += reports[i]["tls"].value("handshakes", std::uint64_t{0});
      resumed += reports[i]["tls"].value("resumed", std::uint64_t{0});
    }
    auto& t = out["tls"];
    t["handshakes"] = handshakes;
    t["resumed"] = resumed;
    t["resumed_share"] = handshakes > 0 ? static_cast<double>(resumed) / static_cast<double>(handshakes) : 0.0;
    t["handshake_us"] = latency_json(hs);
    t["histogram"] = hs.encode();
  } else {
    out["tls"] = nullptr;
  }
  // HTTP/2: what the servers reset or ended adds up (the first report's stream figures stand).
  if (out.contains("http2") && out["http2"].is_object())
    for (std::size_t i = 1; i < reports.size(); ++i)
      if (reports[i].contains("http2") && reports[i]["http2"].is_object())
        for (const char* k : {"resets_received", "goaways_received"})
          out["http2"][k] = out["http2"].value(k, std::uint64_t{0}) + reports[i]["http2"].value(k, std::uint64_t{0});
  out["merged_from"] = reports.size();
  return out;
}

}  // namespace bufpool::loadgen
