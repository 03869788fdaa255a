#include "settings.hpp"

#include <bufpool/version.hpp>

#include "capacity.hpp"

#include <sys/un.h>

#include <charconv>
#include <ctime>
#include <fstream>
#include <sstream>

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
  s.add(integer("pipeline", 1, "requests in flight per connection (HTTP/1.1)", 1, 1024, {"--pipeline"}));
  s.add(flag("http2", "HTTP/2: h2 by ALPN for https://, h2c with prior knowledge for http://", {"--http2"}));
  s.add(integer("streams", 1, "HTTP/2: concurrent streams per connection (as h2load's -m)", 1, 1024, {"--streams"}));
  s.add(number("rate", 0, "open loop: requests per second in total, on a fixed schedule (0: closed loop)", 0,
               1000000000, {"--rate", "-R"}));
  s.add({"stages", value_kind::string, "", "open loop with a changing rate: DURATION:RATE,... each a linear ramp from "
         "the previous rate (0 at the start), e.g. 30s:1k,2m:10k,30s:0; sets the duration", 0, 0, {}, {"--stages"}, true});
  s.add({"steps", value_kind::string, "", "open loop in steps: FROM:TO:STEP/DURATION, each rate held for DURATION, "
         "e.g. 1k:10k:1k/20s; sets the duration", 0, 0, {}, {"--steps"}, true});
  s.add(flag("find_max", "search for the highest open-loop rate that meets --slo, by trials", {"--find-max"}));
  s.add({"slo", value_kind::string, "", "the goal of --find-max: conditions pNN<DURATION, max<DURATION, errors<RATE, "
         "comma-separated, e.g. p99<10ms,errors<0.1%", 0, 0, {}, {"--slo"}, true});
  s.add(dur("trial_duration", "5s", "--find-max: the measured time of each trial", 100000, {"--trial-duration"}));
  s.add(dur("trial_warmup", "1s", "--find-max: the warm-up of each trial (fresh connections each)", 0, {"--trial-warmup"}));
  s.add(number("start_rate", 1000, "--find-max: the first trial's rate (requests per second)", 1, 1000000000, {"--start-rate"}));
  s.add(number("max_rate", 10000000, "--find-max: no trial above this rate", 1, 1000000000, {"--max-rate"}));
  s.add(number("precision", 0.03, "--find-max: stop bisecting when the rates met and failed are this close (a fraction)",
               0, 1, {"--precision"}));
  s.add(integer("max_trials", 20, "--find-max: at most this many rates tried (each --trial-repeats trials)", 1, 1000,
                {"--max-trials"}));
  s.add(integer("trial_repeats", 1, "--find-max: trials per rate; the rate is met when more than half of them meet "
                "the goal (3 or 5 steady a noisy service's answer)", 1, 15, {"--trial-repeats"}));
  s.add({"method", value_kind::string, "GET", "HTTP method (any token: GET, POST, DELETE, PATCH, ...)", 0, 0, {},
         {"--method", "-m"}, false});
  s.add({"header", value_kind::string_list, nlohmann::json::array(), "request header \"Name: value\"", 0, 0, {},
         {"--header", "-H"}, false});
  s.add({"targets", value_kind::string, "", "file of targets, one per line: URL or METHOD URL (# comments); "
         "with the URL arguments, connections take them round robin", 0, 0, {}, {"--targets"}, true});
  s.add(integer("body_size", 0, "request body bytes, generated (methods other than GET/HEAD)", 0, std::int64_t{1} << 30,
                {"--body-size"}));
  s.add({"body_file", value_kind::string, "", "request body: this file's bytes", 0, 0, {}, {"--body-file"}, true});
  s.add({"content_type", value_kind::string, "", "Content-Type of the request body", 0, 0, {}, {"--content-type"}, true});
  s.add(flag("disable_keepalive", "one request per connection (Connection: close), as wrk's -H 'Connection: close'",
             {"--disable-keepalive"}));
  s.add(flag("chunked", "send the body with Transfer-Encoding: chunked", {"--chunked"}));
  s.add(integer("size", 64, "echo payload bytes per request (tcp:// and tls:// targets)", 1, std::int64_t{1} << 26, {"--size"}));
  s.add(number("malformed", 0, "share of requests that are malformed on purpose (0..1)", 0, 1, {"--malformed"}));
  s.add({"stats_url", value_kind::string, "", "server statistics to fetch before, during and after (http://.../stats)",
         0, 0, {}, {"--stats-url"}, true});
  s.add(dur("stats_interval", "1s", "how often to fetch --stats-url during the run", 100000, {"--stats-interval"}));
  s.add({"json", value_kind::string, "", "write the JSON report to this file (-: to stdout, the summary then on stderr; with --quiet none)", 0, 0, {}, {"--json"}, true});
  s.add(flag("quiet", "no progress on stderr (as --progress off)", {"--quiet", "-q"}));
  s.add({"progress", value_kind::choice, "auto", "what to show each second on stderr: live (a block redrawn in place), "
         "lines (one line a second), json (one object a second), off; auto: live on a terminal, else lines", 0, 0,
         {"auto", "live", "lines", "json", "off"}, {"--progress"}, false});
  s.add(number("max_error_rate", 1, "fail (exit 1) if errors / requests exceeds this", 0, 1, {"--max-error-rate"}));
  s.add({"ok_status", value_kind::string, "2xx,3xx", "response statuses that count as success (e.g. 200-299,404); "
         "others are errors", 0, 0, {}, {"--ok-status"}, false});
  s.add(flag("latency", "print the latency percentile spectrum (HdrHistogram's .hgrm text, as wrk2 --latency)",
             {"--latency"}));
  s.add({"html", value_kind::string, "", "write the report as one self-contained HTML page with charts", 0, 0, {},
         {"--html"}, true});
  s.add(flag("json_compact", "write the JSON report on one line, without the per-second histograms", {"--json-compact"}));
  s.add({"start_at", value_kind::string, "", "start at this wall-clock time (2026-11-28T21:00:00Z or Unix seconds), "
         "so that several machines start together", 0, 0, {}, {"--start-at"}, true});
  s.add({"shard", value_kind::string, "", "I/N: with --stages or --steps, send only the plan's requests k with "
         "k mod N = I, so that N instances (started together: --start-at) send the plan between them", 0, 0, {},
         {"--shard"}, true});
  s.add(dur("timeout", "5s", "connect and response timeout", 1000, {"--timeout"}));
  s.add(flag("tls.insecure", "https/tls: do not verify the server's certificate (as wrk and hey never do)",
             {"--insecure", "-k"}));
  s.add({"tls.cacert", value_kind::string, "", "https/tls: verify against this PEM CA file instead of the system store",
         0, 0, {}, {"--cacert"}, true});
  s.add({"tls.cert", value_kind::string, "", "https/tls: client certificate, PEM", 0, 0, {}, {"--cert"}, true});
  s.add({"tls.key", value_kind::string, "", "https/tls: the client certificate's key, PEM (\"\": in --cert)", 0, 0, {},
         {"--key"}, true});
  s.add({"tls.sni", value_kind::string, "", "https/tls: the server name sent and verified (\"\": the URL's host)", 0, 0,
         {}, {"--sni"}, true});
  s.add({"unix_socket", value_kind::string, "", "connect to this Unix socket instead of the URL's host and port "
         "(the URL's host is still sent)", 0, 0, {}, {"--unix-socket"}, true});
  s.add({"connect_to", value_kind::string, "", "connect to HOST:PORT instead of the URL's (the URL's name is still sent)",
         0, 0, {}, {"--connect-to"}, true});
  s.add({"tls.min", value_kind::choice, "1.2", "https/tls: oldest TLS version offered", 0, 0, {"1.2", "1.3"},
         {"--tls-min"}, false});
  s.add({"tls.ciphers", value_kind::string, "", "https/tls: TLS 1.2 cipher list (\"\": OpenSSL's default)", 0, 0, {},
         {"--ciphers"}, true});
  s.add({"tls.alpn", value_kind::string, "http/1.1", "https/tls: ALPN protocols offered, comma-separated (\"\": none)",
         0, 0, {}, {"--alpn"}, true});
  s.add({"tls.resume", value_kind::choice, "on", "https/tls: resume the last session when a connection is made again",
         0, 0, {"on", "off"}, {"--tls-resume"}, false});
  return s;
}

