// echo_connection: TCP echo. Reads into a pooled buffer and writes the same buffer back; it does not
// read again until the write is done, so a client that does not read cannot make the server buffer
// more than one buffer per connection. While waiting for input it holds no buffer, and a connection
// that sends nothing for echo.idle_timeout is closed. One read per turn of the io_context.
#pragma once

#include <memory>

#include <asio/ip/tcp.hpp>

#include <bufpool/buffer.hpp>

#include "handler_memory.hpp"
#include "worker.hpp"

namespace bufpool::server {

class echo_connection final : public connection_base, public std::enable_shared_from_this<echo_connection> {
public:
  echo_connection(worker& w, asio::ip::tcp::socket socket, std::size_t buffer_bytes, clock::duration idle_timeout,
                  clock::duration write_timeout);
  ~echo_connection() override;
  void start() { read(); }
  void on_deadline() override;
  void drain() override;
  void force_close() override;
  void resume() override;

private:
  void read();
  void close_now();
  handler_allocator<int> alloc() noexcept { return handler_allocator<int>(handler_memory_); }

  worker& w_;
  asio::ip::tcp::socket socket_;
  handler_memory handler_memory_;  // this connection's Asio operations
  std::size_t buffer_bytes_;
  clock::duration idle_timeout_;
  clock::duration write_timeout_;
  bufpool::buffer buf_;
  bool writing_ = false;
  bool closed_ = false;
  bool draining_ = false;
};

}  // namespace bufpool::server
