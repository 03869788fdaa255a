// Go's src/sync/pool_test.go, ported. runtime.GC() maps to pool::rotate(); "pinned" maps to staying on
// one thread; finalizers and New map to a counting memory_resource (the pool allocates only on a miss).
// TestNilPool has no C++ analog (a pool is used through a reference) and is not ported.
#include <atomic>
#include <cstring>
#include <latch>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "test_support.hpp"

using bufpool::buffer;
using bufpool::pool;
using bufpool::pool_options;
using bufpool::test::counting_resource;

namespace {
pool_options counted(counting_resource& r) {
  pool_options o;
  o.memory = &r;
  return o;
}
}  // namespace

TEST_CASE("go TestPool: the private tier, survives one rotation, gone after two") {
  counting_resource mem;
  pool p(counted(mem));

  // An empty pool misses.
  buffer first = p.get(100);
  CHECK(mem.allocations == 1);
  CHECK(p.snapshot().totals.misses == 1);

  // Go pins Put(a), Put(b) -> Get()==a (private), Get()==b (shared). bufpool's private tier is a
  // magazine (a small stack): both come back from it, newest first, with no shared access.
  buffer a = p.get(100), b = p.get(100);
  std::byte* pa = a.data();
  std::byte* pb = b.data();
  a.reset();
  b.reset();
  buffer b2 = p.get(100);
  buffer a2 = p.get(100);
  CHECK(b2.data() == pb);
  CHECK(a2.data() == pa);
  const long before = mem.allocations;
  buffer c = p.get(100);
  CHECK(mem.allocations == before + 1);
  auto s = p.snapshot();
  CHECK(s.totals.hits_private == 2);
  CHECK(s.totals.hits_shared == 0);

  // 100 puts spill into the shared ring.
  std::vector<buffer> hundred;
  std::set<std::byte*> mine;
  for (int i = 0; i < 100; ++i) hundred.push_back(p.get(100));
  for (auto& x : hundred) mine.insert(x.data());
  hundred.clear();

  p.rotate();
  buffer after_one = p.get(100);
  CHECK(mine.count(after_one.data()) == 1);  // survived one rotation through the victim generation
  CHECK(p.snapshot().totals.hits_victim == 1);
  // after_one stays held, so it cannot refill the private slot.

  p.rotate();
  const long allocs = mem.allocations;
  buffer after_two = p.get(100);
  CHECK(mem.allocations == allocs + 1);  // the second rotation dropped the victims: a miss
  CHECK(p.snapshot().totals.freed_by_rotation == 99);
  CHECK(mem.frees == 99);
}

TEST_CASE("go TestPoolNew: the allocator runs only on a miss, and get never returns a stale buffer") {
  counting_resource mem;
  pool p(counted(mem));
  buffer one = p.get(64);
  CHECK(mem.allocations == 1);
  buffer two = p.get(64);
  CHECK(mem.allocations == 2);
  std::byte* d = two.data();
  two.reset();  // Put(42)
  buffer again = p.get(64);
  CHECK(again.data() == d);  // Get()==42
  CHECK(mem.allocations == 2);
  buffer three = p.get(64);  // empty again: New is called
  CHECK(mem.allocations == 3);
  CHECK(three.data() != d);
}

// testPool(drain): the pool keeps no pointer to what it handed out, and releases on rotation.
static void go_test_pool(bool drain) {
  constexpr int N = 100;
  for (int attempt = 0; attempt < 3; ++attempt) {
    counting_resource mem;
    pool p(counted(mem));
    std::vector<buffer> v;
    for (int i = 0; i < N; ++i) v.push_back(p.get(1000));
    v.clear();  // Put each
    CHECK(p.snapshot().totals.pooled == N);
    if (drain) {
      for (int i = 0; i < N; ++i) v.push_back(p.get(1000));
      CHECK(p.snapshot().totals.pooled == 0);  // nothing retained
      CHECK(mem.allocations == N);             // every drained buffer came from the pool
      v.clear();
    }
    p.rotate();
    CHECK(mem.frees == 0);  // held by the victim generation
    p.rotate();
    CHECK(mem.frees == N);  // released: exactly Go's TestPoolRelease, without waiting for finalizers
    CHECK(p.snapshot().totals.pooled == 0);
  }
}

TEST_CASE("go TestPoolGC: drained pool holds no buffers, rotation frees the returned ones") { go_test_pool(true); }
TEST_CASE("go TestPoolRelease: rotation frees every pooled buffer after two rotations") { go_test_pool(false); }

// Go: 10 goroutines x 1e6 Put/Get, checking that no foreign value comes back. Here each get writes a
// thread-unique tag and checks it is still there before the return, so a buffer handed to two threads
// at once is caught. Sizes vary over three classes, every thread holds one buffer across iterations,
// and every 64th iteration a buffer moves to another thread through a mailbox, so private slots, rings,
// stealing and cross-thread returns all run concurrently. All threads start together.
TEST_CASE("go TestPoolStress: 10 threads get and put concurrently, contents are never shared") {
  constexpr int P = 10;
  const int N = 1'000'000 / bufpool::test::scale_down;
  pool p;
  std::atomic<long> bad{0};
  std::latch start(P);
  std::mutex mailbox_mu;
  std::vector<buffer> mailbox;
  std::vector<std::thread> threads;
  for (int t = 0; t < P; ++t)
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      buffer keep;
      for (int i = 0; i < N; ++i) {
        const std::size_t n = 256u << (i % 3);
        buffer b = p.get(n);
        const std::uint64_t tag = (std::uint64_t(t) << 32) | std::uint32_t(i);
        if (b.capacity() != n) bad.fetch_add(1);
        std::memcpy(b.data(), &tag, sizeof tag);
        std::memcpy(b.data() + n - sizeof tag, &tag, sizeof tag);
        std::uint64_t x = 0, y = 0;
        std::memcpy(&x, b.data(), sizeof x);
        std::memcpy(&y, b.data() + n - sizeof y, sizeof y);
        if (x != tag || y != tag) bad.fetch_add(1);
        if (i % 7 == 0) std::swap(keep, b);
        if (i % 64 == 0) {
          std::lock_guard lk(mailbox_mu);
          mailbox.push_back(std::move(b));
          if (mailbox.size() > 8) mailbox.erase(mailbox.begin());  // returned here, got elsewhere
        }
      }
    });
  for (auto& th : threads) th.join();
  mailbox.clear();
  CHECK(bad == 0);
  auto s = p.snapshot();
  bufpool::test::check_identities(s);
  CHECK(s.totals.outstanding == 0);
  CHECK(s.totals.gets == std::uint64_t(P) * std::uint64_t(N));
}
