// http::h2_engine: one HTTP/2 connection's protocol, sans I/O (docs/design.md 2.9), the second engine
// beside the HTTP/1.1 one (engine.hpp) and fed the same way: pooled read buffers in, a gather list of
// pooled buffers out. nghttp2 (libnghttp2 1.52) does the framing, HPACK, flow control and the stream
// state machine; this class keeps each stream's request and answer, routes it through the same table
// (routes/table.hpp) with the same handlers, which see it through http::exchange (h2_exchange), and
// turns nghttp2's output into the batch: frame headers and HEADERS copied into pooled buffers, DATA
// pushed from the answer's own pooled buffers without a copy where a piece fills a frame
// (NGHTTP2_DATA_FLAG_NO_COPY).
//
// Per stream: its state comes from a free list of the engine (reused, at most
// http2.max_concurrent_streams live), its target and captured headers in pooled buffers while it lives.
// Request bodies are held whole (exchange::hold_body or echo_body: HTTP/2 answers echo bodies once the
// request is complete, with a content-length), limited by http.max_body_bytes. Delays (exchange::defer)
// are per stream: other streams are served while one waits (waiting(), wake_at(), wake()).
//
// Limits and attacks: nghttp2's own guards are set (SETTINGS_MAX_CONCURRENT_STREAMS, rapid reset via
// the stream reset rate limit, CONTINUATION frames per header block, outbound ACKs for SETTINGS/PING
// floods, SETTINGS entries per frame); a header block over http.max_header_bytes gets a 431 on its
// stream; a client that breaks the protocol gets GOAWAY and the connection closes once it is out.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

#include "http/engine.hpp"
#include "http/env.hpp"
#include "http/output.hpp"

struct nghttp2_session;

namespace bufpool::server::http {

struct h2_stream;
class h2_exchange;
struct h2_callbacks;

class h2_engine {
public:
  using result = engine::result;
  /// The client connection preface: a plain listener whose first bytes are these speaks h2c.
  static constexpr std::string_view preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  /// The batch stops taking frames past this many bytes until it is sent (backpressure).
  static constexpr std::size_t max_batch_bytes = 256 * 1024;

  /// What happened on this connection, for the owner's statistics.
  struct counters {
    std::uint64_t streams = 0;         // streams opened by the client
    std::uint64_t resets_received = 0;  // RST_STREAM frames from the client
    std::uint64_t resets_sent = 0;
    std::uint64_t data_bytes_moved = 0;   // DATA payload sent from the answer's own pooled buffers
    std::uint64_t data_bytes_copied = 0;  // DATA payload copied into the batch (small or split pieces)
    std::array<std::uint64_t, 10> frames{};  // received, by type (DATA .. CONTINUATION)
    std::uint64_t library_bytes = 0;   // heap bytes nghttp2 holds for this session now
    std::uint32_t goaway_error = 0;    // the error code of the GOAWAY sent (valid when goaway_sent)
    bool goaway_sent = false;
  };

  /// Its SETTINGS and guards come from ctx.limits.http2.
  h2_engine(const engine_context& ctx, engine_env& env, engine_events& events);
  ~h2_engine();
  h2_engine(const h2_engine&) = delete;
  h2_engine& operator=(const h2_engine&) = delete;

  // ---- input ----
  void feed(bufpool::buffer b, std::size_t n) noexcept {
    in_ = std::move(b);
    in_begin_ = 0;
    in_end_ = n;
  }
  bool has_input() const noexcept { return in_begin_ < in_end_; }
  bufpool::buffer take_spare() noexcept { return std::move(in_); }
  void drop_input() noexcept {
    in_.reset();
    in_begin_ = in_end_ = 0;
  }
  /// Hands what was fed to nghttp2, answers the streams that are complete, writes frames into the batch.
  result parse();

  // ---- output ----
  bool has_output() const noexcept { return !out_.empty(); }
  std::span<const iovec> output(std::size_t& total) { return out_.gather(total); }
  /// The batch is out: its buffers go back; call parse() again (more frames may be ready).
  void output_sent() noexcept {
    out_.clear();
    out_bytes_ = 0;
  }

  // ---- state ----
  /// GOAWAY is sent (or the session is over): close once the batch is out.
  bool closing() const noexcept { return closing_; }
  /// Streams open now.
  std::size_t open_streams() const noexcept { return live_; }
  /// The deadline in force (idle, or the body timeout while streams are open).
  clock::time_point deadline() const noexcept { return deadline_; }
  bool take_deadline(clock::time_point& d) noexcept {
    if (!deadline_changed_) return false;
    deadline_changed_ = false;
    d = deadline_;
    return true;
  }
  /// Some stream's answer is delayed (exchange::defer).
  bool waiting() const noexcept { return !delayed_.empty(); }
  /// When the earliest delayed answer is due.
  clock::time_point wake_at() const noexcept;
  /// Answers the delayed streams that are due (all of them when the worker drains).
  result wake();
  /// The deadline passed (idle, or streams that never finish): GOAWAY, then close.
  result timeout();
  /// Graceful stop: GOAWAY with the last stream id; the open streams are answered, then close.
  void drain();

  const counters& stats() const noexcept { return counters_; }

private:
  friend struct h2_callbacks;
  friend struct h2_memory;
  friend class h2_exchange;

  static bool method_of(std::string_view name, llhttp_method_t& m) noexcept;
  static bool later(const h2_stream* a, const h2_stream* b) noexcept;  // the delay heap's order
  h2_stream* new_stream(std::int32_t id);
  void route(h2_stream& s);
  void capture(h2_stream& s, std::string_view name, std::string_view value);
  void free_stream(h2_stream* s) noexcept;
  void headers_done(h2_stream& s);
  void request_done(h2_stream& s);
  void answer(h2_stream& s);
  /// Submits the answer kept in s (its head and body) to nghttp2.
  void submit(h2_stream& s);
  void reject(h2_stream& s, unsigned status, error_kind kind);
  result flush();
  void go_away(std::uint32_t error_code);
  void touch() noexcept;
  void set_deadline(clock::time_point d) noexcept {
    deadline_ = d;
    deadline_changed_ = true;
  }

  const engine_context& ctx_;
  engine_env& env_;
  engine_events& events_;
  nghttp2_session* session_ = nullptr;

  bufpool::buffer in_;
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;
  output_batch out_;
  std::size_t out_bytes_ = 0;

  // Every stream state made (nghttp2_session_del closes streams without callbacks: the engine owns
  // them), and those free for reuse.
  std::vector<std::unique_ptr<h2_stream>> streams_;
  std::vector<h2_stream*> free_;
  std::size_t live_ = 0;
  std::vector<h2_stream*> delayed_;  // streams whose answer waits, a min-heap on their due time
  counters counters_;
  clock::time_point deadline_{};
  bool deadline_changed_ = false;
  bool closing_ = false;
  bool oom_ = false;
  bool failed_ = false;  // the session ended on an error (counted once)
  clock::time_point control_window_{};  // PING and SETTINGS frames counted since then (a one-second window)
  std::uint32_t control_frames_ = 0;
};

}  // namespace bufpool::server::http
