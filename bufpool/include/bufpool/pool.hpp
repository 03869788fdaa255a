// pool: a per-thread pool of byte buffers in size classes, modeled on Go's sync.Pool.
//
// get() looks, in Go's order: the thread's magazine (its private tier: an owner-only stack per class)
// -> the head of its own ring (half a magazine at a time) -> the tails of other threads' rings -> the
// victim generation -> a new allocation. A returned buffer goes to the returning thread's magazine; a
// full magazine moves its older half to the head of the thread's ring; if the ring is full too, or
// the pool is at its idle-bytes cap, the buffer is freed and counted as dropped.
//
// rotate() is the analog of Go's cleanup at GC, without stopping the world: it frees the old victim
// generation, moves every ring's contents into the new one, and bumps the epoch. The magazines belong
// to their threads alone; each thread rotates its own when it next calls into the pool (or when
// rotate_local() runs on it), freeing what sat there for two rotations. So a thread that stopped
// calling keeps at most one magazine per class. docs/design.md has the full argument.
//
// Thread safety: get, put, put_raw, rotate, rotate_local and snapshot may run concurrently from any
// threads. The pool must outlive every call into it; a buffer may outlive the pool (see pool_core::retire),
// the memory resource may not.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <limits>
#include <memory_resource>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "detail/buffer_header.hpp"
#include "detail/leak_tracker.hpp"
#include "detail/spmc_ring.hpp"
#include "detail/thread_cache.hpp"
#include "options.hpp"
#include "stats.hpp"

#if defined(__GNUC__)
#define BUFPOOL_INLINE [[gnu::always_inline]] inline
#define BUFPOOL_NOINLINE [[gnu::noinline]]
#else
#define BUFPOOL_INLINE inline
#define BUFPOOL_NOINLINE
#endif

namespace bufpool {

/// The state of a pool, on the heap so that it can outlive its handle (bufpool::pool, below) while
/// buffers are still out: see retire(). Internal; use bufpool::pool.
class pool_core {
public:
  pool_core(pool_options options, pool* handle);
  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  /// The handle is going away. With no buffer out, deletes this core. Otherwise frees every pooled
  /// buffer, leaves the registry, and stays behind "retired": each buffer still out frees its memory
  /// when it comes back (on any thread), and the last one deletes the core. Debug mode reports them.
  void retire() noexcept;
  /// The handle (nullptr once retired).
  pool* handle() const noexcept { return handle_; }

  /// A buffer with size() == n and capacity() == n rounded up to its class (exactly n above
  /// max_class, unpooled). Throws std::bad_alloc only when a new allocation fails.
  buffer get(std::size_t n);
  /// A buffer of `headroom + n` bytes whose view starts after the headroom: size() == n, headroom()
  /// == headroom, for buffer::prepend(). Throws std::bad_alloc as get(n) does, and when the sum wraps.
  buffer get(std::size_t n, std::size_t headroom);
  /// Returns `b` now (same as destroying it). A buffer of another pool goes back to its own pool
  /// (reported as wrong_pool in debug mode).
  void put(buffer&& b) noexcept;
  /// Returns a buffer detached with buffer::release().
  void put_raw(std::byte* data) noexcept;

  /// One rotation (what the timer does), then this thread's own part of it.
  void rotate();
  /// This thread's part of the rotations that happened since its last call: ages its magazines.
  void rotate_local() noexcept;

  /// Statistics, gathered now. Exact when nothing runs concurrently.
  pool_snapshot snapshot() const;
  /// The leak detector's sites: sampled buffers taken at least `min_age` ago and still out, grouped by
  /// call stack. Empty when pool_options::leaks is off.
  std::vector<leak_site> leaks(std::chrono::nanoseconds min_age) const {
    return leaks_ ? leaks_->sites(min_age) : std::vector<leak_site>{};
  }
  /// Bytes (capacities) of the buffers the calling thread has taken and not returned itself: a buffer
  /// returned on another thread counts there, so one thread's figure can be negative. Reads only this
  /// thread's counters (no atomic read-modify-write, O(classes)): meant for a per-thread memory budget.
  std::int64_t thread_outstanding_bytes() noexcept;

  /// The options the pool was built with.
  const pool_options& options() const noexcept { return opts_; }
  /// Number of size classes.
  std::size_t class_count() const noexcept { return nclasses_; }
  /// Size in bytes of class `i`.
  std::size_t class_size(std::size_t i) const noexcept { return opts_.min_class << i; }
  /// The class that serves a request of `n` bytes; class_count() or more means oversize.
  std::size_t class_index(std::size_t n) const noexcept {
    // bit_width(n - 1), written with countl_zero (int everywhere; bit_width returns size_t on GCC 12).
    return n <= opts_.min_class ? 0
                                : static_cast<std::size_t>(std::numeric_limits<std::size_t>::digits - std::countl_zero(n - 1)) -
                                      min_shift_;
  }

private:
  friend class buffer;
  template <bool>
  friend class basic_shared_buffer;
  friend class pool;
  friend struct detail::thread_exit_hook;
  ~pool_core();  // through retire()
  void release_pooled() noexcept;
  std::int64_t outstanding_count() const noexcept;
  void release_retired(detail::buffer_header* h) noexcept;
  using header = detail::buffer_header;
  /// What a pooled buffer costs the idle-bytes cap: its data and its header (what the resource holds).
  static std::size_t footprint(const header* h) noexcept { return h->capacity + sizeof(header); }
  static constexpr std::size_t max_classes = 32;

