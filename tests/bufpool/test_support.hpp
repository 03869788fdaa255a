// Helpers shared by the bufpool tests: a counting memory resource (the "allocation hook" that Go's
// tests get from finalizers), the stats identities, and a scale factor for sanitizer builds.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory_resource>

#include <doctest/doctest.h>

#include <bufpool/stats.hpp>

#include "../support/failing_resource.hpp"

namespace bufpool::test {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int scale_down = 10;  // sanitizers run 5-20x slower; keep each test in seconds
#else
inline constexpr int scale_down = 1;
#endif

/// Counts allocations and frees, forwarding to new/delete: the failing resource of the server's
/// tests with its failures left off (one resource for both, not two near-twins).
using counting_resource = failing_resource;

/// Checks the identities that must hold at quiescence for one class or for the totals.
inline void check_identities(const class_stats& s) {
  CHECK(s.gets == s.hits_private + s.hits_shared + s.hits_stolen + s.hits_victim + s.misses);
  CHECK(static_cast<std::int64_t>(s.pooled) ==
        static_cast<std::int64_t>(s.puts - s.dropped) - static_cast<std::int64_t>(s.gets - s.misses) -
            static_cast<std::int64_t>(s.freed_by_rotation + s.freed_by_thread_exit));
  CHECK(s.outstanding == static_cast<std::int64_t>(s.gets) - static_cast<std::int64_t>(s.puts));
}

inline void check_identities(const pool_snapshot& s) {
  check_identities(s.totals);
  for (const auto& c : s.classes) check_identities(c);
}

}  // namespace bufpool::test
