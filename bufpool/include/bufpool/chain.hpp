// bufpool::chain: pooled buffers written as one: a ConstBufferSequence of shared buffers, so that
// asio::async_write(socket, chain, ...) gathers them in one call (a frame's header and body, a batch of
// answers), with no copy. Buffers appended whole become shared (buffer::share, free); the same shared
// buffer may sit in many chains (fan-out). consume(n) drops what a partial write took.
#pragma once

#include <cstddef>
#include <vector>

#include "buffer.hpp"

namespace bufpool {

class chain {
public:
  using value_type = shared_buffer;
  using const_iterator = std::vector<shared_buffer>::const_iterator;

  chain() = default;
  /// Room for n pieces without reallocating.
  void reserve(std::size_t n) { parts_.reserve(n); }
  void append(buffer&& b) {
    if (b.size() > 0) parts_.push_back(std::move(b).share());
  }
  void append(shared_buffer s) {
    if (s.size() > 0) parts_.push_back(std::move(s));
  }
  const_iterator begin() const noexcept { return parts_.begin(); }
  const_iterator end() const noexcept { return parts_.end(); }
  /// Pieces.
  std::size_t size() const noexcept { return parts_.size(); }
  bool empty() const noexcept { return parts_.empty(); }
  /// Bytes in all pieces.
  std::size_t bytes() const noexcept {
    std::size_t n = 0;
    for (const auto& p : parts_) n += p.size();
    return n;
  }
  /// Drops the first n bytes (whole pieces go back to their pool, a piece cut in the middle stays as a
  /// slice of itself).
  void consume(std::size_t n) {
    std::size_t whole = 0;
    while (whole < parts_.size() && n >= parts_[whole].size()) n -= parts_[whole++].size();
    parts_.erase(parts_.begin(), parts_.begin() + static_cast<std::ptrdiff_t>(whole));
    if (n > 0 && !parts_.empty()) parts_.front() = parts_.front().slice(n, parts_.front().size() - n);
  }
  /// Every piece dropped (capacity kept).
  void clear() noexcept { parts_.clear(); }

private:
  std::vector<shared_buffer> parts_;
};

}  // namespace bufpool
