// uring_loop: the io_uring backend of one worker (io.backend = io_uring; docs/design.md 2.6).
//
// One ring per worker thread, made with SINGLE_ISSUER | DEFER_TASKRUN: completions are posted only
// when this thread enters the kernel, which it does once per loop turn for every connection. The ring
// drives the thread: each turn runs the io_context's ready handlers (io_context::poll: timers, posted
// handlers, the sockets Asio's reactor still serves: echo and admin), then submits and waits in one
// io_uring_enter. The ring watches Asio's epoll descriptor and a wake-up eventfd with multishot
// polls, so a timer, an admin or echo socket, or a post from another thread (worker::post) ends the
// wait; the wait is also bounded (max_wait) for posts made by code that does not wake the worker.
//
// Read buffers come from the pool: a provided-buffer ring of `buffers` pooled buffers that the kernel
// takes from only when bytes arrive, so an idle connection holds none. A buffer the kernel filled is
// handed to its connection (take()), and its slot is refilled from the pool at the end of the turn,
// unless the worker is over its buffer budget; the pool's statistics see every buffer. The ring is
// kept at a level, not always full: a recv that finds it empty doubles the level (up to `buffers`),
// and once per rotation interval (trim_soon) the level drops to twice the most buffers one turn drew
// in that interval (at least `floor`), the buffers above it going back to the pool, so that an idle
// worker lends the kernel a few buffers, not all of them (docs/design.md 2.6).
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/socket.h>

#include <asio/io_context.hpp>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

struct io_uring;
struct io_uring_buf_ring;
struct io_uring_sqe;

namespace bufpool::server {

class worker;

/// What submits ring operations: its completions come back through complete(). The object's address
/// is the operation's user_data, so it must live until the operation's last completion (one without
/// IORING_CQE_F_MORE); a connection keeps itself alive while it has one in flight
/// (io::uring_stream::hold), the listener's accept is a heap object that deletes itself.
class uring_op {
public:
  virtual void complete(int res, unsigned flags) = 0;
  /// The kernel's buffer ring has a buffer for this recv, which ended with ENOBUFS: it re-arms (true),
  /// or does not want one any more (false).
  virtual bool buffers_available() { return false; }

protected:
  ~uring_op() = default;

private:
  friend class uring_loop;
  // The loop's queue of recvs waiting for buffers (oldest first; intrusive, so leaving it is O(1)).
  uring_op* starved_prev_ = nullptr;
  uring_op* starved_next_ = nullptr;
  bool starved_ = false;  // in that queue
  bool woken_ = false;    // re-armed by the queue, its completion not seen yet (counted in woken_)
  bool retry_ = false;    // its last recv was such a re-arm: an ENOBUFS now keeps its place in the queue
};

class uring_loop {
public:
  /// Empty when this kernel and process allow the backend; else why not (for the fallback's log line).
  static std::string unavailable();

  uring_loop(worker& w, std::size_t buffer_bytes, unsigned buffers);
  /// Bytes the kernel may put in each ring buffer.
  std::size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  ~uring_loop();
  uring_loop(const uring_loop&) = delete;
  uring_loop& operator=(const uring_loop&) = delete;

  /// The worker thread's loop; returns once the io_context has stopped and every operation is done.
  void run(asio::io_context& io, std::chrono::milliseconds max_wait);
  /// Any thread: ends the current wait (after a post to the worker's io_context).
  void wake() noexcept;

  // Worker thread only.
  /// A recv into one of the provided buffers, which the kernel picks when bytes arrive
  /// (IORING_RECVSEND_POLL_FIRST: the kernel waits for readiness before it looks for a buffer, so an
  /// idle socket never ends its recv with ENOBUFS when the ring is empty). One-shot: a
  /// multishot recv (tried) lets the kernel fill up to 32 buffers for one connection in a burst
  /// before its owner can stop it, so a client that sends faster than its answers drain made the
  /// server hold far more than one read buffer per connection (docs/design.md 2.6).
  void recv(int fd, uring_op& op);
  /// A sendmsg of m (which must stay valid until completion), MSG_NOSIGNAL.
  void sendmsg(int fd, const msghdr* m, uring_op& op);
  /// A multishot accept on a listening socket; completions carry the new descriptor.
  void accept(int fd, uring_op& op);
  /// Cancels every operation of op (its last completion still comes, with -ECANCELED or a result).
  void cancel(uring_op& op);
  /// The pooled buffer the kernel filled for a recv completion with these flags.
  bufpool::buffer take(unsigned flags);
  /// Code on the worker thread gave the io_context work (a post): run it this turn.
  void need_poll() noexcept { needs_poll_ = true; }
  /// Queues op (whose recv ended with ENOBUFS) to be re-armed when the buffer ring has a buffer for
  /// it: one op per buffer, oldest first; an op that was re-armed and lost its buffer to another recv
  /// keeps its place at the front.
  void when_buffers(uring_op& op) noexcept;
  /// Takes op out of that queue (its connection closed): it will not be told.
  void forget(uring_op& op) noexcept;
  /// The pool cannot fill the buffer ring (not because of the budget): the last refill stopped for
  /// want of memory, and so does one more try now.
  bool out_of_memory();
  /// Buffers the kernel's ring is kept at now (between floor and `buffers`).
  unsigned level() const noexcept { return level_; }
  /// At the next turn where it is safe, the ring gives back what the last interval did not use.
  void trim_soon() noexcept { trim_due_ = true; }

  /// The level an idle worker's ring drops to (or `buffers`, if fewer).
  static constexpr unsigned floor = 16;

private:
  struct internal_op;
  static std::string probe();
  void close_ring() noexcept;
  void refill();  // fill(), then wake_starved()
  void fill();
  void wake_starved();
  void trim();
  unsigned in_ring() const noexcept { return buffers_ - static_cast<unsigned>(empty_slots_.size()); }
  ::io_uring_sqe* sqe();

  worker& w_;
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  std::size_t br_bytes_ = 0;
  std::size_t buffer_bytes_;
  unsigned buffers_;
  std::vector<bufpool::buffer> slots_;      // the buffer in each slot of the kernel's ring
  std::vector<std::uint16_t> empty_slots_;  // slots whose buffer was taken, to refill
  uring_op* starved_head_ = nullptr;  // oldest
  uring_op* starved_tail_ = nullptr;
  std::size_t woken_ = 0;  // re-armed recvs whose completion has not come: each may take a buffer
  int wake_fd_ = -1;
  bool out_of_memory_ = false;
  bool needs_poll_ = true;
  unsigned level_;          // buffers the ring is filled to
  unsigned peak_draw_ = 0;  // most buffers one turn took from the ring since the last trim
  bool trim_due_ = false;
  bool trim_failed_ = false;
  bool registered_ = true;    // false after a trim whose registration again failed: retried each turn  // the kernel refused to re-register the ring once: no more trims
  int reactor_fd_ = -1;  // Asio's epoll descriptor
  std::size_t in_flight_ = 0;  // operations whose last completion has not come
  internal_op* reactor_poll_ = nullptr;
  internal_op* wake_poll_ = nullptr;
};

}  // namespace bufpool::server
