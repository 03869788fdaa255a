// http::engine: one HTTP/1.1 connection's protocol, with no socket in it (docs/design.md 2.2).
//
// It is fed pooled buffers of received bytes (feed), parses them with llhttp in strict mode plus the
// checks llhttp cannot make (obs-fold, Host, Transfer-Encoding lists, versions, header-name characters,
// chunk extensions, limits), calls the route's handler for each request, and writes every answer into a
// pooled output batch, handed out as a gather list (output). Errors, 100-continue, HEAD, keep-alive and
// close are decided here. Once a read buffer is parsed it is kept as a spare for the next read
// (take_spare), so a steady connection reads into the same buffer; its bytes are never needed again
// (llhttp keeps its state across reads).
//
// parse() answers every complete request held, in order, until the input is spent, the batch holds
// max_pipeline answers, or an answer is the connection's last; then the owner sends the batch and calls
// output_sent(), and parse() again if input is left (has_input).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include <llhttp.h>
#include <sys/uio.h>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

#include "http/checks.hpp"
#include "http/env.hpp"
#include "http/exchange.hpp"
#include "http/handler.hpp"
#include "http/output.hpp"
#include "settings.hpp"
#include "stats.hpp"

namespace bufpool::server::routes {
class table;
}

namespace bufpool::server::http {

using clock = std::chrono::steady_clock;

/// A request that failed, and each answered request when the owner asked for them (access log).
class engine_events {
public:
  struct answered_request {
    std::string_view method;
    std::string_view target;  // as kept (the first 128 bytes)
    unsigned major, minor, status;
    std::size_t length;         // of the answer's body, as its head says
    clock::duration took;       // from the request's first byte to its answer
  };
  virtual void failed(error_kind kind, unsigned status) = 0;  // status 0: none could be sent
  virtual void answered(const answered_request&) {}

protected:
  ~engine_events() = default;
};

/// What the engines of one listener share.
struct engine_context {
  const http_settings& limits;
  const routes::table& routes;
  bool close_when_draining = true;  // while the worker drains, answers carry Connection: close
  bool log_answers = false;         // engine_events::answered for each request (access log)
};

class engine {
public:
  enum class phase : std::uint8_t { idle, headers, body };
  enum class result : std::uint8_t {
    need_input,     // everything fed is parsed; nothing to send
    send,           // a batch is ready (output()); input may be left (has_input)
    close,          // the last answer is out (or none could be sent): close, lingering
    out_of_memory,  // no buffer could be had: the owner sends the static 503 or closes
    wait,           // a request's answer is delayed (wake_at()): the owner reads nothing and calls wake()
                    // then; the batch before it has gone out (send came first) and none is held
  };
  /// Sent when no buffer can be had: from static memory, so it needs no allocation.
  static constexpr std::string_view out_of_memory_response =
      "HTTP/1.1 503 Service Unavailable\r\nServer: bufpool\r\nContent-Type: text/plain\r\n"
      "Content-Length: 14\r\nConnection: close\r\nRetry-After: 1\r\n\r\nout of memory\n";

  engine(const engine_context& ctx, engine_env& env, engine_events& events);
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // ---- input ----
  /// n received bytes in b (only when !has_input()).
  void feed(bufpool::buffer b, std::size_t n) noexcept {
    in_ = std::move(b);
    in_begin_ = 0;
    in_end_ = n;
  }
  bool has_input() const noexcept { return in_begin_ < in_end_; }
  /// Bytes of the current body (or chunk) not received yet: the next read may be that large. 0: unknown.
  std::size_t input_expected() const noexcept {
    return phase_ == phase::body && parser_.content_length < (std::uint64_t{1} << 32)
               ? static_cast<std::size_t>(parser_.content_length)
               : 0;
  }
  /// The parsed-out read buffer, to read into again (empty if there is none).
  bufpool::buffer take_spare() noexcept { return std::move(in_); }
  /// Drops what is held of the input (lingering, a timeout).
  void drop_input() noexcept {
    in_.reset();
    in_begin_ = in_end_ = 0;
  }
  result parse();

