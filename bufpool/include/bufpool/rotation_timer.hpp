// rotation_timer: runs pool::rotate() every interval from Asio, the analog of the GC cycle that ages
// Go's sync.Pool. The rotation runs on the first executor; each other executor then runs
// pool::rotate_local(), so every io_context thread ages its own magazines even when it is idle.
// Model: one thread per io_context (the io_context-per-core design). It also takes executors (a
// strand, a thread_pool's): there, threads that get no rotate_local() age their magazines on their
// next get/put, or by calling pool::rotate_local().
//
// Lifetime: stop() is idempotent and the destructor calls it. The timer may outlive its io_contexts
// (or thread pools): each execution context it uses carries a small service that, when the context is
// destroyed, marks it gone under the timer's lock and destroys the timer's steady_timer while the
// context's services still exist; nothing is posted to a context that is gone.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "detail/asio.hpp"
#if defined(BUFPOOL_USE_BOOST_ASIO)
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#else
#include <asio/any_io_executor.hpp>
#include <asio/execution_context.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#endif

#include "options.hpp"
#include "pool.hpp"

namespace bufpool {

namespace detail {

/// Told by an execution context when it is destroyed (its services' shutdown), for the objects that
/// registered with it.
class context_watch final : public net::execution_context::service {
public:
  static inline net::execution_context::id id;
  explicit context_watch(net::execution_context& ctx) : net::execution_context::service(ctx) {}
  /// f runs once, under no lock of this service's user, when the context is destroyed.
  void add(std::weak_ptr<void> owner, void (*f)(const std::shared_ptr<void>&, std::size_t), std::size_t index) {
    std::lock_guard lk(mu_);
    watchers_.push_back({std::move(owner), f, index});
  }

private:
  struct watcher {
    std::weak_ptr<void> owner;
    void (*f)(const std::shared_ptr<void>&, std::size_t);
    std::size_t index;
  };
  void shutdown() override {
    std::vector<watcher> w;
    {
      std::lock_guard lk(mu_);
      w.swap(watchers_);
    }
    for (auto& x : w)
      if (auto o = x.owner.lock()) x.f(o, x.index);
  }
  std::mutex mu_;
  std::vector<watcher> watchers_;
};

}  // namespace detail

/// Rotates a pool periodically from Asio. Start with start(); stop() or the destructor ends it.
/// Once stop() has returned, no rotation of this timer runs or will run, so the pool may go.
class rotation_timer {
public:
  /// `contexts` must be non-empty; the rotation itself runs on contexts.front().
  rotation_timer(pool& p, std::vector<net::io_context*> contexts,
                 std::chrono::milliseconds interval = default_rotation_interval)
      : rotation_timer(p, executors_of(checked(std::move(contexts))), interval, 0) {}
  /// Executors (an io_context's, a strand, a thread_pool's; anything any_io_executor holds), non-empty.
  template <class Executor>
    requires(!std::is_pointer_v<Executor>)
  rotation_timer(pool& p, const std::vector<Executor>& executors,
                 std::chrono::milliseconds interval = default_rotation_interval)
      : rotation_timer(p, std::vector<net::any_io_executor>(executors.begin(), executors.end()), interval, 0) {}
  rotation_timer(const rotation_timer&) = delete;
  rotation_timer& operator=(const rotation_timer&) = delete;
  ~rotation_timer() { stop(); }

  /// Arms the timer. Thread-safe; a second call, or one after stop(), does nothing.
  void start() {
    std::lock_guard lk(state_->mu);
    if (state_->started || state_->stopped) return;
    state_->started = true;
    net::post(state_->executors.front(), [s = state_] {
      std::lock_guard lk2(s->mu);
      arm(s);
    });
  }

  /// Stops rotating. Thread-safe and idempotent; a rotation in progress finishes first (it holds the
  /// lock taken here). Posts nothing to a context that is gone.
  void stop() {
    std::lock_guard lk(state_->mu);
    if (state_->stopped) return;
    state_->stopped = true;
    if (!state_->started || state_->gone.front()) return;
    net::post(state_->executors.front(), [s = state_] {
      std::lock_guard lk2(s->mu);
      if (s->timer) s->timer->cancel();
    });
  }

