// The load generator end to end: coordinated omission, echo verification, the JSON report, stats from
// bufpool-server, merging, rates below one per second, and its errors. Test servers listen on
// 127.0.0.1 only; every run is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <mutex>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include "../support/process.hpp"
#include "engine.hpp"
#include "loadgen_support.hpp"
#include "report.hpp"
#include "server.hpp"
#include "settings.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using namespace bufpool::loadgen;
using bufpool::loadgen::test::run_loadgen;
using bufpool::loadgen::test::run_output;
using bufpool::loadgen::test::read_some;
using bufpool::loadgen::test::settings_for;
using bufpool::loadgen::test::test_server;

namespace {

// A tiny blocking test server on 127.0.0.1:0, one connection at a time, stopped by its destructor.
// Every request written in the window was answered, lost to a closed connection, or in flight at stop.
void check_accounting(const run_result& r) {
  CHECK(r.sent == r.requests + r.lost + r.in_flight_at_stop);
}

}  // namespace

TEST_CASE("loadgen: a server that stalls for a second shows in the corrected p99, not in the uncorrected") {
  const auto t0 = std::chrono::steady_clock::now();
  test_server srv([t0](int fd, std::atomic<bool>& stop) {
    std::string buf;
    bool stalled = false;
    while (read_some(fd, buf, stop)) {
      std::size_t pos;
      while ((pos = buf.find("\r\n\r\n")) != std::string::npos) {
        buf.erase(0, pos + 4);
        if (!stalled && std::chrono::steady_clock::now() - t0 > 1s) {
          stalled = true;
          std::this_thread::sleep_for(1s);  // the stall: one response takes a second
        }
        const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        ::send(fd, resp, sizeof resp - 1, MSG_NOSIGNAL);
      }
    }
  });
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.port()) + "/",
                        {"--connections", "1", "--threads", "1", "--rate", "200", "--duration", "3s"});
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  CHECK(r.requests > 400);
  // About 200 requests were due during the stall; measured from their intended send times they waited
  // up to a second. Measured from when they were actually sent, only one did.
  CHECK(r.corrected.percentile(99) > 500'000);
  CHECK(r.uncorrected.percentile(99) < 100'000);
  CHECK(r.uncorrected.max() >= 1'000'000);
  check_accounting(r);
}

TEST_CASE("loadgen: echo verification catches a server that corrupts one byte") {
  test_server srv([](int fd, std::atomic<bool>& stop) {
    std::string buf;
    std::size_t total = 0;
    while (read_some(fd, buf, stop)) {
      for (std::size_t i = 0; i < buf.size(); ++i)
        if (total + i == 1000) buf[i] = static_cast<char>(buf[i] ^ 0x20);  // one flipped bit
      total += buf.size();
      ::send(fd, buf.data(), buf.size(), MSG_NOSIGNAL);
      buf.clear();
    }
  });
  auto s = settings_for("tcp://127.0.0.1:" + std::to_string(srv.port()),
                        {"--connections", "1", "--threads", "1", "--requests", "100", "--size", "64"});
  const auto r = run_load(s);
  // Caught at byte 1000 of each connection (the server corrupts that byte of every connection).
  CHECK(r.failures[static_cast<std::size_t>(failure::echo_mismatch)] >= 1);
  CHECK(r.requests < 100);
  check_accounting(r);
}

TEST_CASE("loadgen: echo against bufpool-server verifies every byte") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("tcp://127.0.0.1:" + std::to_string(srv.ports().echo),
                        {"--connections", "4", "--threads", "2", "--requests", "2000", "--size", "3000", "--pipeline", "4"});
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  CHECK(r.requests == 2000);
}

