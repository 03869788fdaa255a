// io::asio_stream: a TCP socket served by Asio's reactor (io.backend = epoll). Reads are non-blocking
// read_some calls into a buffer taken from the pool (after the worker's budget check), as large as
// read_size says (a read that fills its buffer doubles the next); when the socket has nothing, the
// buffer goes back and an async_wait for readability holds none. A send is one
// non-blocking gather write, tried at once; what the socket does not take goes out with async_write.
// Its Asio operations' memory comes from the connection's handler_memory slots.
#pragma once

#include <memory_resource>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/ip/tcp.hpp>

#include "handler_memory.hpp"
#include "io/stream.hpp"

namespace bufpool::server {
class worker;
}

namespace bufpool::server::io {

class asio_stream final : public stream {
public:
  asio_stream(worker& w, asio::ip::tcp::socket socket, read_size sizes, handler_memory& memory,
              stream_owner& owner);
  recv_status receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) override;
  void wait_input() override;
  send_status send(std::span<const iovec> iov, std::size_t total) override;
  discard_status discard(std::size_t max) override;
  bool shutdown_send() noexcept override;
  void close() override;
  int fd() const noexcept override { return const_cast<asio::ip::tcp::socket&>(socket_).native_handle(); }

private:
  void wait_readable();
  handler_allocator<int> alloc() noexcept { return handler_allocator<int>(memory_); }

  worker& w_;
  asio::ip::tcp::socket socket_;
  read_size size_;
  handler_memory& memory_;
  stream_owner& owner_;
  std::pmr::vector<asio::const_buffer> iov_;  // what a short write left; keeps its capacity
  bool closed_ = false;
  bool emptied_ = false;  // the last read did not fill its buffer: the next is likely to find nothing
};

}  // namespace bufpool::server::io
