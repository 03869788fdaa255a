// Micro-benchmarks of the pool's fast paths against glibc malloc/free and a bare thread-local slot.
// Results and the exact command live in docs/benchmarks.md.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include <bufpool/bufpool.hpp>
#include <bufpool/chunk_resource.hpp>

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

// The same with the sampled leak detector on (pool_options::leaks): every get and put through the
// out-of-line path, 1 in Arg gets recording its call stack (Arg 1: leak_detection::all).
void BM_pool_get_put_leak_detection(benchmark::State& state) {
  bufpool::pool_options o;
  o.leaks = state.range(0) == 1 ? bufpool::leak_detection::all : bufpool::leak_detection::sampled;
  o.leak_sample_every = static_cast<std::uint32_t>(state.range(0));
  bufpool::pool p(o);
  for (auto _ : state) {
    bufpool::buffer b = p.get(size_4k);
    benchmark::DoNotOptimize(b.data());
  }
}
BENCHMARK(BM_pool_get_put_leak_detection)->Arg(1)->Arg(128)->Arg(1024);

// A shared_buffer's copy and release (issue 21's aim: at most 2 ns uncontended), beside the same for a
// std::shared_ptr<const std::string> (the peer).
void BM_shared_buffer_copy_release(benchmark::State& state) {
  const bufpool::shared_buffer s = shared_pool().get(size_4k).share();
  for (auto _ : state) {
    bufpool::shared_buffer c = s;
    benchmark::DoNotOptimize(c.data());
  }
}
BENCHMARK(BM_shared_buffer_copy_release);

// Its one-thread twin: the count changed with plain loads and stores.
void BM_local_shared_buffer_copy_release(benchmark::State& state) {
  const bufpool::local_shared_buffer s = shared_pool().get(size_4k).share_local();
  for (auto _ : state) {
    bufpool::local_shared_buffer c = s;
    benchmark::DoNotOptimize(c.data());
  }
}
BENCHMARK(BM_local_shared_buffer_copy_release);

