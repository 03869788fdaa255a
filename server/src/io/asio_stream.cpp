#include "io/asio_stream.hpp"

#include <array>
#include <cerrno>
#include <new>

#include <asio/bind_allocator.hpp>
#include <asio/write.hpp>

#include <sys/socket.h>

#include "worker.hpp"

namespace bufpool::server::io {

asio_stream::asio_stream(worker& w, asio::ip::tcp::socket socket, read_size sizes, handler_memory& memory,
                         stream_owner& owner)
    : w_(w), socket_(std::move(socket)), size_(sizes), memory_(memory), owner_(owner), iov_(w.http_env().memory) {
  std::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  iov_.reserve(8);
}

recv_status asio_stream::receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) {
  // The last read took less than its buffer could hold: the socket was emptied, and a client that
  // waits for its answer has sent nothing since. Wait for readability without the read that would
  // find nothing (in request-response traffic one recv per request, ending in EAGAIN); if bytes did
  // come meanwhile, the wait sees them at once (Asio re-arms the descriptor as it queues the wait).
  if (emptied_) {
    emptied_ = false;
    b.reset();
    size_.drained();
    if (wait) wait_readable();
    return recv_status::pending;
  }
  switch (take_read_buffer(w_, b, size_.next(expected))) {
    case take_status::ok: break;
    case take_status::over_budget: return recv_status::over_budget;  // wait, holding nothing
    case take_status::no_memory:
      // No buffer: a 503 only if request bytes wait; an idle connection waits for bytes (and is asked
      // again when they come), one whose peer has gone closes.
      switch (peek(fd())) {
        case pending_input::bytes: return recv_status::out_of_memory;
        case pending_input::nothing:
          if (wait) wait_readable();
          return recv_status::pending;
        case pending_input::end: return recv_status::end;
      }
  }
  std::error_code ec;
  n = socket_.read_some(asio::buffer(b.data(), b.capacity()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    b.reset();  // an idle connection holds no pooled buffer
    size_.drained();
    if (wait) wait_readable();
    return recv_status::pending;
  }
  if (ec) {  // EOF or reset: nothing more can be answered, also mid-request
    b.reset();
    return ec == asio::error::eof ? recv_status::end : recv_status::error;
  }
  size_.got(n, b.capacity());
  emptied_ = n < b.capacity();
  return recv_status::data;
}

void asio_stream::wait_input() {
  if (!waiting_) wait_readable();
}

void asio_stream::wait_readable() {
  waiting_ = true;
  socket_.async_wait(asio::socket_base::wait_read,
                     asio::bind_allocator(alloc(), [this, keep = owner_.lifeline()](std::error_code ec) {
                       waiting_ = false;
                       if (ec || closed_) return;
                       owner_.on_readable();
                     }));
}

// First one non-blocking gather write (sendmsg straight from the owner's gather list), which on a
// healthy connection takes it all (no operation to queue, no completion to dispatch); what the socket
// does not take is written asynchronously.
send_status asio_stream::send(std::span<const iovec> iov, std::size_t total) {
  msghdr m{};
  m.msg_iov = const_cast<iovec*>(iov.data());  // sendmsg does not write through it
  m.msg_iovlen = iov.size();
  ssize_t r;
  do r = ::sendmsg(fd(), &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return send_status::failed;
  std::size_t n = r < 0 ? 0 : static_cast<std::size_t>(r);
  if (n == total) return send_status::done;
  // The rest, as Asio buffers: what went out is dropped from the gather list.
  const resume_point at = after_written(iov, n);
  iov_.clear();
  for (std::size_t i = at.index; i < iov.size(); ++i) iov_.emplace_back(iov[i].iov_base, iov[i].iov_len);
  iov_.front() += at.offset;
  // A span, not the vector: async_write copies its buffer sequence, and a vector copy would allocate.
  asio::async_write(socket_, std::span<const asio::const_buffer>(iov_),
                    asio::bind_allocator(alloc(), [this, first = n, keep = owner_.lifeline()](std::error_code e, std::size_t written) {
                      owner_.on_sent(e, first + written);
                    }));
  return send_status::pending;
}

discard_status asio_stream::discard(std::size_t max) {
  std::array<char, 2048> sink;  // on the stack: lingering needs no pooled buffer
  for (std::size_t total = 0; total < max;) {
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(sink), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      if (!waiting_) wait_readable();
      return discard_status::pending;
    }
    if (ec) return discard_status::end;
    total += n;
  }
  return discard_status::more;
}

bool asio_stream::shutdown_send() noexcept {
  std::error_code ec;
  socket_.shutdown(asio::socket_base::shutdown_send, ec);
  return !ec;
}

void asio_stream::close() {
  closed_ = true;
  std::error_code ec;
  socket_.close(ec);
}

}  // namespace bufpool::server::io
