// Tests of bufpool::pool beyond Go's: size classes, the handle, caps and drops, cross-thread return,
// thread exit, several pools, rotation concurrent with stealing, and the statistics identities.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <latch>
#include <limits>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>
#include <bufpool/json.hpp>

#include "net.hpp"
#include "test_support.hpp"

using bufpool::buffer;
using bufpool::pool;
using bufpool::pool_options;
using bufpool::test::check_identities;
using bufpool::test::counting_resource;

TEST_CASE("pool: requests round up to power-of-two classes, and above the maximum they are unpooled") {
  pool p;
  CHECK(p.class_count() == 9);  // 256 B .. 64 KiB
  CHECK(p.get(0).capacity() == 256);
  CHECK(p.get(1).capacity() == 256);
  CHECK(p.get(256).capacity() == 256);
  CHECK(p.get(257).capacity() == 512);
  CHECK(p.get(4096).capacity() == 4096);
  CHECK(p.get(4097).capacity() == 8192);
  CHECK(p.get(65536).capacity() == 65536);
  {
    buffer big = p.get(65537);
    CHECK(big.capacity() == 65537);
    CHECK(big.size() == 65537);
    auto s = p.snapshot();
    CHECK(s.oversize.gets == 1);
    CHECK(s.oversize.outstanding == 1);
    CHECK(s.oversize.outstanding_bytes == 65537);
  }
  auto s = p.snapshot();
  CHECK(s.oversize.puts == 1);
  CHECK(s.oversize.outstanding == 0);
  CHECK(s.totals.gets == 7);  // oversize is not in the class totals
}

TEST_CASE("pool: class bounds are configurable") {
  pool_options o;
  o.min_class = 64;
  o.max_class = 1 << 20;
  pool p(o);
  CHECK(p.class_count() == 15);
  CHECK(p.get(1).capacity() == 64);
  CHECK(p.get(1000000).capacity() == (1u << 20));
}