TEST_CASE("loadgen: the JSON report against bufpool-server carries every key and the server's pool") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string stats = "http://127.0.0.1:" + std::to_string(srv.ports().admin) + "/stats";
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"--connections", "8", "--threads", "2", "--duration", "2s", "--pipeline", "2",
                         "--stats-url", stats});
  server_stats st;
  st.before = fetch_json(stats, 2s);
  const auto r = run_load(s);
  st.after = fetch_json(stats, 2s);
  const auto rep = make_report(s, r, st);
  CHECK(rep["schema"] == "bufpool-loadgen/3");
  for (const char* k : {"started_at", "config", "environment", "summary", "latency_us", "timeseries", "histogram", "server_stats"})
    CHECK(rep.contains(k));
  for (const char* k : {"outcome", "interrupted", "requests", "responses", "status_codes", "errors", "bytes_in", "bytes_out",
                        "rps", "connections", "in_flight_at_stop"})
    CHECK(rep["summary"].contains(k));
  CHECK(rep["summary"]["outcome"] == "completed");
  CHECK(rep["summary"]["interrupted"] == false);
  for (const char* k : {"p50", "p90", "p99", "p99.9", "p99.99", "max"}) {
    CHECK(rep["latency_us"]["corrected"].contains(k));
    CHECK(rep["latency_us"]["uncorrected"].contains(k));
  }
  CHECK(rep["environment"]["cores"].get<int>() >= 1);
  CHECK(rep["summary"]["responses"]["2xx"].get<std::uint64_t>() == r.requests);
  check_accounting(r);
  CHECK(rep["summary"]["sent"] == r.sent);
  CHECK(r.requests > 100);
  CHECK(rep["timeseries"].size() >= 1);
  const auto& pw = rep["server_stats"]["pool_window"];
  // At least one output buffer per batch of answers, and a batch holds at most the 2 in flight.
  CHECK(pw["gets"].get<std::uint64_t>() >= r.requests / 2);
  CHECK(pw["hits_private_share"].get<double>() + pw["hits_shared_share"].get<double>() > 0.9);
  CHECK(summary(rep).find("Server pool over the run") != std::string::npos);
  // NaN is written as null: a report of nothing.
  run_result empty;
  const auto rep2 = make_report(s, empty, {});
  CHECK(rep2["latency_us"]["corrected"]["p99"].is_null());
}

TEST_CASE("loadgen: malformed requests are counted by status and the connections recover") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"--connections", "2", "--threads", "1", "--requests", "200", "--malformed", "0.1"});
  const auto r = run_load(s);
  CHECK(r.status[1] == 180);  // 2xx
  CHECK(r.status[3] == 20);   // 4xx: 400 for each malformed request
  CHECK(r.requests == 200);
  check_accounting(r);
}

TEST_CASE("loadgen: requests pipelined behind a malformed one are reported lost, not silently dropped") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"--connections", "1", "--threads", "1", "--requests", "100", "--malformed", "0.1",
                         "--pipeline", "4"});
  const auto r = run_load(s);
  CHECK(r.status[3] >= 1);  // the malformed ones that were answered (400, then the server closes)
  CHECK(r.lost >= 1);       // what was pipelined behind them
  CHECK(r.sent == 100);
  check_accounting(r);
}

TEST_CASE("loadgen: POST with Content-Length and chunked bodies") {
  bufpool::server::server srv(bufpool::test::test_settings());
  for (const char* chunked : {"--chunked=false", "--chunked"}) {
    auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/echo",
                          {"--connections", "2", "--threads", "1", "--requests", "100", "--method", "POST",
                           "--body-size", "20000", chunked});
    const auto r = run_load(s);
    CHECK(r.status[1] == 100);
    CHECK(r.bytes_in > 100u * 20000u);
  }
}

TEST_CASE("loadgen: a rate below one request per second per thread is kept") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"--connections", "4", "--threads", "2", "--rate", "2", "--duration", "3s"});
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  CHECK(r.requests >= 5);  // 2 per second for 3 s, phases staggered
  CHECK(r.requests <= 7);
}

