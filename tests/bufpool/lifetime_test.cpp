// A buffer may outlive its pool (issue 8): destroying the pool while buffers are out frees what is
// pooled, and each buffer still out frees its own memory when it comes back later, on any thread;
// nothing touches freed memory (these tests run under ASan and TSan too); debug mode still reports.
#include <atomic>
#include <latch>
#include <memory>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "net.hpp"
#include "test_support.hpp"

using bufpool::buffer;
using bufpool::pool;
using bufpool::pool_options;
using bufpool::test::counting_resource;

// The program a new user wrote: the io_context is declared before the pool, so it is destroyed after
// it, and a handler that never ran still holds a buffer. Before: use-after-free in put_header.
TEST_CASE("lifetime: an io_context destroyed after the pool returns its handlers' buffers safely") {
  counting_resource r;
  {
    net::io_context io;
    pool_options o;
    o.memory = &r;
    pool p(o);
    for (int i = 0; i < 10; ++i)
      net::post(io, [b = std::make_shared<buffer>(p.get(4096))] { (void)b; });  // never run
    { auto pooled = p.get(512); }  // one buffer idle in the pool as well
    CHECK(r.live() == 11);
  }  // p goes first, then io destroys the handlers and their buffers
  CHECK(r.live() == 0);
}

TEST_CASE("lifetime: buffers returned on other threads after the pool died free their memory") {
  counting_resource r;
  constexpr int threads = 4, per_thread = 100;
  std::vector<std::thread> holders;
  std::latch taken(threads), pool_gone(1);
  {
    pool_options o;
    o.memory = &r;
    pool p(o);
    for (int t = 0; t < threads; ++t) {
      holders.emplace_back([&] {
        std::vector<buffer> mine;
        for (int i = 0; i < per_thread; ++i) mine.push_back(p.get(static_cast<std::size_t>(256 << (i % 9))));
        mine.push_back(p.get(1 << 20));  // oversize too
        taken.count_down();
        pool_gone.wait();
        mine.clear();  // returned after the pool is gone
      });
    }
    taken.wait();
  }
  pool_gone.count_down();
  for (auto& t : holders) t.join();
  CHECK(r.live() == 0);
}

TEST_CASE("lifetime: a new pool in the dead pool's place while its buffers are still out") {
  counting_resource r;
  pool_options o;
  o.memory = &r;
  auto first = std::make_unique<pool>(o);
  std::vector<buffer> old;
  for (int i = 0; i < 50; ++i) old.push_back(first->get(1000));
  first.reset();
  pool second(o);  // likely takes the dead pool's registry slot
  std::vector<buffer> fresh;
  for (int i = 0; i < 50; ++i) fresh.push_back(second.get(1000));
  old.clear();  // back to the dead pool's state, not to the new pool
  auto s = second.snapshot();
  CHECK(s.totals.outstanding == 50);
  CHECK(s.totals.puts == 0);
  for (auto& b : fresh) CHECK(b.owner() == &second);
  fresh.clear();
  s = second.snapshot();
  CHECK(s.totals.outstanding == 0);
  CHECK(s.totals.pooled == 50);
  CHECK(r.live() == 50);  // exactly the new pool's idle buffers
}

TEST_CASE("lifetime: debug mode still reports the buffers out when the pool dies, and their return is safe") {
  std::vector<bufpool::error_report> reports;
  std::vector<buffer> out;
  {
    pool_options o;
    o.debug = true;
    o.on_error = [&](const bufpool::error_report& e) { reports.push_back(e); };
    pool p(o);
    for (int i = 0; i < 3; ++i) out.push_back(p.get(100));
  }
  REQUIRE(reports.size() == 1);
  CHECK(reports[0].kind == bufpool::error_kind::leak_at_destroy);
  CHECK(reports[0].count == 3);
  CHECK(out[0].owner() == nullptr);  // the handle is gone
  out.clear();
  CHECK(reports.size() == 1);  // returning them is not an error
}