TEST_CASE("pool: invalid options name the field, the value and what is allowed") {
  auto message_of = [](pool_options o) -> std::string {
    try {
      pool p(o);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  pool_options o;
  o.min_class = 100;
  CHECK(message_of(o).find("pool_options.min_class = 100") != std::string::npos);
  o = {};
  o.max_class = 128;
  CHECK(message_of(o).find("max_class = 128 is invalid: must be a power of two in [min_class, 1 GiB]") !=
        std::string::npos);
  o = {};
  o.ring_capacity = 100;
  CHECK(message_of(o).find("ring_capacity = 100") != std::string::npos);
  o = {};
  o.max_idle_bytes = 1000;
  CHECK(message_of(o).find("max_idle_bytes = 1000 is invalid: must be >= max_class") != std::string::npos);
}

TEST_CASE("buffer: move-only handle with size, capacity, resize and Asio view") {
  pool p;
  buffer b = p.get(1000);
  CHECK(static_cast<bool>(b));
  CHECK(b.size() == 1000);
  CHECK(b.capacity() == 1024);
  CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
  b.resize(1024);
  CHECK(b.size() == 1024);
  CHECK_THROWS_AS(b.resize(1025), std::length_error);
  b.resize(10);
  std::memcpy(b.data(), "0123456789", 10);
  net::mutable_buffer mb = net::buffer(b);
  CHECK(mb.size() == 10);
  CHECK(mb.data() == b.data());
  CHECK(net::buffer(b, 4).size() == 4);
  CHECK(b.span().size() == 10);
  CHECK(b.owner() == &p);

  buffer moved = std::move(b);
  CHECK_FALSE(static_cast<bool>(b));  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  CHECK(b.size() == 0);
  CHECK(b.capacity() == 0);
  CHECK(moved.size() == 10);
  CHECK(std::memcmp(moved.data(), "0123456789", 10) == 0);

  buffer other = p.get(300);
  other = std::move(moved);  // the old buffer of `other` goes back to the pool
  CHECK(other.size() == 10);
  auto s = p.snapshot();
  CHECK(s.totals.outstanding == 1);
  CHECK(s.totals.puts == 1);
}

TEST_CASE("pool: a full ring drops, counted") {
  counting_resource mem;
  pool_options o;
  o.ring_capacity = 4;
  o.memory = &mem;
  pool p(o);
  const std::uint64_t mag = bufpool::detail::magazine_capacity(4096);  // 128 buffers of 4 KiB
  const std::uint64_t n = mag + 50;
  std::vector<buffer> v;
  for (std::uint64_t i = 0; i < n; ++i) v.push_back(p.get(4096));
  v.clear();
  auto s = p.snapshot();
  CHECK(s.totals.puts == n);
  CHECK(s.totals.pooled == mag + 4);  // a full magazine + a full ring
  CHECK(s.totals.dropped == n - (mag + 4));
  CHECK(mem.frees == n - (mag + 4));
  check_identities(s);
}

TEST_CASE("pool: the idle-bytes cap is never exceeded, and returns beyond it are dropped") {
  counting_resource mem;
  pool_options o;
  o.max_class = 4096;
  o.max_idle_bytes = 3 * 4096;
  o.memory = &mem;
  pool p(o);
  std::vector<buffer> v;
  for (int i = 0; i < 5; ++i) v.push_back(p.get(4096));
  for (int i = 0; i < 5; ++i) v.push_back(p.get(512));
  v.clear();
  auto s = p.snapshot();
  // The cap counts each buffer's data and its 64-byte header; it is filled to within one large buffer.
  const std::size_t held = s.totals.pooled_bytes + 64 * s.totals.pooled;
  CHECK(held <= o.max_idle_bytes);
  CHECK(held > o.max_idle_bytes - (4096 + 64));
  CHECK(s.totals.dropped == 10 - s.totals.pooled);
  CHECK(mem.live() == static_cast<long>(s.totals.pooled));
  check_identities(s);

  // Taking buffers out frees room again.
  buffer a = p.get(4096);
  buffer b = p.get(4096);
  a.reset();
  b.reset();
  CHECK(p.snapshot().totals.pooled_bytes <= o.max_idle_bytes);
}

TEST_CASE("pool: the idle-bytes cap holds with several threads returning at once") {
  pool_options o;
  o.max_class = 4096;
  o.max_idle_bytes = 64 * 4096;
  pool p(o);
  std::vector<std::thread> ts;
  std::latch all_done(4);
  std::latch may_exit(1);
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      std::vector<buffer> v;
      for (int i = 0; i < 100; ++i) v.push_back(p.get(4096));
      v.clear();
      all_done.count_down();
      may_exit.wait();
    });
  all_done.wait();
  auto s = p.snapshot();
  CHECK(s.totals.pooled_bytes <= o.max_idle_bytes);
  CHECK(s.totals.puts == 400);
  CHECK(s.totals.dropped > 0);  // 400 buffers of 4 KiB cannot all fit under a 64-buffer cap
  check_identities(s);
  may_exit.count_down();
  for (auto& t : ts) t.join();
}

TEST_CASE("pool: a buffer returned on another thread is stolen back from that thread's ring") {
  pool p;
  const std::size_t n = 2 * bufpool::detail::magazine_capacity(4096);  // 256
  std::vector<buffer> v;
  for (std::size_t i = 0; i < n; ++i) v.push_back(p.get(4096));
  std::set<std::byte*> mine;
  for (auto& b : v) mine.insert(b.data());

  std::promise<void> returned, stolen;
  std::thread other([&, done = stolen.get_future()]() mutable {
    v.clear();  // return all on this thread: a full magazine stays, the rest spills to its ring in halves
    returned.set_value();
    done.wait();  // stay alive: a thread's exit would free its cache
  });
  returned.get_future().wait();
  std::vector<buffer> back;
  for (int i = 0; i < 32; ++i) back.push_back(p.get(4096));
  for (auto& b : back) CHECK(mine.count(b.data()) == 1);
  auto s = p.snapshot();
  // Steals come in batches (one buffer of each batch is the steal, the rest land in our own ring and
  // come back to our magazine in halves): hits_stolen counts batches, the rest are shared or private.
  CHECK(s.totals.hits_stolen >= 1);
  CHECK(s.totals.hits_stolen < 32);
  CHECK(s.totals.misses == n);  // none of the 32 was a fresh allocation
  stolen.set_value();
  other.join();
  back.clear();
  check_identities(p.snapshot());
}

