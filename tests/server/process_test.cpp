// bufpool-server as a process: the ready file, SIGTERM and SIGINT drain and exit 0 with the final
// statistics logged, and configuration errors exit 2 with the message on stderr. Every wait is bounded;
// a server that does not exit is killed.
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <vector>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "../support/process.hpp"
#include "../support/test_pki.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;

namespace {

nlohmann::json wait_ready(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    if (in) {
      try {
        return nlohmann::json::parse(in);
      } catch (...) {
      }
    }
    std::this_thread::sleep_for(10ms);
  }
  return nullptr;
}

void run_and_signal(int signo) {
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-" + std::to_string(signo) + ".json";
  std::remove(ready.c_str());
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", "127.0.0.1:0", "--echo-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--threads", "2", "--ready-file", ready});
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  CHECK(ports["http"].get<int>() > 0);
  CHECK(ports["echo"].get<int>() > 0);
  CHECK(ports["admin"].get<int>() > 0);
  {
    bufpool::test::client c(ports["http"].get<std::uint16_t>());
    c.send(bufpool::test::get("/plaintext"));
    CHECK(c.read_response().status == 200);
  }
  p.signal(signo);
  CHECK(p.wait_exit(15s) == 0);
  const std::string out = p.output();
  CHECK(out.find(std::string("bufpool-server ") + BUFPOOL_PROJECT_VERSION + ": http 127.0.0.1:" + std::to_string(ports["http"].get<int>())) != std::string::npos);
  CHECK(out.find("draining") != std::string::npos);
  CHECK(out.find("final stats") != std::string::npos);
  std::remove(ready.c_str());
}

}  // namespace

TEST_CASE("process: SIGTERM drains and exits 0 with the final stats logged") { run_and_signal(SIGTERM); }
TEST_CASE("process: SIGINT drains and exits 0 with the final stats logged") { run_and_signal(SIGINT); }

TEST_CASE("process: a configuration error exits 2 and says what is wrong") {
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--threads", "lots"});
  CHECK(p.wait_exit(10s) == 2);
  CHECK(p.output().find("threads = \"lots\"") != std::string::npos);
}

TEST_CASE("process: a listener that cannot bind exits 1 and names the address") {
  bufpool::server::server holder(bufpool::test::test_settings());
  const std::string busy = "127.0.0.1:" + std::to_string(holder.ports().http);
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", busy, "--echo-listen", "", "--admin-listen", "", "--accept", "single"});
  CHECK(p.wait_exit(10s) == 1);
  CHECK(p.output().find("cannot bind " + busy) != std::string::npos);
}

TEST_CASE("process: --print-config prints the effective configuration") {
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--print-config", "--threads", "3"});
  CHECK(p.wait_exit(10s) == 0);
  auto j = nlohmann::json::parse(p.output());
  CHECK(j["threads"] == 3);
}

// Kubernetes injects <SERVICE>_PORT, <SERVICE>_SERVICE_HOST, ... into every pod of a namespace with a
// Service of that name: with a Service named "bufpool" these look like our settings. The server logs
// them as ignored and starts (before: exit 2).
TEST_CASE("process: the Kubernetes service variables of a Service named bufpool do not stop the server") {
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-k8s.json";
  std::remove(ready.c_str());
  bufpool::test::child_process p(
      BUFPOOL_SERVER_BIN,
      {"--http-listen", "127.0.0.1:0", "--echo-listen", "", "--admin-listen", "", "--threads", "1", "--ready-file", ready},
      {"BUFPOOL_PORT=tcp://10.96.0.12:8080", "BUFPOOL_PORT_8080_TCP=tcp://10.96.0.12:8080",
       "BUFPOOL_PORT_8080_TCP_ADDR=10.96.0.12", "BUFPOOL_PORT_8080_TCP_PORT=8080", "BUFPOOL_PORT_8080_TCP_PROTO=tcp",
       "BUFPOOL_SERVICE_HOST=10.96.0.12", "BUFPOOL_SERVICE_PORT=8080", "BUFPOOL_SERVICE_PORT_HTTP=8080"});
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  {
    bufpool::test::client c(ports["http"].get<std::uint16_t>());
    c.send(bufpool::test::get("/plaintext"));
    CHECK(c.read_response().status == 200);
  }
  p.signal(SIGTERM);
  CHECK(p.wait_exit(15s) == 0);
  const std::string out = p.output();
  CHECK(out.find("unknown environment variable BUFPOOL_SERVICE_HOST ignored") != std::string::npos);
  std::remove(ready.c_str());
}