  // ---- output ----
  bool has_output() const noexcept { return !out_.empty(); }
  /// The batch is pieces of an echoed body with more of it to come, and under `bytes`: it may wait for
  /// the next read, so that a body that arrives in several reads goes out in fewer sends.
  bool output_may_wait(std::size_t bytes) const noexcept {
    return streaming_ && phase_ == phase::body && !closing_ && !has_input() && out_.bytes() < bytes;
  }
  /// The batch as a gather list; total: its bytes.
  std::span<const iovec> output(std::size_t& total) { return out_.gather(total); }
  /// The batch is out (or abandoned): its buffers go back to the pool.
  void output_sent() noexcept {
    out_.clear();
    batch_ = 0;
  }

  // ---- state ----
  phase current_phase() const noexcept { return phase_; }
  /// The batch holds the connection's last answer (or an error's): close once it is out.
  bool closing() const noexcept { return closing_; }
  /// An echo answer has begun: a failure can only cut it short.
  bool streaming() const noexcept { return streaming_; }
  /// The deadline the protocol asks for (a request's header or body timeout from its first byte, the
  /// idle timeout after an answer), when it changed since the last call.
  bool take_deadline(clock::time_point& d) noexcept {
    if (!deadline_changed_) return false;
    deadline_changed_ = false;
    d = deadline_;
    return true;
  }

  // ---- a delayed answer (exchange::defer) ----
  /// A request is complete and its answer waits for wake_at(); nothing is parsed after it meanwhile.
  bool waiting() const noexcept { return waiting_; }
  clock::time_point wake_at() const noexcept { return wake_at_; }
  /// The delay is over (or the worker drains): the delayed request is answered, and what is held of
  /// the input after it is parsed on. Returns what parse() would.
  result wake();
  /// The connection closes while a request waits: the waiting count is given back.
  void cancel_wait() noexcept;

  // ---- events from the owner ----
  /// The header or body deadline passed: a 408 (or the echo answer cut short); closing() after it.
  result timeout();
  /// No buffer could be had for input (the owner found request bytes waiting): counted, input dropped;
  /// the owner then either sends out_of_memory_response (abandon_output first) or closes.
  void note_out_of_memory() noexcept;
  /// Drops the batch (its buffers back to the pool) to send out_of_memory_response instead.
  void abandon_output() noexcept {
    out_.clear();
    batch_ = 0;
    closing_ = true;
  }

private:
  friend class h1_exchange;
  friend struct llhttp_callbacks;
  /// The header whose value is being parsed, when it is one the engine checks itself.
  enum class header : std::uint8_t { other, host, transfer_encoding, expect, accept_encoding };
  /// write_head's content_length for an answer sent with Transfer-Encoding: chunked.
  static constexpr std::size_t chunked_length = ~std::size_t{0};

  void execute(const char* data, std::size_t n);
  void out_of_memory() noexcept {  // during parse(): it returns result::out_of_memory
    note_out_of_memory();
    oom_ = true;
  }
  bool last_response() const noexcept;
  void complete_request();
  void fail(unsigned status, error_kind kind);
  void start_echo_stream();
  /// An answer's head; last: it carries Connection: close.
  void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                  std::string_view extra_headers, bool last);
  void append_body(std::string_view body) {
    if (!head_) out_.append(body);
  }
  /// The answer's body `body` (or the held body when body is null), compressed when the handler asked
  /// for gzip, the request accepts it and the result fits one pooled buffer; with its head.
  void write_whole(unsigned status, std::string_view content_type, const std::string_view* body,
                   std::string_view extra_headers);
  /// Appends to the captured header text (exchange::captured_headers); false when it is full.
  void capture(std::string_view bytes) noexcept;
  void set_deadline(clock::time_point d) noexcept {
    deadline_ = d;
    deadline_changed_ = true;
  }
  int reject(unsigned status, error_kind kind) noexcept;