TEST_CASE("pool: a thread's exit frees what it cached and its cache is reused") {
  counting_resource mem;
  pool_options o;
  o.memory = &mem;
  pool p(o);
  std::thread([&] {
    std::vector<buffer> v;
    for (int i = 0; i < 10; ++i) v.push_back(p.get(2000));
  }).join();
  auto s = p.snapshot();
  CHECK(s.totals.freed_by_thread_exit == 10);
  CHECK(s.totals.pooled == 0);
  CHECK(mem.live() == 0);
  CHECK(s.threads == 0);
  for (int i = 0; i < 20; ++i) std::thread([&] { p.get(100); }).join();
  s = p.snapshot();
  CHECK(s.thread_caches == 1);  // one cache, handed from each exited thread to the next
  CHECK(s.totals.freed_by_thread_exit == 30);
  check_identities(s);
}

TEST_CASE("pool: a thread that went quiet keeps at most a magazine per class (128 buffers or 512 KiB)") {
  pool p;
  using bufpool::detail::magazine_capacity;
  std::uint64_t total = 0;
  for (std::size_t c = 0; c < p.class_count(); ++c) total += magazine_capacity(p.class_size(c)) + 40;
  std::promise<void> filled, go_on;
  std::thread quiet([&, resume = go_on.get_future()]() mutable {
    {
      std::vector<buffer> v;
      for (std::size_t c = 0; c < p.class_count(); ++c)
        for (std::uint32_t i = 0; i < magazine_capacity(p.class_size(c)) + 40; ++i) v.push_back(p.get(p.class_size(c)));
    }
    filled.set_value();
    resume.wait();
    p.rotate_local();  // its own part of the rotations it missed
    CHECK(p.snapshot().totals.pooled == 0);
  });
  filled.get_future().wait();
  for (int i = 0; i < 3; ++i) p.rotate();
  auto s = p.snapshot();
  // What rotation cannot reach without the thread: its magazines. Everything in its rings is gone.
  for (const auto& c : s.classes) {
    CHECK(c.pooled >= 1);
    CHECK(c.pooled <= magazine_capacity(c.size));
    CHECK(c.pooled <= 128);
    CHECK(c.pooled * c.size <= std::max<std::uint64_t>(512 * 1024, c.size));
  }
  go_on.set_value();
  quiet.join();
  s = p.snapshot();
  CHECK(s.totals.freed_by_rotation == total);
  check_identities(s);
}

TEST_CASE("pool: several pools in one thread keep their buffers apart") {
  pool a, b;
  std::vector<buffer> va, vb;
  for (int i = 0; i < 10; ++i) {
    va.push_back(a.get(512));
    vb.push_back(b.get(512));
  }
  for (auto& x : va) CHECK(x.owner() == &a);
  for (auto& x : vb) CHECK(x.owner() == &b);
  va.clear();
  vb.clear();
  buffer x = a.get(512), y = b.get(512);
  CHECK(x.owner() == &a);
  CHECK(y.owner() == &b);
  CHECK(a.snapshot().totals.hits_private == 1);
  CHECK(b.snapshot().totals.hits_private == 1);
  CHECK(a.snapshot().totals.puts == 10);
}

TEST_CASE("pool: a new pool in a dead pool's slot starts clean on threads that used the old one") {
  counting_resource mem;
  pool_options o;
  o.memory = &mem;
  auto first = std::make_unique<pool>(o);
  first->get(100);
  first.reset();
  CHECK(mem.live() == 0);  // the destructor freed everything
  pool second(o);
  buffer b = second.get(100);
  auto s = second.snapshot();
  CHECK(s.totals.gets == 1);
  CHECK(s.totals.misses == 1);
  CHECK(s.threads == 1);
}

TEST_CASE("pool: the destructor frees every pooled buffer of every thread") {
  counting_resource mem;
  {
    pool_options o;
    o.memory = &mem;
    pool p(o);
    std::latch returned(3), may_exit(1);
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t)
      ts.emplace_back([&] {
        std::vector<buffer> v;
        for (int i = 0; i < 50; ++i) v.push_back(p.get(300 * (i % 5 + 1)));
        v.clear();
        returned.count_down();
        may_exit.wait();
      });
    returned.wait();
    p.rotate();  // some in the victim generation, too
    for (int i = 0; i < 20; ++i) p.get(700);
    CHECK(mem.live() > 0);
    may_exit.count_down();
    for (auto& t : ts) t.join();
  }
  CHECK(mem.allocations > 0);
  CHECK(mem.live() == 0);
}

