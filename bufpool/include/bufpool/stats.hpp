// pool_snapshot: the pool's statistics gathered on demand (their JSON form: <bufpool/json.hpp>).
//
// Counters are cumulative since the pool was built; pooled/pooled_bytes/outstanding are levels. At
// quiescence (no get/put/rotate running) these identities hold, per class and in totals:
//   gets   == hits_private + hits_shared + hits_stolen + hits_victim + misses
//   pooled == (puts - dropped) - (gets - misses) - freed_by_rotation - freed_by_thread_exit
//   outstanding == gets - puts
// While threads run, a snapshot is not an atomic cut: each counter is read once, in no common instant.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bufpool {

/// Counters of one size class, or their sum over all classes.
struct class_stats {
  std::size_t size = 0;                    ///< class size in bytes (0 in totals)
  std::uint64_t gets = 0;                  ///< get() calls served from this class
  std::uint64_t puts = 0;                  ///< buffers returned to this class
  std::uint64_t hits_private = 0;          ///< gets served by the thread's magazine (private tier)
  std::uint64_t hits_shared = 0;           ///< gets served by the head of the thread's own ring
  std::uint64_t hits_stolen = 0;           ///< gets served by the tail of another thread's ring
  std::uint64_t hits_victim = 0;           ///< gets served by the victim generation
  std::uint64_t misses = 0;                ///< gets that allocated a new buffer
  std::uint64_t dropped = 0;               ///< returns freed at once (ring full, or idle-bytes cap), and the
                                           ///< rare stolen buffer that found its slot still busy
  std::uint64_t freed_by_rotation = 0;     ///< buffers freed because no one asked for them for two rotations
  std::uint64_t freed_by_thread_exit = 0;  ///< buffers freed when the thread caching them exited
  std::uint64_t rotations = 0;             ///< rotations performed by the pool
  std::uint64_t pooled = 0;                ///< idle buffers held by the pool now
  std::uint64_t pooled_bytes = 0;          ///< their bytes
  std::int64_t outstanding = 0;            ///< buffers handed out and not yet returned

  class_stats& operator+=(const class_stats& o) noexcept;
};

/// Buffers above max_class: allocated and freed directly, never pooled.
struct oversize_stats {
  std::uint64_t gets = 0;
  std::uint64_t puts = 0;
  std::int64_t outstanding = 0;
  std::int64_t outstanding_bytes = 0;
};

/// One place in the program that took sampled buffers and did not return them (pool::leaks()).
struct leak_site {
  std::vector<std::string> stack;    ///< the call stack of the get, innermost first, the pool's frames left out
  std::size_t sampled = 0;           ///< sampled buffers taken here and still out
  std::size_t estimated = 0;         ///< sampled x the sampling interval: about how many in all
  std::size_t bytes = 0;             ///< bytes the sampled ones asked for
  std::chrono::nanoseconds oldest{0};  ///< how long ago the oldest of them was taken
};

/// Everything a pool reports.
struct pool_snapshot {
  std::size_t min_class = 0;
  std::size_t max_class = 0;
  std::uint32_t ring_capacity = 0;
  std::size_t max_idle_bytes = 0;
  bool debug = false;
  bool enabled = true;
  const char* leak_detection = "off";  ///< pool_options::leaks: "off", "sampled" or "all"
  std::uint32_t leak_sample_every = 0; ///< 1 in this many gets is sampled (0 when off)
  std::size_t leak_tracked = 0;        ///< sampled buffers out now (not all of them leaks)
  std::size_t threads = 0;          ///< threads currently attached to the pool
  std::size_t thread_caches = 0;    ///< per-thread caches ever created (reused after a thread exits)
  class_stats totals;               ///< sum over classes
  std::vector<class_stats> classes; ///< one entry per size class, smallest first
  oversize_stats oversize;
};

inline class_stats& class_stats::operator+=(const class_stats& o) noexcept {
  gets += o.gets;
  puts += o.puts;
  hits_private += o.hits_private;
  hits_shared += o.hits_shared;
  hits_stolen += o.hits_stolen;
  hits_victim += o.hits_victim;
  misses += o.misses;
  dropped += o.dropped;
  freed_by_rotation += o.freed_by_rotation;
  freed_by_thread_exit += o.freed_by_thread_exit;
  pooled += o.pooled;
  pooled_bytes += o.pooled_bytes;
  outstanding += o.outstanding;
  return *this;
}

}  // namespace bufpool
