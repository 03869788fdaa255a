// worker: one thread running one io_context (concurrency hint 1), with its statistics, its cached
// Date header, and the list of its connections, which a periodic sweep checks for deadlines. Every
// member except the atomics in `stats` and `draining` is touched by the worker thread only.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <bufpool/pool.hpp>

#include "http/env.hpp"
#include "stats.hpp"

namespace bufpool::server {

using clock = std::chrono::steady_clock;

/// Logs one rejected request or closed connection at debug level: what, the status sent (0: none),
/// the peer. Nothing is done (no system call, no formatting) unless debug is enabled; at info a
/// summary per rotation interval says how many of each kind there were (server::log_error_summary).
void log_event(error_kind kind, unsigned status, int fd);
/// "address:port" of a connected socket's peer ("-" if it cannot be had).
std::string peer_of(int fd);

class uring_loop;

/// What every connection offers the worker: a deadline check and a drain request.
class connection_base {
public:
  virtual ~connection_base() = default;
  /// Called by the sweep once now >= deadline().
  virtual void on_deadline() = 0;
  /// Shutdown: close now if idle, else after the response in flight.
  virtual void drain() = 0;
  /// Shutdown after the grace period: close now.
  virtual void force_close() = 0;
  /// The worker's buffer budget has room again: read on (see worker::wait_for_budget).
  virtual void resume() {}
  clock::time_point deadline() const noexcept { return deadline_; }

protected:
  clock::time_point deadline_ = clock::time_point::max();

private:
  friend class worker;
  connection_base* prev_ = nullptr;
  connection_base* next_ = nullptr;
};

class worker {
public:
  /// memory: where connections' own small vectors live (http::engine_env::memory).
  worker(std::size_t index, bufpool::pool& pool, clock::duration tick,
         std::pmr::memory_resource* memory = std::pmr::get_default_resource());
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  asio::io_context& context() noexcept { return io_; }
  /// The io_uring backend's loop, once start() made it (null: the epoll backend).
  uring_loop* uring() noexcept { return uring_.get(); }
  /// Before start(): run the data path on io_uring, with this many provided read buffers.
  void use_uring(std::size_t buffer_bytes, unsigned buffers) noexcept {
    uring_buffer_bytes_ = buffer_bytes;
    uring_buffers_ = buffers;
  }
  /// Worker thread: code outside the io_context's handlers (a ring completion) gave it work.
  void note_posted() noexcept;
  /// Any thread: runs f on the worker thread. With io_uring, also ends the ring's wait (Asio's own
  /// wake-up does not reach a thread that waits in the ring).
  template <typename F>
  void post(F&& f);
  bufpool::pool& pool() noexcept { return pool_; }
  worker_stats& stats() noexcept { return stats_; }
  const worker_stats& stats() const noexcept { return stats_; }
  /// What this thread's HTTP engines share: the pool, the statistics, the Date, draining.
  http::engine_env& http_env() noexcept { return http_env_; }
  std::size_t index() const noexcept { return index_; }

  /// "Fri, 27 Nov 2026 10:00:00 GMT": refreshed by the sweep once a second.
  const char* date() const noexcept { return date_.data(); }
  static constexpr std::size_t date_length = 29;

  void link(connection_base* c) noexcept;
  void unlink(connection_base* c) noexcept;
  /// Calls f on every connection (f may unlink the one it is given).
  template <typename F>
  void for_each_connection(F f) {
    for (connection_base* c = head_; c != nullptr;) {
      connection_base* next = c->next_;
      f(c);
      c = next;
    }
  }

  /// This worker's share of the server-wide budget of buffer bytes in use (0: no budget).
  void set_buffer_budget(std::int64_t bytes) noexcept { budget_ = bytes; }
  std::int64_t buffer_budget() const noexcept { return budget_; }
  /// Worker thread only: true when the buffers this worker's connections hold reach its budget. A
  /// connection then takes no buffer: it calls wait_for_budget() and is resumed once buffers come back.
  bool over_budget() noexcept { return budget_ > 0 && pool_.thread_outstanding_bytes() >= budget_; }
  /// Worker thread only: bytes this worker may still take before it is over its budget (<= 0: none;
  /// INT64_MAX without a budget). For a loop that takes several buffers: one look for all of them.
  std::int64_t budget_room() noexcept {
    return budget_ > 0 ? budget_ - pool_.thread_outstanding_bytes() : std::numeric_limits<std::int64_t>::max();
  }
  /// How often (on the worker's sweep) the io_uring buffer ring gives back what it did not use.
  void set_ring_trim_interval(clock::duration d) noexcept { ring_trim_interval_ = d; }
  void wait_for_budget(std::shared_ptr<connection_base> c);
  /// Worker thread only: buffers went back (a write finished, a connection closed): resume waiters
  /// while there is room, oldest first.
  void on_buffers_returned() {
    if (!budget_waiters_.empty()) {
      resume_waiters();
      note_posted();  // a resumed connection may have started Asio operations
    }
  }

  void start();  // starts the thread (with io_uring: and waits until its ring is made)
  void stop();   // closes every connection, lets their handlers finish, joins; idempotent
  std::atomic<bool> draining{false};
  /// Sockets handed to this worker by a single acceptor and not yet admitted (acceptor: +1, worker: -1).
  std::atomic<std::size_t> incoming{0};

private:
  void sweep();
  void refresh_date();
  void resume_waiters();

  std::size_t index_;
  bufpool::pool& pool_;
  // One thread runs it, and only that thread touches its sockets: the reactor needs no per-descriptor
  // locks (posts from other threads still take the scheduler lock).
  asio::io_context io_{ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer sweep_timer_;
  clock::duration tick_;
  std::thread thread_;
  std::unique_ptr<uring_loop> uring_;
  std::size_t uring_buffer_bytes_ = 0;
  unsigned uring_buffers_ = 0;
  worker_stats stats_;
  std::array<char, date_length + 1> date_{};
  http::engine_env http_env_;
  std::int64_t date_second_ = -1;
  connection_base* head_ = nullptr;
  std::int64_t budget_ = 0;
  clock::duration ring_trim_interval_{};
  clock::time_point next_ring_trim_{};
  std::deque<std::shared_ptr<connection_base>> budget_waiters_;
  bool stopped_ = false;
  bool sweeping_ = true;  // worker thread only: cleared when the worker stops
};

void wake_uring(uring_loop& u) noexcept;

template <typename F>
void worker::post(F&& f) {
  asio::post(io_, std::forward<F>(f));
  if (uring_) wake_uring(*uring_);
}

}  // namespace bufpool::server