// Rotation runs on its own thread while workers get, put, hand buffers across threads and steal.
TEST_CASE("pool: rotation concurrent with stealing and cross-thread returns keeps every count right") {
  counting_resource mem;
  pool_options o;
  o.memory = &mem;
  o.ring_capacity = 32;
  pool p(o);
  const int iterations = 200'000 / bufpool::test::scale_down;
  constexpr int workers = 4;
  std::mutex mu;
  std::vector<buffer> handoff;  // buffers got on one thread, returned on another
  std::atomic<bool> stop_rotating{false};
  std::atomic<long> corrupt{0};
  std::thread rotator([&] {
    while (!stop_rotating.load()) {
      p.rotate();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> ts;
  for (int w = 0; w < workers; ++w)
    ts.emplace_back([&, w] {
      std::vector<buffer> held;
      for (int i = 0; i < iterations; ++i) {
        buffer b = p.get(256u << ((i + w) % 4));
        std::memset(b.data(), w + 1, b.size());
        if (std::to_integer<int>(b.data()[b.size() - 1]) != w + 1) corrupt.fetch_add(1);
        if (i % 3 == 0) {
          held.push_back(std::move(b));
        } else if (i % 3 == 1 && !held.empty()) {
          std::lock_guard lk(mu);
          handoff.push_back(std::move(held.back()));
          held.pop_back();
        } else if (i % 5 == 0) {
          std::lock_guard lk(mu);
          handoff.clear();  // returned on this thread, got on others
        }
        if (held.size() > 64) held.clear();
      }
    });
  for (auto& t : ts) t.join();
  stop_rotating = true;
  rotator.join();
  handoff.clear();
  CHECK(corrupt == 0);
  auto s = p.snapshot();
  check_identities(s);
  CHECK(s.totals.outstanding == 0);
  CHECK(s.totals.rotations > 0);
  CHECK(s.totals.gets == std::uint64_t(workers) * std::uint64_t(iterations));
  CHECK(mem.live() == static_cast<long>(s.totals.pooled));  // what is not pooled was freed
  CHECK(s.totals.pooled_bytes <= o.max_idle_bytes);
}

TEST_CASE("pool: outstanding equals buffers held, and the snapshot serializes every counter") {
  pool p;
  std::vector<buffer> held;
  for (int i = 0; i < 7; ++i) held.push_back(p.get(100));
  for (int i = 0; i < 3; ++i) held.push_back(p.get(5000));
  held.resize(6);
  auto s = p.snapshot();
  CHECK(s.totals.outstanding == 6);
  check_identities(s);

  nlohmann::json j = s;
  for (const char* key : {"gets", "puts", "hits_private", "hits_shared", "hits_stolen", "hits_victim", "misses",
                          "dropped", "freed_by_rotation", "freed_by_thread_exit", "rotations", "pooled",
                          "pooled_bytes", "outstanding"}) {
    CAPTURE(key);
    CHECK(j["totals"].contains(key));
    CHECK(j["classes"][0].contains(key));
  }
  CHECK(j["classes"].size() == p.class_count());
  CHECK(j["classes"][0]["size"] == 256);
  CHECK(j["totals"]["outstanding"] == 6);
  CHECK(j["config"]["max_class"] == 65536);
  CHECK(j["oversize"].contains("outstanding_bytes"));
  CHECK(j["threads"] == 1);
}

TEST_CASE("pool: enabled=false allocates every get and frees every return, with the same classes") {
  counting_resource mem;
  pool_options o;
  o.enabled = false;
  o.memory = &mem;
  pool p(o);
  for (int i = 0; i < 10; ++i) {
    buffer b = p.get(3000);
    CHECK(b.capacity() == 4096);
  }
  auto s = p.snapshot();
  CHECK(mem.allocations == 10);
  CHECK(mem.frees == 10);
  CHECK(s.totals.misses == 10);
  CHECK(s.totals.dropped == 10);
  CHECK(s.totals.pooled == 0);
  check_identities(s);
}

// Regression (review of issue 8): get(n) for n within a header's size of SIZE_MAX asked the memory
// resource for a wrapped-around small size instead of failing.
TEST_CASE("pool: a request near SIZE_MAX throws bad_alloc instead of wrapping the size") {
  counting_resource r;
  pool_options o;
  o.memory = &r;
  pool p(o);
  volatile std::size_t huge = std::numeric_limits<std::size_t>::max() - 10;  // not a constant
  CHECK_THROWS_AS((void)p.get(huge), std::bad_alloc);
  CHECK(r.allocations.load() == 0);
  CHECK(p.snapshot().oversize.outstanding == 0);
}

namespace {
// Counts the bytes the pool holds from its resource.
class byte_counting_resource : public std::pmr::memory_resource {
public:
  std::atomic<long> bytes{0};

private:
  void* do_allocate(std::size_t n, std::size_t a) override {
    bytes += static_cast<long>(n);
    return std::pmr::new_delete_resource()->allocate(n, a);
  }
  void do_deallocate(void* p, std::size_t n, std::size_t a) override {
    bytes -= static_cast<long>(n);
    std::pmr::new_delete_resource()->deallocate(p, n, a);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
};
}  // namespace

// Regression (review of issue 8): the cap counted data bytes only, so with 64-byte classes the memory
// held was up to twice the cap. Now a buffer costs its data and its header.
TEST_CASE("pool: max_idle_bytes bounds what the memory resource holds, headers included") {
  byte_counting_resource r;
  pool_options o;
  o.memory = &r;
  o.min_class = 64;
  o.max_class = 64;
  o.max_idle_bytes = 64 * 1024;
  o.ring_capacity = 4096;
  pool p(o);
  {
    std::vector<buffer> held;
    for (int i = 0; i < 2000; ++i) held.push_back(p.get(64));  // 2000 x 128 B = 250 KiB in use
  }
  p.rotate_local();
  const auto s = p.snapshot();
  INFO("resource holds " << r.bytes.load() << " bytes for " << s.totals.pooled << " idle buffers");
  CHECK(s.totals.outstanding == 0);
  CHECK(r.bytes.load() <= 64 * 1024);
  CHECK(s.totals.pooled >= 64 * 1024 / 128 / 2);  // and the cap is not left unused either
}

// Regression (review of issue 8): with a small cap one thread could hold all of it as spare credit,
// so every return of another thread was dropped.
TEST_CASE("pool: one thread cannot hold all the idle credit (another thread's returns are pooled)") {
  pool_options o;
  o.max_idle_bytes = 64 * 1024;  // the smallest cap allowed with 64 KiB classes
  pool p(o);
  { auto b = p.get(256); }  // this thread takes credit
  for (int i = 0; i < 100; ++i) {
    auto b = p.get(256);
  }
  std::thread other([&] {
    std::vector<buffer> mine;
    for (int i = 0; i < 4; ++i) mine.push_back(p.get(1024));
  });  // its returns at exit of the lambda, then the thread's exit frees its cache
  other.join();
  const auto s = p.snapshot();
  // 1 KiB class: the other thread's four returns were pooled (freed later at thread exit), not dropped.
  CHECK(s.classes[2].dropped == 0);
  CHECK(s.classes[2].freed_by_thread_exit == 4);
}

TEST_CASE("version: the macros come from the project's version") {
  CHECK(BUFPOOL_VERSION == BUFPOOL_VERSION_MAJOR * 10000 + BUFPOOL_VERSION_MINOR * 100 + BUFPOOL_VERSION_PATCH);
  CHECK(std::string(BUFPOOL_VERSION_STRING) == std::to_string(BUFPOOL_VERSION_MAJOR) + "." +
                                                 std::to_string(BUFPOOL_VERSION_MINOR) + "." +
                                                 std::to_string(BUFPOOL_VERSION_PATCH));
  CHECK(std::string(BUFPOOL_VERSION_STRING) == BUFPOOL_PROJECT_VERSION);  // what CMake's project() says
}