std::size_t size_at(const nlohmann::json& v, std::string_view path) {
  return static_cast<std::size_t>(config::at(v, path).get<std::int64_t>());
}

// RFC 9110 token characters (a method is a token).
bool is_token(std::string_view t) {
  if (t.empty()) return false;
  for (unsigned char c : t)
    if (!(std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos))
      return false;
  return true;
}

// A decimal count ("0", "12"); nullopt otherwise.
std::optional<std::size_t> parse_count(const std::string& text) {
  std::size_t v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

}  // namespace

// "2026-11-28T21:00:00Z" (fractions allowed) or Unix seconds ("1764363600", "1764363600.5").
std::optional<std::chrono::system_clock::time_point> parse_wall_time(const std::string& text) {
  using namespace std::chrono;
  char* end = nullptr;
  const double secs = std::strtod(text.c_str(), &end);
  if (!text.empty() && end == text.c_str() + text.size() && secs > 0)
    return system_clock::time_point(duration_cast<system_clock::duration>(duration<double>(secs)));
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  double frac = 0;
  std::string rest = text.substr(static_cast<std::size_t>(consumed));
  if (!rest.empty() && rest[0] == '.') {
    const auto z = rest.find('Z');
    if (z == std::string::npos) return std::nullopt;
    frac = std::strtod(("0" + rest.substr(0, z)).c_str(), nullptr);
    rest = rest.substr(z);
  }
  if (rest != "Z") return std::nullopt;  // UTC only: no ambiguity between machines
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return system_clock::from_time_t(t) + duration_cast<system_clock::duration>(duration<double>(frac));
}

