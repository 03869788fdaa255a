// http::exchange: a request as its route's handler sees it, and the way the handler answers, whatever
// the protocol (docs/design.md 2.2 and 2.9). The HTTP/1.1 engine implements it (engine.hpp:
// h1_exchange); HTTP/2 streams will be the second implementation. A route is written once, against
// this interface; the engine's own calls stay direct (its implementation is final).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <llhttp.h>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

#include "http/checks.hpp"
#include "stats.hpp"

namespace bufpool::server::http {

class exchange {
public:
  exchange(const exchange&) = delete;
  exchange& operator=(const exchange&) = delete;

  // ---- the request ----
  virtual llhttp_method_t method() const noexcept = 0;
  std::string_view method_name() const noexcept { return llhttp_method_name(method()); }
  /// The request target as received, all of it (up to http.max_uri_bytes).
  virtual std::string_view target() const noexcept = 0;
  virtual bool target_complete() const noexcept = 0;
  std::string_view path() const noexcept { return path_of(target()); }
  std::string_view query() const noexcept { return query_of(target()); }
  /// HTTP/1.x's minor version (HTTP/2: 1, it has every 1.1 feature a route asks about).
  virtual unsigned version_minor() const noexcept = 0;
  /// A HEAD request: body() writes nothing.
  virtual bool head() const noexcept = 0;
  /// A 405's Allow header line ("Allow: GET, HEAD\r\n"), from the route table.
  virtual std::string_view allow() const noexcept = 0;
  /// The request's header lines as received ("Name: value\n" each; the handler wants_headers()).
  /// Complete unless it was cut at http.max_header_bytes.
  virtual std::string_view captured_headers() const noexcept = 0;
  /// The request's Accept-Encoding takes gzip.
  virtual bool accepts_gzip() const noexcept = 0;

  // ---- decided at on_headers ----
  /// The request body streams back as the answer's body, each piece as it is parsed.
  virtual void echo_body() noexcept = 0;
  /// The answer's status and extra header lines ("Name: value\r\n" each; kept in a pooled buffer until
  /// the answer is written), and whether the connection closes after it.
  virtual void set_answer(unsigned status, std::string_view extra_headers, bool close) noexcept = 0;
  virtual unsigned answer_status() const noexcept = 0;
  virtual std::string_view answer_headers() const noexcept = 0;
  /// A note from on_headers to respond about the same request (a kind and a value; 0 when none).
  virtual void note(std::uint8_t kind, std::uint64_t value) noexcept = 0;
  virtual std::uint8_t note_kind() const noexcept = 0;
  virtual std::uint64_t note_value() const noexcept = 0;
  /// Answer once the request is complete and `d` has passed; nothing is held for it meanwhile but
  /// what the protocol must keep.
  virtual void defer(std::chrono::steady_clock::duration d) noexcept = 0;
  /// The request body is kept whole (pooled), for respond to answer with (end_echo: as the body;
  /// held_body: to read). Its size is limited by http.max_body_bytes.
  virtual void hold_body() noexcept = 0;
  /// The answer is compressed if the request accepts gzip and the compressed body fits one pooled
  /// buffer; either way it carries Vary: Accept-Encoding.
  virtual void gzip_answer() noexcept = 0;
  virtual bool gzip_asked() const noexcept = 0;

  // ---- the answer (respond) ----
  virtual void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                          std::string_view extra_headers = {}) = 0;
  virtual void body(std::string_view bytes) = 0;
  /// n bytes of a fixed pattern as the body (nothing for HEAD), copied into pooled output buffers.
  virtual void body_pattern(std::size_t n) = 0;
  /// body_pattern's bytes: this cycle, repeated.
  static constexpr std::string_view pattern_cycle = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
  /// A whole answer (head and body), compressed where gzip_answer asked.
  virtual void write_whole(unsigned status, std::string_view content_type, std::string_view body,
                           std::string_view extra_headers = {}) = 0;
  /// After echo_body (or hold_body): ends the echoed answer.
  virtual void end_echo() = 0;
  /// The held body's pieces (hold_body), in order.
  virtual std::span<const bufpool::buffer> held_body() const noexcept = 0;

  // ---- the worker's ----
  virtual worker_stats& stats() noexcept = 0;
  virtual bufpool::pool& pool() noexcept = 0;

protected:
  exchange() = default;
  ~exchange() = default;
};

}  // namespace bufpool::server::http
