// Regression tests for hostile clients (issue 7): request smuggling and framing tricks, header rules
// llhttp does not check, fairness between connections on one worker, accept errors, the echo
// listener's own timeout and limit, and the streamed echo body. Each test is named after what it
// pins; every server listens on 127.0.0.1:0 and is stopped by the test; every loop is bounded.
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::expect_error_and_close;
using bufpool::test::eventually;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

namespace {

std::uint64_t error_count(server& s, const char* kind) {
  return s.stats()["server"]["errors"][kind].get<std::uint64_t>();
}

const std::string chunked_head = "POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string smuggled = "GET /json HTTP/1.1\r\nHost: t\r\n\r\n";

}  // namespace

// ---- framing: each case was answered (and the smuggled request after it too) before the fix -----

TEST_CASE("smuggling: chunk data not followed by CRLF is a 400, the request after it is not answered") {
  server s(test_settings());
  expect_error_and_close(s, chunked_head + "5\r\nhelloXX0\r\n\r\n" + smuggled, 400);
}

TEST_CASE("smuggling: chunk data not followed by CRLF cuts a streamed echo answer short, nothing more is answered") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n" + smuggled);
  // The answer began (200, chunked) before the bad framing was seen; it never completes.
  CHECK_THROWS_WITH(c.read_response(3s), doctest::Contains("connection closed after 0 responses"));
  CHECK(error_count(s, "response_aborted") == 1);
  CHECK(error_count(s, "bad_request") == 1);
}

TEST_CASE("smuggling: a chunk-size line ended by CR and another byte is a 400") {
  server s(test_settings());
  expect_error_and_close(s, chunked_head + "5;a\rX\r\nhello\r\n0\r\n\r\n" + smuggled, 400);
}

TEST_CASE("smuggling: obs-fold (a header line starting with a space) is a 400") {
  server s(test_settings());
  expect_error_and_close(s, "POST /nope HTTP/1.1\r\nHost: t\r\nX-A: b\r\n Content-Length: 34\r\n\r\n" + smuggled, 400);
  expect_error_and_close(s, "POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400);
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-A: b\r\n\tmore\r\n\r\n", 400);
}

TEST_CASE("smuggling: obs-fold is found when the fold is split from its header across reads") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-A: b\r\n");
  std::this_thread::sleep_for(50ms);  // lets the server parse the first part on its own
  c.send(" folded\r\n\r\n");
  CHECK(c.read_response().status == 400);
  CHECK(c.closed_by_peer());
  // A value split inside a word across reads is not a fold.
  client d(s.ports().http);
  d.send("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-A: a ");
  std::this_thread::sleep_for(50ms);
  d.send(" b\r\n\r\n");
  CHECK(d.read_response().status == 200);
}

TEST_CASE("smuggling: a chunk size of 2^64-1 is a 400 at once, one over the body limit a 413") {
  server s(test_settings({{"http.max_body_bytes", "1000"}}));
  expect_error_and_close(s, chunked_head + "ffffffffffffffff\r\nabc", 400);
  expect_error_and_close(s, chunked_head + "3e9\r\nabc", 413);  // 1001
}

TEST_CASE("smuggling: Transfer-Encoding gzip, chunked and xchunked are 501, chunked twice is 400") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501);
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501);
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                         501);
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400);
  // Case does not matter, and empty list elements are allowed (RFC 9110 5.6.1).
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: , CHUNKED\r\n\r\n2\r\nok\r\n0\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "ok");
}

// ---- header rules ---------------------------------------------------------------------------------

TEST_CASE("headers: two Host fields, or a Host that is no authority, are a 400 (RFC 9112 3.2)") {
  server s(test_settings());
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n", 400);
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: a b/c\r\n\r\n", 400);
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: a@b\r\n\r\n", 400);
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
  CHECK(c.read_response().status == 200);
}

TEST_CASE("headers: a field name with a space, an empty name or a space before the colon is a 400") {
  server s(test_settings());
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n", 400);
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n", 400);
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\nHost : t\r\n\r\n", 400);
}

