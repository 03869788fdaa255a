// spmc_ring: a fixed-capacity, lock-free, single-producer / multi-consumer ring of pointers.
//
// This is Go's poolDequeue (src/sync/poolqueue.go) in C++. One word packs both indexes: head in the high
// 32 bits, tail in the low 32 bits. [tail, head) holds the items.
//   - The owner (the only producer) pushes and pops at the head.
//   - Any thread pops at the tail (that is how other threads steal).
// Indexes are 32-bit and wrap; the capacity is a power of two no larger than 2^30, so "head - tail" in
// 32-bit arithmetic is always the item count. A slot is nullptr when it is free; a consumer that took a
// slot at the tail hands it back by storing nullptr with release order, and the producer never reuses a
// slot it still sees non-null. The ring never frees memory itself: its owner (the pool) keeps it alive
// for as long as any thread may pop from it, which is the pool's whole lifetime.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>

namespace bufpool::detail {

template <typename T>
class spmc_ring {
public:
  static constexpr std::uint32_t max_capacity = std::uint32_t{1} << 30;

  /// Creates an empty ring. `initial_index` seeds head and tail (tests start near 2^32 to force a wrap).
  explicit spmc_ring(std::uint32_t capacity, std::uint32_t initial_index = 0)
      : mask_(checked(capacity) - 1), slots_(new std::atomic<T*>[capacity]) {
    for (std::uint32_t i = 0; i < capacity; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
    head_tail_.store(pack(initial_index, initial_index), std::memory_order_relaxed);
  }

  spmc_ring(const spmc_ring&) = delete;
  spmc_ring& operator=(const spmc_ring&) = delete;

  /// Producer only. Adds `v` (non-null) at the head; false if the ring is full.
  bool push_head(T* v) noexcept {
    // Acquire: pairs with the release CAS in pop_tail, so a tail index we see advanced is not stale
    // (only needed for the full check; the slot handshake below is what protects the slot itself).
    const std::uint64_t ht = head_tail_.load(std::memory_order_acquire);
    const std::uint32_t head = head_of(ht);
    const std::uint32_t tail = tail_of(ht);
    if (tail + mask_ + 1 == head) return false;  // full (32-bit unsigned arithmetic wraps as the indexes do)
    std::atomic<T*>& slot = slots_[head & mask_];
    // A consumer may have advanced the tail past this slot but not yet read it. Its release store of
    // nullptr (in pop_tail) pairs with this acquire load: once we see nullptr its read is finished and
    // we may overwrite the slot. Go reports "full" in the same case.
    if (slot.load(std::memory_order_acquire) != nullptr) return false;
    slot.store(v, std::memory_order_relaxed);
    // Release: publishes the slot write (and everything the producer wrote into *v before) to any
    // consumer whose acquire CAS on head_tail_ reads this value or a later one in its release sequence
    // (every later change of head_tail_ is a read-modify-write, so the sequence is never broken).
    head_tail_.fetch_add(std::uint64_t{1} << 32, std::memory_order_release);
    return true;
  }

  /// Producer only. Adds items[0..n) at the head, oldest first, with one atomic add; returns how many
  /// went in (a prefix: fewer when the ring fills up, or at a slot whose thief has not handed it back).
  /// Same protocol as push_head(), over several slots.
  std::uint32_t push_head_bulk(T* const* items, std::uint32_t n) noexcept {
    const std::uint64_t ht = head_tail_.load(std::memory_order_acquire);  // as in push_head
    const std::uint32_t head = head_of(ht);
    const std::uint32_t room = mask_ + 1 - (head - tail_of(ht));
    std::uint32_t m = std::min(n, room);
    for (std::uint32_t i = 0; i < m; ++i) {
      if (slots_[(head + i) & mask_].load(std::memory_order_acquire) != nullptr) {  // as in push_head
        m = i;
        break;
      }
    }
    if (m == 0) return 0;
    for (std::uint32_t i = 0; i < m; ++i) slots_[(head + i) & mask_].store(items[i], std::memory_order_relaxed);
    head_tail_.fetch_add(std::uint64_t{m} << 32, std::memory_order_release);  // publishes all m, as in push_head
    return m;
  }

  /// Producer only. Removes up to `max` of the newest items into out[0..n), oldest first, with one CAS;
  /// returns n. Same protocol as pop_head(): the CAS decides the range [head - n, head) against
  /// concurrent pop_tail()s, and the slots were written by this thread.
  std::uint32_t pop_head_bulk(T** out, std::uint32_t max) noexcept {
    std::uint64_t ht = head_tail_.load(std::memory_order_relaxed);
    std::uint32_t head = 0;
    std::uint32_t n = 0;
    for (;;) {
      head = head_of(ht);
      const std::uint32_t tail = tail_of(ht);
      n = std::min(max, head - tail);
      if (n == 0) return 0;
      if (head_tail_.compare_exchange_weak(ht, pack(head - n, tail), std::memory_order_relaxed,
                                           std::memory_order_relaxed))
        break;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      std::atomic<T*>& slot = slots_[(head - n + i) & mask_];
      out[i] = slot.load(std::memory_order_relaxed);
      slot.store(nullptr, std::memory_order_relaxed);
    }
    return n;
  }

  /// Producer only. Removes the newest item; nullptr if empty.
  T* pop_head() noexcept {
    std::uint64_t ht = head_tail_.load(std::memory_order_relaxed);
    std::uint32_t head = 0;
    for (;;) {
      head = head_of(ht);
      const std::uint32_t tail = tail_of(ht);
      if (head == tail) return nullptr;
      --head;
      // The CAS only has to decide who owns slot `head` against a concurrent pop_tail of the same slot;
      // the slot's contents were written by this thread, so no ordering is needed to read them.
      if (head_tail_.compare_exchange_weak(ht, pack(head, tail), std::memory_order_relaxed,
                                           std::memory_order_relaxed))
        break;
    }
    std::atomic<T*>& slot = slots_[head & mask_];
    T* v = slot.load(std::memory_order_relaxed);
    slot.store(nullptr, std::memory_order_relaxed);  // only this thread reads it before the next push
    return v;
  }

  /// Any thread. Removes the oldest item; nullptr if empty.
  T* pop_tail() noexcept {
    // Acquire on the load and on the CAS: pairs with the producer's release fetch_add in push_head,
    // so the slot value and the item's contents are visible once we own index `tail`.
    std::uint64_t ht = head_tail_.load(std::memory_order_acquire);
    std::uint32_t tail = 0;
    for (;;) {
      const std::uint32_t head = head_of(ht);
      tail = tail_of(ht);
      if (head == tail) return nullptr;
      if (head_tail_.compare_exchange_weak(ht, pack(head, tail + 1), std::memory_order_acq_rel,
                                           std::memory_order_acquire))
        break;
    }
    std::atomic<T*>& slot = slots_[tail & mask_];
    T* v = slot.load(std::memory_order_relaxed);
    // Release: hands the slot back to the producer (pairs with the acquire load in push_head), after
    // our read of it above.
    slot.store(nullptr, std::memory_order_release);
    return v;
  }

  /// Any thread. Removes up to `max` of the oldest items, but no more than half of them (rounded up),
  /// into `out` with one CAS; returns how many. Same protocol as pop_tail(), over several slots: the
  /// CAS makes [tail, tail + n) ours, and each slot goes back to the producer with a release store.
  std::uint32_t pop_tail_bulk(T** out, std::uint32_t max) noexcept {
    std::uint64_t ht = head_tail_.load(std::memory_order_acquire);
    std::uint32_t tail = 0;
    std::uint32_t n = 0;
    for (;;) {
      const std::uint32_t head = head_of(ht);
      tail = tail_of(ht);
      const std::uint32_t have = head - tail;
      n = std::min(max, (have + 1) / 2);
      if (n == 0) return 0;
      if (head_tail_.compare_exchange_weak(ht, pack(head, tail + n), std::memory_order_acq_rel,
                                           std::memory_order_acquire))
        break;
    }
    for (std::uint32_t i = 0; i < n; ++i) {
      std::atomic<T*>& slot = slots_[(tail + i) & mask_];
      out[i] = slot.load(std::memory_order_relaxed);
      slot.store(nullptr, std::memory_order_release);  // pairs with the acquire load in push_head
    }
    return n;
  }

  /// Number of items; exact only when no operation runs concurrently.
  std::uint32_t size() const noexcept {
    const std::uint64_t ht = head_tail_.load(std::memory_order_acquire);
    return head_of(ht) - tail_of(ht);
  }

  std::uint32_t capacity() const noexcept { return mask_ + 1; }

private:
  static std::uint32_t checked(std::uint32_t capacity) {
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > max_capacity)
      throw std::invalid_argument("spmc_ring capacity must be a power of two in [1, 2^30]");
    return capacity;
  }
  static constexpr std::uint64_t pack(std::uint32_t head, std::uint32_t tail) noexcept {
    return (std::uint64_t{head} << 32) | tail;
  }
  static constexpr std::uint32_t head_of(std::uint64_t ht) noexcept {
    return static_cast<std::uint32_t>(ht >> 32);
  }
  static constexpr std::uint32_t tail_of(std::uint64_t ht) noexcept {
    return static_cast<std::uint32_t>(ht);
  }

  // Read by every stealer: keep it on its own cache line, away from the owner's private state.
  alignas(64) std::atomic<std::uint64_t> head_tail_{0};
  std::uint32_t mask_;
  std::unique_ptr<std::atomic<T*>[]> slots_;
};

}  // namespace bufpool::detail
