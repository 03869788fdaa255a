// echo_connection: TCP echo. Reads into a pooled buffer and writes the same buffer back; it does not
// read again until the write is done, so a client that does not read cannot make the server buffer
// more than one buffer per connection. While waiting for input it holds no buffer, and a connection
// that sends nothing for echo.idle_timeout is closed. One read per turn of the io_context.
#pragma once

#include <memory>

#include <asio/ip/tcp.hpp>

#include <bufpool/buffer.hpp>

#include "handler_memory.hpp"
#include "io/asio_stream.hpp"
#include "io/tls_stream.hpp"
#include "tls/context.hpp"
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

/// TCP echo over TLS (echo.tls.*): the same rules as echo_connection (one buffer at most, none while
/// idle, no read while a write is out), on the TLS stream of the HTTP connections over an asio_stream.
/// The handshake has limits.handshake_timeout; then echo.idle_timeout applies between reads.
class tls_echo_connection final : public connection_base,
                                  public std::enable_shared_from_this<tls_echo_connection>,
                                  private io::stream_owner {
public:
  tls_echo_connection(worker& w, asio::ip::tcp::socket socket, const tls::holder& tls, std::size_t buffer_bytes,
                      clock::duration handshake_timeout, clock::duration idle_timeout, clock::duration write_timeout);
  ~tls_echo_connection() override;
  void start();
  void on_deadline() override;
  void drain() override;
  void force_close() override;
  void resume() override;

private:
  void on_readable() override;
  void on_sent(std::error_code ec, std::size_t n) override;
  std::shared_ptr<void> lifeline() override { return shared_from_this(); }
  void read();
  void sent(std::size_t n);
  void close_now();

  worker& w_;
  handler_memory handler_memory_;
  io::tls_stream tls_;    // constructed first, destroyed last: stream_ refers to it
  io::asio_stream stream_;
  clock::duration idle_timeout_;
  clock::duration write_timeout_;
  bufpool::buffer buf_;
  iovec iov_{};
  bool handshaking_ = true;
  bool writing_ = false;
  bool waiting_budget_ = false;
  bool posted_ = false;
  bool closed_ = false;
  bool draining_ = false;
};

}  // namespace bufpool::server