TEST_CASE("version: HTTP/2.0 in a request line is a 505") {
  server s(test_settings());
  expect_error_and_close(s, "GET /plaintext HTTP/2.0\r\nHost: t\r\n\r\n", 505);
}

TEST_CASE("target: the absolute form is accepted (RFC 9112 3.2.2)") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("GET http://t/plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "Hello, World!");
  c.send("GET HTTP://t:80/json?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(c.read_response().status == 200);
}

TEST_CASE("upgrade: Upgrade h2c is ignored and answered as HTTP/1.1, with nothing unsolicited after it") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
         "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n");
  CHECK(c.read_response().status == 200);
  c.send(get("/json"));  // the connection goes on as HTTP/1.1
  CHECK(c.read_response().status == 200);
  CHECK_FALSE(c.closed_by_peer(300ms));
  CHECK(error_count(s, "bad_request") == 0);
}

TEST_CASE("upgrade: CONNECT is one 400 and a close") {
  server s(test_settings());
  expect_error_and_close(s, "CONNECT t:80 HTTP/1.1\r\nHost: t:80\r\n\r\n", 400);
}

TEST_CASE("expect: 100-continue is sent for a body on any route that reads it, then the final answer") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("POST /plaintext HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  CHECK(c.raw_until("\r\n\r\n").rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
  c.send("hello");
  CHECK(c.read_response().status == 405);
}

TEST_CASE("head: a malformed request after a HEAD gets its 400 with the body its Content-Length says") {
  server s(test_settings());
  client c(s.ports().http);
  c.expect_head();
  c.send("HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n");
  auto rs = c.read_responses(2);
  CHECK(rs[0].status == 200);
  CHECK(rs[0].body.empty());
  CHECK(rs[1].status == 400);
  CHECK(rs[1].body == "bad request\n");
  CHECK(c.closed_by_peer());
}

TEST_CASE("chunk extensions: every byte counts, a long one is a 400, and they count toward the body limit") {
  server s(test_settings({{"http.max_body_bytes", "3000"}}));
  expect_error_and_close(s, chunked_head + "1;" + std::string(2000, 'a') + "\r\nx\r\n0\r\n\r\n", 400);
  std::string many = chunked_head;
  for (int i = 0; i < 8; ++i) many += "1;" + std::string(500, 'b') + "\r\nx\r\n";  // 4 KB of extensions
  expect_error_and_close(s, many + "0\r\n\r\n", 413);
}

// ---- fairness ---------------------------------------------------------------------------------------

// Before the fix, a connection whose input kept coming never left its read loop: the worker's other
// clients waited until it stopped sending. Two clients stream an endless chunked body (valid chunks,
// large limit) at one worker for at most 3 s; a third client's request must be answered while they
// are still sending.
TEST_CASE("fairness: a client that keeps sending does not hold its worker (regression: endless chunked body)") {
  server s(test_settings({{"threads", "1"}, {"http.read_buffer_bytes", "256"}, {"http.max_body_bytes", "4294967296"}, {"http.body_timeout", "60s"}}));
  std::atomic<bool> stop{false};
  std::atomic<int> finished{0};
  auto blast = [&] {
    client b(s.ports().http);
    b.send(chunked_head);
    const std::string chunk = "400;ext=1\r\n" + std::string(1024, 'z') + "\r\n";
    std::string burst;
    for (int i = 0; i < 64; ++i) burst += chunk;
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (!stop && std::chrono::steady_clock::now() < until && b.send(burst)) {
    }
    ++finished;
  };
  std::thread b1(blast), b2(blast);
  std::this_thread::sleep_for(200ms);  // both are streaming
  client c(s.ports().http);
  c.send(get("/plaintext"));
  auto r = c.read_response(10s);
  const bool answered_while_busy = finished.load() == 0;
  stop = true;
  b1.join();
  b2.join();
  CHECK(r.status == 200);
  CHECK(answered_while_busy);
}

// ---- accept errors ----------------------------------------------------------------------------------