TEST_CASE("loadgen: reports from several machines merge exactly") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"--connections", "2", "--threads", "1", "--requests", "300"});
  const auto a = make_report(s, run_load(s), {});
  const auto b = make_report(s, run_load(s), {});
  const auto m = merge_reports({a, b});
  CHECK(m["summary"]["requests"] == 600);
  CHECK(m["merged_from"] == 2);
  auto ha = histogram::decode(a["histogram"]["corrected"]);
  ha.merge(histogram::decode(b["histogram"]["corrected"]));
  CHECK(m["histogram"]["corrected"] == ha.encode());
  CHECK(m["latency_us"]["corrected"]["p99"] == ha.percentile(99));
  CHECK_THROWS(merge_reports({nlohmann::json{{"schema", "other"}}}));
}

// ---- the program -----------------------------------------------------------------------------------


TEST_CASE("loadgen program: invalid options exit 2 with a clear message") {
  auto r = run_loadgen({"--connections", "zero", "http://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("connections = \"zero\"") != std::string::npos);
  r = run_loadgen({"ftp://x"});
  CHECK(r.status == 2);
  CHECK(r.out.find("expected http(s)://HOST:PORT/PATH or tcp://HOST:PORT") != std::string::npos);
  r = run_loadgen({"--duraton", "1s", "http://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("did you mean --duration") != std::string::npos);
}

TEST_CASE("loadgen program: an unreachable target fails fast with a clear message") {
  // A port that was just free: nothing listens there.
  test_server probe([](int, std::atomic<bool>&) {});
  const auto port = std::to_string(probe.port() == 65535 ? 1 : probe.port() + 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_loadgen({"-c", "4", "-d", "20s", "http://127.0.0.1:" + port + "/"});
  CHECK(r.status == 1);
  CHECK(r.out.find("every connection to 127.0.0.1:" + port + " failed") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // far sooner than the 20 s asked for
}

TEST_CASE("loadgen program: --max-error-rate fails the run when exceeded, and --json writes the report") {
  test_server srv([](int fd, std::atomic<bool>& stop) {  // answers garbage: every response is an error
    std::string buf;
    if (read_some(fd, buf, stop)) ::send(fd, "NOT HTTP\r\n\r\n", 12, MSG_NOSIGNAL);
  });
  const std::string json = "/tmp/bufpool-loadgen-report-" + std::to_string(::getpid()) + ".json";
  auto r = run_loadgen({"-c", "1", "-t", "1", "-n", "5", "--max-error-rate", "0.5", "--json", json, "-q",
                        "http://127.0.0.1:" + std::to_string(srv.port()) + "/"});
  CHECK(r.status == 1);
  CHECK(r.out.find("exceeds --max-error-rate") != std::string::npos);
  std::ifstream in(json);
  auto rep = nlohmann::json::parse(in);
  CHECK(rep["summary"]["errors"]["parse"].get<int>() >= 1);
  std::remove(json.c_str());
}

TEST_CASE("loadgen: settings come from a JSON file too, with flags on top") {
  const std::string file = "/tmp/bufpool-loadgen-config-" + std::to_string(::getpid()) + ".json";
  std::ofstream(file) << R"({"connections": 3, "duration": "2s", "pipeline": 4, "method": "POST"})";
  auto s = settings_for("http://127.0.0.1:1/", {"--config", file, "--pipeline", "8"});
  CHECK(s.connections == 3);
  CHECK(s.duration == std::chrono::seconds(2));
  CHECK(s.pipeline == 8);
  CHECK(s.method == "POST");
  std::remove(file.c_str());
}

TEST_CASE("loadgen program: --version prints the version and exits 0") {
  auto r = run_loadgen({"--version"});
  CHECK(r.status == 0);
  CHECK(r.out.rfind("bufpool-loadgen ", 0) == 0);
}

TEST_CASE("loadgen program: --json - with --quiet writes the report alone to stdout") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto r = run_loadgen({"-c", "2", "-t", "1", "-n", "20", "--json", "-", "-q",
                        "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext"});
  CHECK(r.status == 0);
  // The whole output is one JSON document (what `kubectl logs` of a load-generator pod collects).
  nlohmann::json rep;
  REQUIRE_NOTHROW(rep = nlohmann::json::parse(r.out));
  CHECK(rep["summary"]["requests"].get<int>() >= 20);
  srv.stop();
}

// ---- requests, honest outcomes, reports (issue 10) ------------------------------------------------

namespace {
// Answers every request with 200 and an empty body, and keeps the first request's bytes (head and
// Content-Length body) for the test to look at.
struct capturing_server {
  std::mutex mu;
  std::string first;
  std::vector<std::string> paths;
  test_server srv{[this](int fd, std::atomic<bool>& stop) {
    std::string buf;
    while (read_some(fd, buf, stop)) {
      for (;;) {
        const auto end = buf.find("\r\n\r\n");
        if (end == std::string::npos) break;
        std::size_t body = 0;
        const auto cl = buf.find("Content-Length: ");
        if (cl != std::string::npos && cl < end) body = std::stoul(buf.substr(cl + 16));
        if (buf.size() < end + 4 + body) break;
        const std::string req = buf.substr(0, end + 4 + body);
        buf.erase(0, end + 4 + body);
        {
          std::lock_guard lk(mu);
          if (first.empty()) first = req;
          paths.push_back(req.substr(req.find(' ') + 1, req.find(' ', req.find(' ') + 1) - req.find(' ') - 1));
        }
        ::send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 38, MSG_NOSIGNAL);
      }
    }
  }};
};
}  // namespace

TEST_CASE("loadgen: headers, Content-Type, a body from a file and any method reach the server") {
  capturing_server cap;
  const std::string body_file = "/tmp/bufpool-loadgen-body-" + std::to_string(::getpid());
  { std::ofstream(body_file) << "{\"hello\": 1}"; }
  auto s = settings_for("http://127.0.0.1:" + std::to_string(cap.srv.port()) + "/api?x=1",
                        {"-c", "1", "-t", "1", "-n", "3", "-m", "PATCH", "-H", "X-Trace: abc", "-H",
                         "Authorization: Bearer t0k", "--content-type", "application/json", "--body-file", body_file});
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  CHECK(r.requests == 3);
  std::lock_guard lk(cap.mu);
  CHECK(cap.first.rfind("PATCH /api?x=1 HTTP/1.1\r\n", 0) == 0);
  CHECK(cap.first.find("\r\nX-Trace: abc\r\n") != std::string::npos);
  CHECK(cap.first.find("\r\nAuthorization: Bearer t0k\r\n") != std::string::npos);
  CHECK(cap.first.find("\r\nContent-Type: application/json\r\n") != std::string::npos);
  CHECK(cap.first.find("\r\nContent-Length: 12\r\n\r\n{\"hello\": 1}") != std::string::npos);
  std::remove(body_file.c_str());
}

TEST_CASE("loadgen: bad headers and methods are refused with the key and the value") {
  CHECK_THROWS_WITH(settings_for("http://127.0.0.1:1/", {"-H", "no colon here"}),
                    doctest::Contains("header = \"no colon here\" is invalid"));
  CHECK_THROWS_WITH(settings_for("http://127.0.0.1:1/", {"-m", "GE T"}), doctest::Contains("method = \"GE T\""));
  CHECK_THROWS_WITH(settings_for("http://127.0.0.1:1/", {"--ok-status", "2xx,700"}), doctest::Contains("ok_status"));
}

TEST_CASE("loadgen: rates and counts take k and M") {
  auto s = settings_for("http://127.0.0.1:1/", {"--rate", "5k", "-n", "2k", "-c", "1.5k"});
  CHECK(s.rate == 5000);
  CHECK(s.requests == 2000);
  CHECK(s.connections == 1500);
  CHECK(settings_for("http://127.0.0.1:1/", {"--rate", "1.5M"}).rate == 1.5e6);
}

TEST_CASE("loadgen: several targets are taken round robin by the connections and a targets file adds more") {
  capturing_server cap;
  const std::string base = "http://127.0.0.1:" + std::to_string(cap.srv.port());
  const std::string file = "/tmp/bufpool-loadgen-targets-" + std::to_string(::getpid());
  { std::ofstream(file) << "# a comment\nGET " << base << "/c\n\n" << base << "/d\n"; }
  std::vector<std::string> args = {"bufpool-loadgen", "--quiet", "-c", "4", "-t", "1", "-n", "40", "--targets", file};
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto loaded = bufpool::config::load(loadgen_schema(), static_cast<int>(argv.size()), argv.data(), {}, {"url..."});
  const auto s = settings_from(loaded.values, std::vector<std::string>{base + "/a", base + "/b"});
  REQUIRE(s.targets.size() == 4);
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  std::lock_guard lk(cap.mu);
  for (const char* p : {"/a", "/b", "/c", "/d"}) CHECK(std::count(cap.paths.begin(), cap.paths.end(), p) == 10);
  std::remove(file.c_str());
}

TEST_CASE("loadgen: --disable-keepalive opens one connection per request") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"-c", "2", "-t", "1", "-n", "50", "--disable-keepalive"});
  const auto r = run_load(s);
  CHECK(r.errors() == 0);
  CHECK(r.requests == 50);
  CHECK(r.connections_established >= 50);
}

