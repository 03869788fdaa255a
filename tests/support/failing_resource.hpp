// A memory resource that fails on demand, for allocation-failure tests: forwards to new/delete, and
// throws std::bad_alloc while `fail_all` is set, or on every `fail_every`-th allocation when that is
// non-zero. Thread-safe (the server's workers allocate from it concurrently).
#pragma once

#include <atomic>
#include <memory_resource>
#include <new>

namespace bufpool::test {

class failing_resource : public std::pmr::memory_resource {
public:
  std::atomic<bool> fail_all{false};
  std::atomic<unsigned> fail_every{0};
  std::atomic<long> allocations{0};
  std::atomic<long> failures{0};
  std::atomic<long> frees{0};
  long live() const { return allocations.load() - frees.load(); }

private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    const unsigned every = fail_every.load();
    const long n = attempts_.fetch_add(1) + 1;
    if (fail_all.load() || (every != 0 && n % every == 0)) {
      ++failures;
      throw std::bad_alloc();
    }
    ++allocations;
    return std::pmr::new_delete_resource()->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    ++frees;
    std::pmr::new_delete_resource()->deallocate(p, bytes, align);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override { return this == &o; }
  std::atomic<long> attempts_{0};
};

}  // namespace bufpool::test