// Before the fix, EMFILE re-armed accept at once and both workers spun. Now each listener pauses
// (50 ms doubling to 1 s): over about a second, a spinning listener counts tens of thousands of
// errors, a pausing one a handful per listener.
#if defined(__SANITIZE_ADDRESS__)
// UBSan's vptr check opens a pipe to probe memory: with no descriptor left it reports a false error.
constexpr bool asan_build = true;
#else
constexpr bool asan_build = false;
#endif

TEST_CASE("accept: out of descriptors is counted, backed off, and accepting resumes afterwards" *
          doctest::skip(asan_build)) {
  server s(test_settings());
  // Sockets made first, connected once no descriptor is left: connect() needs none, accept() does.
  std::vector<int> fds;
  for (int i = 0; i < 4; ++i) fds.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &old) == 0);
  rlimit low = old;
  low.rlim_cur = static_cast<rlim_t>(*std::max_element(fds.begin(), fds.end()) + 1);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(s.ports().http);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const std::string request = get("/plaintext");
  for (int fd : fds) {
    CHECK(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    CHECK(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  }
  std::this_thread::sleep_for(1s);
  const std::uint64_t errors = error_count(s, "accept_error");
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &old) == 0);
  INFO("accept errors in about a second: " << errors);
  // io_uring's multishot accept took the descriptor limit when it was armed (the kernel reads it at
  // submission), so on that backend the lowered limit does not apply to it: nothing fails to count.
  if (s.stats()["server"]["io"]["backend"] == "epoll") CHECK(errors > 0);
  CHECK(errors < 100);  // paused (a handful per listener), not spinning (thousands)
  // Every queued connection is served once descriptors are back.
  for (int fd : fds) {
    pollfd p{fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 10000) == 1);
    char buf[256];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    CHECK(std::string_view(buf, n > 0 ? static_cast<std::size_t>(n) : 0).rfind("HTTP/1.1 200 OK", 0) == 0);
    ::close(fd);
  }
}

// ---- the echo listener ------------------------------------------------------------------------------

TEST_CASE("echo: an idle echo connection is closed after echo.idle_timeout") {
  server s(test_settings({{"echo.idle_timeout", "200ms"}}));
  client c(s.ports().echo);
  c.send("ping");
  CHECK(c.raw_until("ping") == "ping");
  CHECK(c.closed_by_peer(5s));
  CHECK(error_count(s, "echo_idle_timeout") == 1);
}

TEST_CASE("echo: idle echo connections at their limit do not lock HTTP clients out") {
  server s(test_settings({{"threads", "1"}, {"limits.max_echo_connections_per_thread", "2"},
                          {"limits.max_connections_per_thread", "2"}}));
  client e1(s.ports().echo), e2(s.ports().echo);
  REQUIRE(eventually([&] { return s.stats()["server"]["connections"]["active"] == 2; }));
  client e3(s.ports().echo);
  CHECK(e3.closed_by_peer(5s));  // over the echo limit
  client h(s.ports().http);
  h.send(get("/plaintext"));
  CHECK(h.read_response().status == 200);
}

// ---- the streamed echo ------------------------------------------------------------------------------

TEST_CASE("echo route: a chunked request gets a chunked answer, a Content-Length one a Content-Length answer") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.header("transfer-encoding") == "chunked");
  CHECK(r.header("content-length").empty());
  CHECK(r.body == "abcde");
  c.send(post("/echo", "fghij"));
  r = c.read_response();
  CHECK(r.header("content-length") == "5");
  CHECK(r.body == "fghij");
  c.send(post("/echo", ""));
  r = c.read_response();
  CHECK(r.header("content-length") == "0");
  CHECK(r.body.empty());
}

TEST_CASE("echo route: the answer starts before the body is complete, and a stalled body holds few buffers") {
  server s(test_settings({{"threads", "1"}}));
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + std::string(100000, 'q'));
  // The head and the first 100 KB come back while 900 KB of the body have not been sent.
  const std::string got = c.raw_until(std::string(1000, 'q'), 5s);
  CHECK(got.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(got.find("Content-Length: 1000000\r\n") != std::string::npos);
  // The client stalls mid-body: the connection holds no more than a read buffer and one batch.
  REQUIRE(eventually([&] { return s.stats()["server"]["bytes_out"].get<std::uint64_t>() >= 100000; }));
  CHECK(bufpool::test::connection_buffers(s.stats()) <= 3);
}

