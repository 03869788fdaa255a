// rotation_timer: runs pool::rotate() every interval on a set of io_contexts, the analog of the GC
// cycle that ages Go's sync.Pool. The rotation runs on the first context; each other context then runs
// pool::rotate_local(), so every io_context thread ages its own magazines even when it is idle.
// Model: one thread per io_context (the io_context-per-core design). Threads that are not io_context
// threads age their magazines on their next get/put, or by calling pool::rotate_local().
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "detail/asio.hpp"
#if defined(BUFPOOL_USE_BOOST_ASIO)
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#else
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#endif

#include "options.hpp"
#include "pool.hpp"

namespace bufpool {

/// Rotates a pool periodically from Asio. Start with start(); stop() or the destructor ends it.
/// Once stop() has returned, no rotation of this timer runs or will run, so the pool may go.
class rotation_timer {
public:
  /// `contexts` must be non-empty; the rotation itself runs on contexts.front().
  rotation_timer(pool& p, std::vector<net::io_context*> contexts,
                 std::chrono::milliseconds interval = default_rotation_interval)
      : state_(std::make_shared<state>(p, checked(std::move(contexts), interval), interval)) {}
  rotation_timer(const rotation_timer&) = delete;
  rotation_timer& operator=(const rotation_timer&) = delete;
  ~rotation_timer() { stop(); }

  /// Arms the timer. Thread-safe; a second call does nothing.
  void start() {
    std::lock_guard lk(state_->mu);
    if (state_->started || state_->stopped) return;
    state_->started = true;
    net::post(*state_->contexts.front(), [s = state_] { arm(s); });
  }

  /// Stops rotating. Thread-safe; waits for a rotation in progress to finish.
  void stop() {
    std::lock_guard lk(state_->mu);
    state_->stopped = true;
    net::post(*state_->contexts.front(), [s = state_] { s->timer.cancel(); });
  }

  /// Rotations this timer has performed.
  std::uint64_t rotations() const {
    std::lock_guard lk(state_->mu);
    return state_->count;
  }

private:
  struct state {
    state(pool& p, std::vector<net::io_context*> c, std::chrono::milliseconds i)
        : target(p), contexts(std::move(c)), interval(i), timer(*contexts.front()) {}
    pool& target;
    std::vector<net::io_context*> contexts;
    std::chrono::milliseconds interval;
    net::steady_timer timer;  // used on contexts.front() only
    mutable std::mutex mu;     // held while touching the pool, so that stop() fences every use
    bool started = false;
    bool stopped = false;
    std::uint64_t count = 0;
  };

  static std::vector<net::io_context*> checked(std::vector<net::io_context*> contexts,
                                               std::chrono::milliseconds interval) {
    if (contexts.empty()) throw std::invalid_argument("bufpool::rotation_timer needs at least one io_context");
    for (std::size_t i = 0; i < contexts.size(); ++i)
      if (contexts[i] == nullptr)
        throw std::invalid_argument("bufpool::rotation_timer: io_context " + std::to_string(i) + " is null");
    if (interval <= std::chrono::milliseconds::zero())
      throw std::invalid_argument("bufpool::rotation_timer interval must be positive");
    return contexts;
  }

  static void arm(const std::shared_ptr<state>& s) {
    s->timer.expires_after(s->interval);
    s->timer.async_wait([s](const auto& ec) {  // std::error_code, or Boost.System's
      if (ec) return;
      {
        std::lock_guard lk(s->mu);
        if (s->stopped) return;
        s->target.rotate();  // includes this thread's own part
        ++s->count;
      }
      for (std::size_t i = 1; i < s->contexts.size(); ++i)
        net::post(*s->contexts[i], [s] {
          std::lock_guard lk(s->mu);
          if (!s->stopped) s->target.rotate_local();
        });
      arm(s);
    });
  }

  std::shared_ptr<state> state_;
};

}  // namespace bufpool
