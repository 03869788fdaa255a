#include "echo_connection.hpp"

#include <new>

#include <asio/bind_allocator.hpp>
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

}  // namespace bufpool::server