TEST_CASE("loadgen: a status --ok-status does not accept is an error, counted by status") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/no-such-path";
  auto s = settings_for(url, {"-c", "2", "-t", "1", "-n", "20"});
  auto r = run_load(s);
  CHECK(r.requests == 20);
  CHECK(r.failures[static_cast<std::size_t>(failure::status)] == 20);
  CHECK(r.status_codes[404] == 20);
  const auto rep = make_report(s, r, {});
  CHECK(rep["summary"]["status_codes"]["404"] == 20);
  CHECK(summary(rep).find("(status 404 20)") != std::string::npos);
  s = settings_for(url, {"-c", "2", "-t", "1", "-n", "20", "--ok-status", "2xx,404"});
  r = run_load(s);
  CHECK(r.errors() == 0);
}

TEST_CASE("loadgen: open loop reports the send lag as its own distribution") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"-c", "4", "-t", "1", "--rate", "400", "-d", "1s"});
  const auto r = run_load(s);
  CHECK(r.send_lag.count() == r.sent);
  CHECK(r.send_lag.count() > 300);
  const auto rep = make_report(s, r, {});
  CHECK(rep["latency_us"]["send_lag"]["count"] == r.send_lag.count());
}

TEST_CASE("loadgen: the percentile spectrum has HdrHistogram's layout") {
  histogram h;
  for (int v = 1; v <= 1000; ++v) h.record(v);
  const std::string t = percentile_spectrum(h);
  CHECK(t.rfind("       Value   Percentile   TotalCount 1/(1-Percentile)\n\n", 0) == 0);
  CHECK(t.find("       0.001     0.000000            1         1.00\n") != std::string::npos);
  CHECK(t.find("       0.500     0.500000          500         2.00\n") != std::string::npos);
  CHECK(t.find("       1.000     1.000000         1000\n") != std::string::npos);
  CHECK(t.find("#[Max     =        1.000, Total count    =         1000]") != std::string::npos);
}

