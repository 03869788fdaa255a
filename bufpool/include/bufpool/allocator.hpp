// bufpool::allocator<T>: a std::allocator-compatible adapter over a pool, for containers and for
// allocator-aware buffers (std::vector<char, bufpool::allocator<char>>, beast::basic_flat_buffer).
// allocate(n) takes a buffer of n * sizeof(T) bytes from the pool and detaches it (buffer::release);
// deallocate returns it (pool::put_raw), from any thread. Memory is 64-byte aligned (the buffer
// header's alignment), so any T with alignof(T) <= 64 fits. Allocators compare equal when they use the
// same pool. The pool must outlive every allocation, as with buffers returned by put_raw.
#pragma once

#include <cstddef>
#include <new>

#include "pool.hpp"

namespace bufpool {

template <class T>
class allocator {
public:
  using value_type = T;
  static_assert(alignof(T) <= 64, "bufpool::allocator: pooled memory is 64-byte aligned");

  explicit allocator(pool& p) noexcept : pool_(&p) {}
  template <class U>
  allocator(const allocator<U>& other) noexcept : pool_(&other.get_pool()) {}

  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return reinterpret_cast<T*>(pool_->get(n * sizeof(T)).release());
  }
  void deallocate(T* p, std::size_t) noexcept { pool_->put_raw(reinterpret_cast<std::byte*>(p)); }

  pool& get_pool() const noexcept { return *pool_; }
  template <class U>
  bool operator==(const allocator<U>& other) const noexcept {
    return pool_ == &other.get_pool();
  }

private:
  pool* pool_;
};

}  // namespace bufpool