TEST_CASE("echo route: a body timeout in the middle of a streamed answer cuts it short and closes") {
  server s(test_settings({{"http.body_timeout", "200ms"}}));
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
  CHECK_THROWS_WITH(c.read_response(5s), doctest::Contains("connection closed"));
  CHECK(error_count(s, "body_timeout") == 1);
  CHECK(error_count(s, "response_aborted") == 1);
}

// ---- the buffer budget --------------------------------------------------------------------------

// With a budget of one byte, a connection may take a buffer only while no other connection of its
// worker holds one. A client that sends a large echo body and does not read makes the server's answer
// wait in pooled buffers (writes go out at once while the socket takes them, so only a slow reader
// holds buffers across turns): the other connections then wait to read (counted), and once the slow
// client reads, every request is answered.
TEST_CASE("budget: while a slow reader holds buffers the other connections wait to read and then all are answered") {
  server s(test_settings({{"threads", "1"}, {"limits.max_buffer_bytes", "1"}, {"http.max_body_bytes", "67108864"}}));
  constexpr std::size_t body = 16u << 20;  // far more than the socket buffers between them hold
  bufpool::test::stalled_upload slow(s.ports().http, body);
  auto outstanding = [&] { return bufpool::test::connection_buffers(s.stats()); };
  REQUIRE(eventually([&] { return outstanding() >= 1; }, std::chrono::seconds(60)));  // see descriptor_test
  bufpool::test::wait_until_reading_stops(s);
  REQUIRE(outstanding() >= 1);  // the slow reader's answer is stuck in pooled buffers
  std::vector<std::unique_ptr<client>> clients;
  std::string batch;
  for (int i = 0; i < 10; ++i) batch += get("/plaintext") + post("/echo", std::string(3000, 'b'));
  for (int i = 0; i < 5; ++i) clients.push_back(std::make_unique<client>(s.ports().http));
  for (auto& c : clients) c->send(batch);
  REQUIRE(eventually([&] { return s.stats()["server"]["buffer_budget"]["waiting"].get<std::uint64_t>() > 0; }));
  const auto big = slow.conn().read_response(60s);
  slow.join();
  CHECK(big.status == 200);
  CHECK(big.body.size() == body);
  int ok = 0;
  for (auto& c : clients)
    for (const auto& r : c->read_responses(20, 20s)) ok += r.status == 200 ? 1 : 0;
  CHECK(ok == 5 * 20);
  const auto st = s.stats()["server"];
  CHECK(st["buffer_budget"]["waits"].get<std::uint64_t>() > 0);
  CHECK(st["buffer_budget"]["waiting"] == 0);
  for (const auto& [kind, n] : st["errors"].items()) CHECK_MESSAGE(n == 0, kind);
}

// ---- idle connections -----------------------------------------------------------------------------

namespace {
// Bytes the pool holds for the server: pooled in its classes, and out (in use) of every class and
// of the oversize path.
std::int64_t held_bytes(const nlohmann::json& pool) {
  std::int64_t bytes = pool["oversize"]["outstanding_bytes"].get<std::int64_t>();
  for (const auto& c : pool["classes"])
    bytes += c["pooled_bytes"].get<std::int64_t>() + c["outstanding"].get<std::int64_t>() * c["size"].get<std::int64_t>();
  return bytes;
}
}  // namespace

