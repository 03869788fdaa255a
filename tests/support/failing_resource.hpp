// A memory resource that fails on demand, for allocation-failure tests: forwards to new/delete, and
// throws std::bad_alloc while `fail_all` is set, on every `fail_every`-th allocation when that is
// non-zero, or on about one allocation in `fail_one_in` when that is non-zero (chosen by a hash of the
// attempt's number: no period for a fixed sequence of allocations to fall in step with, so failures
// land on every kind of allocation, not on the same few each round). Thread-safe (the server's
// workers allocate from it concurrently).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory_resource>
#include <new>

namespace bufpool::test {

class failing_resource : public std::pmr::memory_resource {
public:
  std::atomic<bool> fail_all{false};
  std::atomic<unsigned> fail_every{0};
  std::atomic<unsigned> fail_one_in{0};
  std::atomic<long> allocations{0};
  std::atomic<long> failures{0};
  std::atomic<long> frees{0};
  long live() const { return allocations.load() - frees.load(); }

private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    const unsigned every = fail_every.load();
    const unsigned one_in = fail_one_in.load();
    const long n = attempts_.fetch_add(1) + 1;
    if (fail_all.load() || (every != 0 && n % every == 0) || (one_in != 0 && mix(n) % one_in == 0)) {
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
  static std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  std::atomic<long> attempts_{0};
};

}  // namespace bufpool::test
