// Micro-benchmarks of the pool's fast paths against glibc malloc/free and a bare thread-local slot.
// Results and the exact command live in docs/benchmarks.md.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include <bufpool/bufpool.hpp>

namespace {
constexpr std::size_t size_4k = 4096;

bufpool::pool& shared_pool() {
  static bufpool::pool p;
  return p;
}

// get+put of 4 KiB on one thread: the private-slot hit.
void BM_pool_get_put(benchmark::State& state) {
  auto& p = shared_pool();
  for (auto _ : state) {
    bufpool::buffer b = p.get(size_4k);
    benchmark::DoNotOptimize(b.data());
  }
}
BENCHMARK(BM_pool_get_put)->ThreadRange(1, 2)->UseRealTime();

void BM_malloc_free(benchmark::State& state) {
  for (auto _ : state) {
    void* m = std::malloc(size_4k);
    benchmark::DoNotOptimize(m);
    std::free(m);
  }
}
BENCHMARK(BM_malloc_free)->ThreadRange(1, 2)->UseRealTime();

// The floor: one thread-local slot and nothing else.
void BM_bare_thread_local_slot(benchmark::State& state) {
  static thread_local void* slot = nullptr;
  for (auto _ : state) {
    void* m = slot != nullptr ? std::exchange(slot, nullptr) : std::malloc(size_4k);
    benchmark::DoNotOptimize(m);
    if (slot == nullptr) slot = m; else std::free(m);
  }
  std::free(std::exchange(slot, nullptr));
}
BENCHMARK(BM_bare_thread_local_slot);

// Go's BenchmarkPoolOverflow: 100 puts then 100 gets per iteration. Reported per get+put pair.
void BM_pool_overflow(benchmark::State& state) {
  auto& p = shared_pool();
  std::vector<bufpool::buffer> v;
  v.reserve(100);
  for (int i = 0; i < 100; ++i) v.push_back(p.get(size_4k));
  for (auto _ : state) {
    v.clear();                                     // 100 puts
    for (int i = 0; i < 100; ++i) v.push_back(p.get(size_4k));  // 100 gets
    benchmark::DoNotOptimize(v.data());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_pool_overflow)->ThreadRange(1, 2)->UseRealTime();

void BM_malloc_overflow(benchmark::State& state) {
  std::vector<void*> v(100);
  for (auto _ : state) {
    for (auto& m : v) m = std::malloc(size_4k);
    benchmark::DoNotOptimize(v.data());
    for (auto* m : v) std::free(m);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_malloc_overflow)->ThreadRange(1, 2)->UseRealTime();

// Cross-thread return: one thread gets and hands batches of 64 buffers to another that returns them
// (the server's pattern when a write completes elsewhere). Reported per buffer.
template <typename Get, typename Put>
void cross_thread(benchmark::State& state, Get get, Put put) {
  using item = decltype(get());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<item> mailbox;
  bool done = false;
  std::thread consumer([&] {
    std::vector<item> batch;
    for (;;) {
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return !mailbox.empty() || done; });
        if (mailbox.empty() && done) return;
        batch.swap(mailbox);
      }
      cv.notify_all();
      for (auto& x : batch) put(std::move(x));
      batch.clear();
    }
  });
  std::vector<item> batch;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) batch.push_back(get());
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return mailbox.empty(); });
    mailbox.swap(batch);
    lk.unlock();
    cv.notify_all();
  }
  {
    std::lock_guard lk(mu);
    done = true;
  }
  cv.notify_all();
  consumer.join();
  state.SetItemsProcessed(state.iterations() * 64);
}

void BM_pool_cross_thread(benchmark::State& state) {
  auto& p = shared_pool();
  cross_thread(state, [&] { return p.get(size_4k); }, [](bufpool::buffer b) { b.reset(); });
}
BENCHMARK(BM_pool_cross_thread)->UseRealTime();

void BM_malloc_cross_thread(benchmark::State& state) {
  cross_thread(state, [] { return std::malloc(size_4k); }, [](void* m) { std::free(m); });
}
BENCHMARK(BM_malloc_cross_thread)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
