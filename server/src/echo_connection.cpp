#include "echo_connection.hpp"

#include <new>

#include <asio/bind_allocator.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

namespace bufpool::server {

echo_connection::echo_connection(worker& w, asio::ip::tcp::socket socket, std::size_t buffer_bytes,
                                 clock::duration idle_timeout, clock::duration write_timeout)
    : w_(w), socket_(std::move(socket)), buffer_bytes_(buffer_bytes), idle_timeout_(idle_timeout),
      write_timeout_(write_timeout) {
  std::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  w_.link(this);
  w_.stats().echo_active.add();
  w_.stats().echo_accepted.add();
}

echo_connection::~echo_connection() { close_now(); }

void echo_connection::read() {
  if (closed_) return;
  if (draining_) {
    close_now();
    return;
  }
  if (w_.over_budget()) {  // the server's buffer budget is spent: wait, holding nothing
    w_.wait_for_budget(shared_from_this());
    return;
  }
  try {
    buf_ = w_.pool().get(buffer_bytes_);
  } catch (const std::bad_alloc&) {
    w_.stats().count_error(error_kind::out_of_memory);
    close_now();
    return;
  }
  std::error_code ec;
  const std::size_t n = socket_.read_some(asio::buffer(buf_.data(), buf_.capacity()), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    buf_.reset();  // idle: hold no buffer while waiting
    deadline_ = clock::now() + idle_timeout_;
    socket_.async_wait(asio::socket_base::wait_read,
                       asio::bind_allocator(alloc(), [self = shared_from_this()](std::error_code e) {
                         if (e) {
                           self->close_now();
                           return;
                         }
                         self->read();
                       }));
    return;
  }
  if (ec) {
    if (ec != asio::error::eof) w_.stats().count_error(error_kind::io_error);
    close_now();
    return;
  }
  buf_.resize(n);
  w_.stats().bytes_in.add(n);
  w_.stats().echo_bytes.add(n);
  writing_ = true;
  deadline_ = clock::now() + write_timeout_;
  asio::async_write(socket_, asio::buffer(buf_),
                    asio::bind_allocator(alloc(), [self = shared_from_this()](std::error_code e, std::size_t m) {
    self->writing_ = false;
    self->deadline_ = clock::time_point::max();
    self->buf_.reset();
    self->w_.stats().bytes_out.add(m);
    self->w_.on_buffers_returned();
    if (e) {
      if (!self->closed_) self->w_.stats().count_error(error_kind::io_error);
      self->close_now();
      return;
    }
    self->read();
  }));
}

void echo_connection::resume() {
  if (!closed_ && !writing_) read();
}

void echo_connection::close_now() {
  if (closed_) return;
  closed_ = true;
  std::error_code ec;
  socket_.close(ec);
  if (!writing_) buf_.reset();  // a write in flight still reads it; its handler returns it
  w_.unlink(this);
  w_.stats().echo_active.sub();
}

void echo_connection::on_deadline() {
  auto self = shared_from_this();
  deadline_ = clock::time_point::max();
  w_.stats().count_error(writing_ ? error_kind::write_timeout : error_kind::echo_idle_timeout);
  log_event(writing_ ? error_kind::write_timeout : error_kind::echo_idle_timeout, 0, socket_.native_handle());
  close_now();
}

void echo_connection::drain() {
  auto self = shared_from_this();
  draining_ = true;
  if (!writing_) close_now();
}

void echo_connection::force_close() {
  auto self = shared_from_this();
  close_now();
}

// ---- over TLS ------------------------------------------------------------------------------------

namespace {
// Echoes one connection may do in one turn before it lets the others run (a send over TLS often
// completes at once, so the loop would otherwise hold the worker).
constexpr unsigned max_echoes_per_turn = 16;
}  // namespace

tls_echo_connection::tls_echo_connection(worker& w, asio::ip::tcp::socket socket, const tls::holder& tls,
                                         std::size_t buffer_bytes, clock::duration handshake_timeout,
                                         clock::duration idle_timeout, clock::duration write_timeout)
    : w_(w), tls_(w, tls.current(), {buffer_bytes, buffer_bytes}, *this),
      stream_(w, std::move(socket), {buffer_bytes, buffer_bytes}, handler_memory_, tls_.inner_owner()),
      idle_timeout_(idle_timeout), write_timeout_(write_timeout) {
  tls_.attach(stream_);
  deadline_ = clock::now() + handshake_timeout;
  w_.link(this);
  w_.stats().echo_active.add();
  w_.stats().echo_accepted.add();
}

tls_echo_connection::~tls_echo_connection() { close_now(); }

void tls_echo_connection::start() { read(); }

// Reads what the TLS stream has and echoes it; a send the socket takes at once reads on, up to
// max_echoes_per_turn times, then the connection yields.
void tls_echo_connection::read() {
  for (unsigned turn = 0; !closed_; ++turn) {
    if (draining_) {
      close_now();
      return;
    }
    if (turn == max_echoes_per_turn) {
      posted_ = true;
      asio::post(w_.context(), [self = shared_from_this()] {
        self->posted_ = false;
        self->read();
      });
      w_.note_posted();
      return;
    }
    std::size_t n = 0;
    const io::recv_status got = tls_.receive(buf_, n, 0, true);
    if (handshaking_ && tls_.handshake_done()) {
      handshaking_ = false;
      deadline_ = clock::now() + idle_timeout_;
    }
    switch (got) {
      case io::recv_status::data: break;
      case io::recv_status::pending:
        if (!handshaking_) deadline_ = clock::now() + idle_timeout_;
        return;
      case io::recv_status::end: close_now(); return;
      case io::recv_status::error:
        w_.stats().count_error(error_kind::io_error);
        close_now();
        return;
      case io::recv_status::over_budget:
        waiting_budget_ = true;
        w_.wait_for_budget(shared_from_this());
        return;
      case io::recv_status::out_of_memory:
        w_.stats().count_error(error_kind::out_of_memory);
        close_now();
        return;
    }
    w_.stats().bytes_in.add(n);
    w_.stats().echo_bytes.add(n);
    iov_ = {buf_.data(), n};
    writing_ = true;
    deadline_ = clock::now() + write_timeout_;
    switch (tls_.send({&iov_, 1}, n)) {
      case io::send_status::done: sent(n); break;
      case io::send_status::pending: return;  // on_sent
      case io::send_status::failed:
        writing_ = false;
        w_.stats().count_error(error_kind::io_error);
        close_now();
        return;
    }
  }
}

void tls_echo_connection::sent(std::size_t n) {
  writing_ = false;
  deadline_ = clock::now() + idle_timeout_;
  buf_.reset();  // idle: hold no buffer while waiting
  w_.stats().bytes_out.add(n);
  w_.on_buffers_returned();
}

void tls_echo_connection::on_sent(std::error_code ec, std::size_t n) {
  sent(n);
  if (ec) {
    if (!closed_) w_.stats().count_error(error_kind::io_error);
    close_now();
    return;
  }
  read();
}

void tls_echo_connection::on_readable() {
  if (!closed_ && !writing_ && !waiting_budget_ && !posted_) read();
}

void tls_echo_connection::resume() {
  waiting_budget_ = false;
  on_readable();
}

void tls_echo_connection::close_now() {
  if (closed_) return;
  closed_ = true;
  tls_.close();
  if (!writing_) buf_.reset();  // a send in flight still reads it: on_sent returns it
  w_.unlink(this);
  w_.stats().echo_active.sub();
  w_.on_buffers_returned();
}

void tls_echo_connection::on_deadline() {
  auto self = shared_from_this();
  deadline_ = clock::time_point::max();
  if (handshaking_) {
    w_.stats().tls_failures[static_cast<std::size_t>(io::tls_failure::handshake_timeout)].add();
  } else {
    w_.stats().count_error(writing_ ? error_kind::write_timeout : error_kind::echo_idle_timeout);
    log_event(writing_ ? error_kind::write_timeout : error_kind::echo_idle_timeout, 0, tls_.fd());
  }
  close_now();
}

void tls_echo_connection::drain() {
  auto self = shared_from_this();
  draining_ = true;
  if (!writing_) close_now();
}

void tls_echo_connection::force_close() {
  auto self = shared_from_this();
  close_now();
}

}  // namespace bufpool::server
