// pool_options: everything a pool can be configured with, its defaults, and its validation.
// Invariant: a pool is only ever built from options that validate() accepted.
#pragma once

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory_resource>
#include <stdexcept>
#include <string>

#ifndef BUFPOOL_DEBUG_DEFAULT
#define BUFPOOL_DEBUG_DEFAULT 0
#endif

namespace bufpool {

/// The sampled leak detector's level (pool_options::leaks).
enum class leak_detection {
  off,      ///< nothing recorded; the pool's inline fast path as is
  sampled,  ///< 1 get in pool_options::leak_sample_every records its call stack
  all,      ///< every get records its call stack (tests, hunting a leak)
};

inline const char* to_string(leak_detection l) noexcept {
  switch (l) {
    case leak_detection::off: return "off";
    case leak_detection::sampled: return "sampled";
    case leak_detection::all: return "all";
  }
  return "unknown";
}

/// What a debug-mode check found.
enum class error_kind {
  double_return,    ///< a buffer was returned while already in the pool
  wrong_pool,       ///< a buffer was returned to a pool that did not hand it out
  foreign_pointer,  ///< put_raw() got a pointer that is not a live bufpool buffer
  leak_at_destroy,  ///< the pool was destroyed while buffers were still handed out
};

/// The name of an error_kind, as used in reports.
inline const char* to_string(error_kind k) noexcept {
  switch (k) {
    case error_kind::double_return: return "double_return";
    case error_kind::wrong_pool: return "wrong_pool";
    case error_kind::foreign_pointer: return "foreign_pointer";
    case error_kind::leak_at_destroy: return "leak_at_destroy";
  }
  return "unknown";
}

/// One finding of a debug-mode check, handed to pool_options::on_error.
struct error_report {
  error_kind kind;          ///< what was found
  const void* data;         ///< the buffer's data pointer (nullptr for leak_at_destroy)
  std::size_t count;        ///< buffers concerned (1, or the number outstanding at destruction)
  std::string message;      ///< a readable sentence
};

/// Default interval of bufpool::rotation_timer: an unused buffer is freed within two of these.
inline constexpr std::chrono::milliseconds default_rotation_interval{10'000};

/// Configuration of a bufpool::pool. Every field has a usable default.
struct pool_options {
  /// Smallest size class in bytes (a power of two, at least 64).
  std::size_t min_class = 256;
  /// Largest size class in bytes (a power of two, at least min_class, at most 1 GiB). Larger requests
  /// are served unpooled and counted under "oversize".
  std::size_t max_class = 64 * 1024;
  /// Capacity of each thread's shared ring, per size class (a power of two, 1 to 65536).
  std::uint32_t ring_capacity = 128;
  /// Cap on idle (pooled) memory across all threads and classes, counting each buffer's data and its
  /// 64-byte header (what the memory resource holds for it); returns beyond it are freed and counted
  /// as dropped. At least max_class. Each thread holds at most two "credit chunks" of unused room
  /// (min(4 x (max_class + 64), max_idle_bytes / 16)), so no thread can take all of it.
  std::size_t max_idle_bytes = std::size_t{64} << 20;
  /// False turns pooling off: every get allocates (a miss) and every return frees (dropped), with the
  /// same size classes and statistics. The baseline for benchmarks.
  bool enabled = true;
  /// Debug checks: poison on return, double-return, wrong-pool and leak detection.
  bool debug = BUFPOOL_DEBUG_DEFAULT != 0;
  /// The sampled leak detector, for production (Netty's ResourceLeakDetector): sampled gets record
  /// their call stack; pool::leaks() lists, by call stack, the sampled buffers still out, and the
  /// pool's destruction reports each such site once (error_kind::leak_at_destroy). Off costs nothing;
  /// on, every get and put takes the pool's out-of-line path (docs/benchmarks.md section 13).
  leak_detection leaks = leak_detection::off;
  /// With leaks == sampled: 1 get in this many (per thread) is sampled. At least 1. (Cost of a
  /// get+put hit, docs/benchmarks.md 13: 4.3 ns off, 12.7 ns at 1024, 30 ns at 128, 2.3 us for all.)
  std::uint32_t leak_sample_every = 1024;
  /// Where buffer memory comes from; nullptr means std::pmr::new_delete_resource(). Called only on a miss
  /// (allocate) and when the pool frees a buffer (deallocate). Must outlive the pool.
  std::pmr::memory_resource* memory = nullptr;
  /// Receives debug findings. Empty: print to stderr, and abort for double_return, wrong_pool and
  /// foreign_pointer (memory is already being misused); leak_at_destroy only prints.
  std::function<void(const error_report&)> on_error;
};

/// Throws std::invalid_argument naming the field, the value and what is allowed, if `o` is unusable.
inline void validate(const pool_options& o) {
  auto fail = [](const char* field, std::size_t value, const char* allowed) {
    throw std::invalid_argument(std::string("bufpool: pool_options.") + field + " = " +
                                std::to_string(value) + " is invalid: " + allowed);
  };
  if (!std::has_single_bit(o.min_class) || o.min_class < 64)
    fail("min_class", o.min_class, "must be a power of two >= 64");
  if (!std::has_single_bit(o.max_class) || o.max_class < o.min_class || o.max_class > (std::size_t{1} << 30))
    fail("max_class", o.max_class, "must be a power of two in [min_class, 1 GiB]");
  if (!std::has_single_bit(o.ring_capacity) || o.ring_capacity > 65536)
    fail("ring_capacity", o.ring_capacity, "must be a power of two in [1, 65536]");
  if (o.max_idle_bytes < o.max_class)
    fail("max_idle_bytes", o.max_idle_bytes, "must be >= max_class");
  if (o.leak_sample_every == 0) fail("leak_sample_every", 0, "must be >= 1");
}

}  // namespace bufpool