  /// Rotations this timer has performed.
  std::uint64_t rotations() const {
    std::lock_guard lk(state_->mu);
    return state_->count;
  }

private:
  struct state {
    state(pool& p, std::vector<net::any_io_executor> e, std::chrono::milliseconds i)
        : target(p), executors(std::move(e)), gone(executors.size(), false), interval(i) {
      timer.emplace(executors.front());
    }
    pool& target;
    std::vector<net::any_io_executor> executors;
    std::vector<bool> gone;  // executors[i]'s context is being destroyed: nothing is posted to it
    std::chrono::milliseconds interval;
    std::optional<net::steady_timer> timer;  // used on executors.front() only; reset when its context goes
    mutable std::mutex mu;                   // held while touching the pool or the timer
    bool started = false;
    bool stopped = false;
    std::uint64_t count = 0;
  };

  rotation_timer(pool& p, std::vector<net::any_io_executor> executors, std::chrono::milliseconds interval, int)
      : state_(std::make_shared<state>(p, checked(std::move(executors), interval), interval)) {
    for (std::size_t i = 0; i < state_->executors.size(); ++i) {
      net::execution_context& ctx = net::query(state_->executors[i], net::execution::context);
      net::use_service<detail::context_watch>(ctx).add(state_, &context_gone, i);
    }
  }

  // The context of executors[i] is being destroyed (its services shut down): mark it gone; if it runs
  // the timer, stop, and destroy the steady_timer now, while the context's services still exist.
  static void context_gone(const std::shared_ptr<void>& owner, std::size_t i) {
    auto* s = static_cast<state*>(owner.get());
    std::lock_guard lk(s->mu);
    s->gone[i] = true;
    if (i == 0) {
      s->stopped = true;
      s->timer.reset();
    }
  }

  static std::vector<net::io_context*> checked(std::vector<net::io_context*> contexts) {
    if (contexts.empty()) throw std::invalid_argument("bufpool::rotation_timer needs at least one io_context");
    for (std::size_t i = 0; i < contexts.size(); ++i)
      if (contexts[i] == nullptr)
        throw std::invalid_argument("bufpool::rotation_timer: io_context " + std::to_string(i) + " is null");
    return contexts;
  }
  static std::vector<net::any_io_executor> executors_of(const std::vector<net::io_context*>& contexts) {
    std::vector<net::any_io_executor> e;
    for (auto* c : contexts) e.emplace_back(c->get_executor());
    return e;
  }
  static std::vector<net::any_io_executor> checked(std::vector<net::any_io_executor> executors,
                                                   std::chrono::milliseconds interval) {
    if (executors.empty()) throw std::invalid_argument("bufpool::rotation_timer needs at least one executor");
    for (std::size_t i = 0; i < executors.size(); ++i)
      if (!executors[i])
        throw std::invalid_argument("bufpool::rotation_timer: executor " + std::to_string(i) + " is empty");
    if (interval <= std::chrono::milliseconds::zero())
      throw std::invalid_argument("bufpool::rotation_timer interval must be positive");
    return executors;
  }

  // Called with s->mu held.
  static void arm(const std::shared_ptr<state>& s) {
    if (s->stopped || !s->timer) return;
    s->timer->expires_after(s->interval);
    s->timer->async_wait([s](const auto& ec) {  // std::error_code, or Boost.System's
      if (ec) return;
      std::lock_guard lk(s->mu);
      if (s->stopped) return;
      s->target.rotate();  // includes this thread's own part
      ++s->count;
      for (std::size_t i = 1; i < s->executors.size(); ++i)
        if (!s->gone[i])
          net::post(s->executors[i], [s] {
            std::lock_guard lk2(s->mu);
            if (!s->stopped) s->target.rotate_local();
          });
      arm(s);
    });
  }

  std::shared_ptr<state> state_;
};

}  // namespace bufpool
