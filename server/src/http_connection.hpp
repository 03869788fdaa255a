// http_connection: one HTTP/1.1 connection, from accept to close; it ties the three layers of
// docs/design.md 2.2 together. The engine (http/) parses and answers; the stream (io/) moves the bytes;
// the routes (routes/) are the engine's business. What is left here is neither HTTP nor transport:
// deadlines (the sweep calls on_deadline), fairness (at most max_reads_per_turn reads per turn of the
// io_context, then a posted continuation), the worker's buffer budget (wait_for_budget / resume),
// backpressure (nothing is read while a batch is being sent), lingering close, drain on shutdown, and
// the access log. The connection holds no pooled buffer while it waits for input.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <memory_resource>
#include <string>

#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <spdlog/logger.h>

#include "handler_memory.hpp"
#include "http/engine.hpp"
#include "http/h2_engine.hpp"
#include "io/stream.hpp"
#include "routes/table.hpp"
#include "settings.hpp"
#include "tls/context.hpp"
#include "worker.hpp"

namespace bufpool::server {

/// What the connections of one listener share.
struct http_context {
  http_context(const http_settings& limits, bool admin_listener, routes::table table, spdlog::logger* log)
      : cfg(limits), admin(admin_listener), routes(std::move(table)), access_log(log),
        engine{cfg, routes, !admin_listener, log != nullptr} {}
  http_context(const http_context&) = delete;
  http_context& operator=(const http_context&) = delete;
  const http_settings& cfg;
  bool admin = false;                   ///< admin connections: counted apart, not drained
  routes::table routes;
  spdlog::logger* access_log = nullptr;  ///< one line per answered request (null: off)
  const tls::holder* tls = nullptr;      ///< HTTPS: the context new connections take (null: plain)
  http::engine_context engine;
};

class http_connection : public connection_base,
                        public std::enable_shared_from_this<http_connection>,
                        private io::stream_owner,
                        private http::engine_events {
public:
  ~http_connection() override;
  void start();
  void on_deadline() override;
  void drain() override;
  void force_close() override;
  void resume() override;

protected:
  http_connection(worker& w, const http_context& ctx);
  void attach(io::stream& s) noexcept { stream_ = &s; }
  handler_memory& memory() noexcept { return handler_memory_; }
  io::stream_owner& owner() noexcept { return *this; }

private:
  enum class state : std::uint8_t { open, lingering, closed };
  enum class outcome : std::uint8_t { need_input, writing, waiting, closed };

  // io::stream_owner
  void on_readable() override;
  void on_sent(std::error_code ec, std::size_t n) override;
  std::shared_ptr<void> lifeline() override { return shared_from_this(); }
  // http::engine_events
  void failed(error_kind kind, unsigned status) override;
  void answered(const answered_request& r) override;

  void read();
  // HTTP/2 (h2c with prior knowledge): the first bytes of a plain connection are compared with the
  // preface as they come (a preface split over reads works); on a match the connection makes its
  // h2 engine and reads on there.
  enum class sniff_result : std::uint8_t { http1, more, http2 };
  sniff_result sniff(bufpool::buffer& b, std::size_t& n);
  void read_h2();
  /// What an h2 engine result leads to (sends, the delay timer, close); true: read on.
  bool h2_turn(http::engine::result r);
  void arm_h2_timer();
  void h2_wake();
  void yield();
  void continue_input();
  outcome process_input() { return handle(engine_.parse()); }
  outcome handle(http::engine::result r);
  void wait_for_answer();
  void answer_delayed();
  enum class write_result : std::uint8_t { written, pending, failed };
  write_result flush();
  bool send_held_output();
  write_result send(std::span<const iovec> iov, std::size_t total);
  void finish_write(std::size_t n);
  bool after_write();
  void fail_out_of_memory();
  void linger();
  void close_now();
  void set_deadline(clock::duration d) { deadline_ = clock::now() + d; }
  void take_engine_deadline() noexcept { engine_.take_deadline(deadline_); }
  counter& active_counter() noexcept;
  handler_allocator<int> alloc() noexcept { return handler_allocator<int>(handler_memory_); }

  worker& w_;
  const http_context& ctx_;
  io::stream* stream_ = nullptr;
  handler_memory handler_memory_;  // this connection's Asio operations
  http::engine engine_;
  state state_ = state::open;
  bool writing_ = false;
  bool yielded_ = false;      // a read is posted to let other connections run
  bool budget_wait_ = false;  // queued in worker::wait_for_budget
  bool active_counted_ = true;
  bool handshaking_ = false;
  bool delayed_ = false;      // a delayed answer's timer is armed (engine_.waiting())
  std::uint32_t delay_gen_ = 0;  // which arming of the timer is current
  // The delayed answers' timer, made on the first delay (a connection that never waits pays 8 bytes).
  std::unique_ptr<asio::steady_timer> delay_timer_;  // TLS: the handshake is not done (its own deadline, limits.handshake_timeout)
  std::string peer_;          // "address:port", filled on the first access-log line
  // HTTP/2: made (on the heap) when the preface came; while sniffing, how many bytes of the preface
  // have matched so far.
  std::unique_ptr<http::h2_engine> h2_;
  std::uint8_t preface_matched_ = 0;
  bool sniffing_ = false;
  bool h2_timer_armed_ = false;
  clock::time_point h2_timer_at_{};
};

/// A connection served by Asio's reactor (epoll).
std::shared_ptr<http_connection> make_http_connection(const std::pmr::polymorphic_allocator<>& alloc, worker& w,
                                                      asio::ip::tcp::socket socket, const http_context& ctx);
/// A connection on a worker with the io_uring backend: the accepted descriptor, served through the ring.
std::shared_ptr<http_connection> make_http_connection(const std::pmr::polymorphic_allocator<>& alloc, worker& w,
                                                      int fd, const http_context& ctx);

}  // namespace bufpool::server