  detail::thread_cache* local_cache() noexcept;
  detail::thread_cache* attach_slow() noexcept;
  void detach(detail::thread_cache* tc, std::size_t credit) noexcept;
  /// The calling thread's spare credit; valid once local_cache() returned its (non-orphan) cache.
  std::size_t& own_credit() noexcept { return detail::tls_entries[slot_].credit; }
  buffer get_slow(std::size_t n);
  buffer get_slow_untracked(std::size_t n);
  void put_header(header* h) noexcept;
  void put_slow(header* h) noexcept;
  void put_foreign(header* h) noexcept;
  header* steal(detail::thread_cache* tc, std::size_t cls) noexcept;
  header* victim_pop(std::size_t cls) noexcept;
  void catch_up(detail::thread_cache* tc) noexcept;
  bool take_credit(std::size_t& credit, std::size_t need) noexcept;
  void trim_credit(std::size_t& credit) noexcept;
  header* allocate(std::size_t cls, std::size_t capacity);
  void deallocate(header* h) noexcept;
  void free_chain(header* h, std::size_t cls) noexcept;
  void on_debug_get(header* h) noexcept;
  bool on_debug_put(header* h) noexcept;
  void report(error_kind kind, const void* data, std::size_t count, std::string message) const noexcept;

  pool_options opts_;
  std::pmr::memory_resource* memory_;
  std::size_t min_shift_;
  std::size_t nclasses_;
  std::size_t credit_chunk_;
  bool debug_;
  std::size_t fast_classes_;  // classes served by the inline fast path: nclasses_, or 0 in debug mode,
                              // with pooling off, or with the leak detector on
  std::unique_ptr<detail::leak_tracker> leaks_;  // pool_options::leaks; nullptr when off
  std::uint32_t slot_ = 0;  // index in every thread's tls_entries
  std::uint64_t uid_ = 0;   // never reused, tells this pool from a dead one in the same slot
  // make_key(uid_, epoch_): what a thread's entry holds when it is caught up with every rotation.
  // Written with epoch_ under victim_mu_, read relaxed on the fast path; ~0 once retired (no entry
  // has it: uids count up from 1 and stay below 2^40).
  std::atomic<std::uint64_t> key_{0};

  // Rotation epoch: written under victim_mu_, read relaxed on the fast path (read-mostly line).
  alignas(64) std::atomic<std::uint64_t> epoch_{0};
  // Idle bytes the pool may still take in, not yet handed to any thread as credit.
  alignas(64) std::atomic<std::size_t> idle_credit_;
  // Every thread cache ever made, newest first; prepend-only under caches_mu_, read lock-free.
  std::atomic<detail::thread_cache*> caches_{nullptr};

  mutable std::mutex caches_mu_;
  std::vector<detail::thread_cache*> free_caches_;  // detached caches, ready for the next thread
  std::size_t cache_count_ = 0;
  std::size_t attached_ = 0;

  std::mutex rotate_mu_;  // one rotation at a time
  mutable std::mutex victim_mu_;
  struct victim_list {
    header* head = nullptr;               // guarded by victim_mu_
    std::atomic<std::size_t> size{0};     // written under victim_mu_; read relaxed as an emptiness hint
  };
  std::unique_ptr<victim_list[]> victim_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> freed_by_rotation_;

  // Threads whose thread-locals are already destroyed get and put unpooled, counted here.
  mutable std::mutex orphan_mu_;
  std::unique_ptr<detail::thread_cache> orphan_;

