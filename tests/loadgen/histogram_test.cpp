// The latency histogram: accuracy within 3 significant digits on known distributions, exact merging,
// exact encoding, bounded memory.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <doctest/doctest.h>

#include "histogram.hpp"

using bufpool::loadgen::histogram;

namespace {
// The exact value at percentile p of sorted data (the same rank rule as histogram::percentile).
double exact_percentile(const std::vector<std::int64_t>& sorted, double p) {
  const auto rank = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size()))));
  return static_cast<double>(sorted[rank - 1]);
}

void check_accuracy(std::vector<std::int64_t> values) {
  histogram h;
  for (auto v : values) h.record(v);
  std::sort(values.begin(), values.end());
  for (double p : {1.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    CAPTURE(p);
    const double exact = exact_percentile(values, p);
    const double got = h.percentile(p);
    CHECK(got >= exact);                    // reported as the bucket's highest equivalent value
    CHECK(got <= exact * 1.001 + 1.0);      // within 3 significant digits (and 1 us at the bottom)
  }
  CHECK(h.max() == values.back());
  CHECK(h.min() == values.front());
  CHECK(h.count() == values.size());
}
}  // namespace

TEST_CASE("histogram: bucket arithmetic keeps every value within 0.1 %") {
  for (std::int64_t v : {1LL, 2047LL, 2048LL, 2049LL, 4095LL, 4096LL, 123456LL, 1000000LL, 59999999LL}) {
    CAPTURE(v);
    const auto lo = histogram::lowest_equivalent(v);
    const auto hi = histogram::highest_equivalent(v);
    CHECK(lo <= v);
    CHECK(hi >= v);
    CHECK(static_cast<double>(hi - lo) <= static_cast<double>(v) / 1000.0 + 1.0);
    CHECK(histogram::value_at(histogram::index_of(v)) == lo);
  }
}

TEST_CASE("histogram: uniform 1 us .. 1 s") {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<std::int64_t> d(1, 1'000'000);
  std::vector<std::int64_t> v(200000);
  for (auto& x : v) x = d(rng);
  check_accuracy(v);
}

TEST_CASE("histogram: exponential latencies with a long tail") {
  std::mt19937_64 rng(2);
  std::exponential_distribution<double> d(1.0 / 500.0);
  std::vector<std::int64_t> v(200000);
  for (auto& x : v) x = 1 + static_cast<std::int64_t>(d(rng));
  v.push_back(45'000'000);  // one 45 s outlier
  check_accuracy(v);
}

TEST_CASE("histogram: merging equals recording everything in one") {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> d(6.0, 1.5);
  histogram a, b, all;
  for (int i = 0; i < 100000; ++i) {
    const auto v = 1 + static_cast<std::int64_t>(d(rng));
    (i % 3 ? a : b).record(v);
    all.record(v);
  }
  histogram merged;
  merged.merge(a);
  merged.merge(b);
  CHECK(merged.encode() == all.encode());
  for (double p : {50.0, 99.0, 99.99}) CHECK(merged.percentile(p) == all.percentile(p));
}

TEST_CASE("histogram: encode and decode are exact") {
  histogram h;
  for (std::int64_t v = 1; v < 5'000'000; v = v * 3 / 2 + 1) h.record(v, static_cast<std::uint64_t>(v % 7 + 1));
  const auto back = histogram::decode(h.encode());
  CHECK(back.encode() == h.encode());
  CHECK(back.count() == h.count());
  CHECK(back.percentile(99.9) == h.percentile(99.9));
}

TEST_CASE("histogram: values above the highest are clamped and counted, and an empty one gives NaN") {
  histogram h(100'000);
  h.record(5);
  h.record(10'000'000);
  CHECK(h.clamped() == 1);
  CHECK(h.max() == 100'000);
  histogram empty;
  CHECK(std::isnan(empty.percentile(50)));
}
