// Helpers shared by the bufpool tests: a counting memory resource (the "allocation hook" that Go's
// tests get from finalizers), the stats identities, and a scale factor for sanitizer builds.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory_resource>

#include <doctest/doctest.h>

#include <bufpool/stats.hpp>

namespace bufpool::test {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int scale_down = 10;  // sanitizers run 5-20x slower; keep each test in seconds
#else
inline constexpr int scale_down = 1;
#endif

/// Counts allocations and frees, forwarding to new/delete.
class counting_resource : public std::pmr::memory_resource {
public:
  std::atomic<long> allocations{0};
  std::atomic<long> frees{0};
  long live() const { return allocations.load() - frees.load(); }

private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    ++allocations;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    ++frees;
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
};

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