std::optional<status_set> parse_status_set(std::string_view text) {
  status_set out;
  std::size_t items = 0;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    int lo = 0, hi = 0;
    auto num = [](std::string_view s, int& v) {
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      return ec == std::errc() && p == s.data() + s.size() && v >= 100 && v <= 599;
    };
    if (item.size() == 3 && (item[1] == 'x' || item[1] == 'X') && (item[2] == 'x' || item[2] == 'X') && item[0] >= '1' &&
        item[0] <= '5') {
      lo = (item[0] - '0') * 100;
      hi = lo + 99;
    } else if (const auto dash = item.find('-'); dash != std::string_view::npos) {
      if (!num(item.substr(0, dash), lo) || !num(item.substr(dash + 1), hi) || lo > hi) return std::nullopt;
    } else if (num(item, lo)) {
      hi = lo;
    } else {
      return std::nullopt;
    }
    for (int c = lo; c <= hi; ++c) out.ok[static_cast<std::size_t>(c)] = true;
    ++items;
  }
  if (items == 0) return std::nullopt;
  return out;
}

std::optional<target> parse_target(std::string_view url) {
  target t;
  std::string_view rest;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
  } else if (url.rfind("https://", 0) == 0) {
    t.tls = true;
    rest = url.substr(8);
  } else if (url.rfind("tcp://", 0) == 0) {
    t.echo = true;
    rest = url.substr(6);
  } else if (url.rfind("tls://", 0) == 0) {
    t.echo = true;
    t.tls = true;
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
    ep = config::endpoint{std::string(hostport), static_cast<std::uint16_t>(t.tls ? 443 : 80)};
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

loadgen_settings settings_from(const nlohmann::json& v, const std::vector<std::string>& urls) {
  loadgen_settings s;
  std::vector<std::string> problems;
  auto add_target = [&](const std::string& text, const std::string& method, const std::string& where) {
    if (auto t = parse_target(text)) {
      t->method = method;
      t->text = text;
      s.targets.push_back(*t);
    } else {
      problems.push_back("loadgen: target \"" + text + "\"" + where +
                         " is invalid: expected http(s)://HOST:PORT/PATH or tcp://HOST:PORT (tls:// over TLS)");
    }
  };
  for (const auto& u : urls) add_target(u, "", "");
  const std::string targets_file = config::at(v, "targets").get<std::string>();
  if (!targets_file.empty()) {
    std::ifstream in(targets_file);
    if (!in) problems.push_back("config: targets = \"" + targets_file + "\": cannot read the file");
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const auto first = line.find_first_not_of(" \t");
      if (first == std::string::npos || line[first] == '#') continue;
      std::istringstream words(line.substr(first));
      std::string a, b, extra;
      words >> a >> b >> extra;
      const std::string where = " (" + targets_file + " line " + std::to_string(n) + ")";
      if (!extra.empty()) {
        problems.push_back("loadgen: " + targets_file + " line " + std::to_string(n) + ": expected URL or METHOD URL");
      } else if (b.empty()) {
        add_target(a, "", where);
      } else if (!is_token(a)) {
        problems.push_back("loadgen: " + targets_file + " line " + std::to_string(n) + ": \"" + a + "\" is not a method");
      } else {
        add_target(b, a, where);
      }
    }
  }
  if (s.targets.empty() && problems.empty())
    problems.push_back("loadgen: no target: give a URL, http://HOST:PORT/PATH or tcp://HOST:PORT (or --targets FILE)");
  if (!s.targets.empty()) {
    s.url = s.targets.front();
    s.url_text = s.url.text;
    for (const auto& t : s.targets)
      if (t.echo != s.url.echo) problems.push_back("loadgen: targets mix http:// and tcp://: use one kind per run");
  }
  const std::string url = s.url_text;
  s.connections = size_at(v, "connections");
  s.threads = size_at(v, "threads");
  s.duration = config::duration_at(v, "duration");
  s.requests = static_cast<std::uint64_t>(config::at(v, "requests").get<std::int64_t>());
  s.warmup = config::duration_at(v, "warmup");
  s.pipeline = size_at(v, "pipeline");
  s.http2 = config::at(v, "http2").get<bool>();
  s.streams = size_at(v, "streams");
  s.rate = config::at(v, "rate").get<double>();
  s.find_max = config::at(v, "find_max").get<bool>();
  s.slo = config::at(v, "slo").get<std::string>();
  s.trial_duration = config::duration_at(v, "trial_duration");
  s.trial_warmup = config::duration_at(v, "trial_warmup");
  s.start_rate = config::at(v, "start_rate").get<double>();
  s.max_rate = config::at(v, "max_rate").get<double>();
  s.precision = config::at(v, "precision").get<double>();
  s.max_trials = size_at(v, "max_trials");
  s.trial_repeats = size_at(v, "trial_repeats");
  if (s.find_max) {
    if (s.slo.empty()) problems.push_back("config: find_max = true needs slo (--slo 'p99<10ms,errors<0.1%')");
    else {
      try {
        (void)parse_slo(s.slo);
      } catch (const config::error& e) {
        problems.insert(problems.end(), e.problems().begin(), e.problems().end());
      }
    }
    if (s.rate > 0) problems.push_back("config: rate and find_max are both set: the search sets the rate (--start-rate)");
    if (config::at(v, "requests").get<std::int64_t>() > 0)
      problems.push_back("config: requests and find_max are both set: each trial runs for trial_duration");
    if (!config::at(v, "stages").get<std::string>().empty() || !config::at(v, "steps").get<std::string>().empty())
      problems.push_back("config: stages or steps and find_max are both set: the search sets the rate");
    if (s.start_rate > s.max_rate) problems.push_back("config: start_rate is above max_rate");
  } else if (!s.slo.empty()) {
    problems.push_back("config: slo is set without find_max (--find-max)");
  }
  const std::string stages = config::at(v, "stages").get<std::string>();
  const std::string steps = config::at(v, "steps").get<std::string>();
  try {
    if (!stages.empty() && !steps.empty()) problems.push_back("config: stages and steps are both set: use one");
    else if (!stages.empty()) s.plan = rate_plan::parse_stages(stages);
    else if (!steps.empty()) s.plan = rate_plan::parse_steps(steps);
  } catch (const config::error& e) {
    problems.insert(problems.end(), e.problems().begin(), e.problems().end());
  }
  if (!s.plan.empty()) {
    const char* which = !stages.empty() ? "stages" : "steps";
    // The plan is the rate and the duration; the first stage ramps up, so there is no separate warm-up.
    if (s.rate > 0) problems.push_back(std::string("config: rate and ") + which + " are both set: " + which + " set the rate");
    if (config::at(v, "requests").get<std::int64_t>() > 0)
      problems.push_back(std::string("config: requests and ") + which + " are both set: " + which + " set how many");
    if (config::duration_at(v, "warmup").count() > 0)
      problems.push_back(std::string("config: warmup and ") + which + " are both set: ramp up with the first stage instead");
    s.plan_text = !stages.empty() ? "stages " + stages : "steps " + steps;
  }
  if (const std::string shard = config::at(v, "shard").get<std::string>(); !shard.empty()) {
    const auto slash = shard.find('/');
    const auto index = slash == std::string::npos ? std::nullopt : parse_count(shard.substr(0, slash));
    const auto count = slash == std::string::npos ? std::nullopt : parse_count(shard.substr(slash + 1));
    if (!index || !count || *count < 1 || *count > 100000 || *index >= *count)
      problems.push_back("config: shard = \"" + shard + "\" is invalid: expected I/N with 0 <= I < N <= 100000 (0/3, 1/3, 2/3)");
    else if (s.plan.empty() && stages.empty() && steps.empty())
      problems.push_back("config: shard is set without stages or steps: it shares a plan's requests among instances "
                         "(with --rate, give each instance its own share of the rate)");
    else
      s.shard_index = *index, s.shard_count = *count;
    if (s.find_max) problems.push_back("config: shard and find_max are both set: a search runs on one machine");
  }
  s.method = config::at(v, "method").get<std::string>();
  if (!is_token(s.method)) problems.push_back("config: method = \"" + s.method + "\" is invalid: expected an HTTP method token");
  for (const auto& h : config::at(v, "header")) {
    const std::string line = h.get<std::string>();
    const auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0 || !is_token(line.substr(0, colon)) ||
        line.find_first_of("\r\n") != std::string::npos)
      problems.push_back("config: header = \"" + line + "\" is invalid: expected \"Name: value\"");
    else
      s.headers.push_back(line);
  }
  s.content_type = config::at(v, "content_type").get<std::string>();
  if (s.content_type.find_first_of("\r\n") != std::string::npos) problems.push_back("config: content_type holds a line break");
  s.disable_keepalive = config::at(v, "disable_keepalive").get<bool>();
  s.ok_status_text = config::at(v, "ok_status").get<std::string>();
  if (auto st = parse_status_set(s.ok_status_text)) s.ok_status = *st;
  else problems.push_back("config: ok_status = \"" + s.ok_status_text + "\" is invalid: expected statuses, ranges or classes, e.g. 2xx,3xx or 200-299,404");
  s.latency_spectrum = config::at(v, "latency").get<bool>();
  s.json_compact = config::at(v, "json_compact").get<bool>();
  if (const std::string at = config::at(v, "start_at").get<std::string>(); !at.empty()) {
    s.start_at = parse_wall_time(at);
    if (!s.start_at) problems.push_back("config: start_at = \"" + at + "\" is invalid: expected 2026-11-28T21:00:00Z (UTC) or Unix seconds");
  }
  s.body_size = size_at(v, "body_size");
  if (const std::string f = config::at(v, "body_file").get<std::string>(); !f.empty()) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      problems.push_back("config: body_file = \"" + f + "\": cannot read the file");
    } else {
      s.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      s.body_from_file = true;
    }
  }
  s.chunked = config::at(v, "chunked").get<bool>();
  s.echo_size = size_at(v, "size");
  s.malformed = config::at(v, "malformed").get<double>();
  s.stats_url = config::at(v, "stats_url").get<std::string>();
  s.stats_interval = config::duration_at(v, "stats_interval");
  s.json_file = config::at(v, "json").get<std::string>();
  s.html_file = config::at(v, "html").get<std::string>();
  s.quiet = config::at(v, "quiet").get<bool>();
  s.progress = config::at(v, "progress").get<std::string>();
  s.max_error_rate = config::at(v, "max_error_rate").get<double>();
  s.timeout = config::duration_at(v, "timeout");
  s.insecure = config::at(v, "tls.insecure").get<bool>();
  s.cacert = config::at(v, "tls.cacert").get<std::string>();
  s.cert = config::at(v, "tls.cert").get<std::string>();
  s.key = config::at(v, "tls.key").get<std::string>();
  s.sni = config::at(v, "tls.sni").get<std::string>();
  s.connect_to = config::at(v, "connect_to").get<std::string>();
  s.unix_socket = config::at(v, "unix_socket").get<std::string>();
  if (!s.unix_socket.empty() && !s.connect_to.empty())
    problems.push_back("config: unix_socket and connect_to are both set: use one");
  if (s.unix_socket.size() >= sizeof(sockaddr_un{}.sun_path))
    problems.push_back("config: unix_socket = \"" + s.unix_socket + "\" is invalid: longer than " +
                       std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes (the limit of a Unix socket path)");
  s.tls_min = config::at(v, "tls.min").get<std::string>();
  s.ciphers = config::at(v, "tls.ciphers").get<std::string>();
  s.alpn = config::at(v, "tls.alpn").get<std::string>();
  s.tls_resume = config::at(v, "tls.resume").get<std::string>() == "on";
  if (!s.connect_to.empty()) {
    const auto ep = config::parse_endpoint(s.connect_to);
    if (!ep || ep->port == 0) problems.push_back("config: connect_to = \"" + s.connect_to + "\" is invalid: expected HOST:PORT");
  }
  for (const std::string* f : {&s.cacert, &s.cert, &s.key})
    if (!f->empty() && !std::ifstream(*f)) problems.push_back("config: tls: \"" + *f + "\": cannot read the file");
  if (!s.key.empty() && s.cert.empty()) problems.push_back("config: tls.key is set but tls.cert is not");
  if (!s.plan.empty())
    s.duration = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(s.plan.duration()));
  if (s.threads > s.connections) s.threads = s.connections;  // a thread without connections does nothing
  if (!s.stats_url.empty()) {
    auto st = parse_target(s.stats_url);
    if (!st || st->echo) problems.push_back("config: stats_url = \"" + s.stats_url + "\" is invalid: expected http://HOST:PORT/PATH");
  }
  if (s.http2) {
    // Each of these is a thing of HTTP/1.1's framing, or of a byte stream, that HTTP/2 has no place for.
    if (s.url.echo) problems.push_back("config: http2 = true needs http:// or https:// targets, not " + s.url_text);
    if (s.pipeline > 1)
      problems.push_back("config: pipeline = " + std::to_string(s.pipeline) +
                         " does not apply with http2 = true: HTTP/2 multiplexes streams, use streams (--streams N)");
    if (s.chunked) problems.push_back("config: chunked = true does not apply with http2 = true: HTTP/2 frames bodies itself");
    if (s.malformed > 0)
      problems.push_back("config: malformed = " + std::to_string(s.malformed) +
                         " does not apply with http2 = true: the malformed request is an HTTP/1.1 one");
    if (s.disable_keepalive)
      problems.push_back("config: disable_keepalive = true does not apply with http2 = true (Connection: close is "
                         "not HTTP/2; use --connections for more connections)");
    // ALPN: offer h2 unless a list was given; a list without h2 cannot reach HTTP/2.
    if (s.alpn == "http/1.1") s.alpn = "h2";
    else if (("," + s.alpn + ",").find(",h2,") == std::string::npos)
      problems.push_back("config: tls.alpn = \"" + s.alpn + "\" does not offer h2, which http2 = true needs over TLS");
  } else if (s.streams > 1) {
    problems.push_back("config: streams = " + std::to_string(s.streams) +
                       " needs http2 = true (--http2): HTTP/1.1 has one request at a time per connection (--pipeline)");
  }
  if (s.chunked && (s.method == "GET" || s.method == "HEAD"))
    problems.push_back("config: chunked = true needs a method with a body, not " + s.method);
  if (!problems.empty()) throw config::error(problems);
  s.effective = v;
  s.effective["url"] = url;
  nlohmann::json all = nlohmann::json::array();
  for (const auto& t : s.targets) all.push_back(t.method.empty() ? t.text : t.method + " " + t.text);
  s.effective["urls"] = all;
  return s;
}

}  // namespace bufpool::loadgen