void BM_shared_ptr_copy_release(benchmark::State& state) {
  // libstdc++ skips the atomics while the process has never had a second thread
  // (__libc_single_threaded); a server has threads, so make this one have had one.
  static const bool threaded = [] {
    std::thread([] {}).join();
    return true;
  }();
  benchmark::DoNotOptimize(threaded);
  const auto s = std::make_shared<const std::string>(size_4k, 'x');
  for (auto _ : state) {
    std::shared_ptr<const std::string> c = s;
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_shared_ptr_copy_release);

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

// Go's BenchmarkPoolStarvation (67 puts, then 100 gets), for a pool of buffers: each thread cycles
// 100 buffers but the pool may keep only 67 of them per thread (max_idle_bytes), so every round 33
// returns are freed and 33 gets allocate, as Go's Gets past the 67 find nothing and call New. The pool
// is shared by the threads, so an empty magazine and ring steal before they allocate. Per get+put
// pair. The second variant backs the pool with bufpool::chunk_resource instead of glibc.
bufpool::pool_options starved_options(int threads, std::pmr::memory_resource* memory) {
  bufpool::pool_options o;
  o.max_idle_bytes = static_cast<std::size_t>(threads) * 67 * (size_4k + 64);
  o.memory = memory;
  return o;
}

void starvation(benchmark::State& state, bufpool::pool& p) {
  std::vector<bufpool::buffer> v;
  v.reserve(100);
  for (int i = 0; i < 100; ++i) v.push_back(p.get(size_4k));
  for (auto _ : state) {
    v.clear();  // 100 puts: the pool keeps about 67, the rest are freed
    for (int i = 0; i < 100; ++i) v.push_back(p.get(size_4k));  // about 67 hits, 33 allocations
    benchmark::DoNotOptimize(v.data());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}

void BM_pool_starvation(benchmark::State& state) {
  static bufpool::pool p1(starved_options(1, nullptr)), p2(starved_options(2, nullptr));
  starvation(state, state.threads() == 1 ? p1 : p2);
}
BENCHMARK(BM_pool_starvation)->ThreadRange(1, 2)->UseRealTime();

void BM_pool_starvation_chunks(benchmark::State& state) {
  static bufpool::chunk_resource chunks;
  static bufpool::pool p1(starved_options(1, &chunks)), p2(starved_options(2, &chunks));
  starvation(state, state.threads() == 1 ? p1 : p2);
}
BENCHMARK(BM_pool_starvation_chunks)->ThreadRange(1, 2)->UseRealTime();

// Cross-thread return: this thread gets buffers and passes each through a lock-free single-producer
// queue to a second thread that returns (puts or frees) it, the pattern of a server whose write
// completes on another thread. Both threads spin, so the figure is the cost per buffer of the
// allocator's cross-thread path plus the queue. Reported per buffer.
template <typename T>
class spsc_queue {
public:
  bool push(T& v) {
    const auto t = tail_.load(std::memory_order_relaxed);
    if (t - head_.load(std::memory_order_acquire) == cap) return false;
    items_[t % cap] = std::move(v);
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }
  bool pop(T& v) {
    const auto h = head_.load(std::memory_order_relaxed);
    if (h == tail_.load(std::memory_order_acquire)) return false;
    v = std::move(items_[h % cap]);
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

private:
  static constexpr std::size_t cap = 256;
  alignas(64) std::atomic<std::size_t> head_{0};
  alignas(64) std::atomic<std::size_t> tail_{0};
  alignas(64) T items_[cap]{};
};

template <typename Get, typename Put>
void cross_thread(benchmark::State& state, Get get, Put put) {
  using item = decltype(get());
  auto q = std::make_unique<spsc_queue<item>>();
  std::atomic<bool> done{false};
  std::thread consumer([&] {
    item x{};
    for (;;) {
      if (q->pop(x)) {
        put(std::move(x));
      } else if (done.load(std::memory_order_acquire)) {
        if (!q->pop(x)) return;
        put(std::move(x));
      }
    }
  });
  for (auto _ : state) {
    item x = get();
    while (!q->push(x)) {
    }
  }
  done.store(true, std::memory_order_release);
  consumer.join();
  state.SetItemsProcessed(state.iterations());
}

void BM_pool_cross_thread(benchmark::State& state) {
  bufpool::pool p;
  cross_thread(state, [&] { return p.get(size_4k); }, [](bufpool::buffer b) { b.reset(); });
  // Where the getter's buffers came from, as shares of all gets.
  const auto t = p.snapshot().totals;
  const double gets = static_cast<double>(t.gets);
  state.counters["stolen"] = static_cast<double>(t.hits_stolen) / gets;
  state.counters["local"] = static_cast<double>(t.hits_private + t.hits_shared) / gets;
  state.counters["missed"] = static_cast<double>(t.misses) / gets;
  state.counters["dropped"] = static_cast<double>(t.dropped) / gets;
}
BENCHMARK(BM_pool_cross_thread)->UseRealTime();

// The hand-off queue alone, passing one pointer back and forth: the floor under both rows above.
void BM_queue_floor_cross_thread(benchmark::State& state) {
  static std::byte dummy[64];
  cross_thread(state, [] { return static_cast<void*>(dummy); }, [](void* m) { benchmark::DoNotOptimize(m); });
}
BENCHMARK(BM_queue_floor_cross_thread)->UseRealTime();

void BM_malloc_cross_thread(benchmark::State& state) {
  cross_thread(state, [] { return std::malloc(size_4k); }, [](void* m) { std::free(m); });
}
BENCHMARK(BM_malloc_cross_thread)->UseRealTime();
// The same patterns at the other sizes the embedders' issue names (512 B, 16 KiB, 64 KiB), the size
// as the benchmark's argument (the 4 KiB rows above keep their names).
void BM_pool_get_put_size(benchmark::State& state) {
  auto& p = shared_pool();
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    bufpool::buffer b = p.get(n);
    benchmark::DoNotOptimize(b.data());
  }
}
BENCHMARK(BM_pool_get_put_size)->Arg(512)->Arg(16384)->Arg(65536);

void BM_malloc_free_size(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    void* m = std::malloc(n);
    benchmark::DoNotOptimize(m);
    std::free(m);
  }
}
BENCHMARK(BM_malloc_free_size)->Arg(512)->Arg(16384)->Arg(65536);

void BM_pool_overflow_size(benchmark::State& state) {
  auto& p = shared_pool();
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<bufpool::buffer> v;
  v.reserve(100);
  for (int i = 0; i < 100; ++i) v.push_back(p.get(n));
  for (auto _ : state) {
    v.clear();
    for (int i = 0; i < 100; ++i) v.push_back(p.get(n));
    benchmark::DoNotOptimize(v.data());
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_pool_overflow_size)->Arg(512)->Arg(16384)->Arg(65536);

void BM_malloc_overflow_size(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<void*> v(100);
  for (auto _ : state) {
    for (auto& m : v) m = std::malloc(n);
    benchmark::DoNotOptimize(v.data());
    for (auto* m : v) std::free(m);
  }
  state.SetItemsProcessed(state.iterations() * 100);
}
BENCHMARK(BM_malloc_overflow_size)->Arg(512)->Arg(16384)->Arg(65536);

void BM_pool_cross_thread_size(benchmark::State& state) {
  bufpool::pool p;
  const auto n = static_cast<std::size_t>(state.range(0));
  cross_thread(state, [&] { return p.get(n); }, [](bufpool::buffer b) { b.reset(); });
}
BENCHMARK(BM_pool_cross_thread_size)->Arg(512)->Arg(16384)->Arg(65536)->UseRealTime();

void BM_malloc_cross_thread_size(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  cross_thread(state, [n] { return std::malloc(n); }, [](void* m) { std::free(m); });
}
BENCHMARK(BM_malloc_cross_thread_size)->Arg(512)->Arg(16384)->Arg(65536)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
