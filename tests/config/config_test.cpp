// The layered configuration: precedence, and a clear error for each kind of bad input.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/config/config.hpp>

#include "settings.hpp"

using bufpool::config::error;
using bufpool::config::load;
using bufpool::server::server_schema;

namespace {
struct args {
  std::vector<std::string> v;
  std::vector<const char*> p;
  args(std::initializer_list<std::string> a) : v(a) {
    v.insert(v.begin(), "bufpool-server");
    for (auto& s : v) p.push_back(s.c_str());
  }
  int argc() const { return static_cast<int>(p.size()); }
  const char* const* argv() const { return p.data(); }
};

std::string temp_file(const std::string& text) {
  static int n = 0;
  const std::string path = "/tmp/bufpool-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".json";
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const args& a, const std::map<std::string, std::string>& env = {}) {
  try {
    load(server_schema(), a.argc(), a.argv(), env);
  } catch (const error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("config: embedded defaults < file < environment < flags") {
  const auto file = temp_file(R"({"threads": 3, "http": {"max_headers": 50, "idle_timeout": "5s"}, "log": {"level": "debug"}})");
  args a{"--config", file, "--threads", "4"};
  auto r = load(server_schema(), a.argc(), a.argv(), {{"BUFPOOL_THREADS", "5"}, {"BUFPOOL_HTTP_MAX_HEADERS", "60"}});
  CHECK(r.values["threads"] == 4);                       // flag beats env and file
  CHECK(r.values["http"]["max_headers"] == 60);          // env beats file
  CHECK(r.values["http"]["idle_timeout"] == "5s");       // file beats default
  CHECK(r.values["log"]["level"] == "debug");
  CHECK(r.values["http"]["max_body_bytes"] == 1048576);  // default
  std::remove(file.c_str());
}

TEST_CASE("config: the sample config/server.json loads") {
  args a{"--config", std::string(BUFPOOL_SOURCE_DIR) + "/config/server.json"};
  auto r = load(server_schema(), a.argc(), a.argv(), {});
  CHECK(r.values["http"]["listen"] == "127.0.0.1:8080");
}

TEST_CASE("config: --print-config prints the effective configuration as JSON") {
  args a{"--print-config", "--http.max_body_bytes", "2048", "--http.header_timeout", "1500ms"};
  auto r = load(server_schema(), a.argc(), a.argv(), {});
  CHECK(r.exit);
  auto j = nlohmann::json::parse(r.output);
  CHECK(j["http"]["max_body_bytes"] == 2048);
  CHECK(j["http"]["header_timeout"] == "1500ms");
}

TEST_CASE("config: an unknown key in the file names its path and a suggestion") {
  const auto file = temp_file(R"({"http": {"max_hedaers": 10}})");
  const auto msg = error_of(args{"--config", file});
  CHECK(msg.find("unknown key \"http.max_hedaers\"") != std::string::npos);
  CHECK(msg.find("did you mean \"http.max_headers\"") != std::string::npos);
  std::remove(file.c_str());
}

TEST_CASE("config: a type or range error names the key, the value, the origin and what is allowed") {
  auto msg = error_of(args{"--threads", "many"});
  CHECK(msg.find("threads = \"many\" (from flag --threads) is invalid: expected an integer in [0, 1024]") !=
        std::string::npos);
  msg = error_of(args{"--http.max_headers", "0"});
  CHECK(msg.find("http.max_headers = \"0\"") != std::string::npos);
  CHECK(msg.find("in [1, 10000]") != std::string::npos);
  msg = error_of(args{"--http-listen", "localhost"});
  CHECK(msg.find("expected HOST:PORT") != std::string::npos);
  msg = error_of(args{"--accept", "roundrobin"});
  CHECK(msg.find("one of reuseport, single") != std::string::npos);
  msg = error_of(args{"--http.header_timeout", "soon"});
  CHECK(msg.find("a duration such as 500ms") != std::string::npos);
  const auto file = temp_file(R"({"pool": {"enabled": "maybe"}})");
  msg = error_of(args{"--config", file});
  CHECK(msg.find("pool.enabled = \"maybe\" (from file") != std::string::npos);
  std::remove(file.c_str());
}

TEST_CASE("config: every problem is reported at once") {
  const auto msg = error_of(args{"--threads", "-1", "--http.max_headers", "x"});
  CHECK(msg.find("threads") != std::string::npos);
  CHECK(msg.find("http.max_headers") != std::string::npos);
}

TEST_CASE("config: an unknown environment variable with our prefix is a warning with a suggestion, not an error") {
  args a{};
  const auto r = load(server_schema(), a.argc(), a.argv(), {{"BUFPOOL_HTTP_MAX_HEADER", "5"}, {"PATH", "/bin"}});
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].find("unknown environment variable BUFPOOL_HTTP_MAX_HEADER ignored") != std::string::npos);
  CHECK(r.warnings[0].find("did you mean BUFPOOL_HTTP_MAX_HEADERS") != std::string::npos);
  // A known variable with a bad value is still an error.
  CHECK(error_of(args{}, {{"BUFPOOL_THREADS", "many"}}).find("threads") != std::string::npos);
}

TEST_CASE("config: an unknown flag gets a suggestion") {
  const auto msg = error_of(args{"--http.max_header", "5"});
  CHECK(msg.find("did you mean --http.max_headers") != std::string::npos);
}

TEST_CASE("config: a file that is not JSON, or missing, is reported") {
  const auto file = temp_file("{ not json");
  CHECK(error_of(args{"--config", file}).find("is not valid JSON") != std::string::npos);
  std::remove(file.c_str());
  CHECK(error_of(args{"--config", "/nonexistent/x.json"}).find("cannot read") != std::string::npos);
}

TEST_CASE("config: pool options are checked with the key path") {
  args a{"--pool.max_class", "1000"};
  auto r = load(server_schema(), a.argc(), a.argv(), {});
  try {
    bufpool::server::settings_from(r.values);
    FAIL("expected an error");
  } catch (const error& e) {
    CHECK(std::string(e.what()).find("config: pool.max_class = 1000 is invalid") != std::string::npos);
  }
}

TEST_CASE("config: durations take wrk's suffixes") {
  using bufpool::config::parse_duration;
  using std::chrono::microseconds;
  CHECK(parse_duration("500ms") == microseconds(500000));
  CHECK(parse_duration("10s") == microseconds(10000000));
  CHECK(parse_duration("2m") == microseconds(120000000));
  CHECK(parse_duration("1.5s") == microseconds(1500000));
  CHECK(parse_duration("3") == microseconds(3000000));
  CHECK_FALSE(parse_duration("10x"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK(bufpool::config::format_duration(microseconds(90000000)) == "90s");
}
