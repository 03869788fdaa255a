// bufpool::async_read_some(socket, pool, max_bytes, token): a read that borrows a pooled buffer only
// once there is something to read. It waits for the socket to become readable (async_wait(wait_read),
// which holds no buffer), then takes a buffer of max_bytes from the pool and reads what is there, so a
// connection waiting for input holds no buffer: 10,000 idle connections hold none (what bufpool-server
// does inside, as a library function). Completes with (error_code, buffer): size() is the bytes read;
// on an error (eof included) the buffer is empty. A wake-up that finds nothing (another reader took the
// bytes) gives the buffer back and waits again. no_buffer_space when the pool cannot allocate.
//
// The socket is put in non-blocking mode (socket.non_blocking(true)) on first use, so that the read
// after the wait can never block; Asio's own asynchronous operations are unaffected by that mode.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

#include "detail/asio.hpp"
#if defined(BUFPOOL_USE_BOOST_ASIO)
#include <boost/asio/compose.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/socket_base.hpp>
#else
#include <asio/compose.hpp>
#include <asio/error.hpp>
#include <asio/socket_base.hpp>
#endif

#include "buffer.hpp"
#include "pool.hpp"

namespace bufpool {

namespace detail {

template <class Socket>
struct borrow_read_op {
  Socket& socket;
  pool& from;
  std::size_t max_bytes;
  bool waited = false;

  template <class Self>
  void operator()(Self& self, net_error_code ec = {}) {
    if (!waited) {
      waited = true;
      if (!socket.non_blocking()) {
        socket.non_blocking(true, ec);
        if (ec) return self.complete(ec, buffer{});
      }
      socket.async_wait(net::socket_base::wait_read, std::move(self));
      return;
    }
    if (ec) return self.complete(ec, buffer{});
    buffer b;
    try {
      b = from.get(max_bytes);
    } catch (const std::bad_alloc&) {
      return self.complete(net::error::no_buffer_space, buffer{});
    }
    const std::size_t n = socket.read_some(net::buffer(b.data(), b.size()), ec);
    if (ec == net::error::would_block || ec == net::error::try_again) {  // nothing after all: wait again
      b.reset();
      socket.async_wait(net::socket_base::wait_read, std::move(self));
      return;
    }
    if (ec) return self.complete(ec, buffer{});
    b.resize(n);
    self.complete(ec, std::move(b));
  }
};

}  // namespace detail

/// Waits until `socket` is readable, then reads at most max_bytes into a buffer taken from `p` at
/// that moment. Signature of the completion: void(error_code, bufpool::buffer).
template <class Socket, class CompletionToken>
auto async_read_some(Socket& socket, pool& p, std::size_t max_bytes, CompletionToken&& token) {
  return net::async_compose<CompletionToken, void(net_error_code, buffer)>(
      detail::borrow_read_op<Socket>{socket, p, max_bytes}, token, socket);
}

}  // namespace bufpool
