// Tests of detail::spmc_ring, including the port of Go's TestPoolDequeue (1 producer, 9 consumers,
// indexes starting 500 below 2^32 so that they wrap; every value must arrive exactly once).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/detail/spmc_ring.hpp>

#include "test_support.hpp"

using bufpool::detail::spmc_ring;

TEST_CASE("spmc_ring: head is LIFO, tail is FIFO, full is reported") {
  int v[5] = {0, 1, 2, 3, 4};
  spmc_ring<int> r(4);
  CHECK(r.capacity() == 4);
  CHECK(r.pop_head() == nullptr);
  CHECK(r.pop_tail() == nullptr);
  for (int i = 0; i < 4; ++i) CHECK(r.push_head(&v[i]));
  CHECK_FALSE(r.push_head(&v[4]));
  CHECK(r.size() == 4);
  CHECK(r.pop_tail() == &v[0]);
  CHECK(r.pop_head() == &v[3]);
  CHECK(r.pop_tail() == &v[1]);
  CHECK(r.pop_head() == &v[2]);
  CHECK(r.pop_head() == nullptr);
  CHECK(r.size() == 0);
}

TEST_CASE("spmc_ring: rejects capacities that are not a power of two") {
  CHECK_THROWS_AS(spmc_ring<int>(0), std::invalid_argument);
  CHECK_THROWS_AS(spmc_ring<int>(12), std::invalid_argument);
}

TEST_CASE("spmc_ring: bulk pops take at most half, oldest first") {
  int v[8] = {};
  int* out[8] = {};
  spmc_ring<int> r(8, UINT32_MAX - 3);
  CHECK(r.pop_tail_bulk(out, 8) == 0);
  for (int i = 0; i < 7; ++i) REQUIRE(r.push_head(&v[i]));
  CHECK(r.pop_tail_bulk(out, 8) == 4);  // half of 7, rounded up
  for (int i = 0; i < 4; ++i) CHECK(out[i] == &v[i]);
  CHECK(r.pop_tail_bulk(out, 1) == 1);
  CHECK(out[0] == &v[4]);
  CHECK(r.pop_tail_bulk(out, 8) == 1);
  CHECK(out[0] == &v[5]);
  CHECK(r.pop_tail_bulk(out, 8) == 1);  // a single item is taken whole
  CHECK(out[0] == &v[6]);
  CHECK(r.size() == 0);
  CHECK(r.push_head(&v[7]));  // every slot was handed back
}

TEST_CASE("spmc_ring: indexes wrap past 2^32 on one thread") {
  std::vector<int> v(64);
  spmc_ring<int> r(8, UINT32_MAX - 2);
  int next_in = 0, next_out = 0;
  for (int round = 0; round < 20; ++round) {
    for (int k = 0; k < 5; ++k) REQUIRE(r.push_head(&v[static_cast<std::size_t>(next_in++ % 64)]));
    for (int k = 0; k < 5; ++k) REQUIRE(r.pop_tail() == &v[static_cast<std::size_t>(next_out++ % 64)]);
    CHECK(r.size() == 0);
  }
}

