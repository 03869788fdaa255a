// bufpool-server as a load-test target, second part: delay (timers, pipelined order, no pooled buffer
// while waiting, drain), the caps (echo.max_delay, echo.max_size), echo.default_params, echo.any_path,
// /debug and gzip. Loopback only; the suite runs on both backends. No timing is asserted except that a
// delayed answer does not come before its delay (a lower bound, which no load can make fail).
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <libdeflate.h>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::eventually;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

namespace {

using steady = std::chrono::steady_clock;

const nlohmann::json& target_stats(const nlohmann::json& st) { return st["server"]["echo_target"]; }

std::string pattern(std::size_t n) {
  const std::string_view cycle = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = cycle[i % cycle.size()];
  return s;
}

std::string gunzip(const std::string& in, std::size_t expected) {
  libdeflate_decompressor* d = libdeflate_alloc_decompressor();
  std::string out(expected + 1, '\0');
  std::size_t n = 0;
  const auto r = libdeflate_gzip_decompress(d, in.data(), in.size(), out.data(), out.size(), &n);
  libdeflate_free_decompressor(d);
  if (r != LIBDEFLATE_SUCCESS) return "<not gzip>";
  out.resize(n);
  return out;
}

}  // namespace

TEST_CASE("target: a delayed answer comes after its delay, holding no pooled buffer while it waits") {
  server s(test_settings({{"echo.max_delay", "5s"}}));
  client c(s.ports().http);
  // While the request waits (2 s), the connection holds nothing pooled but the header line the answer
  // will carry (256 bytes: the pool's smallest class). Polled, not read once: on io_uring the ring of
  // read buffers is still being filled just after start, and /stats can see a buffer between the pool
  // and the ring; a connection that held buffers while waiting would never get there before its answer.
  auto waiting_holding_at_most = [&](std::int64_t n) {
    return eventually([&] {
      const auto st = s.stats();
      return target_stats(st)["delayed_waiting"].get<int>() == 1 && bufpool::test::connection_buffers(st) <= n;
    });
  };
  const auto t0 = steady::now();
  c.send(get("/echo?delay=2s&size=5&header=X-A:1"));
  CHECK(waiting_holding_at_most(1));
  auto r = c.read_response();
  CHECK(steady::now() - t0 >= 2s);
  CHECK(r.status == 200);
  CHECK(r.body == "01234");
  CHECK(r.header("x-a") == "1");
  // ... and without header parameters, none at all.
  c.send(get("/echo?delay=2s&size=5"));
  CHECK(waiting_holding_at_most(0));
  CHECK(c.read_response().body == "01234");
  const auto after = s.stats();
  CHECK(target_stats(after)["delayed"].get<int>() == 2);
  CHECK(target_stats(after)["delayed_waiting"].get<int>() == 0);
  // A delayed echo holds its body and answers it whole.
  c.send(post("/echo?delay=50ms&status=201", "hello, later"));
  r = c.read_response();
  CHECK(r.status == 201);
  CHECK(r.body == "hello, later");
  c.send("POST /echo?delay=10ms HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
  r = c.read_response();
  CHECK(r.body == "abcde");
  CHECK(r.header("content-length") == "5");
}

TEST_CASE("target: pipelined requests behind a delayed one keep their order") {
  server s(test_settings({{"echo.max_delay", "5s"}}));
  client c(s.ports().http);
  REQUIRE(c.send(get("/echo?size=1") + get("/echo?delay=200ms&size=2") + get("/echo?size=3") +
                 post("/echo?delay=20ms", "four") + get("/plaintext")));
  const auto rs = c.read_responses(5);
  CHECK(rs[0].body == "0");
  CHECK(rs[1].body == "01");
  CHECK(rs[2].body == "012");
  CHECK(rs[3].body == "four");
  CHECK(rs[4].body == "Hello, World!");
  // An answer sent at once, then a delayed one, and nothing more from the client: the timer is armed
  // all the same (not only when more input comes).
  REQUIRE(c.send(get("/echo?size=1") + get("/echo?delay=100ms&size=2")));
  const auto two = c.read_responses(2);
  CHECK(two[0].body == "0");
  CHECK(two[1].body == "01");
  // Many connections waiting at once: each answered, none holding a read buffer meanwhile.
  std::vector<std::unique_ptr<client>> many;
  for (int i = 0; i < 100; ++i) {
    many.push_back(std::make_unique<client>(s.ports().http));
    REQUIRE(many.back()->send(get("/echo?delay=3s&size=8")));
  }
  CHECK(eventually([&] {
    const auto st = s.stats();
    return target_stats(st)["delayed_waiting"].get<int>() == 100 && bufpool::test::connection_buffers(st) == 0;
  }));
  for (auto& m : many) CHECK(m->read_response().body == "01234567");
}

TEST_CASE("target: asks over echo.max_delay and echo.max_size are capped and counted") {
  server s(test_settings({{"echo.max_delay", "50ms"}, {"echo.max_size", "1000"}}));
  client c(s.ports().http);
  c.send(get("/echo?delay=1h&size=5"));  // the read's own bound (10 s) would fail it without the cap
  CHECK(c.read_response().body == "01234");
  c.send(get("/echo?size=5000"));
  CHECK(c.read_response().body.size() == 1000);
  c.send(get("/echo?size=999"));
  CHECK(c.read_response().body.size() == 999);
  const auto st = target_stats(s.stats());
  CHECK(st["capped"]["delay"].get<int>() == 1);
  CHECK(st["capped"]["size"].get<int>() == 1);
  client a(s.ports().admin);
  a.send(get("/metrics"));
  const auto m = a.read_response().body;
  CHECK(m.find("bufpool_echo_capped_total{param=\"delay\"} 1") != std::string::npos);
  CHECK(m.find("bufpool_echo_capped_total{param=\"size\"} 1") != std::string::npos);
  CHECK(m.find("bufpool_echo_delayed_total 1") != std::string::npos);
}

TEST_CASE("target: echo.default_params apply to requests without parameters, and a bad one stops the start") {
  server s(test_settings({{"echo.default_params", "status=418&header=X-Default:yes"}}));
  client c(s.ports().http);
  c.send(post("/echo", "x"));
  auto r = c.read_response();
  CHECK(r.status == 418);
  CHECK(r.header("x-default") == "yes");
  CHECK(r.body == "x");
  c.send(get("/echo?size=3"));  // its own parameters: the defaults are not mixed in
  r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("x-default").empty());
  c.send(get("/echo?unknown=1"));  // only unknown ones: the defaults
  CHECK(c.read_response().status == 418);
  try {
    (void)test_settings({{"echo.default_params", "delay=0.5s:50,1s:40&status=abc"}});
    FAIL("a bad echo.default_params was taken");
  } catch (const bufpool::config::error& e) {
    const std::string what = e.what();
    CHECK(what.find("echo.default_params") != std::string::npos);
    CHECK(what.find("status=abc: not a status code") != std::string::npos);
  }
}

