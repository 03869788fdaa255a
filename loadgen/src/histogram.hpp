// histogram: a log-linear latency histogram in the manner of HdrHistogram, written small for this
// project (Debian ships no C/C++ HdrHistogram). Values are integers (microseconds here) from 1 to a
// highest trackable value, kept to 3 significant decimal digits: every recorded value v is counted in a
// bucket whose width is at most v / 1000 (relative error <= 0.1 %), so the memory is fixed (about
// 17,400 counters for 1 us..60 s) whatever the run length. Two histograms with the same bounds merge
// exactly (counts are added), which is how thread and machine reports combine.
//
// Layout: bucket 0 holds 2048 unit-wide sub-buckets [0, 2048); bucket b >= 1 holds 1024 sub-buckets of
// width 2^b covering [1024 << b, 2048 << b). Index = (b + 1) * 1024 + sub - 1024.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

namespace bufpool::loadgen {

class histogram {
public:
  static constexpr std::uint32_t half_magnitude = 10;  // 1024 sub-buckets per half: 3 significant digits
  static constexpr std::int64_t half_count = std::int64_t{1} << half_magnitude;
  static constexpr std::int64_t sub_count = half_count * 2;

  /// Tracks values in [1, highest]; larger values are counted at `highest` (and counted as clamped).
  explicit histogram(std::int64_t highest = 60'000'000) : highest_(highest) {
    if (highest < sub_count) throw std::invalid_argument("histogram: highest must be >= 2048");
    std::int64_t buckets = 1;
    while ((sub_count << (buckets - 1)) <= highest) ++buckets;
    counts_.assign(static_cast<std::size_t>((buckets + 1) * half_count), 0);
  }

  void record(std::int64_t v, std::uint64_t n = 1) noexcept {
    if (v < 0) v = 0;
    if (v > highest_) {
      clamped_ += n;
      v = highest_;
    }
    counts_[index_of(v)] += n;
    total_ += n;
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }

  /// Adds every count of `o` (same bounds required).
  void merge(const histogram& o) {
    if (o.highest_ != highest_) throw std::invalid_argument("histogram: merging different bounds");
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    clamped_ += o.clamped_;
    min_ = std::min(min_, o.min_);
    max_ = std::max(max_, o.max_);
  }

  void reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = clamped_ = 0;
    min_ = std::numeric_limits<std::int64_t>::max();
    max_ = 0;
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t clamped() const noexcept { return clamped_; }
  std::int64_t min() const noexcept { return total_ ? min_ : 0; }
  std::int64_t max() const noexcept { return max_; }
  std::int64_t highest() const noexcept { return highest_; }

  /// The value at percentile p (0..100]: the highest value equivalent to the bucket that holds the
  /// ceil(p% of count)-th smallest value, but never above the exact maximum. NaN if empty.
  double percentile(double p) const noexcept {
    if (total_ == 0) return std::numeric_limits<double>::quiet_NaN();
    p = std::clamp(p, 0.0, 100.0);
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return static_cast<double>(std::min(highest_equivalent(value_at(i)), max_));
    }
    return static_cast<double>(max_);
  }

  double mean() const noexcept {
    if (total_ == 0) return std::numeric_limits<double>::quiet_NaN();
    double sum = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i)
      if (counts_[i] != 0) sum += static_cast<double>(counts_[i]) * static_cast<double>(median_equivalent(value_at(i)));
    return sum / static_cast<double>(total_);
  }

  /// Sparse, exact encoding: {"highest", "digits", "min", "max", "clamped", "counts": [[index, count], ...]}.
  nlohmann::json encode() const {
    nlohmann::json counts = nlohmann::json::array();
    for (std::size_t i = 0; i < counts_.size(); ++i)
      if (counts_[i] != 0) counts.push_back({i, counts_[i]});
    return {{"highest", highest_}, {"digits", 3},        {"unit", "us"},   {"min", min()},
            {"max", max_},         {"clamped", clamped_}, {"counts", counts}};
  }

  static histogram decode(const nlohmann::json& j) {
    histogram h(j.at("highest").get<std::int64_t>());
    for (const auto& pair : j.at("counts")) {
      const auto i = pair.at(0).get<std::size_t>();
      const auto n = pair.at(1).get<std::uint64_t>();
      if (i >= h.counts_.size()) throw std::invalid_argument("histogram: index out of range");
      h.counts_[i] += n;
      h.total_ += n;
    }
    h.clamped_ = j.value("clamped", std::uint64_t{0});
    h.max_ = j.at("max").get<std::int64_t>();
    h.min_ = h.total_ ? j.at("min").get<std::int64_t>() : std::numeric_limits<std::int64_t>::max();
    return h;
  }

  // Bucket arithmetic (public for tests).
  static std::size_t index_of(std::int64_t v) noexcept {
    const auto u = static_cast<std::uint64_t>(v);
    const int pow2ceiling = 64 - std::countl_zero(u | static_cast<std::uint64_t>(sub_count - 1));
    const int bucket = pow2ceiling - static_cast<int>(half_magnitude) - 1;
    const auto sub = static_cast<std::int64_t>(u >> bucket);
    return static_cast<std::size_t>(((bucket + 1) << half_magnitude) + sub - half_count);
  }
  static std::int64_t value_at(std::size_t index) noexcept {
    std::int64_t bucket = static_cast<std::int64_t>(index >> half_magnitude) - 1;
    std::int64_t sub = static_cast<std::int64_t>(index & (half_count - 1)) + half_count;
    if (bucket < 0) {
      sub -= half_count;
      bucket = 0;
    }
    return sub << bucket;
  }
  static std::int64_t bucket_width(std::int64_t v) noexcept {
    const auto u = static_cast<std::uint64_t>(v);
    const int pow2ceiling = 64 - std::countl_zero(u | static_cast<std::uint64_t>(sub_count - 1));
    return std::int64_t{1} << (pow2ceiling - static_cast<int>(half_magnitude) - 1);
  }
  static std::int64_t highest_equivalent(std::int64_t v) noexcept { return lowest_equivalent(v) + bucket_width(v) - 1; }
  static std::int64_t lowest_equivalent(std::int64_t v) noexcept { return value_at(index_of(v)); }
  static std::int64_t median_equivalent(std::int64_t v) noexcept { return lowest_equivalent(v) + bucket_width(v) / 2; }

  /// The counts by index (value_at(i) is the lowest value of index i).
  const std::vector<std::uint64_t>& counts() const noexcept { return counts_; }

private:
  std::int64_t highest_;
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t clamped_ = 0;
  std::int64_t min_ = std::numeric_limits<std::int64_t>::max();
  std::int64_t max_ = 0;
};

}  // namespace bufpool::loadgen
