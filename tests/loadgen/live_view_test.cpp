// bufpool-loadgen's live view (--progress): the block redrawn in place on a terminal (run under tmux,
// read back with capture-pane), one line a second when stderr is not a terminal, one JSON object a
// second with --progress json, nothing with --quiet. Servers listen on 127.0.0.1 only; every run is
// bounded, and the tmux server (its own socket) is killed at the end.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "live_view.hpp"
#include "loadgen_support.hpp"
#include "server.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using namespace bufpool::loadgen;
using bufpool::loadgen::test::run_loadgen;
using bufpool::loadgen::test::settings_for;

namespace {

std::string shell(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p.get())) out.append(buf, n);
  return out;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// A tmux server on a socket of its own, killed when the test ends.
struct tmux {
  std::string socket = "bufpool-test-" + std::to_string(::getpid());
  std::string cmd(const std::string& args) const { return "tmux -L " + socket + " " + args + " 2>&1"; }
  std::string pane() const { return shell(cmd("capture-pane -p -t lv")); }
  ~tmux() { shell(cmd("kill-server")); }
};

}  // namespace

TEST_CASE("loadgen live view: under tmux the status block is redrawn in place each second, the summary after it") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string base = "http://127.0.0.1:";
  const std::string run = std::string(BUFPOOL_LOADGEN_BIN) + " -c 4 -t 1 -d 4s -R 500 --stats-url " + base +
                          std::to_string(srv.ports().admin) + "/stats --stats-interval 500ms " + base +
                          std::to_string(srv.ports().http) + "/plaintext; sleep 30";
  tmux t;
  shell(t.cmd("new-session -d -s lv -x 140 -y 40 '" + run + "'"));
  // After a few seconds: one block, the figures of the last second in it.
  std::string pane;
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline) {
    pane = t.pane();
    if (pane.find("3s of 4s") != std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  INFO("pane:\n" << pane);
  CHECK(pane.find("3s of 4s") != std::string::npos);
  CHECK(occurrences(pane, "  rate      asked 500/s") == 1);  // redrawn, not appended
  CHECK(occurrences(pane, "  latency   p50 ") == 1);
  CHECK(pane.find("p99.9 ") != std::string::npos);
  CHECK(pane.find("  errors    0") != std::string::npos);
  CHECK(pane.find("  conns     4 open of 4") != std::string::npos);
  CHECK(pane.find("  server    pool gets ") != std::string::npos);  // from --stats-url
  CHECK(pane.find("[   1s]") == std::string::npos);                 // not the plain lines
  // At the end the summary follows the last block.
  while (std::chrono::steady_clock::now() < deadline && pane.find("Requests/sec") == std::string::npos) {
    std::this_thread::sleep_for(100ms);
    pane = t.pane();
  }
  INFO("pane at the end:\n" << pane);
  CHECK(pane.find("Requests/sec") != std::string::npos);
  CHECK(occurrences(pane, "  latency   p50 ") == 1);
  CHECK(pane.find("Requests/sec") > pane.find("  latency   p50 "));
}

TEST_CASE("loadgen live view: one line a second when stderr is not a terminal, JSON with --progress json, "
          "nothing with --quiet") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  auto r = run_loadgen({"-c", "2", "-t", "1", "-d", "2s", "-R", "200", url});
  CHECK(r.status == 0);
  // Answers are counted in the second their thread's tick closes (100 ms apart): about 200 a second.
  CHECK(std::regex_search(r.out, std::regex(R"(\[   1s\] +[0-9]+ req/s  errors 0  p50 )")));
  CHECK(r.out.find("asked 200") != std::string::npos);
  CHECK(r.out.find("\x1b[") == std::string::npos);  // no terminal codes in a file
  r = run_loadgen({"-c", "2", "-t", "1", "-d", "2s", "-R", "200", "--progress", "json", url});
  CHECK(r.status == 0);
  std::istringstream lines(r.out);
  std::string line;
  int objects = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line);
    ++objects;
    CHECK(j["second"] == objects);
    CHECK(j["asked"] == 200.0);
    CHECK(j["requests"].get<int>() >= 150);
    CHECK(j["errors"].contains("timeout"));
    CHECK(j["connections"] == 2);
    CHECK(j["p999_us"].is_number());
  }
  CHECK(objects == 2);
  r = run_loadgen({"-c", "2", "-t", "1", "-d", "1s", "--quiet", url});
  CHECK(r.status == 0);
  CHECK(r.out.find("[   1s]") == std::string::npos);  // no progress, the summary only
  CHECK(r.out.find("Requests/sec") != std::string::npos);
}

TEST_CASE("loadgen live view: the block names errors by kind and the asked rate of a plan") {
  auto s = settings_for("http://127.0.0.1:1/", {"--stages", "2s:1k"});
  s.quiet = false;  // settings_for adds --quiet
  second_stats sec;
  sec.second = 1;
  sec.requests = 700;
  sec.sent = 750;
  sec.errors = 5;
  sec.failures[static_cast<std::size_t>(failure::timeout)] = 3;
  sec.failures[static_cast<std::size_t>(failure::closed)] = 2;
  sec.connections = 3;
  for (int i = 0; i < 700; ++i) sec.latency.record(100 + i);
  const auto p = progress_json(s, sec, nullptr, nullptr);
  CHECK(p["asked"] == 750);  // the ramp's second second: N(2) - N(1) = 1000 - 250
  const std::string block = progress_block(s, p);
  CHECK(block.find("asked 750/s   sent 750/s   answered 700/s") != std::string::npos);
  CHECK(block.find("errors    5  (closed 2  timeout 3)") != std::string::npos);
  CHECK(block.find("conns     3 open of 64") != std::string::npos);
  CHECK(resolve_progress(s, true) == progress_mode::live);
  CHECK(resolve_progress(s, false) == progress_mode::lines);
  s.progress = "json";
  CHECK(resolve_progress(s, true) == progress_mode::json);
  s.quiet = true;
  CHECK(resolve_progress(s, true) == progress_mode::off);
}