// A connection that waits for its next request holds no pooled buffer: 10,000 of them, each after
// one answered request, leave what the pool holds exactly as it was. The clients live in a child
// process, so that the 10,000 client descriptors do not count against this process's limit.
TEST_CASE("idle: 10000 idle connections hold no pooled buffer") {
  constexpr int count = 10000;
  server s(test_settings({{"threads", "1"},
                          {"limits.max_connections_per_thread", "20000"},
                          {"pool.rotation_interval", "1h"},
                          {"http.idle_timeout", "300s"}}));
  const std::uint16_t port = s.ports().http;
  {
    client warm(port);  // the worker's pool caches get their buffers
    for (int i = 0; i < 4; ++i) {
      warm.send(get("/plaintext"));
      CHECK(warm.read_response().status == 200);
    }
  }
  auto pool = [&] { return s.stats()["pool"]; };
  auto active = [&] { return s.stats()["server"]["connections"]["active"].get<std::int64_t>(); };
  REQUIRE(eventually([&] { return active() == 0 && bufpool::test::connection_buffers(s.stats()) == 0; }));
  const std::int64_t before = held_bytes(pool());

  int ready[2];
  int done[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(done) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // system calls only: the parent has threads, so no allocation after fork
    ::close(ready[0]);
    ::close(done[1]);
    static const char request[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int opened = 0;
    for (; opened < count; ++opened) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) break;
      if (::send(fd, request, sizeof request - 1, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof request - 1)) break;
      char got[1024];
      std::size_t n = 0;
      while (n < sizeof got && ::memmem(got, n, "Hello, World!", 13) == nullptr) {
        const ssize_t r = ::recv(fd, got + n, sizeof got - n, 0);
        if (r <= 0) break;
        n += static_cast<std::size_t>(r);
      }
      if (::memmem(got, n, "Hello, World!", 13) == nullptr) break;
    }
    (void)!::write(ready[1], &opened, sizeof opened);
    char x;
    (void)!::read(done[0], &x, 1);  // until the parent is done looking
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(done[0]);
  struct reap {  // also on a failed REQUIRE: let the child go, and wait for it
    int done_fd;
    int ready_fd;
    pid_t pid;
    ~reap() {
      ::close(done_fd);
      ::close(ready_fd);
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
  } guard{done[1], ready[0], child};
  pollfd p{ready[0], POLLIN, 0};
  REQUIRE(::poll(&p, 1, 120000) == 1);
  int opened = 0;
  REQUIRE(::read(ready[0], &opened, sizeof opened) == static_cast<ssize_t>(sizeof opened));
  REQUIRE(opened == count);
  REQUIRE(eventually([&] { return active() == count; }, 30s));
  REQUIRE(eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  const auto after = pool();
  CHECK(bufpool::test::connection_buffers(s.stats()) == 0);
  CHECK(held_bytes(after) == before);
  CHECK(s.stats()["server"]["requests"]["plaintext"].get<std::uint64_t>() >= static_cast<std::uint64_t>(count));
}

// io_uring lends the kernel a ring of pooled read buffers; with 8 of them and 64 clients sending at
// once the ring runs dry (recvs end with ENOBUFS and wait for the refill): every request is still
// answered, the ring never holds more than its size, and no connection keeps a buffer. On epoll the
// same load must pass with no ring at all.
TEST_CASE("io: a burst larger than the buffer ring is answered in full") {
  server s(test_settings({{"threads", "1"}, {"io.uring_buffers", "8"}}));
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < 64; ++i) clients.push_back(std::make_unique<client>(s.ports().http));
  std::string batch;
  for (int i = 0; i < 4; ++i) batch += get("/plaintext") + post("/echo", std::string(6000, 'r'));
  for (int round = 0; round < 3; ++round) {
    for (auto& c : clients) c->send(batch);
    int ok = 0;
    for (auto& c : clients)
      for (const auto& r : c->read_responses(8, 20s)) ok += r.status == 200 ? 1 : 0;
    CHECK(ok == 64 * 8);
  }
  const auto st = s.stats();
  const bool uring = st["server"]["io"]["backend"] == "io_uring";
  MESSAGE(st["server"]["io"]["backend"].get<std::string>() << ": waits for buffers "
                                                            << st["server"]["buffer_budget"]["waits"]);
  CHECK(st["server"]["io"]["ring_buffers"].get<std::int64_t>() <= (uring ? 8 : 0));
  CHECK(eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  CHECK(st["server"]["buffer_budget"]["waiting"] == 0);
  for (const auto& [kind, n] : st["server"]["errors"].items()) CHECK_MESSAGE(n == 0, kind);
}
