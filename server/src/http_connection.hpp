// http_connection: one HTTP/1.1 connection, from accept to close.
//
// How a request's bytes travel (docs/design.md, section 2): the connection holds no pooled buffer while
// it waits. When the socket is readable it takes a read buffer from the pool, reads what is there, and
// feeds it to llhttp (strict mode), which keeps its own state across reads, so the buffer goes back to
// the pool as soon as its bytes are parsed. Every complete request in a read is answered, in order,
// into pooled output buffers; an echo body is streamed: each piece is copied into the output as it is
// parsed, so a connection holds one read buffer and one batch of output whatever the body size. The
// responses of one read go out in one gather write, tried at once; what the socket does not take is
// written asynchronously, and reading stops while it is pending
// (backpressure). One connection reads at most max_reads_per_turn buffers before it yields to the
// io_context. What llhttp does not check (obs-fold, Host, Transfer-Encoding lists, versions, header
// name characters, chunk-extension bytes) the callbacks check. Limits and timeouts end a request with
// the right status and a lingering close.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <llhttp.h>

#include <bufpool/buffer.hpp>

#include <spdlog/logger.h>

#include <sys/uio.h>

#include "handler_memory.hpp"
#include "settings.hpp"
#include "uring.hpp"
#include "worker.hpp"

namespace bufpool::server {

/// What the connections of one listener share.
struct http_context {
  const http_settings& cfg;
  bool admin = false;                       ///< admin routes (/stats) instead of the public ones
  const std::atomic<bool>& draining;        ///< server-wide: /healthz answers 503
  std::function<std::string()> stats_json;  ///< the body of GET /stats (admin only)
  std::function<std::string()> metrics_text;  ///< the body of GET /metrics (admin only)
  spdlog::logger* access_log = nullptr;       ///< one line per answered request (null: off)
};

/// The admin listener's GET / page: the live pool dashboard (server/src/dashboard.cpp).
std::string_view dashboard_html() noexcept;

class http_connection final : public connection_base, public std::enable_shared_from_this<http_connection> {
public:
  http_connection(worker& w, asio::ip::tcp::socket socket, const http_context& ctx);
  /// On a worker with the io_uring backend: the accepted descriptor, served through the ring.
  http_connection(worker& w, int fd, const http_context& ctx);
  ~http_connection() override;
  void start();
  void on_deadline() override;
  void drain() override;
  void force_close() override;
  void resume() override;

private:
  enum class phase : std::uint8_t { idle, headers, body, lingering, closed };
  enum class outcome : std::uint8_t { need_input, writing, closed };
  enum class write_result : std::uint8_t { written, pending, failed };
  /// The header whose value is being parsed, when it is one the connection checks itself.
  enum class header : std::uint8_t { other, host, transfer_encoding, expect };

  friend struct llhttp_callbacks;

  // The io_uring backend's operations (the connection stays alive while any is in flight: hold_ring).
  struct ring_op final : uring_op {
    http_connection* c = nullptr;
    bool recv = false;
    void complete(int res, unsigned flags) override;
    bool buffers_available() override;
  };
  enum class input_end : std::uint8_t { none, eof, error };
  /// write_head's content_length for an answer sent with Transfer-Encoding: chunked.
  static constexpr std::size_t chunked_length = ~std::size_t{0};

  void read();
  bool ring_input_next(std::size_t& n);
  void arm_recv();
  void hold_ring();
  void release_ring();
  void on_ring_recv(int res, unsigned flags);
  void on_ring_send(int res);
  write_result ring_send(std::size_t total);
  int fd() noexcept { return ring_ != nullptr ? fd_ : socket_.native_handle(); }
  void yield();
  void continue_input();
  void wait_readable();
  void execute(const char* data, std::size_t n);
  outcome process_input();
  void complete_request();
  void fail(unsigned status, error_kind kind);
  void fail_out_of_memory();
  bool last_response() const;
  int check_transfer_encoding();
  enum class pending_input : std::uint8_t { bytes, end, nothing };
  pending_input peek_input();
  void start_echo_stream();

  void respond(route r);
  void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                  std::string_view extra_headers = {});
  char* output_space(std::size_t n);
  void append(std::string_view bytes);
  void append_body(std::string_view body);
  write_result flush();
  void finish_write(std::size_t n);
  bool after_write();
  void on_written(std::error_code ec, std::size_t n);
  void linger();
  void close_now();
  void set_deadline(clock::duration d);
  counter& active_counter() noexcept;
  handler_allocator<int> alloc() noexcept { return handler_allocator<int>(handler_memory_); }

