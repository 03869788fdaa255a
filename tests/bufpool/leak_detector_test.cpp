// The sampled leak detector (pool_options::leaks): call stacks of sampled gets, pool.leaks() by site,
// one report per site at the pool's destruction, the sampling rate, and returns on other threads.
// The test binary is linked with ENABLE_EXPORTS (-rdynamic), so that the stacks carry function names.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

using bufpool::buffer;
using bufpool::error_kind;
using bufpool::error_report;
using bufpool::leak_detection;
using bufpool::leak_site;
using bufpool::pool;
using bufpool::pool_options;

// Two distinct places that take buffers, so that their sites differ. Not inlined, not static: the
// names must reach the stack and the dynamic symbol table.
[[gnu::noinline]] buffer leak_test_site_alpha(pool& p, std::size_t n) {
  buffer b = p.get(n);
  asm volatile("" ::: "memory");  // keep the frame: no tail call
  return b;
}
[[gnu::noinline]] buffer leak_test_site_beta(pool& p, std::size_t n) {
  buffer b = p.get(n);
  asm volatile("" ::: "memory");
  return b;
}

namespace {

pool_options tracked(leak_detection level, std::uint32_t every = 1) {
  pool_options o;
  o.leaks = level;
  o.leak_sample_every = every;
  return o;
}

bool stack_names(const leak_site& s, const std::string& fn) {
  for (const auto& f : s.stack)
    if (f.find(fn) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("leaks: off records nothing and keeps the inline fast path") {
  pool p;
  std::vector<buffer> held;
  for (int i = 0; i < 10; ++i) held.push_back(leak_test_site_alpha(p, 100));
  CHECK(p.leaks().empty());
  const auto s = p.snapshot();
  CHECK(std::string(s.leak_detection) == "off");
  CHECK(s.leak_tracked == 0);
  // The inline path served the hits: a buffer returned and taken again is a private hit.
  held.clear();
  buffer again = p.get(100);
  CHECK(p.snapshot().totals.hits_private == 1);
}

TEST_CASE("leaks: all records every get, leaks() groups what is still out by call stack") {
  pool p(tracked(leak_detection::all));
  std::vector<buffer> alpha, beta;
  for (int i = 0; i < 3; ++i) alpha.push_back(leak_test_site_alpha(p, 1000));
  beta.push_back(leak_test_site_beta(p, 70'000));  // oversize (above max_class): tracked the same way
  {
    buffer returned = leak_test_site_beta(p, 10);  // taken and returned: no leak
  }
  const auto sites = p.leaks();
  REQUIRE(sites.size() == 2);
  CHECK(sites[0].sampled == 3);  // the largest site first
  CHECK(sites[0].bytes == 3000);
  CHECK(sites[0].estimated == 3);
  CHECK(stack_names(sites[0], "leak_test_site_alpha"));
  CHECK_FALSE(stack_names(sites[0], "leak_test_site_beta"));
  CHECK(sites[1].sampled == 1);
  CHECK(sites[1].bytes == 70'000);
  CHECK(stack_names(sites[1], "leak_test_site_beta"));
  // The pool's own frames are left out: a site starts at the caller.
  for (const auto& f : sites[0].stack) CHECK(f.find("leak_tracker") == std::string::npos);
  CHECK(p.snapshot().leak_tracked == 4);
  // min_age: nothing taken 1 hour ago.
  CHECK(p.leaks(std::chrono::hours(1)).empty());
  // Returned, on another thread: the records go.
  std::thread([&] { alpha.clear(); }).join();
  const auto after = p.leaks();
  REQUIRE(after.size() == 1);
  CHECK(stack_names(after[0], "leak_test_site_beta"));
  beta.clear();
  CHECK(p.leaks().empty());
  CHECK(p.snapshot().leak_tracked == 0);
}

TEST_CASE("leaks: sampled records 1 get in N per thread, and estimates the whole from it") {
  pool p(tracked(leak_detection::sampled, 8));
  std::vector<buffer> held;
  // A fresh thread: its countdown starts at 0, so its gets 1, 9, 17, ... are sampled.
  std::thread([&] {
    for (int i = 0; i < 80; ++i) held.push_back(leak_test_site_alpha(p, 256));
  }).join();
  const auto sites = p.leaks();
  REQUIRE(sites.size() == 1);
  CHECK(sites[0].sampled == 10);
  CHECK(sites[0].estimated == 80);
  const auto s = p.snapshot();
  CHECK(std::string(s.leak_detection) == "sampled");
  CHECK(s.leak_sample_every == 8);
  CHECK(s.totals.outstanding == 80);
  held.clear();
  CHECK(p.leaks().empty());
  // The buffers went back to the pool and serve the next gets (pooling works with the detector on).
  buffer b = p.get(256);
  CHECK(p.snapshot().totals.misses == 80);
}

TEST_CASE("leaks: a pool of rate 1 records every get even after a pool of a slower rate on the same thread") {
  pool slow(tracked(leak_detection::sampled, 1000));
  buffer s = slow.get(64);  // this thread's countdown now stands near 1000
  pool all(tracked(leak_detection::all));
  std::vector<buffer> held;
  for (int i = 0; i < 3; ++i) held.push_back(leak_test_site_alpha(all, 64));
  REQUIRE(all.leaks().size() == 1);
  CHECK(all.leaks()[0].sampled == 3);
}

TEST_CASE("leaks: the pool's destruction reports each site once, with its stack, and returns after it are safe") {
  std::vector<error_report> reports;
  pool_options o = tracked(leak_detection::all);
  o.debug = false;  // debug mode adds its own count of what is out (pool_debug_test.cpp)
  o.on_error = [&](const error_report& r) { reports.push_back(r); };
  std::vector<buffer> out;
  {
    pool p(o);
    for (int i = 0; i < 5; ++i) out.push_back(leak_test_site_alpha(p, 512));
    out.push_back(leak_test_site_beta(p, 512));
    buffer fine = leak_test_site_beta(p, 512);
  }
  REQUIRE(reports.size() == 2);
  CHECK(reports[0].kind == error_kind::leak_at_destroy);
  CHECK(reports[0].count == 5);
  CHECK(reports[0].message.find("5 sampled buffer(s)") != std::string::npos);
  CHECK(reports[0].message.find("leak_test_site_alpha") != std::string::npos);
  CHECK(reports[1].count == 1);
  CHECK(reports[1].message.find("leak_test_site_beta") != std::string::npos);
  out.clear();  // after the pool: each frees its memory (ASan sees no leak, no use after free)
  CHECK(reports.size() == 2);
}

TEST_CASE("leaks: gets and returns on many threads at once keep the table exact") {
  pool p(tracked(leak_detection::sampled, 3));
  constexpr int threads = 4, rounds = 2000;
  std::vector<std::thread> ts;
  std::vector<std::vector<buffer>> kept(threads);
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::vector<buffer> mine;
      for (int i = 0; i < rounds; ++i) {
        mine.push_back(leak_test_site_alpha(p, 64u << (i % 6)));
        if (mine.size() > 16) mine.erase(mine.begin());  // returned out of order
        if (i % 500 == 0) (void)p.leaks();               // readers beside the writers
      }
      kept[static_cast<std::size_t>(t)] = std::move(mine);  // 16 still out per thread
    });
  for (auto& t : ts) t.join();
  std::size_t sampled_out = 0;
  for (const auto& s : p.leaks()) sampled_out += s.sampled;
  CHECK(sampled_out == p.snapshot().leak_tracked);
  CHECK(sampled_out <= threads * 16);
  // The 16 kept per thread were taken consecutively: 1 in 3 of them sampled, 5 or 6.
  CHECK(sampled_out >= threads * 5);
  kept.clear();
  CHECK(p.leaks().empty());
  CHECK(p.snapshot().leak_tracked == 0);
}

TEST_CASE("leaks: leak_sample_every 0 is refused with the field named") {
  pool_options o;
  o.leaks = leak_detection::sampled;
  o.leak_sample_every = 0;
  CHECK_THROWS_WITH_AS(pool{o}, doctest::Contains("pool_options.leak_sample_every = 0"), std::invalid_argument);
}
