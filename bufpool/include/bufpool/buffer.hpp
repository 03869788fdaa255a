// buffer: the move-only handle to a pooled byte buffer. Destroying it returns the buffer to the pool
// that handed it out, from whatever thread destroys it. The handle's view starts headroom() bytes into
// the buffer's storage (0 unless pool::get(n, headroom), trim_front() or prepend() moved it), so a
// frame header can be written in front of a body already in place. Invariants: headroom() + size()
// <= headroom() + capacity() == the storage's size; a default-constructed or moved-from handle holds
// nothing.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <stdexcept>
#include <utility>


#include "detail/asio.hpp"
#include "detail/buffer_header.hpp"

namespace bufpool {

class pool;
class pool_core;
template <bool Atomic>
class basic_shared_buffer;
/// Holders on any threads (see basic_shared_buffer).
using shared_buffer = basic_shared_buffer<true>;
/// Holders on one thread only: no atomic operation per copy (see basic_shared_buffer).
using local_shared_buffer = basic_shared_buffer<false>;

/// A byte buffer from a bufpool::pool. Move-only; returns itself on destruction.
class buffer {
public:
  /// An empty handle that holds no buffer.
  buffer() noexcept = default;
  buffer(buffer&& other) noexcept
      : h_(std::exchange(other.h_, nullptr)), size_(std::exchange(other.size_, 0)), off_(std::exchange(other.off_, 0)) {}
  buffer& operator=(buffer&& other) noexcept {
    if (this != &other) {
      reset();
      h_ = std::exchange(other.h_, nullptr);
      size_ = std::exchange(other.size_, 0);
      off_ = std::exchange(other.off_, 0);
    }
    return *this;
  }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  ~buffer() { reset(); }

  /// The first byte in use; nullptr for an empty handle.
  std::byte* data() const noexcept { return h_ ? h_->data() + off_ : nullptr; }
  /// The bytes in use (what get() was asked for, or what resize() set).
  std::size_t size() const noexcept { return size_; }
  /// The bytes available from data() on: the request rounded up to its size class, less headroom().
  std::size_t capacity() const noexcept { return h_ ? h_->capacity - off_ : 0; }
  /// The bytes of storage in front of data(): what prepend() can still take.
  std::size_t headroom() const noexcept { return off_; }
  /// Sets size() to `n`; throws std::length_error if `n > capacity()`. Contents are kept.
  void resize(std::size_t n) {
    if (n > capacity()) throw std::length_error("bufpool::buffer::resize beyond capacity");
    size_ = n;
  }
  /// Grows the view by `k` bytes at the front (into the headroom) and returns them, to be filled: a
  /// frame header written in front of its body, no copy. Throws std::length_error if k > headroom().
  std::span<std::byte> prepend(std::size_t k) {
    if (k > off_) throw std::length_error("bufpool::buffer::prepend beyond the headroom");
    off_ -= k;
    size_ += k;
    return {data(), k};
  }
  /// Drops the first `k` bytes in use from the view (they become headroom). Throws std::length_error
  /// if k > size().
  void trim_front(std::size_t k) {
    if (k > size_) throw std::length_error("bufpool::buffer::trim_front beyond the bytes in use");
    off_ += k;
    size_ -= k;
  }
  /// True when the handle holds a buffer.
  explicit operator bool() const noexcept { return h_ != nullptr; }
  /// The bytes in use as a span.
  std::span<std::byte> span() const noexcept { return {data(), size_}; }
  /// The first byte as a char, for text protocols (no cast at every use).
  char* chars() const noexcept { return reinterpret_cast<char*>(data()); }
  /// The bytes in use as chars.
  std::span<char> as_chars() const noexcept { return {chars(), size_}; }
  /// The bytes in use as text (a view: valid while the buffer is held and not resized).
  std::string_view view() const noexcept { return {chars(), size_}; }
  /// The bytes in use as an Asio buffer, so that asio::buffer(b) and asio::buffer(b, n) work.
  operator net::mutable_buffer() const noexcept { return net::mutable_buffer(data(), size_); }

  /// Returns the buffer to its pool now; the handle becomes empty.
  void reset() noexcept;
  /// Detaches the buffer from the handle. The caller must return it later with pool::put_raw(). Returns
  /// the start of the storage, which is data() less headroom().
  std::byte* release() noexcept {
    size_ = 0;
    off_ = 0;
    return h_ ? std::exchange(h_, nullptr)->data() : nullptr;
  }
  /// The pool that handed the buffer out; nullptr for an empty handle.
  pool* owner() const noexcept;
  /// Makes the buffer shared and read-only: copies of the result share it, and the last one to go
  /// returns it to the pool. The count lives in the buffer's own header (no allocation, no bigger
  /// class). The handle becomes empty.
  shared_buffer share() && noexcept;
  /// The same for holders on one thread only (local_shared_buffer: no atomic operation per copy).
  local_shared_buffer share_local() && noexcept;

private:
  friend class pool_core;
  template <bool>
  friend class basic_shared_buffer;
  buffer(detail::buffer_header* h, std::size_t n) noexcept : h_(h), size_(n) {}