TEST_CASE("loadgen: merge refuses runs that differ, naming the file and the field, unless forced") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  auto open = settings_for(url, {"-c", "2", "-t", "1", "--rate", "200", "-d", "1s"});
  const auto a = make_report(open, run_load(open), {});
  const auto b = make_report(open, run_load(open), {});
  const auto m = merge_reports({a, b}, {"a.json", "b.json"});
  // Two instances of 200 req/s: the merged target is 400, and the rates are computed again.
  CHECK(m["summary"]["target_rps"] == 400.0);
  CHECK(m["summary"]["achieved_rps"] == m["summary"]["rps"]);
  CHECK(m["summary"]["rps"].get<double>() > 300);
  auto closed = settings_for(url, {"-c", "2", "-t", "1", "-d", "1s"});
  const auto c = make_report(closed, run_load(closed), {});
  CHECK_THROWS_WITH(merge_reports({a, c}, {"a.json", "c.json"}), doctest::Contains("c.json: the loop kind"));
  auto other = settings_for(url + "?x", {"-c", "2", "-t", "1", "--rate", "200", "-d", "1s"});
  const auto d = make_report(other, run_load(other), {});
  CHECK_THROWS_WITH(merge_reports({a, d}, {"a.json", "d.json"}), doctest::Contains("d.json: config.urls"));
  CHECK(merge_reports({a, d}, {"a.json", "d.json"}, true)["forced"] == true);
}

