// http_connection: one HTTP/1.1 connection, from accept to close.
//
// How a request's bytes travel (docs/design.md, section 2): the connection holds no pooled buffer while
// it waits. When the socket is readable it takes a read buffer from the pool, reads what is there, and
// feeds it to llhttp, which keeps its own state across reads, so the buffer goes back to the pool as
// soon as its bytes are parsed. Every complete request in a read is answered, in order, into pooled
// output buffers (an echo body is collected into pooled chunks that are then written as they are);
// the responses of one read go out in one gather write, and reading stops while it is pending.
// Limits and timeouts end a request with the right status and a lingering close.
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

#include "settings.hpp"
#include "worker.hpp"

namespace bufpool::server {

/// What the connections of one listener share.
struct http_context {
  const http_settings& cfg;
  bool admin = false;                       ///< admin routes (/stats) instead of the public ones
  const std::atomic<bool>& draining;        ///< server-wide: /healthz answers 503
  std::function<std::string()> stats_json;  ///< the body of GET /stats (admin only)
};

class http_connection final : public connection_base, public std::enable_shared_from_this<http_connection> {
public:
  http_connection(worker& w, asio::ip::tcp::socket socket, const http_context& ctx);
  ~http_connection() override;
  void start();
  void on_deadline() override;
  void drain() override;
  void force_close() override;

private:
  enum class phase : std::uint8_t { idle, headers, body, lingering, closed };
  enum class outcome : std::uint8_t { need_input, writing, closed };

  friend struct llhttp_callbacks;

  void read();
  void wait_readable();
  outcome process_input();
  void complete_request();
  void fail(unsigned status, error_kind kind);
  unsigned status_for(llhttp_errno_t err) const;

  void respond(route r);
  void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                  std::string_view extra_headers = {});
  void append(std::string_view bytes);
  void append_body(std::string_view body);
  void flush();
  void on_written(std::error_code ec, std::size_t n);
  void linger();
  void close_now();
  void set_deadline(clock::duration d);
  counter& active_counter() noexcept;

  // llhttp callbacks.
  int on_message_begin();
  int on_url(const char* at, std::size_t n);
  int on_header_field(const char* at, std::size_t n);
  int on_header_field_complete();
  int on_header_value(const char* at, std::size_t n);
  int on_header_value_complete();
  int on_headers_complete();
  int on_body(const char* at, std::size_t n);
  int on_message_complete();
  int reject(unsigned status, error_kind kind);

  worker& w_;
  asio::ip::tcp::socket socket_;
  const http_context& ctx_;
  llhttp_t parser_{};

  // Input: a pooled buffer while bytes wait to be parsed; empty otherwise.
  bufpool::buffer in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;

  // Output: pooled buffers of this batch of responses, and their gather list. Both vectors keep
  // their capacity, so a steady connection allocates nothing per request.
  std::vector<bufpool::buffer> out_;
  std::vector<asio::const_buffer> iov_;
  bool out_open_ = false;  // the last buffer of out_ may take more bytes
  std::size_t batch_ = 0;  // responses in out_

  // The request being parsed.
  std::array<char, 64> path_{};
  std::size_t path_len_ = 0;
  std::size_t url_len_ = 0;
  std::array<char, 20> field_{};
  std::size_t field_len_ = 0;
  std::array<char, 64> value_{};
  std::size_t value_len_ = 0;
  std::array<char, 64> te_{};
  std::size_t te_len_ = 0;
  std::size_t header_bytes_ = 0;
  std::size_t header_count_ = 0;
  std::size_t body_bytes_ = 0;
  std::vector<bufpool::buffer> body_;  // echo body chunks (capacity kept)
  route route_ = route::not_found;
  bool host_seen_ = false;
  bool expect_continue_ = false;
  bool te_seen_ = false;
  bool keep_alive_ = true;
  unsigned reject_status_ = 0;
  error_kind reject_kind_ = error_kind::bad_request;

  // The connection.
  phase phase_ = phase::idle;
  bool writing_ = false;
  bool waiting_ = false;         // an async_wait for readability is pending
  bool closing_ = false;         // close (lingering) once the output is written
  bool continue_sent_ = false;
  bool active_counted_ = true;
  std::size_t requests_ = 0;
};

}  // namespace bufpool::server