  pool* handle_;
  bool registered_ = false;                // in the registry (cleared once, when retired or destroyed)
  bool retired_ = false;                   // the handle is gone; buffers still out come back here
  std::atomic<std::int64_t> remaining_{0};  // retired: buffers still out
};

// ---- buffer members that need the pool ------------------------------------------------------------

inline pool* buffer::owner() const noexcept { return h_ ? h_->owner->handle() : nullptr; }

inline void buffer::reset() noexcept {
  if (h_ != nullptr) {
    size_ = 0;
    off_ = 0;
    detail::buffer_header* h = std::exchange(h_, nullptr);
    h->owner->put_header(h);
  }
}

// Kept out of line: a copy's release is the common case and stays two instructions.
template <bool Atomic>
BUFPOOL_NOINLINE inline void basic_shared_buffer<Atomic>::release_last(detail::buffer_header* h) noexcept {
  h->owner->put_header(h);
}

// ---- construction ---------------------------------------------------------------------------------

inline pool_core::pool_core(pool_options options, pool* handle)
    : opts_((validate(options), std::move(options))), handle_(handle) {
  memory_ = opts_.memory != nullptr ? opts_.memory : std::pmr::new_delete_resource();
  min_shift_ = static_cast<std::size_t>(std::countr_zero(opts_.min_class));
  nclasses_ = static_cast<std::size_t>(std::countr_zero(opts_.max_class)) - min_shift_ + 1;
  // Spare credit a thread may hold: small against the cap, so that no thread can hold all of it and
  // make every other thread's returns drop (at most two chunks each, see trim_credit).
  credit_chunk_ = std::min(4 * (opts_.max_class + sizeof(header)), opts_.max_idle_bytes / 16);
  debug_ = opts_.debug;
  if (opts_.leaks != leak_detection::off)
    leaks_ = std::make_unique<detail::leak_tracker>(opts_.leaks == leak_detection::all ? 1 : opts_.leak_sample_every);
  fast_classes_ = (debug_ || !opts_.enabled || leaks_) ? 0 : nclasses_;
  idle_credit_.store(opts_.max_idle_bytes, std::memory_order_relaxed);
  victim_ = std::make_unique<victim_list[]>(nclasses_);
  freed_by_rotation_ = std::make_unique<std::atomic<std::uint64_t>[]>(nclasses_);
  for (std::size_t i = 0; i < nclasses_; ++i) freed_by_rotation_[i].store(0, std::memory_order_relaxed);
  orphan_ = std::make_unique<detail::thread_cache>(nclasses_, 1, opts_.min_class);

  auto& reg = detail::pool_registry::instance();
  std::lock_guard lk(reg.mu);
  // A uid must fit the key's 40 high bits: 10^12 pools in one process, then construction fails.
  if (reg.next_uid >= (std::uint64_t{1} << (64 - detail::key_epoch_bits))) throw std::length_error("bufpool: pool ids exhausted");
  auto it = std::find_if(reg.slots.begin(), reg.slots.end(), [](const auto& e) { return e.p == nullptr; });
  if (it == reg.slots.end()) {
    reg.slots.emplace_back();
    it = reg.slots.end() - 1;
  }
  it->p = this;
  it->uid = uid_ = reg.next_uid++;
  key_.store(detail::make_key(uid_, 0), std::memory_order_relaxed);
  slot_ = static_cast<std::uint32_t>(it - reg.slots.begin());
  registered_ = true;
}

// Leaves the registry and frees every pooled buffer (magazines, rings, victims) and the thread
// caches. After this no exiting thread calls detach() on us (it checks the registry under the same
// mutex), and no thread's fast path finds a cache (uid_ matches no thread-local entry).
inline void pool_core::release_pooled() noexcept {
  if (registered_) {
    auto& reg = detail::pool_registry::instance();
    std::lock_guard lk(reg.mu);
    reg.slots[slot_] = {};
    registered_ = false;
  }
  uid_ = ~std::uint64_t{0};  // uids count up from 1: no entry, empty or not, has this one
  key_.store(~std::uint64_t{0}, std::memory_order_relaxed);
  for (detail::thread_cache* tc = caches_.exchange(nullptr, std::memory_order_acquire); tc != nullptr;) {
    for (std::size_t c = 0; c < nclasses_; ++c) {
      detail::class_cache& cc = tc->classes[c];
      for (std::uint32_t i = 0, k = cc.count.load(std::memory_order_relaxed); i < k; ++i) deallocate(cc.magazine[i]);
      cc.count.store(0, std::memory_order_relaxed);
      while (header* h = cc.ring.pop_head()) deallocate(h);
    }
    delete std::exchange(tc, tc->next);
  }
  for (std::size_t c = 0; c < nclasses_; ++c) {
    for (header* h = std::exchange(victim_[c].head, nullptr); h != nullptr;) deallocate(std::exchange(h, h->next));
  }
}

// Buffers handed out and not returned: gets minus puts over every cache and the orphan counters.
inline std::int64_t pool_core::outstanding_count() const noexcept {
  std::int64_t out = 0;
  auto add = [&](const detail::thread_cache& tc) {
    for (std::size_t c = 0; c < nclasses_; ++c)
      out += static_cast<std::int64_t>(tc.classes[c].counters.gets.load(std::memory_order_relaxed) -
                                       tc.classes[c].counters.puts.load(std::memory_order_relaxed));
    out += static_cast<std::int64_t>(tc.oversize_gets.load(std::memory_order_relaxed) -
                                     tc.oversize_puts.load(std::memory_order_relaxed));
  };
  for (const detail::thread_cache* tc = caches_.load(std::memory_order_acquire); tc != nullptr; tc = tc->next) add(*tc);
  std::lock_guard lk(orphan_mu_);
  add(*orphan_);
  return out;
}

inline void pool_core::retire() noexcept {
  const std::int64_t out = outstanding_count();
  if (out > 0 && debug_)
    report(error_kind::leak_at_destroy, nullptr, static_cast<std::size_t>(out),
           "pool destroyed with " + std::to_string(out) + " buffer(s) still handed out");
  if (out > 0 && leaks_) {  // each site once, with its call stack
    try {
      for (const leak_site& s : leaks_->sites(std::chrono::nanoseconds(0)))
        report(error_kind::leak_at_destroy, nullptr, s.sampled,
               "pool destroyed with " + detail::leak_tracker::describe(s, leaks_->sample_every()));
    } catch (...) {  // out of memory while describing: the counts above are what can be said
    }
  }
  handle_ = nullptr;
  if (out <= 0) {
    delete this;
    return;
  }
  // Retired: the buffers still out free themselves when they come back (put_slow), the last one
  // deletes this core. The caller's synchronization orders these plain writes before any later
  // return on another thread (a return concurrent with the pool's destruction is a data race, as a
  // call to any object being destroyed is).
  retired_ = true;
  remaining_.store(out, std::memory_order_relaxed);
  release_pooled();
}

// A buffer came back to a retired core: free it; the last one out deletes the core.
inline void pool_core::release_retired(header* h) noexcept {
  deallocate(h);
  // acq_rel: every other buffer's deallocate happens before the delete that follows the last one.
  if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
}

inline pool_core::~pool_core() { release_pooled(); }

inline std::int64_t pool_core::thread_outstanding_bytes() noexcept {
  const detail::thread_cache* tc = local_cache();
  if (tc == nullptr) return 0;
  std::int64_t bytes = 0;
  for (std::size_t c = 0; c < nclasses_; ++c) {
    const detail::class_counters& k = tc->classes[c].counters;
    bytes += static_cast<std::int64_t>((k.gets.load(std::memory_order_relaxed) - k.puts.load(std::memory_order_relaxed)) *
                                       class_size(c));
  }
  bytes += static_cast<std::int64_t>(tc->oversize_bytes_got.load(std::memory_order_relaxed) -
                                     tc->oversize_bytes_put.load(std::memory_order_relaxed));
  return bytes;
}

// ---- the fast path --------------------------------------------------------------------------------

BUFPOOL_INLINE detail::thread_cache* pool_core::local_cache() noexcept {
  if (slot_ < detail::tls_size) [[likely]] {
    const detail::tls_entry& e = detail::tls_entries[slot_];
    if ((e.key >> detail::key_epoch_bits) == uid_) [[likely]]
      return e.cache;
  }
  return attach_slow();
}

BUFPOOL_INLINE buffer pool_core::get(std::size_t n) {
  const std::size_t cls = class_index(n);
  if (cls < fast_classes_ && slot_ < detail::tls_size) [[likely]] {
    detail::tls_entry& e = detail::tls_entries[slot_];
    if (e.key == key_.load(std::memory_order_relaxed)) [[likely]] {  // this pool, no rotation to catch up with
      detail::class_cache& cc = e.classes[cls];
      if (const std::uint32_t k = cc.count.load(std::memory_order_relaxed); k != 0) [[likely]] {
        header* h = cc.magazine[k - 1];
        cc.count.store(k - 1, std::memory_order_relaxed);
        detail::bump(cc.counters.gets);  // a private hit: hits_private is derived
        e.credit += cc.footprint;
        return buffer(h, n);
      }
    }
  }
  return get_slow(n);
}

inline buffer pool_core::get(std::size_t n, std::size_t headroom) {
  if (n > std::numeric_limits<std::size_t>::max() - headroom) throw std::bad_alloc();
  buffer b = get(headroom + n);
  b.off_ = headroom;
  b.size_ = n;
  return b;
}

BUFPOOL_INLINE void pool_core::put_header(header* h) noexcept {
  const std::size_t cls = h->cls;
  if (cls < fast_classes_ && slot_ < detail::tls_size) [[likely]] {
    detail::tls_entry& e = detail::tls_entries[slot_];
    if (e.key == key_.load(std::memory_order_relaxed)) [[likely]] {
      detail::class_cache& cc = e.classes[cls];
      const std::uint32_t k = cc.count.load(std::memory_order_relaxed);
      if (k < cc.capacity && e.credit >= cc.footprint) [[likely]] {
        e.credit -= cc.footprint;
        detail::bump(cc.counters.puts);
        cc.magazine[k] = h;
        cc.count.store(k + 1, std::memory_order_relaxed);
        return;
      }
    }
  }
  put_slow(h);
}

inline void pool_core::put(buffer&& b) noexcept {
  if (header* h = std::exchange(b.h_, nullptr)) {
    b.size_ = 0;
    b.off_ = 0;
    if (h->owner != this) [[unlikely]]
      put_foreign(h);
    else
      put_header(h);
  }
}

inline void pool_core::put_raw(std::byte* data) noexcept {
  if (data == nullptr) return;
  header* h = header::from_data(data);
  if (debug_ && h->cookie != h->expected_cookie()) {
    report(error_kind::foreign_pointer, data, 1, "put_raw() got a pointer that is not a bufpool buffer");
    return;
  }
  if (h->owner != this) [[unlikely]]
    put_foreign(h);
  else
    put_header(h);
}

// ---- the slow paths -------------------------------------------------------------------------------

BUFPOOL_NOINLINE inline detail::thread_cache* pool_core::attach_slow() noexcept {
  using namespace detail;
  if (tls_exited) return nullptr;
  tls_exit_hook.armed = true;  // constructs the hook, so that its destructor runs at this thread's exit
  try {
    if (slot_ >= tls_size) {
      const std::uint32_t n = std::max<std::uint32_t>(slot_ + 1, 2 * tls_size);
      auto* grown = new tls_entry[n]();
      std::copy(tls_entries, tls_entries + tls_size, grown);
      delete[] std::exchange(tls_entries, grown);
      tls_size = n;
    }
    thread_cache* tc = nullptr;
    {
      std::lock_guard lk(caches_mu_);
      if (!free_caches_.empty()) {
        tc = free_caches_.back();
        free_caches_.pop_back();
      } else {
        tc = new thread_cache(nclasses_, opts_.ring_capacity, opts_.min_class);
        tc->next = caches_.load(std::memory_order_relaxed);
        // Release: a thread that loads caches_ with acquire sees the cache fully built.
        caches_.store(tc, std::memory_order_release);
        ++cache_count_;
      }
      ++attached_;
    }
    std::uint64_t key = 0;
    {
      std::lock_guard lk(victim_mu_);  // the epoch and key of one rotation
      tc->epoch = epoch_.load(std::memory_order_relaxed);
      key = key_.load(std::memory_order_relaxed);
    }
    tls_entries[slot_] = {key, tc->classes, tc, 0};
    return tc;
  } catch (...) {
    return nullptr;  // out of memory: this call goes unpooled
  }
}

inline detail::thread_exit_hook::~thread_exit_hook() {
  tls_exited = true;
  auto& reg = pool_registry::instance();
  {
    std::lock_guard lk(reg.mu);
    for (std::uint32_t i = 0; i < tls_size && i < reg.slots.size(); ++i) {
      const tls_entry e = tls_entries[i];
      if (e.cache != nullptr && reg.slots[i].p != nullptr && reg.slots[i].uid == (e.key >> key_epoch_bits))
        reg.slots[i].p->detach(e.cache, e.credit);
    }
  }
  delete[] std::exchange(tls_entries, nullptr);
  tls_size = 0;
}

// Runs on the exiting owner thread, under the registry mutex (so the pool is alive).
inline void pool_core::detach(detail::thread_cache* tc, std::size_t credit) noexcept {
  std::size_t freed_bytes = 0;
  for (std::size_t c = 0; c < nclasses_; ++c) {
    detail::class_cache& cc = tc->classes[c];
    std::uint64_t n = 0;
    for (std::uint32_t i = 0, k = cc.count.load(std::memory_order_relaxed); i < k; ++i) {
      freed_bytes += footprint(cc.magazine[i]);
      deallocate(cc.magazine[i]);
      ++n;
    }
    cc.count.store(0, std::memory_order_relaxed);
    while (header* h = cc.ring.pop_head()) {  // stealers may pop the tail meanwhile: the ring allows it
      freed_bytes += footprint(h);
      deallocate(h);
      ++n;
    }
    detail::bump(cc.counters.freed_by_thread_exit, n);
  }
  idle_credit_.fetch_add(freed_bytes + credit, std::memory_order_relaxed);
  std::lock_guard lk(caches_mu_);
  --attached_;
  free_caches_.push_back(tc);
}

BUFPOOL_NOINLINE inline buffer pool_core::get_slow(std::size_t n) {
  buffer b = get_slow_untracked(n);
  if (leaks_) [[unlikely]] leaks_->on_get(b.h_, n);
  return b;
}

inline buffer pool_core::get_slow_untracked(std::size_t n) {
  const std::size_t cls = class_index(n);
  detail::thread_cache* tc = local_cache();
  if (cls >= nclasses_) {
    header* h = allocate(detail::oversize_class, n);
    std::unique_lock<std::mutex> orphan_lock;
    if (tc == nullptr) {
      orphan_lock = std::unique_lock(orphan_mu_);
      tc = orphan_.get();
    }
    detail::bump(tc->oversize_gets);
    detail::bump(tc->oversize_bytes_got, n);
    return buffer(h, n);
  }
  if (!opts_.enabled && tc != nullptr) {  // pooling off: always a fresh allocation
    header* h = allocate(cls, class_size(cls));
    detail::bump(tc->classes[cls].counters.gets);
    detail::bump(tc->classes[cls].counters.misses);
    return buffer(h, n);
  }
  if (tc == nullptr) {  // this thread's caches are gone (thread exit): unpooled
    header* h = allocate(cls, class_size(cls));
    std::lock_guard lk(orphan_mu_);
    detail::bump(orphan_->classes[cls].counters.gets);
    detail::bump(orphan_->classes[cls].counters.misses);
    return buffer(h, n);
  }
  if (tc->epoch != epoch_.load(std::memory_order_relaxed)) catch_up(tc);
  detail::class_cache& cc = tc->classes[cls];
  // The magazine is empty here unless get() skipped the fast path (debug mode, or a rotation to catch
  // up with). Empty: refill half of it from our own ring with one CAS, and take the newest.
  std::atomic<std::uint64_t>* tier = nullptr;  // a private hit (not counted: derived)
  header* h = nullptr;
  if (std::uint32_t k = cc.count.load(std::memory_order_relaxed); k != 0) {
    h = cc.magazine[--k];
    cc.count.store(k, std::memory_order_relaxed);
  } else if (const std::uint32_t got = cc.ring.pop_head_bulk(cc.magazine, (cc.capacity + 1) / 2); got != 0) {
    h = cc.magazine[got - 1];
    cc.count.store(got - 1, std::memory_order_relaxed);
    tier = &cc.counters.hits_shared;
  }
  if (h == nullptr) {
    h = steal(tc, cls);
    tier = &cc.counters.hits_stolen;
  }
  if (h == nullptr) {
    h = victim_pop(cls);
    tier = &cc.counters.hits_victim;
  }
  if (h != nullptr) {
    own_credit() += footprint(h);
    trim_credit(own_credit());
    if (debug_) on_debug_get(h);
  } else {
    h = allocate(cls, class_size(cls));
    tier = &cc.counters.misses;
  }
  detail::bump(cc.counters.gets);
  if (tier != nullptr) detail::bump(*tier);
  return buffer(h, n);
}

BUFPOOL_NOINLINE inline void pool_core::put_slow(header* h) noexcept {
  if (debug_ && !on_debug_put(h)) return;
  if (h->sampled != 0) [[unlikely]] leaks_->on_put(h);
  if (retired_) [[unlikely]] {
    release_retired(h);
    return;
  }
  const std::size_t cls = h->cls;
  detail::thread_cache* tc = local_cache();
  if (cls >= nclasses_ || tc == nullptr || !opts_.enabled) {  // oversize, past thread exit, or pooling off
    std::unique_lock<std::mutex> orphan_lock;
    if (tc == nullptr) {
      orphan_lock = std::unique_lock(orphan_mu_);
      tc = orphan_.get();
    }
    if (cls >= nclasses_) {
      detail::bump(tc->oversize_puts);
      detail::bump(tc->oversize_bytes_put, h->capacity);
    } else {
      detail::bump(tc->classes[cls].counters.puts);
      detail::bump(tc->classes[cls].counters.dropped);
    }
    deallocate(h);
    return;
  }
  if (tc->epoch != epoch_.load(std::memory_order_relaxed)) catch_up(tc);
  detail::class_cache& cc = tc->classes[cls];
  detail::bump(cc.counters.puts);
  std::size_t& credit = own_credit();
  if (credit < footprint(h) && !take_credit(credit, footprint(h))) {
    detail::bump(cc.counters.dropped);  // the pool holds max_idle_bytes already
    deallocate(h);
    return;
  }
  credit -= footprint(h);
  std::uint32_t k = cc.count.load(std::memory_order_relaxed);
  if (k == cc.capacity) {
    // Full: the older half goes to our shared ring in one operation (where other threads can steal
    // it), the newer half stays. If the ring is full too, the buffer leaves the pool.
    const std::uint32_t moved = cc.ring.push_head_bulk(cc.magazine, (k + 1) / 2);
    if (moved == 0) {
      credit += footprint(h);
      detail::bump(cc.counters.dropped);  // magazine and ring full
      deallocate(h);
      return;
    }
    std::copy(cc.magazine + moved, cc.magazine + k, cc.magazine);
    k -= moved;
  }
  cc.magazine[k] = h;
  cc.count.store(k + 1, std::memory_order_relaxed);
}

// A buffer handed to the wrong pool goes home; debug mode reports it.
inline void pool_core::put_foreign(header* h) noexcept {
  if (debug_)
    report(error_kind::wrong_pool, h->data(), 1, "a buffer was returned to a pool that did not hand it out");
  h->owner->put_header(h);
}

// Steals from the tails of the other threads' rings, starting after this thread's cache and wrapping
// around the list, as Go's getSlow starts at pid+1. Unlike Go it takes a batch (up to half of the
// victim's ring, bounded by the room in our own ring) with one CAS: one buffer is returned and the rest
// go to the head of our ring, so a thread that keeps receiving buffers from another (cross-thread
// return) pays one contended CAS per batch instead of one per buffer.
inline pool_core::header* pool_core::steal(detail::thread_cache* tc, std::size_t cls) noexcept {
  constexpr std::uint32_t max_batch = 32;
  auto& own = tc->classes[cls].ring;
  const std::uint32_t room = own.capacity() - own.size();  // our ring only grows roomier meanwhile
  const std::uint32_t want = std::min(max_batch, room + 1);
  header* batch[max_batch];
  auto try_one = [&](detail::thread_cache* o) -> header* {
    const std::uint32_t n = o->classes[cls].ring.pop_tail_bulk(batch, want);
    if (n == 0) return nullptr;
    for (std::uint32_t i = 1; i < n; ++i) {
      // There is room, but push_head also refuses a slot whose last thief has not handed it back yet.
      // Then the buffer leaves the pool: freed, its bytes back to the cap, counted as dropped.
      if (!own.push_head(batch[i])) {
        detail::bump(tc->classes[cls].counters.dropped);
        idle_credit_.fetch_add(footprint(batch[i]), std::memory_order_relaxed);
        deallocate(batch[i]);
      }
    }
    return batch[0];
  };
  for (detail::thread_cache* o = tc->next; o != nullptr; o = o->next)
    if (header* h = try_one(o)) return h;
  for (detail::thread_cache* o = caches_.load(std::memory_order_acquire); o != tc && o != nullptr; o = o->next)
    if (header* h = try_one(o)) return h;
  return nullptr;
}

// Never waits: if a rotation or another thread holds the victim lock, the victim counts as empty
// (Go's Get may likewise "choose to ignore the pool").
inline pool_core::header* pool_core::victim_pop(std::size_t cls) noexcept {
  victim_list& v = victim_[cls];
  if (v.size.load(std::memory_order_relaxed) == 0) return nullptr;
  std::unique_lock lk(victim_mu_, std::try_to_lock);
  if (!lk.owns_lock() || v.head == nullptr) return nullptr;
  header* h = v.head;
  v.head = h->next;
  v.size.store(v.size.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  return h;
}

// The owner's part of rotation: its magazines age. Under victim_mu_, so the epoch read here and
// the victim generation the buffers join belong to the same rotation.
inline void pool_core::catch_up(detail::thread_cache* tc) noexcept {
  std::array<header*, max_classes> expired{};
  {
    std::lock_guard lk(victim_mu_);
    const std::uint64_t e = epoch_.load(std::memory_order_relaxed);
    const std::uint64_t age = e - tc->epoch;
    for (std::size_t c = 0; c < nclasses_; ++c) {
      detail::class_cache& cc = tc->classes[c];
      const std::uint32_t k = cc.count.load(std::memory_order_relaxed);
      if (k == 0) continue;
      cc.count.store(0, std::memory_order_relaxed);
      header* chain = nullptr;  // the magazine as a list through next
      for (std::uint32_t i = 0; i < k; ++i) {
        cc.magazine[i]->next = chain;
        chain = cc.magazine[i];
      }
      if (age >= 2) {
        expired[c] = chain;  // sat unasked through two rotations
      } else {
        cc.magazine[0]->next = victim_[c].head;  // the chain's last element
        victim_[c].head = chain;
        victim_[c].size.store(victim_[c].size.load(std::memory_order_relaxed) + k, std::memory_order_relaxed);
      }
    }
    tc->epoch = e;
    detail::tls_entries[slot_].key = key_.load(std::memory_order_relaxed);  // tc is this thread's
  }
  for (std::size_t c = 0; c < nclasses_; ++c)
    if (expired[c] != nullptr) free_chain(expired[c], c);
}

inline void pool_core::rotate_local() noexcept {
  detail::thread_cache* tc = local_cache();
  if (tc != nullptr && tc->epoch != epoch_.load(std::memory_order_relaxed)) catch_up(tc);
}

inline void pool_core::rotate() {
  {
    std::lock_guard rl(rotate_mu_);
    std::array<header*, max_classes> old{};
    {
      std::lock_guard lk(victim_mu_);
      for (std::size_t c = 0; c < nclasses_; ++c) {
        old[c] = std::exchange(victim_[c].head, nullptr);
        victim_[c].size.store(0, std::memory_order_relaxed);
      }
      const std::uint64_t e = epoch_.load(std::memory_order_relaxed) + 1;
      epoch_.store(e, std::memory_order_release);
      key_.store(detail::make_key(uid_, e), std::memory_order_relaxed);
    }
    for (std::size_t c = 0; c < nclasses_; ++c) free_chain(old[c], c);

    // Move every ring's contents into the new victim generation. We pop tails like any stealer, so
    // owners keep pushing and popping meanwhile; at most one ring's capacity per ring per rotation.
    struct chain {
      header* head = nullptr;
      header* tail = nullptr;
      std::size_t n = 0;
    };
    std::array<chain, max_classes> moved{};
    for (detail::thread_cache* tc = caches_.load(std::memory_order_acquire); tc != nullptr; tc = tc->next) {
      for (std::size_t c = 0; c < nclasses_; ++c) {
        for (std::uint32_t k = 0; k < opts_.ring_capacity; ++k) {
          header* h = tc->classes[c].ring.pop_tail();
          if (h == nullptr) break;
          h->next = moved[c].head;
          moved[c].head = h;
          if (moved[c].tail == nullptr) moved[c].tail = h;
          ++moved[c].n;
        }
      }
    }
    std::lock_guard lk(victim_mu_);
    for (std::size_t c = 0; c < nclasses_; ++c) {
      if (moved[c].n == 0) continue;
      moved[c].tail->next = victim_[c].head;
      victim_[c].head = moved[c].head;
      victim_[c].size.store(victim_[c].size.load(std::memory_order_relaxed) + moved[c].n, std::memory_order_relaxed);
    }
  }
  rotate_local();
}

inline bool pool_core::take_credit(std::size_t& credit, std::size_t need) noexcept {
  std::size_t avail = idle_credit_.load(std::memory_order_relaxed);
  for (;;) {
    if (avail < need) return false;
    const std::size_t take = std::min(avail, std::max(need, credit_chunk_));
    if (idle_credit_.compare_exchange_weak(avail, avail - take, std::memory_order_relaxed)) {
      credit += take;
      return true;
    }
  }
}

// A thread keeps at most two chunks of spare credit.
inline void pool_core::trim_credit(std::size_t& credit) noexcept {
  if (credit > 2 * credit_chunk_) {
    idle_credit_.fetch_add(credit - credit_chunk_, std::memory_order_relaxed);
    credit = credit_chunk_;
  }
}

inline pool_core::header* pool_core::allocate(std::size_t cls, std::size_t capacity) {
  // get(n) for n within a header of SIZE_MAX would wrap the size asked for.
  if (capacity > std::numeric_limits<std::size_t>::max() - sizeof(header)) throw std::bad_alloc();
  void* p = memory_->allocate(sizeof(header) + capacity, alignof(header));
  auto* h = new (p) header{};
  h->owner = this;
  h->next = nullptr;
  h->capacity = capacity;
  h->cookie = h->expected_cookie();
  h->cls = static_cast<std::uint32_t>(cls);
  h->state.store(static_cast<std::uint32_t>(detail::buffer_state::in_use), std::memory_order_relaxed);
  return h;
}

inline void pool_core::deallocate(header* h) noexcept {
  detail::unpoison(h);
  const std::size_t bytes = sizeof(header) + h->capacity;
  h->cookie = 0;
  h->~header();
  memory_->deallocate(h, bytes, alignof(header));
}

inline void pool_core::free_chain(header* h, std::size_t cls) noexcept {
  std::uint64_t n = 0;
  std::size_t bytes = 0;
  while (h != nullptr) {
    bytes += footprint(h);
    deallocate(std::exchange(h, h->next));
    ++n;
  }
  if (n == 0) return;
  freed_by_rotation_[cls].fetch_add(n, std::memory_order_relaxed);
  idle_credit_.fetch_add(bytes, std::memory_order_relaxed);
}

// ---- debug mode -----------------------------------------------------------------------------------

inline void pool_core::on_debug_get(header* h) noexcept {
  detail::unpoison(h);
  h->state.store(static_cast<std::uint32_t>(detail::buffer_state::in_use), std::memory_order_relaxed);
}

inline bool pool_core::on_debug_put(header* h) noexcept {
  const auto prev = h->state.exchange(static_cast<std::uint32_t>(detail::buffer_state::pooled),
                                      std::memory_order_relaxed);
  if (prev != static_cast<std::uint32_t>(detail::buffer_state::in_use)) {
    report(error_kind::double_return, h->data(), 1, "a buffer was returned twice");
    return false;  // already in the pool: pooling it again would hand it to two owners
  }
  if (h->cls != detail::oversize_class) detail::poison(h);
  return true;
}

inline void pool_core::report(error_kind kind, const void* data, std::size_t count, std::string message) const noexcept {
  error_report r{kind, data, count, std::move(message)};
  if (opts_.on_error) {
    opts_.on_error(r);
    return;
  }
  std::fprintf(stderr, "bufpool: %s: %s (buffer %p)\n", to_string(kind), r.message.c_str(), data);
  if (kind != error_kind::leak_at_destroy) std::abort();
}

// ---- statistics -----------------------------------------------------------------------------------

inline pool_snapshot pool_core::snapshot() const {
  pool_snapshot s;
  s.min_class = opts_.min_class;
  s.max_class = opts_.max_class;
  s.ring_capacity = opts_.ring_capacity;
  s.max_idle_bytes = opts_.max_idle_bytes;
  s.debug = debug_;
  s.enabled = opts_.enabled;
  if (leaks_) {
    s.leak_detection = to_string(opts_.leaks);
    s.leak_sample_every = leaks_->sample_every();
    s.leak_tracked = leaks_->tracked();
  }
  s.classes.resize(nclasses_);
  auto add = [&](const detail::thread_cache& tc, bool count_pooled) {
    for (std::size_t c = 0; c < nclasses_; ++c) {
      const detail::class_cache& cc = tc.classes[c];
      const detail::class_counters& k = cc.counters;
      class_stats& o = s.classes[c];
      // The tiers first, then gets: the owner bumps gets before a tier, so a concurrent snapshot may
      // see a tier ahead of gets; gets is then taken as their sum (private hits 0 for the moment).
      const std::uint64_t shared = k.hits_shared.load(std::memory_order_relaxed);
      const std::uint64_t stolen = k.hits_stolen.load(std::memory_order_relaxed);
      const std::uint64_t victim = k.hits_victim.load(std::memory_order_relaxed);
      const std::uint64_t misses = k.misses.load(std::memory_order_relaxed);
      const std::uint64_t others = shared + stolen + victim + misses;
      const std::uint64_t gets = std::max(k.gets.load(std::memory_order_relaxed), others);
      o.gets += gets;
      o.puts += k.puts.load(std::memory_order_relaxed);
      o.hits_private += gets - others;
      o.hits_shared += shared;
      o.hits_stolen += stolen;
      o.hits_victim += victim;
      o.misses += misses;
      o.dropped += k.dropped.load(std::memory_order_relaxed);
      o.freed_by_thread_exit += k.freed_by_thread_exit.load(std::memory_order_relaxed);
      if (count_pooled)
        o.pooled += cc.count.load(std::memory_order_relaxed) + cc.ring.size();
    }
    s.oversize.gets += tc.oversize_gets.load(std::memory_order_relaxed);
    s.oversize.puts += tc.oversize_puts.load(std::memory_order_relaxed);
    s.oversize.outstanding_bytes += static_cast<std::int64_t>(tc.oversize_bytes_got.load(std::memory_order_relaxed) -
                                                              tc.oversize_bytes_put.load(std::memory_order_relaxed));
  };
  for (const detail::thread_cache* tc = caches_.load(std::memory_order_acquire); tc != nullptr; tc = tc->next)
    add(*tc, true);
  {
    std::lock_guard lk(orphan_mu_);
    add(*orphan_, false);
  }
  {
    std::lock_guard lk(victim_mu_);
    for (std::size_t c = 0; c < nclasses_; ++c) s.classes[c].pooled += victim_[c].size.load(std::memory_order_relaxed);
  }
  {
    std::lock_guard lk(caches_mu_);
    s.threads = attached_;
    s.thread_caches = cache_count_;
  }
  const std::uint64_t rotations = epoch_.load(std::memory_order_relaxed);
  for (std::size_t c = 0; c < nclasses_; ++c) {
    class_stats& o = s.classes[c];
    o.size = class_size(c);
    o.freed_by_rotation = freed_by_rotation_[c].load(std::memory_order_relaxed);
    o.rotations = rotations;
    o.pooled_bytes = o.pooled * o.size;
    o.outstanding = static_cast<std::int64_t>(o.gets) - static_cast<std::int64_t>(o.puts);
    s.totals += o;
  }
  s.totals.rotations = rotations;
  s.oversize.outstanding = static_cast<std::int64_t>(s.oversize.gets) - static_cast<std::int64_t>(s.oversize.puts);
  return s;
}

// ---- the handle -----------------------------------------------------------------------------------

/// A pool of byte buffers with per-thread caches. Non-copyable, non-movable.
///
/// Lifetime: buffers may outlive their pool, as they do in an Asio program whose io_context is
/// destroyed after the pool while handlers still hold buffers. Destroying the pool frees every pooled
/// buffer; each buffer still out frees its own memory when it is returned later, on any thread
/// (debug mode reports them as leak_at_destroy). The memory resource (pool_options::memory) must
/// outlive every buffer. A return concurrent with the pool's destruction is a data race.
class pool {
public:
  /// Builds a pool; throws std::invalid_argument (see validate()) for unusable options.
  explicit pool(pool_options options = {}) : core_(new pool_core(std::move(options), this)) {}
  ~pool() { core_->retire(); }
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// A buffer with size() == n and capacity() == n rounded up to its class (exactly n above
  /// max_class, unpooled). Throws std::bad_alloc when a new allocation fails or n cannot be served.
  BUFPOOL_INLINE buffer get(std::size_t n) { return core_->get(n); }
  /// A buffer of `headroom + n` bytes whose view starts after the headroom (size() == n, headroom() ==
  /// headroom), so that buffer::prepend() can put a header in front of the body without a copy.
  buffer get(std::size_t n, std::size_t headroom) { return core_->get(n, headroom); }
  /// Returns `b` now (same as destroying it). A buffer of another pool goes back to its own pool
  /// (reported as wrong_pool in debug mode).
  void put(buffer&& b) noexcept { core_->put(std::move(b)); }
  /// Returns a buffer detached with buffer::release().
  void put_raw(std::byte* data) noexcept { core_->put_raw(data); }
  /// One rotation (what the timer does), then this thread's own part of it.
  void rotate() { core_->rotate(); }
  /// This thread's part of the rotations that happened since its last call: ages its magazines.
  void rotate_local() noexcept { core_->rotate_local(); }
  /// Statistics, gathered now. Exact when nothing runs concurrently.
  pool_snapshot snapshot() const { return core_->snapshot(); }
  /// The sampled leak detector's findings (pool_options::leaks): the sampled buffers taken at least
  /// `min_age` ago and still out, grouped by the call stack that took them, the largest group first.
  /// Empty when the detector is off. Names in the stacks need the program linked with -rdynamic
  /// (CMake: ENABLE_EXPORTS); without it they show the binary and an offset (addr2line reads them).
  std::vector<leak_site> leaks(std::chrono::nanoseconds min_age = std::chrono::nanoseconds(0)) const {
    return core_->leaks(min_age);
  }
  /// Bytes the calling thread has taken and not returned itself (see pool_core).
  std::int64_t thread_outstanding_bytes() noexcept { return core_->thread_outstanding_bytes(); }
  /// The options the pool was built with.
  const pool_options& options() const noexcept { return core_->options(); }
  /// Number of size classes.
  std::size_t class_count() const noexcept { return core_->class_count(); }
  /// Size in bytes of class `i`.
  std::size_t class_size(std::size_t i) const noexcept { return core_->class_size(i); }
  /// The class that serves a request of `n` bytes; class_count() or more means oversize.
  std::size_t class_index(std::size_t n) const noexcept { return core_->class_index(n); }

private:
  pool_core* core_;
};

}  // namespace bufpool
