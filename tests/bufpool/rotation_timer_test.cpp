// rotation_timer: the pool rotates on an io_context, every io_context thread ages its own private
// slots, and pooled buffers work with Asio I/O directly.
#include <chrono>
#include <latch>
#include <optional>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "net.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using bufpool::buffer;
using bufpool::pool;

namespace {
// Polls `pred` until it holds or 10 s pass (a bound, not a timing assertion).
template <typename Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}
}  // namespace

TEST_CASE("rotation_timer: idle io_context threads free their cached buffers within two rotations") {
  pool p;
  net::io_context c1(1), c2(1);
  auto w1 = net::make_work_guard(c1);
  auto w2 = net::make_work_guard(c2);
  std::thread t1([&] { c1.run(); });
  std::thread t2([&] { c2.run(); });
  {
    bufpool::rotation_timer timer(p, {&c1, &c2}, 20ms);
    // Both threads cache buffers in their private slots and rings, then go idle. The latch makes both
    // allocate before either returns, so neither steals the other's.
    std::latch both_hold(2);
    for (auto* c : {&c1, &c2})
      net::post(*c, [&] {
        std::vector<buffer> v;
        for (int i = 0; i < 10; ++i) v.push_back(p.get(4096));
        both_hold.arrive_and_wait();
      });
    REQUIRE(eventually([&] { return p.snapshot().totals.pooled == 20; }));
    timer.start();
    CHECK(eventually([&] { return p.snapshot().totals.pooled == 0; }));
    // A rotation takes the victims off (pooled drops), frees them, then counts them: a snapshot is not
    // one instant, so the count may trail pooled by that much (seen under ASan on CI).
    CHECK(eventually([&] { return p.snapshot().totals.freed_by_rotation == 20; }));
    auto s = p.snapshot();
    CHECK(s.totals.freed_by_rotation == 20);
    CHECK(s.totals.rotations >= 2);
    timer.stop();
    const auto after_stop = timer.rotations();
    std::this_thread::sleep_for(60ms);
    CHECK(timer.rotations() == after_stop);  // nothing runs after stop()
  }
  w1.reset();
  w2.reset();
  t1.join();
  t2.join();
}

TEST_CASE("rotation_timer: rejects an empty context list and a non-positive interval") {
  pool p;
  net::io_context c;
  CHECK_THROWS_AS(bufpool::rotation_timer(p, {}), std::invalid_argument);
  CHECK_THROWS_AS(bufpool::rotation_timer(p, {&c}, 0ms), std::invalid_argument);
}

// Regression (review of issue 8): a null io_context after the first was accepted and crashed at the
// first rotation.
TEST_CASE("rotation_timer: a null io_context anywhere in the list is rejected at construction") {
  pool p;
  net::io_context c;
  CHECK_THROWS_WITH_AS(bufpool::rotation_timer(p, {&c, nullptr}), doctest::Contains("io_context 1 is null"),
                       std::invalid_argument);
  CHECK_THROWS_AS(bufpool::rotation_timer(p, {nullptr}), std::invalid_argument);
}

TEST_CASE("buffer: asio reads into and writes from pooled buffers") {
  pool p;
  net::io_context io;
  net::local::stream_protocol::socket a(io), b(io);
  net::local::connect_pair(a, b);
  buffer out = p.get(3000);
  for (std::size_t i = 0; i < out.size(); ++i) out.data()[i] = static_cast<std::byte>(i * 7);
  std::thread writer([&] { net::write(a, net::buffer(out)); });
  buffer in = p.get(3000);
  net::read(b, net::buffer(in));
  writer.join();
  CHECK(std::memcmp(in.data(), out.data(), 3000) == 0);
}

// Issue 21: every stop() posted again, and the destructor calls stop(): a timer destroyed after its
// io_contexts used them after they were gone, even when stop() had been called while they lived
// (ASan: heap-use-after-free). Now stop() is idempotent and the contexts tell the timer they go.
TEST_CASE("rotation_timer: stop() is idempotent, and the timer may be destroyed after its io_contexts") {
  pool p;
  SUBCASE("stopped while the contexts lived") {
    std::optional<bufpool::rotation_timer> t;
    {
      net::io_context c1, c2;
      t.emplace(p, std::vector<net::io_context*>{&c1, &c2}, 2ms);
      t->start();
      c1.run_for(30ms);
      t->stop();
      t->stop();
      c1.run_for(5ms);
    }
    t->stop();
    t.reset();  // after the contexts
  }
  SUBCASE("never stopped, its timer armed when the contexts went") {
    std::optional<bufpool::rotation_timer> t;
    {
      net::io_context c1, c2;
      t.emplace(p, std::vector<net::io_context*>{&c1, &c2}, 2ms);
      t->start();
      c1.run_for(20ms);
      CHECK(t->rotations() >= 1);
    }
    const auto n = t->rotations();
    t->start();  // a stopped timer does not start again
    CHECK(t->rotations() == n);
  }
  SUBCASE("never started") {
    std::optional<bufpool::rotation_timer> t;
    {
      net::io_context c;
      t.emplace(p, std::vector<net::io_context*>{&c}, 2ms);
    }
  }
}

TEST_CASE("rotation_timer: runs on executors: a strand of a thread_pool, and an io_context's executor") {
  pool p;
  net::thread_pool tp(2);
  auto strand = net::make_strand(tp.get_executor());
  {
    bufpool::rotation_timer t(p, std::vector{strand}, 2ms);
    t.start();
    CHECK(eventually([&] { return t.rotations() >= 3; }));
    t.stop();
  }
  net::io_context c;
  bufpool::rotation_timer t2(p, std::vector{c.get_executor()}, 2ms);
  t2.start();
  c.run_for(30ms);
  CHECK(t2.rotations() >= 1);
  t2.stop();
  CHECK_THROWS_AS(bufpool::rotation_timer(p, std::vector<net::any_io_executor>{}), std::invalid_argument);
  CHECK_THROWS_AS(bufpool::rotation_timer(p, std::vector<net::any_io_executor>{net::any_io_executor()}),
                  std::invalid_argument);
  tp.join();
}
