// Tests of bufpool::chunk_resource: block sizes, chunk reuse, memory that goes back to the operating
// system (mapped bytes and resident pages), large blocks, alignment, use by a pool, and concurrent use.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "test_support.hpp"

using bufpool::chunk_resource;

namespace {
// Resident pages of this process, in bytes (/proc/self/statm, second field).
std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  REQUIRE(f != nullptr);
  unsigned long size = 0, resident = 0;
  const int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  REQUIRE(n == 2);
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}
}  // namespace

TEST_CASE("chunk_resource: a pool's class + header requests waste at most 1/32 of their size") {
  CHECK(chunk_resource::block_size(1, 8) == 64);
  CHECK(chunk_resource::block_size(256 + 64, 64) == 320);
  CHECK(chunk_resource::block_size(4096 + 64, 64) == 4096 + 128);
  CHECK(chunk_resource::block_size(65536 + 64, 64) == 65536 + 2048);
  CHECK(chunk_resource::block_size(100, 4096) == 4096);
  for (std::size_t n = 1; n < 300000; n = n * 5 / 4 + 1) {
    const std::size_t b = chunk_resource::block_size(n, 64);
    CHECK(b >= n);
    CHECK(b % 64 == 0);
    CHECK(static_cast<double>(b - n) <= std::max(64.0, static_cast<double>(n) / 32 + 64));
  }
}

TEST_CASE("chunk_resource: blocks are distinct, writable and aligned, and all returned leave the kept empty chunks") {
  chunk_resource r;
  std::vector<void*> blocks;
  for (int i = 0; i < 1000; ++i) {
    void* p = r.allocate(4160, 64);
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    std::memset(p, i & 0xff, 4160);
    blocks.push_back(p);
  }
  for (int i = 0; i < 1000; ++i) CHECK(static_cast<unsigned char*>(blocks[i])[4159] == (i & 0xff));
  auto s = r.stats();
  CHECK(s.in_use_bytes == 1000 * chunk_resource::block_size(4160, 64));
  CHECK(s.mapped_bytes >= s.in_use_bytes);
  CHECK(s.mapped_bytes <= s.in_use_bytes + s.in_use_bytes / 16 + 64 * 1024);  // tail of each chunk + one partial
  for (void* p : blocks) r.deallocate(p, 4160, 64);
  s = r.stats();
  CHECK(s.in_use_bytes == 0);
  CHECK(s.chunks == chunk_resource::max_empty_chunks);  // the empty chunks kept for this bin
  CHECK(s.mapped_bytes <= chunk_resource::max_empty_chunks * (64 * 1024 + 4096));
  // Taking and returning one block in a loop reuses a kept chunk: no map per round.
  const auto maps = s.maps;
  for (int i = 0; i < 100; ++i) r.deallocate(r.allocate(4160, 64), 4160, 64);
  CHECK(r.stats().maps == maps);
  // release_unused() gives the kept chunks back.
  CHECK(r.release_unused() == s.mapped_bytes);
  CHECK(r.stats().chunks == 0);
  CHECK(r.stats().mapped_bytes == 0);
}

TEST_CASE("chunk_resource: blocks freed and taken again in rounds (a starved pool) map nothing after the first round") {
  chunk_resource r;
  std::vector<void*> keep, round;
  for (int i = 0; i < 67; ++i) keep.push_back(r.allocate(4160, 64));
  for (int i = 0; i < 33; ++i) round.push_back(r.allocate(4160, 64));
  for (void* p : round) r.deallocate(p, 4160, 64);
  const auto maps = r.stats().maps;
  for (int k = 0; k < 50; ++k) {
    for (auto& p : round) p = r.allocate(4160, 64);
    for (void* p : round) r.deallocate(p, 4160, 64);
  }
  CHECK(r.stats().maps == maps);
  CHECK(r.stats().unmaps == 0);
  for (void* p : keep) r.deallocate(p, 4160, 64);
  r.release_unused();
  CHECK(r.stats().mapped_bytes == 0);
  CHECK(r.stats().unmaps == r.stats().maps);
}

