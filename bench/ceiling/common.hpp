// What the two bare responders share: their command line, the stop flag that SIGINT/SIGTERM set,
// the listening socket (127.0.0.1 only, SO_REUSEPORT: one per thread), and the threads.
//   [--threads N] [--listen 127.0.0.1:PORT] [--echo]
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace ceiling {

inline std::atomic<bool> stop{false};

struct options {
  unsigned threads = 2;
  std::uint16_t port = 0;
  bool echo = false;  // a TCP echo server instead of the HTTP responder
};

inline options parse(int argc, char** argv, std::uint16_t default_port) {
  options o;
  o.port = default_port;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--echo") {
      o.echo = true;
    } else if (k == "--threads" && i + 1 < argc) {
      o.threads = static_cast<unsigned>(std::atoi(argv[++i]));
    } else if (k == "--listen" && i + 1 < argc) {
      const char* colon = std::strrchr(argv[++i], ':');
      o.port = static_cast<std::uint16_t>(std::atoi(colon != nullptr ? colon + 1 : argv[i]));
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--listen 127.0.0.1:PORT] [--echo]\n", argv[0]);
      std::exit(2);
    }
  }
  return o;
}

/// A listening socket on 127.0.0.1:port, shared with the other threads' (SO_REUSEPORT).
inline int listen_on(std::uint16_t port, int type_flags) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | type_flags, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4096) != 0) {
    std::perror("bind/listen");
    std::exit(1);
  }
  return fd;
}

/// Sets `stop` on SIGINT/SIGTERM, runs body() on o.threads threads, and joins them.
template <typename Body>
int run(const options& o, Body body) {
  struct sigaction sa{};
  sa.sa_handler = [](int) { stop.store(true); };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < o.threads; ++t) ts.emplace_back(body);
  for (auto& t : ts) t.join();
  return 0;
}

}  // namespace ceiling
