// io::stream: how bytes come and go on one connection, whatever the transport (docs/design.md 2.2).
// Its owner (the connection) asks for "a pooled buffer of received bytes, when there is one"
// (receive), sends gather lists (send), drops input while lingering (discard), shuts down and closes.
// When there is nothing to hand out yet, the stream arms a wait holding no buffer and later calls
// on_readable() on its owner; a send the kernel does not take at once ends in on_sent(). Streams:
// asio_stream (Asio's reactor: epoll), uring_stream (the worker's io_uring ring).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <span>
#include <system_error>

#include <sys/uio.h>

#include <bufpool/buffer.hpp>

#include "worker.hpp"

namespace bufpool::server::io {

class stream_owner {
public:
  /// A wait armed by receive() or discard() ended: call it again.
  virtual void on_readable() = 0;
  /// A send that returned pending is over: n bytes written in all (ec: it failed).
  virtual void on_sent(std::error_code ec, std::size_t n) = 0;
  /// Keeps the owner (and so its stream) alive while the stream has an operation in flight.
  virtual std::shared_ptr<void> lifeline() = 0;

protected:
  ~stream_owner() = default;
};

enum class recv_status : std::uint8_t {
  data,           // b holds n received bytes
  pending,        // nothing yet: on_readable() follows
  end,            // the peer closed (or, with no memory, has gone): nothing more will come
  error,          // reset or another error
  over_budget,    // the worker's buffer budget is spent: wait for buffers to come back (epoll)
  out_of_memory,  // no buffer can be had and request bytes wait: answer 503
};
enum class send_status : std::uint8_t { done, pending, failed };
enum class discard_status : std::uint8_t { pending, end, more };

class stream {
public:
  virtual ~stream() = default;
  /// b may hold a spare buffer to read into (a stream that picks its own buffers drops it); it holds
  /// no buffer on return unless the status is data. expected: bytes the owner knows are coming (the rest
  /// of a body; 0: unknown), so that a streaming body is read in pieces that large (up to the largest).
  /// wait = false: pending arms no wait (the owner has something to send first, then calls wait_input).
  virtual recv_status receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) = 0;
  /// Arms the wait for input that receive(..., false) left out: on_readable() follows.
  virtual void wait_input() = 0;
  /// Sends iov (total bytes): done (all written), pending (on_sent follows; iov's memory must stay
  /// until then), or failed.
  virtual send_status send(std::span<const iovec> iov, std::size_t total) = 0;
  /// Reads and drops up to about max bytes (lingering close): pending (on_readable follows), end (the
  /// peer is gone), or more (max reached: yield, then call again).
  virtual discard_status discard(std::size_t max) = 0;
  /// Half-close: no more bytes go out. False if it failed.
  virtual bool shutdown_send() noexcept = 0;
  /// Ends every operation; their completions still come (and let go of the owner).
  virtual void close() = 0;
  virtual int fd() const noexcept = 0;
  /// TLS streams: the negotiated version ("TLSv1.3") once the handshake is done; null otherwise.
  virtual const char* tls_version() const noexcept { return nullptr; }
  /// TLS streams: whether the handshake resumed a session.
  virtual bool tls_resumed() const noexcept { return false; }
  /// TLS streams: the application protocol ALPN agreed on ("h2", "http/1.1"; empty: none).
  virtual std::string_view alpn() const noexcept { return {}; }
  /// A wait for input is armed.
  virtual bool waiting() const noexcept { return waiting_; }

protected:
  bool waiting_ = false;
};

/// How many bytes the next read asks for: a read that fills its buffer doubles the next (up to the
/// largest), so a body streams in pieces as large as the socket has; once the socket has nothing more,
/// reads start again at the smallest, so a quiet connection asks for small buffers.
class read_size {
public:
  read_size(std::size_t smallest, std::size_t largest) noexcept
      : smallest_(static_cast<std::uint32_t>(smallest)),
        largest_(static_cast<std::uint32_t>(largest > smallest ? largest : smallest)),
        next_(smallest_) {}
  std::size_t next() const noexcept { return next_; }
  /// The next read's size when `expected` bytes are known to be coming.
  std::size_t next(std::size_t expected) const noexcept {
    return expected <= next_ ? next_ : expected < largest_ ? expected : largest_;
  }
  bool grown() const noexcept { return next_ > smallest_; }
  void got(std::size_t n, std::size_t capacity) noexcept {
    if (n == capacity && next_ < largest_) next_ = next_ * 2 < largest_ ? next_ * 2 : largest_;
  }
  void drained() noexcept { next_ = smallest_; }

private:
  std::uint32_t smallest_, largest_, next_;
};

/// Where a gather list resumes after a short write of n bytes: the first iovec not fully written, and
/// how much of it went out.
struct resume_point {
  std::size_t index, offset;
};
inline resume_point after_written(std::span<const iovec> iov, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) n -= iov[i++].iov_len;
  return {i, n};
}

/// A read buffer of at least `size` bytes in b: a spare too small is dropped, then, unless b still
/// holds one, one is taken from the worker's pool while its budget allows. b holds no buffer unless
/// the answer is `ok`.
enum class take_status : std::uint8_t { ok, over_budget, no_memory };
inline take_status take_read_buffer(worker& w, bufpool::buffer& b, std::size_t size) {
  if (b && b.capacity() < size) b.reset();  // the spare is too small for a streaming body
  if (b) return take_status::ok;
  if (w.over_budget()) return take_status::over_budget;  // wait, holding nothing
  try {
    b = w.pool().get(size);
  } catch (const std::bad_alloc&) {
    return take_status::no_memory;
  }
  return take_status::ok;
}

/// What the socket holds, without taking it: asked only when no read buffer can be had.
enum class pending_input : std::uint8_t { bytes, end, nothing };
pending_input peek(int fd) noexcept;

}  // namespace bufpool::server::io