TEST_CASE("target: echo.any_path answers every path no route takes as /echo") {
  server s(test_settings({{"echo.any_path", "true"}}));
  client c(s.ports().http);
  c.send(post("/some/where?status=202", "routed anywhere"));
  auto r = c.read_response();
  CHECK(r.status == 202);
  CHECK(r.body == "routed anywhere");
  c.send(get("/plaintext"));
  CHECK(c.read_response().body == "Hello, World!");
  server plain(test_settings());
  client p(plain.ports().http);
  p.send(get("/some/where"));
  CHECK(p.read_response().status == 404);
}

TEST_CASE("target: /debug answers with the request itself and takes delay, close and header") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(post("/debug?header=X-Dbg:1&delay=20ms", "the body", "X-Custom: abc\r\n"));
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("x-dbg") == "1");
  CHECK(r.header("content-type").rfind("text/plain", 0) == 0);
  CHECK(r.body.rfind("POST /debug?header=X-Dbg:1&delay=20ms HTTP/1.1\n", 0) == 0);
  CHECK(r.body.find("\nHost: t\n") != std::string::npos);
  CHECK(r.body.find("\nX-Custom: abc\n") != std::string::npos);
  CHECK(r.body.find("body:\n\nthe body\n") != std::string::npos);
  c.send(get("/debug?status=abc"));  // status is not /debug's, but its grammar is checked all the same
  CHECK(c.read_response().status == 400);
  c.send(get("/debug?close=true"));
  r = c.read_response();
  CHECK(r.header("connection") == "close");
  CHECK(c.closed_by_peer());
  CHECK(eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}

TEST_CASE("target: gzip compresses when the request accepts it, from pooled buffers") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/echo?size=262144&gzip=true", "Accept-Encoding: deflate, gzip\r\n"));
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-encoding") == "gzip");
  CHECK(r.header("vary") == "Accept-Encoding");
  CHECK(r.body.size() < 10000);
  CHECK(gunzip(r.body, 262144) == pattern(262144));
  c.send(post("/echo?gzip=100", std::string(5000, 'z'), "Accept-Encoding: gzip\r\n"));  // the echoed body
  r = c.read_response();
  CHECK(r.header("content-encoding") == "gzip");
  CHECK(gunzip(r.body, 5000) == std::string(5000, 'z'));
  c.send(get("/echo?size=100&gzip=true"));  // no Accept-Encoding: as it is, still Vary
  r = c.read_response();
  CHECK(r.header("content-encoding").empty());
  CHECK(r.header("vary") == "Accept-Encoding");
  CHECK(r.body == pattern(100));
  c.send(get("/echo?size=100&gzip=true", "Accept-Encoding: gzip;q=0, br\r\n"));  // refused by weight
  CHECK(c.read_response().header("content-encoding").empty());
  c.send(get("/echo?size=100&gzip=false", "Accept-Encoding: gzip\r\n"));
  CHECK(c.read_response().header("content-encoding").empty());
  const auto st = target_stats(s.stats());
  CHECK(st["gzip"].get<int>() == 2);
  CHECK(eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}

TEST_CASE("target: a graceful stop answers waiting requests at once, with Connection: close") {
  server s(test_settings({{"echo.max_delay", "60s"}}));
  client c(s.ports().http);
  c.send(get("/echo?delay=30s&size=4"));
  REQUIRE(eventually([&] { return target_stats(s.stats())["delayed_waiting"].get<int>() == 1; }));
  std::thread stopper([&] { s.stop(); });
  const auto r = c.read_response();  // within the read's 10 s, not the 30 s delay
  CHECK(r.status == 200);
  CHECK(r.body == "0123");
  CHECK(r.header("connection") == "close");
  stopper.join();
}

TEST_CASE("target: a client gone while its answer waits costs nothing after the delay") {
  server s(test_settings());
  {
    client c(s.ports().http);
    c.send(get("/echo?delay=100ms&size=4096"));
    REQUIRE(eventually([&] { return target_stats(s.stats())["delayed_waiting"].get<int>() == 1; }));
  }  // closed here
  CHECK(eventually([&] {
    const auto st = s.stats();
    return target_stats(st)["delayed_waiting"].get<int>() == 0 && st["server"]["connections"]["active"].get<int>() == 0 &&
           bufpool::test::connection_buffers(st) == 0;
  }));
}