TEST_CASE("chunk_resource: freed memory leaves the process (resident bytes drop), unlike a heap that keeps it") {
  chunk_resource r;
  const std::size_t n = 16384;  // 16384 x 4 KiB = 64 MiB
  std::vector<void*> blocks(n);
  const std::size_t before = resident_bytes();
  for (auto& p : blocks) {
    p = r.allocate(4096 + 64, 64);
    std::memset(p, 1, 4096 + 64);  // make every page resident
  }
  const std::size_t peak = resident_bytes();
  for (void* p : blocks) r.deallocate(p, 4096 + 64, 64);
  const std::size_t after = resident_bytes();
  INFO("resident before " << before << ", at peak " << peak << ", after " << after);
  CHECK(r.stats().mapped_bytes < (std::size_t{1} << 20));
#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow pages for the unmapped chunks stay resident
  CHECK(peak - before >= std::size_t{60} << 20);
  CHECK(after < before + (std::size_t{4} << 20));
#endif
}

TEST_CASE("chunk_resource: a block still in use keeps only its own chunk") {
  chunk_resource r;
  std::vector<void*> blocks;
  for (int i = 0; i < 4096; ++i) blocks.push_back(r.allocate(320, 64));
  void* keep = blocks[1234];
  for (void* p : blocks)
    if (p != keep) r.deallocate(p, 320, 64);
  const auto s = r.stats();
  CHECK(s.chunks <= 1 + chunk_resource::max_empty_chunks);  // the kept block's chunk and the bin's empty ones
  CHECK(s.mapped_bytes <= (1 + chunk_resource::max_empty_chunks) * 64 * 1024);
  r.deallocate(keep, 320, 64);
  CHECK(r.stats().chunks <= chunk_resource::max_empty_chunks);
  r.release_unused();
  CHECK(r.stats().chunks == 0);
}

TEST_CASE("chunk_resource: requests over 1 MiB are mapped and unmapped one by one") {
  chunk_resource r;
  void* p = r.allocate(3 << 20, 64);
  std::memset(p, 7, 3 << 20);
  CHECK(r.stats().large_blocks == 1);
  CHECK(r.stats().mapped_bytes >= std::size_t{3} << 20);
  r.deallocate(p, 3 << 20, 64);
  CHECK(r.stats().large_blocks == 0);
  CHECK(r.stats().mapped_bytes == 0);
}

TEST_CASE("chunk_resource: impossible requests throw bad_alloc and change nothing") {
  chunk_resource r;
  volatile std::size_t shift = 63;  // not a constant: the compiler would reject the call outright
  CHECK_THROWS_AS((void)r.allocate(std::size_t{1} << shift, 64), std::bad_alloc);
  CHECK_THROWS_AS((void)r.allocate(64, 8192), std::bad_alloc);  // alignment beyond a page
  CHECK(r.stats().mapped_bytes == 0);
}

TEST_CASE("chunk_resource: a pool backed by it gives everything back within two rotations") {
  chunk_resource r;
  {
    bufpool::pool_options o;
    o.memory = &r;
    bufpool::pool p(o);
    {
      std::vector<bufpool::buffer> held;
      for (int i = 0; i < 2000; ++i) held.push_back(p.get(static_cast<std::size_t>(256 << (i % 9))));
    }
    CHECK(r.stats().in_use_bytes > 0);  // idle in the pool's tiers
    p.rotate();
    p.rotate();
    p.rotate_local();  // this thread's private slots age on its own next call
    p.rotate();
    p.rotate_local();
    CHECK(r.stats().in_use_bytes == 0);
    CHECK(r.stats().mapped_bytes <= r.stats().chunks * (std::size_t{1} << 20));
  }
  CHECK(r.stats().in_use_bytes == 0);
}

TEST_CASE("chunk_resource: threads allocating and freeing at once keep their blocks intact (run under TSan)") {
  chunk_resource r;
  const int rounds = 20000 / bufpool::test::scale_down;
  std::vector<std::thread> threads;
  std::atomic<int> corrupt{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &corrupt, t, rounds] {
      struct held {
        char* p;
        std::size_t n;
      };
      std::vector<held> mine;
      auto drop = [&](std::size_t i) {
        const held h = mine[i];
        if (h.p[0] != static_cast<char>(t) || h.p[h.n - 1] != static_cast<char>(t)) ++corrupt;
        r.deallocate(h.p, h.n, 64);
        mine[i] = mine.back();
        mine.pop_back();
      };
      for (int i = 0; i < rounds; ++i) {
        const std::size_t n = static_cast<std::size_t>(64) << ((i + t) % 8);
        char* p = static_cast<char*>(r.allocate(n, 64));
        p[0] = p[n - 1] = static_cast<char>(t);
        mine.push_back({p, n});
        if (mine.size() > 64) drop(static_cast<std::size_t>(i * 7) % mine.size());
      }
      while (!mine.empty()) drop(mine.size() - 1);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(corrupt == 0);
  CHECK(r.stats().in_use_bytes == 0);
}
