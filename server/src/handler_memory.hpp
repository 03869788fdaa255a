// handler_memory: a few fixed slots inside a connection object for the memory of its Asio operations
// (Asio's "allocation" example idiom, bound with asio::bind_allocator). The connection object lives in
// mapped chunks (see server.cpp), so its operations never touch the heap: a burst of thousands of
// connections does not leave operation blocks scattered between Asio's long-lived per-socket state in
// the heap, which would keep those pages resident after the connections are gone. A request that does
// not fit (too large, or every slot taken) falls back to operator new.
//
// Single-threaded: a connection's operations are allocated and freed on its worker's thread.
#pragma once

#include <array>
#include <cstddef>
#include <new>

namespace bufpool::server {

class handler_memory {
public:
  // One slot for a write (Asio's composed write operation with its gather list is about 550 bytes on
  // x86-64 with GCC 12), two for a wait and a posted continuation: what can be pending at once.
  static constexpr std::size_t large_bytes = 640;
  static constexpr std::size_t small_bytes = 192;

  handler_memory() = default;
  handler_memory(const handler_memory&) = delete;
  handler_memory& operator=(const handler_memory&) = delete;

  void* allocate(std::size_t n) {
    if (n <= small_bytes) {
      for (std::size_t i = 0; i < small_.size(); ++i) {
        if (!small_used_[i]) {
          small_used_[i] = true;
          return small_[i].data();
        }
      }
    }
    if (n <= large_bytes && !large_used_) {
      large_used_ = true;
      return large_.data();
    }
    return ::operator new(n);
  }
  void deallocate(void* p) noexcept {
    if (p == large_.data()) {
      large_used_ = false;
      return;
    }
    for (std::size_t i = 0; i < small_.size(); ++i) {
      if (p == small_[i].data()) {
        small_used_[i] = false;
        return;
      }
    }
    ::operator delete(p);
  }

private:
  alignas(std::max_align_t) std::array<unsigned char, large_bytes> large_{};
  alignas(std::max_align_t) std::array<std::array<unsigned char, small_bytes>, 2> small_{};
  bool large_used_ = false;
  std::array<bool, 2> small_used_{};
};

/// The allocator Asio sees (bind it with asio::bind_allocator(handler_allocator<int>(mem), handler)).
template <typename T>
class handler_allocator {
public:
  using value_type = T;
  explicit handler_allocator(handler_memory& m) noexcept : memory_(&m) {}
  template <typename U>
  handler_allocator(const handler_allocator<U>& other) noexcept : memory_(other.memory_) {}
  T* allocate(std::size_t n) { return static_cast<T*>(memory_->allocate(sizeof(T) * n)); }
  void deallocate(T* p, std::size_t) noexcept { memory_->deallocate(p); }
  template <typename U>
  bool operator==(const handler_allocator<U>& o) const noexcept {
    return memory_ == o.memory_;
  }

private:
  template <typename>
  friend class handler_allocator;
  handler_memory* memory_;
};

}  // namespace bufpool::server
