#include "io/uring_stream.hpp"

#include <cerrno>

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <asio/error.hpp>

#include "worker.hpp"

namespace bufpool::server::io {

uring_stream::uring_stream(worker& w, int fd, read_size sizes, stream_owner& owner)
    : w_(w), ring_(*w.uring()), fd_(fd), owner_(owner), size_(sizes), iov_(w.http_env().memory) {
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  recv_op_.s = send_op_.s = this;
  recv_op_.recv = true;
  iov_.reserve(8);
}

uring_stream::~uring_stream() {
  if (reset_on_close_) {  // as a close with unread bytes does: a reset, so a sender stops at once
    const ::linger abort{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
  }
  ::close(fd_);
}

// The next received buffer, or nothing yet: then the recv is armed and its completion calls
// on_readable(); at the end of the input, end or error.
recv_status uring_stream::receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) {
  if (!in_) {
    if (no_memory_) {
      no_memory_ = false;
      b.reset();
      return recv_status::out_of_memory;
    }
    if (input_end_ != input_end::none) {
      b.reset();
      return input_end_ == input_end::error ? recv_status::error : recv_status::end;
    }
    if (size_.grown() && !recv_armed_ && !recv_starved_ && !discarding_ && !closed_) {
      const recv_status s = read_directly(b, n, size_.next(expected));
      if (s != recv_status::pending) return s;
    }
    b.reset();  // the kernel picks the ring's buffer: a spare is of no use there
    if (wait) wait_input();
    return recv_status::pending;
  }
  b = std::move(in_);
  n = in_bytes_;
  size_.got(n, ring_.buffer_bytes());
  return recv_status::data;
}

// A body streams: one non-blocking recv into a pooled buffer as large as read_size says, or as the rest
// of the body where that is known (the spare, if it is large enough). Pending: the socket is empty (or the budget spent, or no buffer): the caller
// arms the ring's recv, which holds nothing while it waits.
recv_status uring_stream::read_directly(bufpool::buffer& b, std::size_t& n, std::size_t size) {
  if (take_read_buffer(w_, b, size) != take_status::ok) {
    size_.drained();
    return recv_status::pending;  // the ring's recv decides between a wait for buffers and a 503
  }
  ssize_t r;
  do r = ::recv(fd_, b.data(), b.capacity(), MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r > 0) {
    n = static_cast<std::size_t>(r);
    size_.got(n, b.capacity());
    return recv_status::data;
  }
  b.reset();
  if (r == 0) {
    input_end_ = input_end::eof;
    return recv_status::end;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    size_.drained();
    return recv_status::pending;
  }
  input_end_ = input_end::error;
  return recv_status::error;
}

void uring_stream::wait_input() {
  arm_recv();
  waiting_ = true;
}

void uring_stream::arm_recv() {
  if (recv_armed_ || recv_starved_ || in_ || input_end_ != input_end::none || closed_) return;
  ring_.recv(fd_, recv_op_);  // first: if it throws (no submission entry), nothing is held
  recv_armed_ = true;
  hold();
}

void uring_stream::hold() {
  if (ops_++ == 0) self_ = owner_.lifeline();
}

void uring_stream::release() {
  if (--ops_ != 0) return;
  const std::shared_ptr<void> last = std::move(self_);  // may destroy the owner, and this, on return
}

void uring_stream::op::complete(int res, unsigned flags) {
  uring_stream* st = s;
  const bool last = (flags & IORING_CQE_F_MORE) == 0;
  if (recv) st->on_recv(res, flags);
  else st->on_send(res);
  if (last) st->release();  // the last thing done here: it may destroy the stream (and this)
}

bool uring_stream::op::buffers_available() {
  uring_stream* st = s;
  st->recv_starved_ = false;
  st->w_.stats().budget_waiting.sub();
  st->arm_recv();
  const bool armed = st->recv_armed_;
  st->release();  // the wait's hold (after arm_recv took its own)
  return armed;
}

void uring_stream::on_recv(int res, unsigned flags) {
  bufpool::buffer b;
  if ((flags & IORING_CQE_F_BUFFER) != 0) b = ring_.take(flags);
  recv_armed_ = false;  // one-shot
  if (closed_) {
    // Closed while this recv was pending, and it took bytes the peer is still sending (they go back to
    // the pool unread). Closing an empty queue would send a FIN, and a peer blocked on a full window
    // would wait for its zero-window probe (up to two minutes) to learn that nobody reads: so the
    // close resets, as a close with unread bytes does.
    if (res > 0) reset_on_close_ = true;
    return;
  }
  if (res > 0) {
    if (!discarding_) {  // else dropped: b goes back to the pool
      in_ = std::move(b);
      in_bytes_ = static_cast<std::size_t>(res);
    }
  } else if (res == 0) {
    input_end_ = input_end::eof;
  } else if (res == -ENOBUFS) {
    // The kernel's ring is empty (the budget is spent, a burst took every buffer, or the pool cannot
    // refill it). The recv polls first, so the socket was readable. If the pool is out of memory and
    // request bytes wait: a 503 (the owner answers it); if it was the peer's end: the end. Else wait,
    // holding nothing, until the loop refills the ring.
    const pending_input waiting = ring_.out_of_memory() ? peek(fd_) : pending_input::nothing;
    if (waiting == pending_input::bytes) {
      no_memory_ = true;
    } else if (waiting == pending_input::end) {
      input_end_ = input_end::eof;
    } else if (!recv_starved_) {
      recv_starved_ = true;
      w_.stats().budget_waits.add();
      w_.stats().budget_waiting.add();
      ring_.when_buffers(recv_op_);
      hold();
    }
  } else if (res != -ECANCELED) {
    input_end_ = input_end::error;
  }
  if (!waiting_) return;
  waiting_ = false;
  owner_.on_readable();
}

// One sendmsg of the whole gather list; what a short send leaves is sent from its completion.
// The gather list is the owner's (it stays until on_sent); it is copied only if a short send must go on.
send_status uring_stream::send(std::span<const iovec> iov, std::size_t total) {
  msg_ = {};
  msg_.msg_iov = const_cast<iovec*>(iov.data());  // sendmsg does not write through it
  msg_.msg_iovlen = iov.size();
  send_total_ = total;
  send_done_ = 0;
  ring_.sendmsg(fd_, &msg_, send_op_);  // first: if it throws (no submission entry), nothing is held
  hold();
  return send_status::pending;
}

void uring_stream::on_send(int res) {
  if (res < 0) {
    owner_.on_sent(std::error_code(-res, asio::error::get_system_category()), send_done_);
    return;
  }
  send_done_ += static_cast<std::size_t>(res);
  if (send_done_ < send_total_ && !closed_) {
    if (msg_.msg_iov != iov_.data()) iov_.assign(msg_.msg_iov, msg_.msg_iov + msg_.msg_iovlen);
    const resume_point at = after_written(iov_, static_cast<std::size_t>(res));
    iov_.erase(iov_.begin(), iov_.begin() + static_cast<std::ptrdiff_t>(at.index));
    iov_.front().iov_base = static_cast<char*>(iov_.front().iov_base) + at.offset;
    iov_.front().iov_len -= at.offset;
    msg_.msg_iov = iov_.data();
    msg_.msg_iovlen = iov_.size();
    ring_.sendmsg(fd_, &msg_, send_op_);
    hold();
    return;
  }
  owner_.on_sent({}, send_done_);
}

// What arrives is dropped as it comes (on_recv), until the peer closes.
discard_status uring_stream::discard(std::size_t) {
  discarding_ = true;
  in_.reset();
  if (no_memory_ || input_end_ != input_end::none) return discard_status::end;
  arm_recv();
  waiting_ = true;
  return discard_status::pending;
}

bool uring_stream::shutdown_send() noexcept { return ::shutdown(fd_, SHUT_WR) == 0; }

// Ends the recv (it completes with 0) and any send (with an error), also one still queued in this
// turn's submissions: their completions let go of the owner, and the descriptor is closed only then,
// by the destructor. Received buffers go back to the pool now. The caller keeps the owner alive
// across this call (leaving the buffer queue drops that hold).
void uring_stream::close() {
  if (closed_) return;
  closed_ = true;
  ::shutdown(fd_, SHUT_RDWR);
  if (recv_armed_) ring_.cancel(recv_op_);
  if (recv_starved_) {  // no recv in flight: leave the queue for buffers, and its hold
    ring_.forget(recv_op_);
    recv_starved_ = false;
    w_.stats().budget_waiting.sub();
    release();
  }
  in_.reset();
}

}  // namespace bufpool::server::io
