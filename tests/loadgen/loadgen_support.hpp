// Helpers the load generator's test files share: settings from flags (as the program parses them),
// the program run as a child process (exit status and output, bounded at 30 s), and a scripted TCP
// server on 127.0.0.1 (one connection at a time).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <regex>
#include <thread>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "../support/process.hpp"
#include "settings.hpp"

namespace bufpool::loadgen::test {

inline loadgen_settings settings_for(const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"bufpool-loadgen", "--quiet"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto loaded = bufpool::config::load(loadgen_schema(), static_cast<int>(argv.size()), argv.data(), {}, {"url"});
  return settings_from(loaded.values, std::vector<std::string>{url});
}

/// The port a child server prints once it listens: the first group of `pattern` in its output,
/// waited for up to 10 s (the test fails with the output otherwise).
inline std::uint16_t port_from_output(bufpool::test::child_process& p, const std::string& pattern) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  const std::regex re(pattern);
  while (std::chrono::steady_clock::now() < deadline) {
    std::smatch m;
    const std::string out = p.output();
    if (std::regex_search(out, m, re)) return static_cast<std::uint16_t>(std::stoi(m[1]));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("the server did not start: " << p.output());
  return 0;
}

struct run_output {
  int status = -1;
  std::string out;
};
inline run_output run_loadgen(const std::vector<std::string>& args) {
  bufpool::test::child_process p(BUFPOOL_LOADGEN_BIN, args);
  run_output r;
  r.status = p.wait_exit(std::chrono::seconds(30));
  r.out = p.output();
  return r;
}

// A server on 127.0.0.1:0 (or on the Unix socket `unix_path`, made and removed by it) that hands each
// accepted connection to `handler`, one at a time.
class test_server {
public:
  // handler(fd) serves one connection until it returns.
  explicit test_server(std::function<void(int, std::atomic<bool>&)> handler, std::string unix_path = "")
      : handler_(std::move(handler)), unix_path_(std::move(unix_path)) {
    if (!unix_path_.empty()) {
      fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un u{};
      u.sun_family = AF_UNIX;
      REQUIRE(unix_path_.size() < sizeof u.sun_path);
      unix_path_.copy(u.sun_path, unix_path_.size());
      ::unlink(unix_path_.c_str());
      REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&u), sizeof u) == 0);
    } else {
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
    }
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
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
  }
  std::uint16_t port() const { return port_; }

private:
  std::function<void(int, std::atomic<bool>&)> handler_;
  std::string unix_path_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Appends what has arrived (waiting for it); false on EOF or stop.
inline bool read_some(int fd, std::string& buf, std::atomic<bool>& stop) {
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

}  // namespace bufpool::loadgen::test
