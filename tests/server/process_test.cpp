// bufpool-server as a process: the ready file, SIGTERM and SIGINT drain and exit 0 with the final
// statistics logged, and configuration errors exit 2 with the message on stderr. Every wait is bounded;
// a server that does not exit is killed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "test_client.hpp"

using namespace std::chrono_literals;

namespace {

struct process {
  pid_t pid = -1;
  std::string out_path;

  explicit process(const std::vector<std::string>& args) {
    out_path = "/tmp/bufpool-process-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++) + ".log";
    std::vector<char*> argv;
    std::vector<std::string> copy = args;
    copy.insert(copy.begin(), BUFPOOL_SERVER_BIN);
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    posix_spawnattr_setsigdefault(&at, &defaults);  // a test runner may have SIGINT ignored
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    REQUIRE(posix_spawn(&pid, argv[0], &fa, &at, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
  }
  ~process() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::remove(out_path.c_str());
  }
  // The exit status, or -1 if it did not exit within `timeout` (then it is killed).
  int wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  std::string output() const {
    std::ifstream in(out_path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

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
  process p({"--http-listen", "127.0.0.1:0", "--echo-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
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
  ::kill(p.pid, signo);
  CHECK(p.wait_exit(15s) == 0);
  const std::string out = p.output();
  CHECK(out.find("bufpool-server: http 127.0.0.1:" + std::to_string(ports["http"].get<int>())) != std::string::npos);
  CHECK(out.find("draining") != std::string::npos);
  CHECK(out.find("final stats") != std::string::npos);
  std::remove(ready.c_str());
}

}  // namespace

TEST_CASE("process: SIGTERM drains and exits 0 with the final stats logged") { run_and_signal(SIGTERM); }
TEST_CASE("process: SIGINT drains and exits 0 with the final stats logged") { run_and_signal(SIGINT); }

TEST_CASE("process: a configuration error exits 2 and says what is wrong") {
  process p({"--threads", "lots"});
  CHECK(p.wait_exit(10s) == 2);
  CHECK(p.output().find("threads = \"lots\"") != std::string::npos);
}

TEST_CASE("process: a listener that cannot bind exits 1 and names the address") {
  bufpool::server::server holder(bufpool::test::test_settings());
  const std::string busy = "127.0.0.1:" + std::to_string(holder.ports().http);
  process p({"--http-listen", busy, "--echo-listen", "", "--admin-listen", "", "--accept", "single"});
  CHECK(p.wait_exit(10s) == 1);
  CHECK(p.output().find("cannot bind " + busy) != std::string::npos);
}

TEST_CASE("process: --print-config prints the effective configuration") {
  process p({"--print-config", "--threads", "3"});
  CHECK(p.wait_exit(10s) == 0);
  auto j = nlohmann::json::parse(p.output());
  CHECK(j["threads"] == 3);
}