TEST_CASE("process: --version prints the project version and exits 0") {
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--version"});
  CHECK(p.wait_exit(10s) == 0);
  CHECK(p.output().rfind(std::string("bufpool-server ") + BUFPOOL_PROJECT_VERSION + " (", 0) == 0);
}

// The container's HEALTHCHECK: `bufpool-server healthcheck [HOST:PORT]` exits 0 while the admin
// listener answers /healthz with 200, and 1 when nothing listens there.
TEST_CASE("process: healthcheck exits 0 against a running server and 1 against a closed port") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string admin = "127.0.0.1:" + std::to_string(srv.ports().admin);
  REQUIRE(srv.ports().admin != 0);
  {
    bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"healthcheck", admin});
    CHECK(p.wait_exit(10s) == 0);
    CHECK(p.output().find("200") != std::string::npos);
  }
  {
    // The address from BUFPOOL_ADMIN_LISTEN when none is given, a wildcard host meaning this machine.
    bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"healthcheck"},
                                   {"BUFPOOL_ADMIN_LISTEN=0.0.0.0:" + std::to_string(srv.ports().admin)});
    CHECK(p.wait_exit(10s) == 0);
  }
  srv.stop();
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"healthcheck", admin});
  CHECK(p.wait_exit(10s) == 1);
}

// Logs: --log-format json writes one JSON object per line; a rejected request is logged at debug with
// its status, reason and peer, and counted in the info summary of its rotation interval.
TEST_CASE("process: --log-format json logs each rejected request at debug and a summary at info") {
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-log.json";
  std::remove(ready.c_str());
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", "127.0.0.1:0", "--echo-listen", "", "--admin-listen", "",
                                                      "--threads", "1", "--log-format", "json", "--log-level", "debug",
                                                      "--pool.rotation_interval", "1s", "--ready-file", ready});
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  {
    bufpool::test::client c(ports["http"].get<std::uint16_t>());
    c.send("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n");
    CHECK(c.read_response().status == 400);
  }
  for (int i = 0; i < 60 && p.output().find("failed requests or connections") == std::string::npos; ++i)
    std::this_thread::sleep_for(50ms);
  p.signal(SIGTERM);
  CHECK(p.wait_exit(15s) == 0);
  std::istringstream lines(p.output());
  bool rejected = false, summary = false, startup = false;
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j;
    REQUIRE_NOTHROW(j = nlohmann::json::parse(line));
    const std::string msg = j["msg"];
    if (j["level"] == "debug" && msg.rfind("rejected: 400 bad_request from 127.0.0.1:", 0) == 0) rejected = true;
    if (j["level"] == "info" && msg.find("failed requests or connections in the last") != std::string::npos &&
        msg.find("bad_request 1") != std::string::npos)
      summary = true;
    if (msg.rfind(std::string("bufpool-server ") + BUFPOOL_PROJECT_VERSION + ": http", 0) == 0) startup = true;
  }
  CHECK(rejected);
  CHECK(summary);
  CHECK(startup);
  std::remove(ready.c_str());
}

// The access log: one line per answered request (rejected ones too), written by its own thread.
TEST_CASE("process: --access-log writes one line per request with peer, request line, status, size and time") {
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-access.json";
  const std::string log = "/tmp/bufpool-access-" + std::to_string(::getpid()) + ".log";
  std::remove(ready.c_str());
  std::remove(log.c_str());
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", "127.0.0.1:0", "--echo-listen", "", "--admin-listen", "",
                                                      "--threads", "1", "--access-log", log, "--ready-file", ready});
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  {
    bufpool::test::client c(ports["http"].get<std::uint16_t>());
    for (int i = 0; i < 3; ++i) c.send(bufpool::test::get("/plaintext"));
    c.read_responses(3);
    c.send("GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n");
    CHECK(c.read_response().status == 400);
  }
  p.signal(SIGTERM);
  CHECK(p.wait_exit(15s) == 0);
  std::ifstream in(log);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0].find(" 127.0.0.1:") != std::string::npos);
  CHECK(lines[0].find("\"GET /plaintext HTTP/1.1\" 200 13 ") != std::string::npos);
  CHECK(lines[3].find("\" 400 0 ") != std::string::npos);
  std::remove(ready.c_str());
  std::remove(log.c_str());
}