TEST_CASE("loadgen program: SIGINT stops the run, prints the summary, marks the report and exits 130") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string json = "/tmp/bufpool-loadgen-int-" + std::to_string(::getpid()) + ".json";
  for (int signo : {SIGINT, SIGTERM}) {
    std::remove(json.c_str());
    bufpool::test::child_process p(BUFPOOL_LOADGEN_BIN, {"-c", "2", "-t", "1", "-d", "30s", "--json", json,
                                                         "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext"});
    // Wait for the first progress line (a measured second), then signal.
    for (int i = 0; i < 100 && p.output().find("req/s") == std::string::npos; ++i) std::this_thread::sleep_for(50ms);
    p.signal(signo);
    CHECK(p.wait_exit(10s) == 128 + signo);
    CHECK(p.output().find("Outcome: INTERRUPTED by " + std::string(signo == SIGINT ? "SIGINT" : "SIGTERM")) != std::string::npos);
    std::ifstream in(json);
    const auto rep = nlohmann::json::parse(in);
    CHECK(rep["summary"]["interrupted"] == true);
    CHECK(rep["summary"]["outcome"] == "interrupted");
    CHECK(rep["summary"]["requests"].get<int>() > 0);
    CHECK(rep["summary"]["duration_s"].get<double>() < 10);
  }
  std::remove(json.c_str());
}

TEST_CASE("loadgen program: a target that goes away mid-run stops the run, says when, and exits 1") {
  auto srv = std::make_unique<bufpool::server::server>(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv->ports().http) + "/plaintext";
  bufpool::test::child_process p(BUFPOOL_LOADGEN_BIN, {"-c", "2", "-t", "1", "-d", "30s", "--timeout", "1s", url});
  for (int i = 0; i < 100 && p.output().find("req/s") == std::string::npos; ++i) std::this_thread::sleep_for(50ms);
  srv->stop();
  srv.reset();
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(p.wait_exit(20s) == 1);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // far sooner than the 30 s asked for
  CHECK(p.output().find("Outcome: TARGET LOST") != std::string::npos);
  CHECK(p.output().find("the target stopped answering") != std::string::npos);
}

TEST_CASE("loadgen program: --max-error-rate 0 fails a run whose every response is a 404") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto r = run_loadgen({"-c", "1", "-t", "1", "-n", "10", "--max-error-rate", "0", "-q",
                        "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintxt"});
  CHECK(r.status == 1);
  CHECK(r.out.find("(status 404 10)") != std::string::npos);
}

TEST_CASE("loadgen program: --help names each option once with its type, and merge --help answers") {
  auto r = run_loadgen({"--help"});
  CHECK(r.status == 0);
  CHECK(r.out.find("-c,--connections N") != std::string::npos);
  CHECK(r.out.find("--connections,--connections") == std::string::npos);
  CHECK(r.out.find("-d,--duration DURATION") != std::string::npos);
  CHECK(r.out.find("merge [--force]") != std::string::npos);
  r = run_loadgen({"merge", "--help"});
  CHECK(r.status == 0);
  CHECK(r.out.find("usage: bufpool-loadgen") != std::string::npos);
}

TEST_CASE("loadgen program: --latency prints the spectrum and --json-compact writes one line") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string json = "/tmp/bufpool-loadgen-compact-" + std::to_string(::getpid()) + ".json";
  auto r = run_loadgen({"-c", "2", "-t", "1", "-n", "200", "--latency", "--json-compact", "--json", json, "-q",
                        "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext"});
  CHECK(r.status == 0);
  CHECK(r.out.find("Detailed Percentile spectrum (corrected)") != std::string::npos);
  CHECK(r.out.find("#[Mean    =") != std::string::npos);
  std::ifstream in(json);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(std::count(all.begin(), all.end(), '\n') == 1);
  const auto rep = nlohmann::json::parse(all);
  CHECK(rep["compact"] == true);
  CHECK(rep["schema"] == "bufpool-loadgen/3");
  CHECK(rep["started_at"].get<std::string>().size() == 24);
  std::remove(json.c_str());
}