  // llhttp callbacks.
  int on_message_begin();
  int on_url(const char* at, std::size_t n);
  int on_header_field(const char* at, std::size_t n);
  int on_header_field_complete();
  int on_header_value(const char* at, std::size_t n);
  int on_header_value_complete();
  int on_headers_complete();
  int on_chunk_header();
  int on_chunk_extension(std::size_t n);
  int on_chunk_complete();
  int on_body(const char* at, std::size_t n);
  int on_message_complete();
  int reject(unsigned status, error_kind kind);

  worker& w_;
  asio::ip::tcp::socket socket_;  // epoll backend (not open with io_uring)
  // io_uring backend: the ring (null: epoll), the descriptor, the recv and send operations, received
  // buffers not parsed yet, and the send's gather list. The descriptor stays open until the destructor,
  // which runs after the last operation that names it has completed (docs/design.md 2.6, Lifetime):
  // closing it earlier would free its number while a queued operation still names it.
  uring_loop* ring_ = nullptr;
  int fd_ = -1;
  ring_op recv_op_;
  ring_op send_op_;
  std::shared_ptr<http_connection> self_;  // while ring_ops_ > 0
  unsigned ring_ops_ = 0;
  // A received buffer not parsed yet (at most one: a recv is armed only while there is none, so a
  // connection holds one read buffer, and reads nothing while an answer waits, as on epoll).
  bufpool::buffer ring_in_;
  std::size_t ring_in_bytes_ = 0;
  bool recv_armed_ = false;
  bool recv_starved_ = false;  // the recv ended with ENOBUFS: armed again when the ring has buffers
  bool reset_on_close_ = false;  // bytes came after close_now: the destructor's close resets
  input_end input_end_ = input_end::none;
  std::vector<iovec> riov_;
  msghdr msg_{};
  std::size_t send_total_ = 0;
  std::size_t send_done_ = 0;
  const http_context& ctx_;
  llhttp_t parser_{};
  handler_memory handler_memory_;  // this connection's Asio operations

  // Input: a pooled buffer while bytes wait to be parsed; empty otherwise.
  bufpool::buffer in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  // The span llhttp_execute is working on, and the last byte other than SP/HT before it (for obs-fold).
  const char* exec_begin_ = nullptr;
  char last_byte_ = '\n';

  // Output: pooled buffers of this batch of responses, and their gather list. Both vectors keep
  // their capacity, so a steady connection allocates nothing per request.
  std::vector<bufpool::buffer> out_;
  std::vector<asio::const_buffer> iov_;
  bool out_open_ = false;  // the last buffer of out_ may take more bytes
  std::size_t batch_ = 0;  // responses in out_

  // The request being parsed.
  std::array<char, 128> path_{};  // enough to route on (longer targets are 404s)
  std::size_t path_len_ = 0;
  std::size_t url_len_ = 0;
  std::array<char, 20> field_{};
  std::size_t field_len_ = 0;
  header header_ = header::other;
  std::array<char, 256> value_{};
  std::size_t value_len_ = 0;
  std::array<char, 64> te_{};  // every Transfer-Encoding value, lower case, joined by ",": longer is a 400
  std::size_t te_len_ = 0;
  std::size_t header_bytes_ = 0;
  std::size_t header_count_ = 0;
  std::uint64_t echo_length_ = 0;  // the request's Content-Length
  std::size_t body_bytes_ = 0;     // body and chunk-extension bytes: counted against max_body_bytes
  route route_ = route::not_found;
  bool host_seen_ = false;
  bool host_bad_ = false;
  enum class host_state : std::uint8_t { none, value, after };  // where the Host value's scan is
  host_state host_state_ = host_state::none;
  bool expect_continue_ = false;
  bool te_seen_ = false;
  bool te_overflow_ = false;
  bool head_ = false;              // a HEAD request whose headers are complete: answers carry no body
  bool keep_alive_ = true;
  bool streaming_ = false;         // an echo answer has begun: a later failure can only cut it short
  bool chunk_open_ = false;        // a chunk of a chunked echo answer awaits its CRLF
  std::size_t ext_bytes_ = 0;      // chunk-extension bytes on the current chunk-size line
  unsigned reject_status_ = 0;
  error_kind reject_kind_ = error_kind::bad_request;

  // The connection.
  phase phase_ = phase::idle;
  bool writing_ = false;
  bool waiting_ = false;         // an async_wait for readability is pending
  bool yielded_ = false;         // a read is posted to let other connections run
  bool budget_wait_ = false;     // queued in worker::wait_for_budget
  bool closing_ = false;         // close (lingering) once the output is written
  bool continue_sent_ = false;
  bool active_counted_ = true;
  std::size_t requests_ = 0;
  clock::time_point request_start_{};  // the current request's first byte (on_message_begin)
  unsigned last_status_ = 0;           // of the last response head written (access log)
  std::size_t last_length_ = 0;
  std::string peer_;                   // "address:port", filled on the first access-log line
  void log_access(clock::time_point now);
};

}  // namespace bufpool::server
