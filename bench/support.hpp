// What the Asio benches of issue 21 share (line_bench, line_bench_beast, fanout_bench): a counting
// global operator new (allocations made on threads that set `counting`), the calling thread's CPU time,
// and the server-thread loop of a line bench (a warm-up, then a measured stretch). Include it in exactly
// one translation unit of a program: it replaces operator new.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <new>

namespace bench {
inline thread_local bool counting = false;
inline std::atomic<std::uint64_t> news{0};
}  // namespace bench

void* operator new(std::size_t n) {
  if (bench::counting) bench::news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace bench {

inline double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

/// What the measured stretch of a server thread saw.
struct measured {
  double cpu_s = 0;               // the thread's CPU time
  std::uint64_t events = 0;       // how far `done` moved
  std::uint64_t allocations = 0;  // operator new calls on the thread
};

/// Runs `io` on this thread for `seconds` (warm-up), then `seconds` more measured; then sets `stop`
/// and runs it half a second longer so that clients finish their last exchange.
template <class IoContext>
measured warm_then_measure(IoContext& io, double seconds, const std::atomic<std::uint64_t>& done,
                           std::atomic<bool>& stop) {
  auto run_for = [&](double s) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
    while (std::chrono::steady_clock::now() < end) io.run_for(std::chrono::milliseconds(50));
  };
  run_for(seconds);
  counting = true;
  const double cpu0 = thread_cpu_s();
  const std::uint64_t done0 = done.load(), news0 = news.load();
  run_for(seconds);
  measured m{thread_cpu_s() - cpu0, done.load() - done0, news.load() - news0};
  counting = false;
  stop = true;
  io.run_for(std::chrono::milliseconds(500));
  return m;
}

}  // namespace bench
