// TCP echo: integrity at size, and bounded buffering when the client does not read.
#include <fcntl.h>

#include <thread>

#include <doctest/doctest.h>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::test_settings;

namespace {
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::size_t big_transfer = 16u << 20;
#else
constexpr std::size_t big_transfer = 256u << 20;  // hundreds of MiB
#endif

char pattern(std::size_t i) { return static_cast<char>((i * 2654435761u) >> 13); }
}  // namespace

TEST_CASE("echo: bytes come back in order and intact across a large transfer") {
  server s(test_settings());
  client c(s.ports().echo);
  std::thread writer([&] {
    std::vector<char> chunk(1 << 16);
    for (std::size_t off = 0; off < big_transfer; off += chunk.size()) {
      for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(off + i);
      if (!c.send(std::string_view(chunk.data(), chunk.size()))) return;
    }
  });
  std::size_t got = 0, bad = 0;
  std::vector<char> buf(1 << 16);
  while (got < big_transfer) {
    pollfd p{c.fd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10000) > 0);
    const ssize_t n = ::recv(c.fd(), buf.data(), buf.size(), 0);
    REQUIRE(n > 0);
    for (ssize_t i = 0; i < n; ++i)
      if (buf[static_cast<std::size_t>(i)] != pattern(got + static_cast<std::size_t>(i))) ++bad;
    got += static_cast<std::size_t>(n);
  }
  writer.join();
  CHECK(got == big_transfer);
  CHECK(bad == 0);
  CHECK(s.stats()["server"]["echo_bytes"] == big_transfer);
}

TEST_CASE("echo: a client that does not read cannot make the server buffer without bound") {
  server s(test_settings({{"http.write_timeout", "300ms"}}));
  client c(s.ports().echo);
  int small = 64 * 1024;
  ::setsockopt(c.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ::fcntl(c.fd(), F_SETFL, ::fcntl(c.fd(), F_GETFL) | O_NONBLOCK);
  const std::string chunk(64 * 1024, 'e');
  std::size_t sent = 0;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::send(c.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) sent += static_cast<std::size_t>(n);
    else std::this_thread::sleep_for(10ms);  // the server stopped reading: our send buffer is full
    if (n < 0 && errno != EAGAIN) break;     // the server closed the stalled connection
  }
  auto st = s.stats()["server"];
  // The server read only what fits in the kernel buffers plus one pooled buffer, not everything sent.
  CHECK(st["echo_bytes"].get<std::size_t>() < 32u << 20);
  CHECK(st["errors"]["write_timeout"] == 1);  // the stalled write was given up
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}