// Go: testPoolDequeue(NewPoolDequeue(16)).
TEST_CASE("spmc_ring: every value arrives exactly once, 1 producer and 9 consumers, wrapping indexes") {
  constexpr int P = 10;
  const int N = 2'000'000 / bufpool::test::scale_down;
  REQUIRE((N - 1) % 10 != 0);  // N-1 leaves by the tail, so all older values were delivered first
  // The producer writes each value just before pushing it, so a consumer that reads it without the
  // push's release/acquire pairing is a data race that ThreadSanitizer reports.
  std::vector<int> values(static_cast<std::size_t>(N));
  std::vector<std::atomic<int>> have(static_cast<std::size_t>(N));
  spmc_ring<int> ring(16, static_cast<std::uint32_t>((std::uint64_t{1} << 32) - 500));
  std::atomic<bool> stop{false};
  auto record = [&](int* v) {
    have[static_cast<std::size_t>(*v)].fetch_add(1, std::memory_order_relaxed);
    if (*v == N - 1) stop.store(true, std::memory_order_release);
  };

  // Even consumers pop one at a time (Go's test); odd ones take batches with pop_tail_bulk.
  std::vector<std::thread> consumers;
  for (int i = 0; i < P - 1; ++i)
    consumers.emplace_back([&, bulk = i % 2 == 1] {
      int fail = 0;
      int* batch[5];
      while (!stop.load(std::memory_order_acquire)) {
        std::uint32_t n = 0;
        if (bulk) {
          n = ring.pop_tail_bulk(batch, 5);
        } else if (int* v = ring.pop_tail()) {
          batch[0] = v;
          n = 1;
        }
        for (std::uint32_t k = 0; k < n; ++k) record(batch[k]);
        if (n > 0) {
          fail = 0;
        } else if (++fail % 100 == 0) {
          std::this_thread::yield();
        }
      }
    });

  long popped_head = 0;
  for (int j = 0; j < N; ++j) {
    values[static_cast<std::size_t>(j)] = j;
    while (!ring.push_head(&values[static_cast<std::size_t>(j)])) std::this_thread::yield();
    if (j % 10 == 0) {
      if (int* v = ring.pop_head()) {
        ++popped_head;
        record(v);
      }
    }
  }
  for (auto& t : consumers) t.join();

  int wrong = 0;
  for (int i = 0; i < N; ++i)
    if (have[static_cast<std::size_t>(i)].load() != 1) ++wrong;
  CHECK(wrong == 0);
  CHECK(popped_head > 0);
  CHECK(ring.size() == 0);
}

// The magazine's spill and refill: the producer pushes in batches (push_head_bulk) and takes batches
// back from the head (pop_head_bulk) while 4 consumers pop the tail one by one or in batches. Every
// value must arrive exactly once (run under ThreadSanitizer too: a value read without the release
// of its push is a reported race).
TEST_CASE("spmc_ring: bulk pushes and bulk head pops with concurrent stealers deliver each value once") {
  constexpr int P = 5;
  const int N = 1'000'000 / bufpool::test::scale_down;
  std::vector<int> values(static_cast<std::size_t>(N));
  std::vector<std::atomic<int>> have(static_cast<std::size_t>(N));
  spmc_ring<int> ring(32, static_cast<std::uint32_t>((std::uint64_t{1} << 32) - 300));
  std::atomic<bool> stop{false};
  auto record = [&](int* v) {
    have[static_cast<std::size_t>(*v)].fetch_add(1, std::memory_order_relaxed);
    if (*v == N - 1) stop.store(true, std::memory_order_release);
  };
  std::vector<std::thread> consumers;
  for (int i = 0; i < P - 1; ++i)
    consumers.emplace_back([&, bulk = i % 2 == 1] {
      int* batch[4];
      while (!stop.load(std::memory_order_acquire)) {
        std::uint32_t n = 0;
        if (bulk) {
          n = ring.pop_tail_bulk(batch, 4);
        } else if (int* v = ring.pop_tail()) {
          batch[0] = v;
          n = 1;
        }
        for (std::uint32_t k = 0; k < n; ++k) record(batch[k]);
        if (n == 0) std::this_thread::yield();
      }
    });
  long popped_head = 0;
  int* batch[8];
  for (int j = 0; j < N;) {
    const int want = std::min(1 + j % 8, N - j);
    for (int k = 0; k < want; ++k) {
      values[static_cast<std::size_t>(j + k)] = j + k;
      batch[k] = &values[static_cast<std::size_t>(j + k)];
    }
    const std::uint32_t in = ring.push_head_bulk(batch, static_cast<std::uint32_t>(want));
    j += static_cast<int>(in);
    if (in == 0) std::this_thread::yield();
    if (j % 7 == 0 && j < N - 16) {  // never take the last values back: they must leave by the tail
      const std::uint32_t out = ring.pop_head_bulk(batch, 3);
      for (std::uint32_t k = 0; k < out; ++k) record(batch[k]);
      popped_head += out;
    }
  }
  for (auto& t : consumers) t.join();
  int wrong = 0;
  for (int i = 0; i < N; ++i)
    if (have[static_cast<std::size_t>(i)].load() != 1) ++wrong;
  CHECK(wrong == 0);
  CHECK(popped_head > 0);
  CHECK(ring.size() == 0);
}
