// buffer: the move-only handle to a pooled byte buffer. Destroying it returns the buffer to the pool
// that handed it out, from whatever thread destroys it. Invariant: size() <= capacity(); a
// default-constructed or moved-from handle holds nothing.
#pragma once

#include <cstddef>
#include <span>
#include <stdexcept>
#include <utility>


#include "detail/asio.hpp"
#include "detail/buffer_header.hpp"

namespace bufpool {

class pool;
class pool_core;

/// A byte buffer from a bufpool::pool. Move-only; returns itself on destruction.
class buffer {
public:
  /// An empty handle that holds no buffer.
  buffer() noexcept = default;
  buffer(buffer&& other) noexcept : h_(std::exchange(other.h_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  buffer& operator=(buffer&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  /// The first byte; nullptr for an empty handle.
  std::byte* data() const noexcept { return h_ ? h_->data() : nullptr; }
  /// The bytes in use (what get() was asked for, or what resize() set).
  std::size_t size() const noexcept { return size_; }
  /// The bytes available: the request rounded up to its size class.
  std::size_t capacity() const noexcept { return h_ ? h_->capacity : 0; }
  /// Sets size() to `n`; throws std::length_error if `n > capacity()`. Contents are kept.
  void resize(std::size_t n) {
    if (n > capacity()) throw std::length_error("bufpool::buffer::resize beyond capacity");
    size_ = n;
  }
  /// True when the handle holds a buffer.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The bytes in use as a span.
  std::span<std::byte> span() const noexcept { return {data(), size_}; }
  /// The bytes in use as an Asio buffer, so that asio::buffer(b) and asio::buffer(b, n) work.
  operator net::mutable_buffer() const noexcept { return net::mutable_buffer(data(), size_); }

  /// Returns the buffer to its pool now; the handle becomes empty.
  void reset() noexcept;
  /// Detaches the buffer from the handle. The caller must return it later with pool::put_raw().
  std::byte* release() noexcept {
    size_ = 0;
    return h_ ? std::exchange(h_, nullptr)->data() : nullptr;
  }
  /// The pool that handed the buffer out; nullptr for an empty handle.
  pool* owner() const noexcept;

private:
  friend class pool_core;
  buffer(detail::buffer_header* h, std::size_t n) noexcept : h_(h), size_(n) {}

  detail::buffer_header* h_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace bufpool