TEST_CASE("loadgen program: --start-at waits for the wall-clock time, so that machines start together") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const auto at = std::chrono::system_clock::now() + 1500ms;
  const double at_s = std::chrono::duration<double>(at.time_since_epoch()).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", at_s);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = run_loadgen({"-c", "1", "-t", "1", "-n", "10", "--start-at", buf, "--json", "-", "-q",
                        "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext"});
  CHECK(r.status == 0);
  CHECK(std::chrono::steady_clock::now() - t0 >= 1400ms);
  CHECK(nlohmann::json::parse(r.out)["summary"]["requests"] == 10);
  CHECK_THROWS_WITH(settings_for("http://127.0.0.1:1/", {"--start-at", "tomorrow"}), doctest::Contains("start_at"));
}

TEST_CASE("loadgen: the HTML page holds its charts, the summary and nothing from elsewhere") {
  bufpool::server::server srv(bufpool::test::test_settings());
  auto s = settings_for("http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext",
                        {"-c", "2", "-t", "1", "-d", "1s"});
  const auto rep = make_report(s, run_load(s), {});
  const std::string page = html_report(rep);
  CHECK(page.rfind("<!DOCTYPE html>", 0) == 0);
  std::size_t svgs = 0;
  for (auto p = page.find("<svg"); p != std::string::npos; p = page.find("<svg", p + 1)) ++svgs;
  CHECK(svgs == 4);  // no server statistics: the two pool charts are left out, and the page says so
  CHECK(page.find("give <code>--stats-url</code>") != std::string::npos);
  CHECK(page.find("Latency by percentile") != std::string::npos);
  CHECK(page.find("<script") == std::string::npos);
  CHECK(page.find("Requests/sec:") != std::string::npos);  // the text summary, escaped into a <pre>
}

TEST_CASE("loadgen: --unix-socket sends every request through a Unix socket, with the URL's host in Host") {
  const std::string path = "/tmp/bufpool-loadgen-test-" + std::to_string(::getpid()) + ".sock";
  std::atomic<int> answered{0};
  std::string first_request;
  std::mutex mu;
  test_server srv(
      [&](int fd, std::atomic<bool>& stop) {
        std::string buf;
        while (read_some(fd, buf, stop)) {
          for (auto end = buf.find("\r\n\r\n"); end != std::string::npos; end = buf.find("\r\n\r\n")) {
            {
              std::lock_guard lk(mu);
              if (first_request.empty()) first_request = buf.substr(0, end);
            }
            buf.erase(0, end + 4);
            static constexpr char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            if (::send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL) < 0) return;
            ++answered;
          }
        }
      },
      path);
  const auto r = run_load(settings_for("http://api.example.test/v1/x", {"-c", "1", "-t", "1", "--requests", "200",
                                                                         "--pipeline", "4", "--unix-socket", path}));
  CHECK(r.requests == 200);
  CHECK(r.errors() == 0);
  CHECK(answered == 200);
  CHECK(first_request.find("GET /v1/x HTTP/1.1\r\nHost: api.example.test:80\r\n") == 0);
  // A socket that is not there: the run reports it, and connect_to beside it is refused.
  const auto gone = run_loadgen({"-q", "-c", "1", "-d", "2s", "--unix-socket", path + ".missing", "http://x/"});
  CHECK(gone.status == 1);
  CHECK(gone.out.find("failed") != std::string::npos);
  const auto both = run_loadgen({"--unix-socket", path, "--connect-to", "127.0.0.1:1", "http://x/"});
  CHECK(both.status == 2);
  CHECK(both.out.find("unix_socket and connect_to are both set") != std::string::npos);
}
