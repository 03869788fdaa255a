// leak_tracker: the sampled leak detector (pool_options::leaks), after Netty's ResourceLeakDetector.
// A sampled get records the creation call stack of its buffer (backtrace(): no allocation after the
// first call) in a table keyed by the buffer's header and marks the header; the return of a marked
// buffer removes its record. What stays in the table was taken and not returned: pool::leaks() groups
// it by call stack (a "site"), and the pool's destruction reports every site once.
//
// Cost: "off" is none (the pool keeps its inline fast path and never calls in here). With "sampled"
// or "all", the pool sends every get and put through its out-of-line path (pool_core sets
// fast_classes_ to 0, as debug mode does); one get in sample_every takes the stack and the table's
// mutex, and so does its return. docs/benchmarks.md section 13 has the figures.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if __has_include(<execinfo.h>)
#include <execinfo.h>
#define BUFPOOL_HAVE_BACKTRACE 1
#endif
#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define BUFPOOL_HAVE_DEMANGLE 1
#endif

#include "../stats.hpp"
#include "buffer_header.hpp"

namespace bufpool::detail {

/// Gets left until this thread's next sampled get (shared by every pool: a sample is 1 in N of the
/// thread's gets whichever pool serves them).
inline thread_local std::uint32_t leak_countdown = 0;

class leak_tracker {
public:
  static constexpr int max_frames = 24;

  explicit leak_tracker(std::uint32_t sample_every) : every_(sample_every) {
#ifdef BUFPOOL_HAVE_BACKTRACE
    void* warm[1];
    ::backtrace(warm, 1);  // the first call loads the unwinder (allocates): do it now, not at a get
#endif
  }

  /// After a get: records `h` if this get is sampled.
  void on_get(buffer_header* h, std::size_t size) noexcept {
    // The countdown is the thread's, shared by pools of different rates: clamped to this one's.
    if (const std::uint32_t c = std::min(leak_countdown, every_); c > 1) {
      leak_countdown = c - 1;
      return;
    }
    leak_countdown = every_;
    record(h, size);
  }

  /// Before a return: forgets `h` if it was sampled. The caller checks h->sampled first.
  void on_put(buffer_header* h) noexcept {
    h->sampled = 0;
    std::lock_guard lk(mu_);
    live_.erase(h);
  }

  /// Sampled buffers taken at least `min_age` ago and not returned, grouped by call stack, the site
  /// with the most first.
  std::vector<leak_site> sites(std::chrono::nanoseconds min_age) const {
    const auto now = std::chrono::steady_clock::now();
    std::map<std::vector<void*>, leak_site> by_stack;
    {
      std::lock_guard lk(mu_);
      for (const auto& [h, r] : live_) {
        const auto age = std::chrono::duration_cast<std::chrono::nanoseconds>(now - r.taken);
        if (age < min_age) continue;
        std::vector<void*> key(r.frames, r.frames + r.depth);
        auto [it, fresh] = by_stack.try_emplace(key);
        leak_site& s = it->second;
        ++s.sampled;
        s.bytes += r.size;
        if (age > s.oldest) s.oldest = age;
        if (fresh) s.stack = symbolize(r.frames, r.depth);
      }
    }
    std::vector<leak_site> out;
    out.reserve(by_stack.size());
    for (auto& [k, s] : by_stack) {
      s.estimated = s.sampled * every_;
      out.push_back(std::move(s));
    }
    std::stable_sort(out.begin(), out.end(), [](const leak_site& a, const leak_site& b) { return a.sampled > b.sampled; });
    return out;
  }

  std::uint32_t sample_every() const noexcept { return every_; }
  /// Sampled buffers out now.
  std::size_t tracked() const {
    std::lock_guard lk(mu_);
    return live_.size();
  }

  /// One site as text: what the pool's destruction reports.
  static std::string describe(const leak_site& s, std::uint32_t every) {
    std::string m = std::to_string(s.sampled) + " sampled buffer(s) (" + std::to_string(s.bytes) +
                    " bytes asked" + (every > 1 ? ", about " + std::to_string(s.estimated) + " in all" : std::string()) +
                    ") taken here and never returned, the oldest " +
                    std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(s.oldest).count()) +
                    " ms ago:";
    for (const auto& f : s.stack) m += "\n    " + f;
    return m;
  }

private:
  struct entry {
    void* frames[max_frames];
    int depth;
    std::size_t size;
    std::chrono::steady_clock::time_point taken;
  };

  [[gnu::noinline]] void record(buffer_header* h, std::size_t size) noexcept {
    entry r;
#ifdef BUFPOOL_HAVE_BACKTRACE
    r.depth = ::backtrace(r.frames, max_frames);
#else
    r.depth = 0;
#endif
    r.size = size;
    r.taken = std::chrono::steady_clock::now();
    std::lock_guard lk(mu_);
    try {
      live_.insert_or_assign(h, r);
      h->sampled = 1;
    } catch (...) {  // out of memory for the record: this get goes unsampled, the get itself succeeds
    }
  }

  // Frames inside the pool (this class, pool_core, pool) are dropped: a site starts at the caller.
  static std::vector<std::string> symbolize(void* const* frames, int depth) {
    std::vector<std::string> out;
#ifdef BUFPOOL_HAVE_BACKTRACE
    char** names = ::backtrace_symbols(frames, depth);
    for (int i = 0; i < depth; ++i) {
      std::string line = names != nullptr ? names[i] : "?";
      // "binary(mangled+0x1f) [0x...]": the mangled name demangled in place.
      const auto open = line.find('('), plus = line.find('+', open == std::string::npos ? 0 : open);
#ifdef BUFPOOL_HAVE_DEMANGLE
      if (open != std::string::npos && plus != std::string::npos && plus > open + 1) {
        const std::string mangled = line.substr(open + 1, plus - open - 1);
        int status = 0;
        if (char* d = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status); d != nullptr) {
          if (status == 0) line.replace(open + 1, plus - open - 1, d);
          std::free(d);
        }
      }
#endif
      if (line.find("bufpool::detail::leak_tracker::") != std::string::npos ||
          line.find("bufpool::pool_core::get") != std::string::npos || line.find("bufpool::pool::get") != std::string::npos)
        continue;
      out.push_back(std::move(line));
    }
    std::free(names);
#else
    (void)frames;
    (void)depth;
    out.push_back("(no call stacks on this platform: <execinfo.h> is missing)");
#endif
    return out;
  }

  const std::uint32_t every_;
  mutable std::mutex mu_;
  std::unordered_map<buffer_header*, entry> live_;
};

}  // namespace bufpool::detail