  // llhttp callbacks (they never throw: llhttp is C; an allocation failure becomes a 503).
  int on_message_begin();
  int on_url(const char* at, std::size_t n);
  int on_url_complete();
  /// Looks the request up in the route table (handler_, route_, allow_).
  void route_request() noexcept;
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

  const engine_context& ctx_;
  engine_env& env_;
  engine_events& events_;
  llhttp_t parser_{};

  // Input: a pooled buffer while bytes wait to be parsed (or as the spare); the span llhttp_execute is
  // working on, and the last byte other than SP/HT before it (for obs-fold).
  bufpool::buffer in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  const char* exec_begin_ = nullptr;
  char last_byte_ = '\n';

  output_batch out_;
  std::size_t batch_ = 0;  // answers in out_

  // The request being parsed.
  std::array<char, 128> path_{};  // the target, enough to route on (longer targets are 404s)
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
  std::size_t ext_bytes_ = 0;      // chunk-extension bytes on the current chunk-size line
  const handler* handler_ = nullptr;
  route route_ = route::not_found;
  std::string_view allow_;         // the Allow header of a 405
  host_scan host_;                 // the Host value, checked as it streams by
  bool host_seen_ = false;
  bool expect_continue_ = false;
  bool te_seen_ = false;
  bool te_overflow_ = false;
  bool head_ = false;              // a HEAD request whose headers are complete: answers carry no body
  bool keep_alive_ = true;
  bool echo_ = false;              // the handler asked for the body back
  bool streaming_ = false;         // an echo answer has begun: a later failure can only cut it short
  bool chunk_open_ = false;        // a chunk of a chunked echo answer awaits its CRLF
  bool continue_sent_ = false;
  bool closing_ = false;
  bool oom_ = false;               // a buffer could not be had during this parse
  bool deadline_changed_ = false;
  phase phase_ = phase::idle;
  unsigned reject_status_ = 0;
  error_kind reject_kind_ = error_kind::bad_request;
  std::size_t requests_ = 0;
  clock::time_point request_start_{};  // the current request's first byte (on_message_begin)
  clock::time_point deadline_{};
  unsigned last_status_ = 0;           // of the last answer head written (access log)
  std::size_t last_length_ = 0;
  // A target longer than path_: all of it (up to max_uri_bytes), in a pooled buffer held only while the
  // request is being answered.
  bufpool::buffer long_target_;
  // What the handler decided at on_headers for the answer (exchange::set_answer): its status, its
  // extra header lines (in a pooled buffer, held only until the answer is written), and a note for
  // the handler's respond (exchange::note).
  unsigned answer_status_ = 200;
  bufpool::buffer answer_text_;
  std::uint8_t note_kind_ = 0;
  std::uint64_t note_value_ = 0;
  bool answer_oom_ = false;
  bool answer_close_ = false;  // the handler asked to close after this answer (set_answer)
  bool answer_used_ = false;  // any of the above or below was set for this request (else nothing to reset)
  // A delayed answer (exchange::defer): the delay asked at on_headers; once the request is complete,
  // waiting_ and the time it is due.
  clock::duration defer_{};
  clock::time_point wake_at_{};
  bool waiting_ = false;
  // The body is held whole (exchange::hold_body: a delayed or compressed echo, /debug) in held_, and
  // answered with a Content-Length once the request is complete.
  bool hold_ = false;
  bool gzip_ = false;          // the handler asked for a compressed answer (exchange::gzip_answer)
  bool accepts_gzip_ = false;  // the request's Accept-Encoding takes gzip
  output_batch held_;
  // The request's header lines ("Name: value\n"), kept for a handler that wants them
  // (handler::wants_headers; /debug), in a pooled buffer held while the request is answered.
  bufpool::buffer capture_;
  bool capturing_ = false;
  void reset_answer() noexcept {
    if (!answer_used_) return;  // the common case: one branch per request
    answer_used_ = false;
    answer_oom_ = false;
    answer_close_ = false;
    answer_status_ = 200;
    answer_text_.reset();
    long_target_.reset();
    note_kind_ = 0;
    note_value_ = 0;
    defer_ = {};
    hold_ = gzip_ = capturing_ = false;
    held_.clear();
    capture_.reset();
  }
};

