#include "settings.hpp"

#include <bufpool/version.hpp>

#include <charconv>

namespace bufpool::loadgen {

namespace {
using config::setting;
using config::value_kind;

config::schema build() {
  config::schema s("bufpool-loadgen", "BUFPOOL_LOADGEN_");
  s.set_version(BUFPOOL_VERSION_STRING " (" BUFPOOL_COMPILER ")");
  auto integer = [](std::string path, std::int64_t def, std::string help, std::int64_t min, std::int64_t max,
                    std::vector<std::string> aliases) {
    return setting{std::move(path), value_kind::integer, def, std::move(help), min, max, {}, std::move(aliases), false};
  };
  auto number = [](std::string path, double def, std::string help, std::int64_t min, std::int64_t max,
                   std::vector<std::string> aliases) {
    return setting{std::move(path), value_kind::number, def, std::move(help), min, max, {}, std::move(aliases), false};
  };
  auto dur = [](std::string path, std::string def, std::string help, std::int64_t min_us, std::vector<std::string> aliases) {
    return setting{std::move(path), value_kind::duration, std::move(def), std::move(help), min_us,
                   std::int64_t{24} * 3600 * 1000000, {}, std::move(aliases), false};
  };
  auto flag = [](std::string path, std::string help, std::vector<std::string> aliases) {
    return setting{std::move(path), value_kind::boolean, false, std::move(help), 0, 0, {}, std::move(aliases), false};
  };
  s.add(integer("connections", 64, "connections in total", 1, 1000000, {"--connections", "-c"}));
  s.add(integer("threads", 2, "threads, one io_context each", 1, 1024, {"--threads", "-t"}));
  s.add(dur("duration", "10s", "measured time (after warm-up)", 1000, {"--duration", "-d"}));
  s.add(integer("requests", 0, "stop after this many requests instead (0: use duration)", 0, std::int64_t{1} << 50,
                {"--requests", "-n"}));
  s.add(dur("warmup", "0s", "load without measuring before the measured time", 0, {"--warmup"}));
  s.add(integer("pipeline", 1, "requests in flight per connection", 1, 1024, {"--pipeline"}));
  s.add(number("rate", 0, "open loop: requests per second in total, on a fixed schedule (0: closed loop)", 0,
               1000000000, {"--rate", "-R"}));
  s.add({"method", value_kind::choice, "GET", "HTTP method", 0, 0, {"GET", "HEAD", "POST", "PUT"}, {"--method"}, false});
  s.add(integer("body_size", 0, "request body bytes (POST/PUT)", 0, std::int64_t{1} << 30, {"--body-size"}));
  s.add(flag("chunked", "send the body with Transfer-Encoding: chunked", {"--chunked"}));
  s.add(integer("size", 64, "echo payload bytes per request (tcp:// targets)", 1, std::int64_t{1} << 26, {"--size"}));
  s.add(number("malformed", 0, "share of requests that are malformed on purpose (0..1)", 0, 1, {"--malformed"}));
  s.add({"stats_url", value_kind::string, "", "server statistics to fetch before, during and after (http://.../stats)",
         0, 0, {}, {"--stats-url"}, true});
  s.add(dur("stats_interval", "1s", "how often to fetch --stats-url during the run", 100000, {"--stats-interval"}));
  s.add({"json", value_kind::string, "", "write the JSON report to this file (-: to stdout, the summary then on stderr; with --quiet none)", 0, 0, {}, {"--json"}, true});
  s.add(flag("quiet", "no progress line on stderr", {"--quiet", "-q"}));
  s.add(number("max_error_rate", 1, "fail (exit 1) if errors / requests exceeds this", 0, 1, {"--max-error-rate"}));
  s.add(dur("timeout", "5s", "connect and response timeout", 1000, {"--timeout"}));
  return s;
}

std::size_t size_at(const nlohmann::json& v, std::string_view path) {
  return static_cast<std::size_t>(config::at(v, path).get<std::int64_t>());
}
}  // namespace

std::optional<target> parse_target(std::string_view url) {
  target t;
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("tcp://", 0) == 0) {
    t.echo = true;
    rest = url.substr(6);
  } else {
    return std::nullopt;
  }
  const auto slash = rest.find('/');
  const std::string_view hostport = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    if (t.echo && rest.substr(slash) != "/") return std::nullopt;
    t.path = std::string(rest.substr(slash));
  }
  auto ep = config::parse_endpoint(hostport);
  if (!ep && !t.echo && hostport.find(':') == std::string_view::npos && !hostport.empty()) {
    ep = config::endpoint{std::string(hostport), 80};
  }
  if (!ep || ep->port == 0) return std::nullopt;
  t.host = ep->host;
  t.port = ep->port;
  return t;
}

const config::schema& loadgen_schema() {
  static const config::schema s = build();
  return s;
}

loadgen_settings settings_from(const nlohmann::json& v, const std::string& url) {
  loadgen_settings s;
  std::vector<std::string> problems;
  if (url.empty()) {
    problems.push_back("loadgen: no target: give a URL, http://HOST:PORT/PATH or tcp://HOST:PORT");
  } else if (auto t = parse_target(url)) {
    s.url = *t;
  } else {
    problems.push_back("loadgen: target \"" + url + "\" is invalid: expected http://HOST:PORT/PATH or tcp://HOST:PORT");
  }
  s.url_text = url;
  s.connections = size_at(v, "connections");
  s.threads = size_at(v, "threads");
  s.duration = config::duration_at(v, "duration");
  s.requests = static_cast<std::uint64_t>(config::at(v, "requests").get<std::int64_t>());
  s.warmup = config::duration_at(v, "warmup");
  s.pipeline = size_at(v, "pipeline");
  s.rate = config::at(v, "rate").get<double>();
  s.method = config::at(v, "method").get<std::string>();
  s.body_size = size_at(v, "body_size");
  s.chunked = config::at(v, "chunked").get<bool>();
  s.echo_size = size_at(v, "size");
  s.malformed = config::at(v, "malformed").get<double>();
  s.stats_url = config::at(v, "stats_url").get<std::string>();
  s.stats_interval = config::duration_at(v, "stats_interval");
  s.json_file = config::at(v, "json").get<std::string>();
  s.quiet = config::at(v, "quiet").get<bool>();
  s.max_error_rate = config::at(v, "max_error_rate").get<double>();
  s.timeout = config::duration_at(v, "timeout");
  if (s.threads > s.connections) s.threads = s.connections;  // a thread without connections does nothing
  if (!s.stats_url.empty()) {
    auto st = parse_target(s.stats_url);
    if (!st || st->echo) problems.push_back("config: stats_url = \"" + s.stats_url + "\" is invalid: expected http://HOST:PORT/PATH");
  }
  if (s.chunked && s.method != "POST" && s.method != "PUT")
    problems.push_back("config: chunked = true needs method POST or PUT (method = " + s.method + ")");
  if (!problems.empty()) throw config::error(problems);
  s.effective = v;
  s.effective["url"] = url;
  return s;
}

}  // namespace bufpool::loadgen
