// Steady state allocates nothing per request: malloc and friends are replaced by counting versions,
// and after a warm-up, 10,000 keep-alive plaintext requests, 10,000 echo POSTs and 10,000 TCP echo
// round trips must not allocate at all, anywhere in the process. The client side here uses raw
// sockets and stack buffers so that it allocates nothing either. Not built under sanitizers, which
// replace malloc themselves.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include <doctest/doctest.h>

#include "test_client.hpp"

extern "C" void* __libc_malloc(std::size_t);
extern "C" void* __libc_calloc(std::size_t, std::size_t);
extern "C" void* __libc_realloc(void*, std::size_t);
extern "C" void* __libc_memalign(std::size_t, std::size_t);
extern "C" void __libc_free(void*);

namespace {
std::atomic<long> allocations{0};
}

extern "C" {
void* malloc(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void* aligned_alloc(std::size_t align, std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, std::size_t align, std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  *out = __libc_memalign(align, n);
  return *out != nullptr ? 0 : ENOMEM;
}
void* memalign(std::size_t align, std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(align, n);
}
void free(void* p) { __libc_free(p); }
}

namespace {

int connect_loopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Sends `req` and reads exactly `expect` bytes back; false on error. No allocation.
bool round_trip(int fd, const char* req, std::size_t req_len, std::size_t expect, char* buf) {
  if (::send(fd, req, req_len, MSG_NOSIGNAL) != static_cast<ssize_t>(req_len)) return false;
  std::size_t got = 0;
  while (got < expect) {
    const ssize_t n = ::recv(fd, buf + got, expect - got, 0);
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
  }
  return true;
}

// The length of the response to `req`, learnt once (with allocation, before counting).
std::size_t response_length(std::uint16_t port, const std::string& req) {
  bufpool::test::client c(port);
  c.send(req);
  const auto r = c.read_response();
  REQUIRE(r.status == 200);
  std::size_t head = std::string("HTTP/1.1 200 OK\r\n").size();
  for (const auto& [k, v] : r.headers) head += k.size() + 2 + v.size() + 2;
  return head + 2 + r.body.size();
}

long count_allocations_over(int fd, const std::string& req, std::size_t expect, int n) {
  static char buf[1 << 16];
  for (int i = 0; i < 1000; ++i) REQUIRE(round_trip(fd, req.data(), req.size(), expect, buf));  // warm-up
  const long before = allocations.load();
  int ok = 0;
  for (int i = 0; i < n; ++i) ok += round_trip(fd, req.data(), req.size(), expect, buf) ? 1 : 0;
  const long after = allocations.load();
  REQUIRE(ok == n);
  return after - before;
}

}  // namespace

TEST_CASE("steady state: 10,000 keep-alive plaintext requests allocate nothing") {
  bufpool::server::server s(bufpool::test::test_settings({{"http.max_requests_per_connection", "1000000"}}));
  const std::string req = bufpool::test::get("/plaintext");
  const std::size_t len = response_length(s.ports().http, req);
  const int fd = connect_loopback(s.ports().http);
  CHECK(count_allocations_over(fd, req, len, 10000) == 0);
  ::close(fd);
}

TEST_CASE("steady state: 10,000 HTTP echo round trips allocate nothing") {
  bufpool::server::server s(bufpool::test::test_settings({{"http.max_requests_per_connection", "1000000"}}));
  const std::string req = bufpool::test::post("/echo", std::string(512, 'p'));
  const std::size_t len = response_length(s.ports().http, req);
  const int fd = connect_loopback(s.ports().http);
  CHECK(count_allocations_over(fd, req, len, 10000) == 0);
  ::close(fd);
}

TEST_CASE("steady state: 10,000 TCP echo round trips allocate nothing") {
  bufpool::server::server s(bufpool::test::test_settings({{"http.max_requests_per_connection", "1000000"}}));
  const std::string payload(64, 'e');
  const int fd = connect_loopback(s.ports().echo);
  CHECK(count_allocations_over(fd, payload, payload.size(), 10000) == 0);
  ::close(fd);
}

TEST_CASE("steady state: the counting allocator does count") {
  const long before = allocations.load();
  void* volatile p = std::malloc(100);
  std::free(p);
  auto* q = new std::string(200, 'x');
  delete q;
  CHECK(allocations.load() - before >= 2);
}
