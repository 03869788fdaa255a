// Debug mode: poison on return, double return, wrong pool, foreign pointers, leaks at destruction.
// Each test turns debug on in its options, so these run in every preset (the debug and asan presets
// turn it on by default as well).
#include <cstring>
#include <memory>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "test_support.hpp"

using bufpool::buffer;
using bufpool::error_kind;
using bufpool::error_report;
using bufpool::pool;
using bufpool::pool_options;

namespace {
struct recorder {
  std::vector<error_report> reports;
  pool_options options(bool debug = true) {
    pool_options o;
    o.debug = debug;
    o.on_error = [this](const error_report& r) { reports.push_back(r); };
    return o;
  }
};
}  // namespace

TEST_CASE("debug: a returned buffer is poisoned") {
  recorder rec;
  pool p(rec.options());
  buffer b = p.get(512);
  std::memset(b.data(), 'x', b.size());
  std::byte* raw = b.release();
  p.put_raw(raw);  // the pool now owns it (private slot): touching it is a bug the poison exposes
#ifdef BUFPOOL_ASAN
  CHECK(__asan_address_is_poisoned(raw) != 0);
  CHECK(__asan_address_is_poisoned(raw + 511) != 0);
#else
  for (std::size_t i = 0; i < 512; i += 64) CHECK(std::to_integer<unsigned>(raw[i]) == bufpool::detail::poison_byte);
#endif
  buffer again = p.get(512);  // unpoisoned on the way out
  CHECK(again.data() == raw);
  std::memset(again.data(), 'y', again.size());
  CHECK(rec.reports.empty());
}

TEST_CASE("debug: a double return is reported and does not pool the buffer twice") {
  recorder rec;
  pool p(rec.options());
  buffer b = p.get(1000);
  std::byte* raw = b.release();
  p.put_raw(raw);
  p.put_raw(raw);
  REQUIRE(rec.reports.size() == 1);
  CHECK(rec.reports[0].kind == error_kind::double_return);
  CHECK(rec.reports[0].data == raw);
  auto s = p.snapshot();
  CHECK(s.totals.puts == 1);
  CHECK(s.totals.pooled == 1);
  buffer x = p.get(1000), y = p.get(1000);
  CHECK(x.data() != y.data());  // the same memory is never handed out twice
}

TEST_CASE("debug: a buffer returned to the wrong pool is reported and goes back to its own pool") {
  recorder rec;
  pool a(rec.options()), b(rec.options());
  buffer x = a.get(300);
  std::byte* raw = x.data();
  b.put(std::move(x));
  REQUIRE(rec.reports.size() == 1);
  CHECK(rec.reports[0].kind == error_kind::wrong_pool);
  CHECK(a.snapshot().totals.puts == 1);
  CHECK(a.snapshot().totals.pooled == 1);
  CHECK(b.snapshot().totals.puts == 0);
  buffer y = a.get(300);
  CHECK(y.data() == raw);

  // put_raw takes the same route.
  std::byte* r2 = a.get(300).release();
  b.put_raw(r2);
  CHECK(rec.reports.size() == 2);
  CHECK(rec.reports[1].kind == error_kind::wrong_pool);
}

TEST_CASE("debug: put_raw of memory that is no bufpool buffer is reported and left alone") {
  recorder rec;
  pool p(rec.options());
  alignas(64) std::byte not_ours[256] = {};
  p.put_raw(not_ours + 64);
  REQUIRE(rec.reports.size() == 1);
  CHECK(rec.reports[0].kind == error_kind::foreign_pointer);
  CHECK(p.snapshot().totals.puts == 0);
}

TEST_CASE("debug: destroying a pool with buffers handed out reports the count") {
  recorder rec;
  buffer kept;
  {
    pool p(rec.options());
    kept = p.get(700);
    buffer returned = p.get(700);
  }
  REQUIRE(rec.reports.size() == 1);
  CHECK(rec.reports[0].kind == error_kind::leak_at_destroy);
  CHECK(rec.reports[0].count == 1);
  // The pool is gone: the buffer frees its memory when it is returned (lifetime_test.cpp has more).
  kept.reset();
  CHECK(rec.reports.size() == 1);
}

TEST_CASE("debug: off means no checks and no reports") {
  recorder rec;
  pool p(rec.options(false));
  buffer b = p.get(512);
  std::memset(b.data(), 'z', 512);
  std::byte* raw = b.release();
  p.put_raw(raw);
  buffer again = p.get(512);
  CHECK(std::to_integer<char>(again.data()[0]) == 'z');  // not poisoned
  CHECK(rec.reports.empty());
}