// Where the kernel refuses io_uring (a container's seccomp profile, io_uring_disabled), the server
// says so once and serves on epoll. The child here gets a seccomp filter that fails io_uring_setup
// with EPERM, as Docker's and podman's default profiles do, before it executes the server.
#if defined(__x86_64__)
TEST_CASE("process: where io_uring is refused the server logs the fallback and serves on epoll") {
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-uring.json";
  const std::string log = "/tmp/bufpool-log-" + std::to_string(::getpid()) + "-uring.txt";
  std::remove(ready.c_str());
  std::vector<std::string> args = {BUFPOOL_SERVER_BIN, "--http-listen", "127.0.0.1:0", "--echo-listen", "",
                                   "--admin-listen", "127.0.0.1:0", "--threads", "2", "--io.backend", "io_uring",
                                   "--ready-file", ready};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // system calls only until exec (the parent has threads)
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(out, 2);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      ::_exit(97);
    ::execv(argv[0], argv.data());
    ::_exit(98);
  }
  struct stop_child {
    pid_t pid;
    ~stop_child() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } guard{pid};
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  {
    bufpool::test::client c(ports["http"].get<std::uint16_t>());
    c.send(bufpool::test::get("/plaintext"));
    CHECK(c.read_response().status == 200);
  }
  bufpool::test::client admin(ports["admin"].get<std::uint16_t>());
  admin.send(bufpool::test::get("/stats"));
  const auto stats = nlohmann::json::parse(admin.read_response().body);
  CHECK(stats["server"]["io"]["backend"] == "epoll");
  CHECK(stats["server"]["io"]["ring_buffers"] == 0);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  INFO(text.str());
  CHECK(text.str().find("io.backend=io_uring is not available here") != std::string::npos);
  CHECK(text.str().find("2 threads, epoll") != std::string::npos);
  std::remove(ready.c_str());
  std::remove(log.c_str());
}
#endif

TEST_CASE("process: a TLS key that does not match its certificate exits 2 naming the key and the file") {
  const auto& pki = bufpool::test::test_pki();
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", "127.0.0.1:0", "--echo-listen", "", "--admin-listen", "",
                                                      "--http.tls.certificate", pki.server_cert, "--http.tls.key", pki.client_key});
  CHECK(p.wait_exit(10s) == 2);
  const std::string out = p.output();
  CHECK(out.find("http.tls.key = \"" + pki.client_key + "\"") != std::string::npos);
  CHECK(out.find("does not match the certificate") != std::string::npos);
}

TEST_CASE("process: SIGHUP loads the TLS certificate again, and the server goes on serving") {
  const auto& pki = bufpool::test::test_pki();
  const std::string ready = "/tmp/bufpool-ready-" + std::to_string(::getpid()) + "-hup.json";
  std::remove(ready.c_str());
  bufpool::test::child_process p(BUFPOOL_SERVER_BIN, {"--http-listen", "127.0.0.1:0", "--echo-listen", "", "--admin-listen", "127.0.0.1:0",
                                                      "--threads", "1", "--ready-file", ready, "--http.tls.certificate", pki.server_cert,
                                                      "--http.tls.key", pki.server_key});
  const auto ports = wait_ready(ready);
  REQUIRE(ports.is_object());
  auto reloads = [&] {
    bufpool::test::client a(ports["admin"].get<std::uint16_t>());
    a.send(bufpool::test::get("/stats"));
    return nlohmann::json::parse(a.read_response().body)["server"]["tls"]["reloads"].get<int>();
  };
  CHECK(reloads() == 0);
  p.signal(SIGHUP);
  CHECK(bufpool::test::eventually([&] { return reloads() == 1; }, 10s));
  bufpool::test::tls_options o;
  o.ca = pki.ca_cert;
  bufpool::test::client c(ports["http"].get<std::uint16_t>(), o);
  c.send(bufpool::test::get("/plaintext"));
  CHECK(c.read_response().status == 200);
  p.signal(SIGTERM);
  CHECK(p.wait_exit(15s) == 0);
  CHECK(p.output().find("certificate and key loaded again") != std::string::npos);
  std::remove(ready.c_str());
}