/// The HTTP/1.1 engine's side of http::exchange (exchange.hpp): a view of the engine's request and
/// answer state, made on the stack for each handler call.
class h1_exchange final : public exchange {
public:
  explicit h1_exchange(engine& e) noexcept : e_(e) {}
  llhttp_method_t method() const noexcept override { return static_cast<llhttp_method_t>(e_.parser_.method); }
  std::string_view target() const noexcept override {
    if (e_.long_target_) return {reinterpret_cast<const char*>(e_.long_target_.data()), e_.long_target_.size()};
    return {e_.path_.data(), e_.path_len_};
  }
  bool target_complete() const noexcept override { return e_.url_len_ == target().size(); }
  unsigned version_minor() const noexcept override { return e_.parser_.http_minor; }
  bool head() const noexcept override { return e_.head_; }
  std::string_view allow() const noexcept override { return e_.allow_; }
  std::string_view captured_headers() const noexcept override {
    return e_.capture_ ? std::string_view(reinterpret_cast<const char*>(e_.capture_.data()), e_.capture_.size())
                       : std::string_view{};
  }
  bool accepts_gzip() const noexcept override { return e_.accepts_gzip_; }

  void echo_body() noexcept override { e_.echo_ = true; }
  void set_answer(unsigned status, std::string_view extra_headers, bool close) noexcept override;
  unsigned answer_status() const noexcept override { return e_.answer_status_; }
  std::string_view answer_headers() const noexcept override {
    return e_.answer_text_ ? std::string_view(reinterpret_cast<const char*>(e_.answer_text_.data()), e_.answer_text_.size())
                           : std::string_view{};
  }
  void note(std::uint8_t kind, std::uint64_t value) noexcept override {
    e_.answer_used_ = true;
    e_.note_kind_ = kind;
    e_.note_value_ = value;
  }
  std::uint8_t note_kind() const noexcept override { return e_.note_kind_; }
  std::uint64_t note_value() const noexcept override { return e_.note_value_; }
  /// The connection reads nothing meanwhile and holds no pooled buffer for it (unless it holds the
  /// body, hold_body, or pipelined bytes after it were read with it).
  void defer(clock::duration d) noexcept override {
    e_.answer_used_ = true;
    e_.defer_ = d;
  }
  void hold_body() noexcept override {
    e_.answer_used_ = true;
    e_.echo_ = true;
    e_.hold_ = true;
  }
  void gzip_answer() noexcept override {
    e_.answer_used_ = true;
    e_.gzip_ = true;
  }
  bool gzip_asked() const noexcept override { return e_.gzip_; }

  void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                  std::string_view extra_headers) override {
    e_.write_head(status, content_type, content_length, extra_headers, e_.closing_);
  }
  void body(std::string_view bytes) override { e_.append_body(bytes); }
  void body_pattern(std::size_t n) override;
  void write_whole(unsigned status, std::string_view content_type, std::string_view body,
                   std::string_view extra_headers) override {
    e_.write_whole(status, content_type, &body, extra_headers);
  }
  /// Ends the echoed answer: the held body as one answer with its length, the chunked terminator, or an
  /// empty answer when no body came.
  void end_echo() override;
  std::span<const bufpool::buffer> held_body() const noexcept override { return e_.held_.pieces(); }

  worker_stats& stats() noexcept override { return e_.env_.stats; }
  bufpool::pool& pool() noexcept override { return e_.env_.pool; }

private:
  engine& e_;
};

}  // namespace bufpool::server::http