  detail::buffer_header* h_ = nullptr;
  std::size_t size_ = 0;
  std::size_t off_ = 0;  // headroom: where the view starts in the storage
};

/// A read-only pooled buffer with many holders (fan-out: one message written to many sockets). Copies
/// share the buffer through a reference count in its header; slice() gives a part of it that shares
/// the same count. The last holder to go returns the buffer to its pool (or frees it when the pool is
/// gone, as a buffer does). Two flavours, one type each:
/// - shared_buffer (Atomic = true): holders on any threads. Copy: one relaxed atomic increment;
///   release: one acquire-release decrement.
/// - local_shared_buffer (Atomic = false): every holder on one thread (an io_context per thread; Rust's
///   Rc beside Arc, Seastar's temporary_buffer::share): the count is changed with plain loads and
///   stores, so a copy and its release cost about what a pointer copy does (docs/benchmarks.md 13).
///   Holders on two threads at once are a data race; a message that crosses threads is a shared_buffer.
template <bool Atomic>
class basic_shared_buffer {
public:
  basic_shared_buffer() noexcept = default;
  basic_shared_buffer(const basic_shared_buffer& o) noexcept : h_(o.h_), data_(o.data_), size_(o.size_) {
    if (h_ != nullptr) add_ref(h_);
  }
  basic_shared_buffer(basic_shared_buffer&& o) noexcept
      : h_(std::exchange(o.h_, nullptr)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  basic_shared_buffer& operator=(const basic_shared_buffer& o) noexcept {
    if (this != &o) {
      basic_shared_buffer copy(o);
      swap(copy);
    }
    return *this;
  }
  basic_shared_buffer& operator=(basic_shared_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      swap(o);
    }
    return *this;
  }
  ~basic_shared_buffer() { reset(); }
  void swap(basic_shared_buffer& o) noexcept {
    std::swap(h_, o.h_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }

  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  explicit operator bool() const noexcept { return h_ != nullptr; }
  std::span<const std::byte> span() const noexcept { return {data_, size_}; }
  const char* chars() const noexcept { return reinterpret_cast<const char*>(data_); }
  std::string_view view() const noexcept { return {chars(), size_}; }
  /// As an Asio buffer: asio::buffer(s), and an element of a ConstBufferSequence (bufpool::chain).
  operator net::const_buffer() const noexcept { return net::const_buffer(data_, size_); }

  /// Bytes [offset, offset + length) of this view, sharing the buffer; throws std::out_of_range when
  /// they are not all inside it.
  basic_shared_buffer slice(std::size_t offset, std::size_t length) const {
    if (offset > size_ || length > size_ - offset) throw std::out_of_range("bufpool::shared_buffer::slice");
    basic_shared_buffer s(*this);
    s.data_ += offset;
    s.size_ = length;
    return s;
  }
  /// Holders of the buffer now (for shared_buffer a hint: other threads may change it).
  std::uint32_t use_count() const noexcept { return h_ ? h_->refs.load(std::memory_order_relaxed) : 0; }
  /// Drops this holder; the last returns the buffer.
  void reset() noexcept {
    if (h_ == nullptr) return;
    detail::buffer_header* h = std::exchange(h_, nullptr);
    data_ = nullptr;
    size_ = 0;
    if (drop_ref(h)) [[unlikely]] release_last(h);
  }

private:
  friend class buffer;
  // Made by buffer::share() / share_local(): the buffer's one handle becomes the first holder.
  basic_shared_buffer(detail::buffer_header* h, const std::byte* data, std::size_t size) noexcept
      : h_(h), data_(data), size_(size) {
    h_->refs.store(1, std::memory_order_relaxed);  // held by that handle alone until now
  }
  static void add_ref(detail::buffer_header* h) noexcept {
    if constexpr (Atomic) h->refs.fetch_add(1, std::memory_order_relaxed);
    else h->refs.store(h->refs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // True for the last holder. Atomic: acq_rel, so every holder's reads of the data happen before the
  // buffer is reused (release on each decrement, acquire by the one that sees 1), as in shared_ptr.
  static bool drop_ref(detail::buffer_header* h) noexcept {
    if constexpr (Atomic) {
      return h->refs.fetch_sub(1, std::memory_order_acq_rel) == 1;
    } else {
      const std::uint32_t r = h->refs.load(std::memory_order_relaxed);
      if (r == 1) return true;
      h->refs.store(r - 1, std::memory_order_relaxed);
      return false;
    }
  }
  static void release_last(detail::buffer_header* h) noexcept;  // pool.hpp: back to the owner

  detail::buffer_header* h_ = nullptr;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

inline shared_buffer buffer::share() && noexcept {
  if (h_ == nullptr) return {};
  const std::size_t n = std::exchange(size_, 0);
  const std::byte* d = h_->data() + std::exchange(off_, 0);
  return shared_buffer(std::exchange(h_, nullptr), d, n);
}

inline local_shared_buffer buffer::share_local() && noexcept {
  if (h_ == nullptr) return {};
  const std::size_t n = std::exchange(size_, 0);
  const std::byte* d = h_->data() + std::exchange(off_, 0);
  return local_shared_buffer(std::exchange(h_, nullptr), d, n);
}

}  // namespace bufpool
