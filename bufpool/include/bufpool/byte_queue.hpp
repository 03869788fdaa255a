// bufpool::byte_queue: bytes in a chain of pooled blocks, for Asio's dynamic-buffer algorithms
// (async_read_until, async_read, read_until with a regex). Two faces, as Asio asks:
//  - the queue itself is a DynamicBuffer_v1 (an owning object: prepare/commit/consume/data; passed as
//    an lvalue, asio::async_read_until(socket, queue, "\r\n", ...) keeps a reference to it; Beast's
//    algorithms take it the same way when the library is built with Boost.Asio);
//  - bufpool::dynamic_buffer(queue) is a DynamicBuffer_v2 (a cheap copyable handle: data(pos, n),
//    grow, shrink, consume), for the algorithms that take v2 by value.
// Growing adds a block of block_bytes (from the pool) and never copies what was read; consume returns
// blocks it emptied at once, and an empty queue holds no block (an idle connection holds nothing).
// max_size is honoured (prepare/grow past it throw std::length_error, which Asio's read_until turns
// into not_found). The sequences data() and prepare() hand out live in the queue (no allocation once
// the queue has seen its largest span of blocks) and stay valid until the queue changes.
// front() views the first block's readable bytes; linearize() makes all of them contiguous.
#pragma once

#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "pool.hpp"

namespace bufpool {

/// A sequence of Asio buffers held by a byte_queue (a ConstBufferSequence or MutableBufferSequence).
template <class Buffer>
class buffer_span {
public:
  using value_type = Buffer;
  using const_iterator = const Buffer*;
  buffer_span() noexcept = default;
  buffer_span(const Buffer* b, std::size_t n) noexcept : b_(b), n_(n) {}
  const_iterator begin() const noexcept { return b_; }
  const_iterator end() const noexcept { return b_ + n_; }
  std::size_t size() const noexcept { return n_; }

private:
  const Buffer* b_ = nullptr;
  std::size_t n_ = 0;
};

class byte_queue_view;

class byte_queue {
public:
  using const_buffers_type = buffer_span<net::const_buffer>;
  using mutable_buffers_type = buffer_span<net::mutable_buffer>;

  explicit byte_queue(pool& p, std::size_t block_bytes = 4096,
                      std::size_t max_size = std::numeric_limits<std::size_t>::max())
      : pool_(&p), block_(block_bytes == 0 ? 1 : block_bytes), max_(max_size) {}
  byte_queue(byte_queue&&) noexcept = default;
  byte_queue& operator=(byte_queue&&) noexcept = default;
  byte_queue(const byte_queue&) = delete;
  byte_queue& operator=(const byte_queue&) = delete;

  // ---- DynamicBuffer_v1 ----
  /// Readable bytes.
  std::size_t size() const noexcept { return size_; }
  std::size_t max_size() const noexcept { return max_; }
  /// Bytes the blocks held now can take (readable and writable) without another block.
  std::size_t capacity() const noexcept { return room_ - head_; }
  /// The readable bytes, as a ConstBufferSequence (valid until the queue changes).
  const_buffers_type data() const { return span_of(cbufs_, 0, size_); }
  /// n writable bytes after the readable ones (blocks added as needed); commit() makes them readable.
  mutable_buffers_type prepare(std::size_t n) {
    if (n > max_ - size_) throw std::length_error("bufpool::byte_queue::prepare: beyond max_size");
    reserve(size_ + n);
    prepared_ = n;
    return span_of(mbufs_, size_, n);
  }
  /// The first n prepared bytes become readable.
  void commit(std::size_t n) noexcept {
    size_ += std::min(n, prepared_);
    prepared_ = 0;
  }
  /// Removes n readable bytes from the front; blocks emptied go back to the pool at once.
  void consume(std::size_t n) noexcept {
    n = std::min(n, size_);
    head_ += n;
    size_ -= n;
    if (size_ == 0 && prepared_ == 0) {  // nothing readable: hold nothing
      clear();
      return;
    }
    std::size_t drop = 0;
    while (drop + 1 < blocks_.size() && head_ >= blocks_[drop].capacity()) {
      head_ -= blocks_[drop].capacity();
      room_ -= blocks_[drop].capacity();
      ++drop;
    }
    if (drop > 0) blocks_.erase(blocks_.begin(), blocks_.begin() + static_cast<std::ptrdiff_t>(drop));
  }

