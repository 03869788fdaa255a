// thread_cache: one thread's tiers in one pool, per size class: the magazine (owner only) and the
// shared ring (owner pushes and pops the head; anyone pops the tail). Also the thread-local table that
// finds a thread's cache for a pool in two loads, and the hook that releases a thread's caches at exit.
//
// Ownership: the pool owns every thread_cache and keeps it until the pool is destroyed, so a thread that
// steals from a ring never reads freed memory. A cache is "attached" to at most one thread at a time;
// when that thread exits the cache is emptied and kept for the next thread (hand-over through the pool's
// mutex, which orders the old owner's plain writes before the new owner's).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "buffer_header.hpp"
#include "spmc_ring.hpp"

namespace bufpool::detail {

/// Adds to a counter that only one thread writes: a load and a store, no read-modify-write.
/// Readers (snapshot) load it relaxed from any thread.
inline void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

/// Single-writer counters of one class in one thread cache.
struct class_counters {
  /// hits_private is not counted: it is gets minus the other tiers (snapshot() derives it), so the
  /// fast get bumps one counter.
  std::atomic<std::uint64_t> gets{0}, puts{0}, hits_shared{0}, hits_stolen{0}, hits_victim{0}, misses{0},
      dropped{0}, freed_by_thread_exit{0};
};

/// Most buffers a magazine holds, and most bytes (a class's magazine holds
/// max(1, min(magazine_max, magazine_max_bytes / class size)) buffers: 128 of 4 KiB, 8 of 64 KiB).
inline constexpr std::uint32_t magazine_max = 128;
inline constexpr std::size_t magazine_max_bytes = 512 * 1024;
/// Buffers a magazine of class size `class_size` holds.
constexpr std::uint32_t magazine_capacity(std::size_t class_size) noexcept {
  return static_cast<std::uint32_t>(std::clamp<std::size_t>(magazine_max_bytes / class_size, 1, magazine_max));
}

/// One size class of one thread cache.
struct class_cache {
  class_cache(std::uint32_t ring_capacity, std::size_t class_size)
      : capacity(magazine_capacity(class_size)),
        footprint(class_size + sizeof(buffer_header)),
        ring(ring_capacity) {}
  /// The private tier: an owner-only stack of idle buffers, magazine[0, count), newest on top. `count`
  /// is a relaxed atomic only so that snapshot() may read it; the owner reads and writes it alone.
  /// Count, capacity and the counters come first: the fast path touches them and the magazine's top.
  std::atomic<std::uint32_t> count{0};
  const std::uint32_t capacity;
  /// What one buffer of this class costs the idle-bytes cap: its data and its header.
  const std::size_t footprint;
  class_counters counters;
  buffer_header* magazine[magazine_max];
  /// Its head_tail word sits on a cache line of its own.
  spmc_ring<buffer_header> ring;
};

struct thread_cache {
  thread_cache(std::size_t class_count, std::uint32_t ring_capacity, std::size_t min_class) : nclasses(class_count) {
    classes = static_cast<class_cache*>(
        ::operator new(sizeof(class_cache) * nclasses, std::align_val_t{alignof(class_cache)}));
    std::size_t built = 0;
    try {
      for (; built < nclasses; ++built) new (&classes[built]) class_cache(ring_capacity, min_class << built);
    } catch (...) {
      destroy(built);
      throw;
    }
  }
  ~thread_cache() { destroy(nclasses); }
  thread_cache(const thread_cache&) = delete;
  thread_cache& operator=(const thread_cache&) = delete;

  class_cache* classes = nullptr;
  std::size_t nclasses;
  /// Owner only: the rotation epoch this thread last caught up with.
  std::uint64_t epoch = 0;
  /// Single-writer counters of unpooled (oversize) buffers.
  std::atomic<std::uint64_t> oversize_gets{0}, oversize_puts{0}, oversize_bytes_got{0}, oversize_bytes_put{0};
  /// Next cache in the pool's list; written once before the cache is published, then never again.
  thread_cache* next = nullptr;

private:
  void destroy(std::size_t n) noexcept {
    for (std::size_t i = 0; i < n; ++i) classes[i].~class_cache();
    ::operator delete(classes, std::align_val_t{alignof(class_cache)});
  }
};

/// Bits of a pool key that hold the rotation epoch; the rest hold the pool's unique id.
inline constexpr unsigned key_epoch_bits = 24;
inline constexpr std::uint64_t make_key(std::uint64_t uid, std::uint64_t epoch) noexcept {
  return (uid << key_epoch_bits) | (epoch & ((std::uint64_t{1} << key_epoch_bits) - 1));
}

/// A thread's entry for one pool. `key` is make_key(pool uid, the epoch the thread caught up with):
/// the fast path compares it with the pool's current key, which is one compare for "this pool, and
/// no rotation to catch up with". Everything here is the owner thread's alone.
struct tls_entry {
  std::uint64_t key;
  class_cache* classes;  ///< cache->classes, one load nearer
  thread_cache* cache;
  /// Idle bytes this thread may still add to the pool (taken from the pool's global credit).
  std::size_t credit;
};

// Trivially initialized thread-locals: reading them costs a %fs-relative load, no init guard.
// tls_entries[pool.slot] belongs to that pool when its key's uid matches (slots are reused, uids never).
inline constinit thread_local tls_entry* tls_entries = nullptr;
inline constinit thread_local std::uint32_t tls_size = 0;
/// Set once this thread's caches were released at exit; later calls take the unpooled path.
inline constinit thread_local bool tls_exited = false;

/// Every live pool, by slot. Never destroyed, so that threads exiting after static destruction can
/// still consult it.
struct pool_registry {
  std::mutex mu;
  struct entry {
    pool_core* p = nullptr;
    std::uint64_t uid = 0;
  };
  std::vector<entry> slots;
  std::uint64_t next_uid = 1;

  static pool_registry& instance() {
    static pool_registry* r = new pool_registry;
    return *r;
  }
};

/// Constructed on a thread's first attach to any pool; its destructor releases the thread's caches.
struct thread_exit_hook {
  bool armed = false;
  ~thread_exit_hook();
};
inline thread_local thread_exit_hook tls_exit_hook;

}  // namespace bufpool::detail
