// The load generator end to end: coordinated omission, echo verification, the JSON report, stats from
// bufpool-server, merging, rates below one per second, and its errors. Test servers listen on
// 127.0.0.1 only; every run is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>

#include "../support/process.hpp"
#include "engine.hpp"
#include "report.hpp"
#include "server.hpp"
#include "settings.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using namespace bufpool::loadgen;

namespace {

loadgen_settings settings_for(const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"bufpool-loadgen", "--quiet"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto loaded = bufpool::config::load(loadgen_schema(), static_cast<int>(argv.size()), argv.data(), {}, {"url"});
  return settings_from(loaded.values, url);
}

// A tiny blocking test server on 127.0.0.1:0, one connection at a time, stopped by its destructor.
class test_server {
public:
  // handler(fd) serves one connection until it returns.
  explicit test_server(std::function<void(int, std::atomic<bool>&)> handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        handler_(c, stop_);
        ::close(c);
      }
    });
  }
  ~test_server() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }

private:
  std::function<void(int, std::atomic<bool>&)> handler_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Reads until `marker` count grows; returns false on EOF or stop.
bool read_some(int fd, std::string& buf, std::atomic<bool>& stop) {
  char tmp[4096];
  while (!stop) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, static_cast<std::size_t>(n));
    return true;
  }
  return false;
}

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
  CHECK(rep["schema"] == "bufpool-loadgen/1");
  for (const char* k : {"config", "environment", "summary", "latency_us", "timeseries", "histogram", "server_stats"})
    CHECK(rep.contains(k));
  for (const char* k : {"requests", "responses", "errors", "bytes_in", "bytes_out", "rps", "connections", "in_flight_at_stop"})
    CHECK(rep["summary"].contains(k));
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
  CHECK(pw["gets"].get<std::uint64_t>() >= r.requests);  // a read and a write buffer per response or batch
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

namespace {
struct run_output {
  int status = -1;
  std::string out;
};
run_output run_loadgen(const std::vector<std::string>& args) {
  bufpool::test::child_process p(BUFPOOL_LOADGEN_BIN, args);
  run_output r;
  r.status = p.wait_exit(30s);
  r.out = p.output();
  return r;
}
}  // namespace

TEST_CASE("loadgen program: invalid options exit 2 with a clear message") {
  auto r = run_loadgen({"--connections", "zero", "http://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("connections = \"zero\"") != std::string::npos);
  r = run_loadgen({"ftp://x"});
  CHECK(r.status == 2);
  CHECK(r.out.find("expected http://HOST:PORT/PATH or tcp://HOST:PORT") != std::string::npos);
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