  // ---- contiguous views ----
  /// The readable bytes in the first block (all of them when they fit there).
  std::string_view front() const noexcept {
    if (size_ == 0) return {};
    const buffer& b = blocks_.front();
    return {b.chars() + head_, std::min(size_, b.capacity() - head_)};
  }
  /// Makes the readable bytes contiguous (one new pooled buffer when they span blocks) and views them.
  std::string_view linearize() {
    if (size_ == 0 || front().size() == size_) return front();
    buffer whole = pool_->get(size_);
    std::size_t at = 0;
    for (const auto& b : data()) {
      std::memcpy(whole.chars() + at, b.data(), b.size());
      at += b.size();
    }
    const std::size_t n = size_;
    clear();
    room_ = whole.capacity();
    size_ = n;
    blocks_.push_back(std::move(whole));
    return front();
  }
  /// Blocks held now.
  std::size_t blocks() const noexcept { return blocks_.size(); }
  /// Every block back to the pool.
  void clear() noexcept {
    blocks_.clear();
    head_ = size_ = prepared_ = room_ = 0;
  }

private:
  friend class byte_queue_view;

  // Blocks until `total` bytes from head_ fit.
  void reserve(std::size_t total) {
    while (room_ - head_ < total) {
      buffer b = pool_->get(block_);
      room_ += b.capacity();
      blocks_.push_back(std::move(b));
    }
  }
  // The bytes [pos, pos + n) from head_, as a buffer sequence in `out` (kept between calls).
  template <class Buffer>
  buffer_span<Buffer> span_of(std::vector<Buffer>& out, std::size_t pos, std::size_t n) const {
    out.clear();
    std::size_t skip = head_ + pos;
    for (std::size_t i = 0; i < blocks_.size() && n > 0; ++i) {
      const std::size_t cap = blocks_[i].capacity();
      if (skip >= cap) {
        skip -= cap;
        continue;
      }
      const std::size_t take = std::min(cap - skip, n);
      out.emplace_back(blocks_[i].data() + skip, take);
      n -= take;
      skip = 0;
    }
    return {out.data(), out.size()};
  }

  pool* pool_;
  std::size_t block_;
  std::size_t max_;
  std::vector<buffer> blocks_;
  std::size_t head_ = 0;      // consumed bytes of the first block
  std::size_t size_ = 0;      // readable bytes
  std::size_t prepared_ = 0;  // bytes prepare() handed out beyond them
  std::size_t room_ = 0;      // the blocks' capacities added up
  mutable std::vector<net::const_buffer> cbufs_;
  mutable std::vector<net::mutable_buffer> mbufs_;
};

/// A DynamicBuffer_v2 over a byte_queue: a copyable handle (the queue must outlive it), for the Asio
/// algorithms that take v2 by value: asio::async_read_until(socket, bufpool::dynamic_buffer(q), ...).
class byte_queue_view {
public:
  using const_buffers_type = byte_queue::const_buffers_type;
  using mutable_buffers_type = byte_queue::mutable_buffers_type;

  explicit byte_queue_view(byte_queue& q) noexcept : q_(&q) {}
  std::size_t size() const noexcept { return q_->size_; }
  std::size_t max_size() const noexcept { return q_->max_; }
  /// What the blocks held take, but never less than the readable bytes plus a block, and plus as many
  /// again as are readable (up to 64 KiB): Asio's read algorithms size each read as capacity() - size()
  /// (at least 512 bytes), and a queue that holds no block while empty would otherwise read a long
  /// line 512 bytes at a time. So reads grow geometrically with the unfinished line, as a string's do.
  std::size_t capacity() const noexcept {
    const std::size_t ahead = std::max(q_->block_, std::min<std::size_t>(q_->size_, 65536));
    return std::max(q_->capacity(), q_->size_ + ahead);
  }
  const_buffers_type data(std::size_t pos, std::size_t n) const {
    pos = std::min(pos, q_->size_);
    return q_->span_of(q_->cbufs_, pos, std::min(n, q_->size_ - pos));
  }
  mutable_buffers_type data(std::size_t pos, std::size_t n) {
    pos = std::min(pos, q_->size_);
    return q_->span_of(q_->mbufs_, pos, std::min(n, q_->size_ - pos));
  }
  /// n more readable bytes at the end (their contents unspecified until written through data()).
  void grow(std::size_t n) {
    if (n > q_->max_ - q_->size_) throw std::length_error("bufpool::dynamic_buffer::grow: beyond max_size");
    q_->reserve(q_->size_ + n);
    q_->size_ += n;
  }
  /// Removes n bytes from the end.
  void shrink(std::size_t n) noexcept {
    q_->size_ -= std::min(n, q_->size_);
    if (q_->size_ == 0) q_->clear();
  }
  void consume(std::size_t n) noexcept { q_->consume(n); }

private:
  byte_queue* q_;
};

/// The DynamicBuffer_v2 face of a queue.
inline byte_queue_view dynamic_buffer(byte_queue& q) noexcept { return byte_queue_view(q); }

}  // namespace bufpool
