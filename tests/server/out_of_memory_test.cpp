// Allocation failure injected into the pool's memory resource (issue 7): the pool throws bad_alloc
// and stays consistent; the server answers 503 and closes (HTTP) or closes (echo), never crashes,
// never leaks a buffer, and serves again once memory is back.
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <bufpool/bufpool.hpp>

#include "../support/failing_resource.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::failing_resource;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

TEST_CASE("out of memory: the pool throws bad_alloc on a miss, counts nothing for it, and recovers") {
  failing_resource r;
  {
    bufpool::pool_options o;
    o.memory = &r;
    bufpool::pool p(o);
    { auto warm = p.get(1000); }  // one buffer pooled
    r.fail_all = true;
    auto hit = p.get(1000);  // served from the pool: no allocation needed
    CHECK(hit.capacity() == 1024);
    CHECK_THROWS_AS((void)p.get(1000), std::bad_alloc);
    CHECK_THROWS_AS((void)p.get(100000), std::bad_alloc);  // oversize path too
    auto s = p.snapshot();
    CHECK(s.totals.gets == s.totals.hits_private + s.totals.hits_shared + s.totals.hits_stolen +
                               s.totals.hits_victim + s.totals.misses);
    CHECK(s.totals.outstanding == 1);
    r.fail_all = false;
    auto again = p.get(1000);
    CHECK(again.capacity() == 1024);
  }
  CHECK(r.live() == 0);  // everything the pool took was given back
}

TEST_CASE("out of memory: HTTP requests get 503 and a close, echo connections close, and service resumes") {
  failing_resource r;
  auto settings = test_settings({{"pool.enabled", "false"}});  // every buffer is a fresh allocation
  settings.pool.memory = &r;
  {
    server s(settings);
    r.fail_all = true;
    {
      client c(s.ports().http);
      c.send(get("/plaintext"));
      auto resp = c.read_response();
      CHECK(resp.status == 503);
      CHECK(resp.header("connection") == "close");
      CHECK(c.closed_by_peer());
    }
    {
      client e(s.ports().echo);
      e.send("hello");
      CHECK(e.closed_by_peer());
    }
    CHECK(s.stats()["server"]["errors"]["out_of_memory"].get<int>() >= 2);
    r.fail_all = false;
    client c(s.ports().http);
    c.send(get("/plaintext"));
    CHECK(c.read_response().status == 200);
    CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  }
  CHECK(r.live() == 0);
}

// About one allocation in three fails (hashed, not periodic: a fixed period can fall in step with the
// allocations a round makes, so that every failure lands where it is retried unseen) while clients keep sending pipelined GETs and echo POSTs (some
// chunked): each answer is a complete 200 or a 503 with a close; no connection hangs; no buffer leaks.
TEST_CASE("out of memory: failures at random points of requests never crash, hang or leak") {
  failing_resource r;
  auto settings = test_settings({{"pool.enabled", "false"}, {"http.read_buffer_bytes", "256"}});
  settings.pool.memory = &r;
  {
    server s(settings);
    r.fail_one_in = 3;
    int ok = 0, refused = 0, cut_short = 0;
    for (int round = 0; round < 60; ++round) {
      client c(s.ports().http);
      std::string batch = get("/plaintext") + post("/echo", std::string(700, 'e')) +
                          "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "100\r\n" + std::string(256, 'c') + "\r\n0\r\n\r\n" + get("/json");
      c.send(batch);
      for (int i = 0; i < 4; ++i) {
        bufpool::test::response resp;
        try {
          resp = c.read_response(5s);
        } catch (const std::runtime_error& e) {
          // A streamed echo answer cut short, or the close after a 503: the connection must be closed,
          // not hung.
          CHECK(std::string(e.what()).find("timed out") == std::string::npos);
          ++cut_short;
          break;
        }
        if (resp.status == 503) {
          ++refused;
          CHECK(resp.header("connection") == "close");
          break;
        }
        CHECK(resp.status == 200);
        ++ok;
      }
    }
    MESSAGE("answered " << ok << ", refused " << refused << ", cut short or closed " << cut_short
                        << ", allocations failed " << r.failures.load());
    CHECK(r.failures.load() > 0);
    // On epoll the failures are seen by clients (which of the two varies by timing). On io_uring most
    // fall on refills of the kernel's buffer ring, which are retried the next turn unseen.
    if (s.stats()["server"]["io"]["backend"] == "epoll") CHECK(refused + cut_short > 0);
    CHECK(ok > 0);
    r.fail_one_in = 0;
    CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
    CHECK(bufpool::test::eventually([&] { return s.stats()["server"]["connections"]["active"] == 0; }));
  }
  CHECK(r.live() == 0);
}
