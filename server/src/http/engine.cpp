// The HTTP/1.1 engine: llhttp callbacks and the checks llhttp cannot make, routing through the table,
// answers into the pooled batch. See engine.hpp; docs/design.md 2.2 and 2.3.
#include "http/engine.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>

#include "http/gzip.hpp"
#include "routes/table.hpp"

namespace bufpool::server::http {

namespace {

// The longest answer head write_head writes (status line, Server, Date, Content-Type, length, extra
// headers up to 128 bytes, Connection).
constexpr std::size_t max_head_bytes = 512;
// Chunk-extension bytes allowed on one chunk-size line (they also count toward max_body_bytes).
constexpr std::size_t max_chunk_extension_bytes = 1024;
constexpr std::size_t date_length = 29;

// The status line and the fixed headers before the Date's value, one constant per status.
std::string_view status_line(unsigned status) {
#define BUFPOOL_LINE(code, text) "HTTP/1.1 " #code " " text "\r\nServer: bufpool\r\nDate: "
  switch (status) {
    case 100: return BUFPOOL_LINE(100, "Continue");
    case 200: return BUFPOOL_LINE(200, "OK");
    case 400: return BUFPOOL_LINE(400, "Bad Request");
    case 404: return BUFPOOL_LINE(404, "Not Found");
    case 405: return BUFPOOL_LINE(405, "Method Not Allowed");
    case 408: return BUFPOOL_LINE(408, "Request Timeout");
    case 413: return BUFPOOL_LINE(413, "Content Too Large");
    case 414: return BUFPOOL_LINE(414, "URI Too Long");
    case 431: return BUFPOOL_LINE(431, "Request Header Fields Too Large");
    case 500: return BUFPOOL_LINE(500, "Internal Server Error");
    case 501: return BUFPOOL_LINE(501, "Not Implemented");
    case 503: return BUFPOOL_LINE(503, "Service Unavailable");
    case 505: return BUFPOOL_LINE(505, "HTTP Version Not Supported");
  }
  return {};
#undef BUFPOOL_LINE
}

}  // namespace

// Trampolines from llhttp's C callbacks to the engine.
struct llhttp_callbacks {
  static engine& e(llhttp_t* p) { return *static_cast<engine*>(p->data); }
  static const llhttp_settings_t& get() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t x;
      llhttp_settings_init(&x);
      x.on_message_begin = [](llhttp_t* p) { return e(p).on_message_begin(); };
      x.on_url = [](llhttp_t* p, const char* at, std::size_t n) { return e(p).on_url(at, n); };
      x.on_url_complete = [](llhttp_t* p) { return e(p).on_url_complete(); };
      x.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) { return e(p).on_header_field(at, n); };
      x.on_header_field_complete = [](llhttp_t* p) { return e(p).on_header_field_complete(); };
      x.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) { return e(p).on_header_value(at, n); };
      x.on_header_value_complete = [](llhttp_t* p) { return e(p).on_header_value_complete(); };
      x.on_headers_complete = [](llhttp_t* p) { return e(p).on_headers_complete(); };
      x.on_chunk_header = [](llhttp_t* p) { return e(p).on_chunk_header(); };
      x.on_chunk_extension_name = [](llhttp_t* p, const char*, std::size_t n) { return e(p).on_chunk_extension(n); };
      x.on_chunk_extension_value = [](llhttp_t* p, const char*, std::size_t n) { return e(p).on_chunk_extension(n); };
      x.on_chunk_complete = [](llhttp_t* p) { return e(p).on_chunk_complete(); };
      x.on_body = [](llhttp_t* p, const char* at, std::size_t n) { return e(p).on_body(at, n); };
      x.on_message_complete = [](llhttp_t* p) { return e(p).on_message_complete(); };
      return x;
    }();
    return s;
  }
};

engine::engine(const engine_context& ctx, engine_env& env, engine_events& events)
    : ctx_(ctx), env_(env), events_(events), out_(env.pool, env.memory), held_(env.pool, env.memory) {
  llhttp_init(&parser_, HTTP_REQUEST, &llhttp_callbacks::get());
  parser_.data = this;
}

// ---- parsing --------------------------------------------------------------------------------------

engine::result engine::parse() {
  const char* base = reinterpret_cast<const char*>(in_.data());
  while (in_begin_ < in_end_ && !closing_ && !oom_ && !waiting_) {
    execute(base + in_begin_, in_end_ - in_begin_);
    if (batch_ >= ctx_.limits.max_pipeline) break;
  }
  if (closing_) in_begin_ = in_end_;  // nothing after a failed or last request is parsed
  if (oom_) {
    oom_ = false;
    return result::out_of_memory;
  }
  // All parsed: llhttp keeps the state, the bytes are no longer needed; the buffer stays as the spare.
  if (in_begin_ >= in_end_) in_begin_ = in_end_ = 0;
  if (!out_.empty()) return result::send;
  if (waiting_) return result::wait;
  return closing_ ? result::close : result::need_input;
}

engine::result engine::wake() {
  if (!waiting_) return parse();
  waiting_ = false;
  env_.stats.echo_delayed_waiting.sub();
  try {
    complete_request();
  } catch (const std::bad_alloc&) {
    fail(503, error_kind::out_of_memory);
    if (oom_) {
      oom_ = false;
      return result::out_of_memory;
    }
  }
  return parse();
}

void engine::cancel_wait() noexcept {
  if (!waiting_) return;
  waiting_ = false;
  env_.stats.echo_delayed_waiting.sub();
}

// One llhttp_execute over [data, data + n), remembering where it started (for the obs-fold check).
void engine::execute(const char* data, std::size_t n) {
  exec_begin_ = data;
  const llhttp_errno_t err = llhttp_execute(&parser_, data, n);
  const char* end = data + n;
  if (err == HPE_PAUSED) {
    end = llhttp_get_error_pos(&parser_);
    in_begin_ = static_cast<std::size_t>(end - reinterpret_cast<const char*>(in_.data()));
    llhttp_resume(&parser_);
  } else {
    in_begin_ = in_end_;
  }
  last_byte_ = last_non_blank(data, end, last_byte_);  // for the obs-fold check of the next call
  if (err == HPE_OK || err == HPE_PAUSED) return;
  if (reject_kind_ == error_kind::out_of_memory && reject_status_ != 0) out_of_memory();
  else fail(reject_status_ != 0 ? reject_status_ : 400, reject_status_ != 0 ? reject_kind_ : error_kind::bad_request);
}

bool engine::last_response() const noexcept {
  return !keep_alive_ || answer_close_ || requests_ + 1 >= ctx_.limits.max_requests_per_connection ||
         (ctx_.close_when_draining && env_.draining.load(std::memory_order_relaxed));
}

void engine::complete_request() {
  if (last_response()) closing_ = true;
  ++requests_;
  env_.stats.requests[static_cast<std::size_t>(route_)].add();
  h1_exchange x(*this);
  handler_->respond(x);
  reset_answer();
  head_ = streaming_ = echo_ = false;  // a request that fails before its headers are complete is no HEAD
  phase_ = phase::idle;
  const auto now = clock::now();  // one clock read: the latency, and the idle deadline
  env_.stats.latency[static_cast<std::size_t>(route_)].observe(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - request_start_).count());
  if (ctx_.log_answers) {
    events_.answered({llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)), {path_.data(), path_len_},
                      static_cast<unsigned>(parser_.http_major), static_cast<unsigned>(parser_.http_minor),
                      last_status_, last_length_, now - request_start_});
  }
  set_deadline(now + ctx_.limits.idle_timeout);
}

// A framing or limit error: answer with `status`, then close with a lingering close. If an echo answer
// has already begun, no status can be sent any more: the answer is cut short (its framing tells the
// client it is incomplete) and the connection closes.
void engine::fail(unsigned status, error_kind kind) {
  env_.stats.count_error(kind);
  events_.failed(kind, streaming_ ? 0 : status);
  if (ctx_.log_answers && !streaming_) {
    events_.answered({llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)), {path_.data(), path_len_},
                      static_cast<unsigned>(parser_.http_major), static_cast<unsigned>(parser_.http_minor), status,
                      0, clock::now() - request_start_});
  }
  closing_ = true;
  if (streaming_) {
    env_.stats.count_error(error_kind::response_aborted);
    streaming_ = false;
    return;
  }
  std::string_view text;
  switch (status) {
    case 408: text = "request timeout\n"; break;
    case 413: text = "request body too large\n"; break;
    case 414: text = "request target too long\n"; break;
    case 431: text = "request header fields too large\n"; break;
    case 501: text = "transfer coding not implemented\n"; break;
    case 503: text = "out of memory\n"; break;
    case 505: text = "HTTP version not supported\n"; break;
    default: text = "bad request\n"; break;
  }
  try {
    write_head(status, "text/plain", text.size(), {}, closing_);
    if (!head_) out_.append(text);  // a request that failed before its headers were complete is no HEAD
  } catch (const std::bad_alloc&) {
    out_of_memory();
  }
}

engine::result engine::timeout() {
  fail(408, phase_ == phase::headers ? error_kind::header_timeout : error_kind::body_timeout);
  drop_input();
  if (oom_) {
    oom_ = false;
    return result::out_of_memory;
  }
  return out_.empty() ? result::close : result::send;
}

void engine::note_out_of_memory() noexcept {
  env_.stats.count_error(error_kind::out_of_memory);
  body_bytes_ = 0;
  drop_input();
}

// ---- llhttp callbacks -------------------------------------------------------------------------------

int engine::reject(unsigned status, error_kind kind) noexcept {
  reject_status_ = status;
  reject_kind_ = kind;
  return -1;  // HPE_USER: llhttp_execute stops with an error
}

int engine::on_message_begin() {
  phase_ = phase::headers;
  request_start_ = clock::now();  // for the latency histogram: one clock read serves both
  set_deadline(request_start_ + ctx_.limits.header_timeout);
  path_len_ = url_len_ = field_len_ = value_len_ = te_len_ = 0;
  header_bytes_ = header_count_ = body_bytes_ = 0;
  header_ = header::other;
  host_seen_ = expect_continue_ = te_seen_ = te_overflow_ = continue_sent_ = head_ = false;
  streaming_ = chunk_open_ = echo_ = false;
  keep_alive_ = true;
  accepts_gzip_ = false;
  handler_ = nullptr;
  route_ = route::not_found;
  reset_answer();
  return 0;
}

int engine::on_url(const char* at, std::size_t n) {
  url_len_ += n;
  header_bytes_ += n;
  if (url_len_ > ctx_.limits.max_uri_bytes) return reject(414, error_kind::uri_too_long);
  const std::size_t room = path_.size() - path_len_;
  std::memcpy(path_.data() + path_len_, at, std::min(room, n));
  path_len_ += std::min(room, n);
  if (url_len_ > path_.size()) {  // all of a long target, for the handler (a query of fortio's grammar)
    if (!long_target_) {
      try {
        answer_used_ = true;
        long_target_ = env_.pool.get(ctx_.limits.max_uri_bytes);
      } catch (const std::bad_alloc&) {
        return reject(503, error_kind::out_of_memory);
      }
      std::memcpy(long_target_.data(), path_.data(), path_len_);
      long_target_.resize(path_len_);
    }
    const std::size_t more = url_len_ - long_target_.size();  // this call's bytes not yet copied
    std::memcpy(long_target_.data() + long_target_.size(), at + (n - more), more);
    long_target_.resize(url_len_);
  }
  return 0;
}

// The target is whole: the route is known (a handler may ask for the headers).
void engine::route_request() noexcept {
  const routes::match m = ctx_.routes.find(static_cast<llhttp_method_t>(parser_.method), {path_.data(), path_len_});
  handler_ = m.handler;
  route_ = m.stats;
  allow_ = m.allow;
}

int engine::on_url_complete() {
  route_request();
  if (handler_->wants_headers()) {
    answer_used_ = capturing_ = true;
    try {
      capture_ = env_.pool.get(ctx_.limits.max_header_bytes);
    } catch (const std::bad_alloc&) {
      return reject(503, error_kind::out_of_memory);
    }
    capture_.resize(0);
  }
  return 0;
}

void engine::capture(std::string_view bytes) noexcept {
  const std::size_t n = std::min(bytes.size(), capture_.capacity() - capture_.size());
  if (n == 0) return;
  std::memcpy(capture_.data() + capture_.size(), bytes.data(), n);
  capture_.resize(capture_.size() + n);
}

int engine::on_header_field(const char* at, std::size_t n) {
  header_bytes_ += n + 4;  // ": " and CRLF
  if (header_bytes_ > ctx_.limits.max_header_bytes) return reject(431, error_kind::headers_too_large);
  if (capturing_) capture({at, n});
  for (std::size_t i = 0; i < n; ++i)
    if (!is_tchar(at[i])) return reject(400, error_kind::bad_request);  // "X A", "Host :"
  const std::size_t room = field_.size() - std::min(field_.size(), field_len_);
  std::memcpy(field_.data() + std::min(field_.size(), field_len_), at, std::min(room, n));
  field_len_ += n;  // may exceed the array: then it is no header we look at
  return 0;
}

int engine::on_header_field_complete() {
  if (++header_count_ > ctx_.limits.max_headers) return reject(431, error_kind::headers_too_large);
  if (field_len_ == 0) return reject(400, error_kind::bad_request);  // ": value"
  value_len_ = 0;
  header_ = header::other;
  if (capturing_) capture(": ");
  const std::string_view name(field_.data(), std::min(field_len_, field_.size()));
  if (field_len_ <= field_.size()) {
    if (iequals(name, "host")) {
      if (host_seen_ || phase_ != phase::headers) return reject(400, error_kind::bad_request);  // RFC 9112 3.2
      host_seen_ = true;
      host_.reset();
      header_ = header::host;
    } else if (iequals(name, "transfer-encoding")) {
      header_ = header::transfer_encoding;
    } else if (iequals(name, "expect")) {
      header_ = header::expect;
    } else if (iequals(name, "accept-encoding")) {
      header_ = header::accept_encoding;
    }
  }
  field_len_ = 0;
  return 0;
}

int engine::on_header_value(const char* at, std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > ctx_.limits.max_header_bytes) return reject(431, error_kind::headers_too_large);
  if (capturing_) capture({at, n});
  // An empty value ("X-Empty:" or "X-Empty: ") is allowed (RFC 9110 5.5); llhttp reports it as an
  // empty span that may point past the line's end, so it has no byte before it to check.
  if (n == 0) return 0;
  // obs-fold (RFC 9112 5.2): a value that starts on a line of its own. The byte before the span, after
  // optional whitespace, is ':' for a value, a value byte for a span split across reads, and the LF of a
  // line end only for a folded line.
  const char before = last_non_blank(exec_begin_, at, last_byte_);
  if (before == '\n' || before == '\r') return reject(400, error_kind::bad_request);
  if (header_ == header::other) {  // not a header the engine checks: nothing to keep
    value_len_ += n;
    return 0;
  }
  if (header_ == header::host) {  // checked as it streams by: nothing is copied
    value_len_ += n;
    host_.feed(at, n);
    return 0;
  }
  const std::size_t room = value_.size() - std::min(value_.size(), value_len_);
  std::memcpy(value_.data() + std::min(value_.size(), value_len_), at, std::min(room, n));
  value_len_ += n;
  return 0;
}

int engine::on_header_value_complete() {
  if (capturing_) capture("\n");
  if (header_ == header::other) return 0;
  if (header_ == header::host) {
    // One authority: no inner whitespace (checked as it came), no longer than a DNS name with a port.
    header_ = header::other;
    if (host_.bad() || value_len_ > value_.size()) return reject(400, error_kind::bad_request);
    return 0;
  }
  const std::string_view value = trim(std::string_view(value_.data(), std::min(value_len_, value_.size())));
  switch (header_) {
    case header::host: break;
    case header::accept_encoding:
      // Several fields make one list: any of them that takes gzip is enough.
      if (value_len_ <= value_.size() && takes_gzip(value)) accepts_gzip_ = true;
      break;
    case header::expect:
      expect_continue_ = value_len_ <= value_.size() && iequals(value, "100-continue");
      break;
    case header::transfer_encoding:
      // Several Transfer-Encoding fields make one list (RFC 9110 5.3); kept in lower case.
      te_seen_ = true;
      if (value_len_ > value_.size() || te_len_ + value.size() + 1 > te_.size()) {
        te_overflow_ = true;
        break;
      }
      if (te_len_ > 0) te_[te_len_++] = ',';
      for (char ch : value) te_[te_len_++] = lower(ch);
      break;
    case header::other: break;
  }
  header_ = header::other;
  return 0;
}

int engine::on_headers_complete() {
  if (parser_.http_major != 1) return reject(505, error_kind::version_not_supported);
  const bool http10 = parser_.http_minor == 0;
  if (!http10 && !host_seen_) return reject(400, error_kind::bad_request);
  if (parser_.method == HTTP_CONNECT) return reject(400, error_kind::bad_request);  // no tunnels here
  parser_.upgrade = 0;  // Upgrade (h2c, websocket) is not offered: answer the request as HTTP/1.1
  if (te_seen_) {
    if (http10) return reject(400, error_kind::bad_request);  // no transfer codings in HTTP/1.0 (RFC 9112 6.1)
    // Every coding must be one we implement (only "chunked": else 501), and chunked must be the last
    // and appear once (else 400: the body length cannot be known).
    const unsigned status = te_overflow_ ? 400 : check_transfer_encoding({te_.data(), te_len_});
    if (status == 501) return reject(501, error_kind::not_implemented);
    if (status != 0) return reject(400, error_kind::bad_request);
  }
  head_ = parser_.method == HTTP_HEAD;
  echo_length_ = parser_.content_length;  // llhttp counts it down as the body is read
  if (handler_ == nullptr) route_request();  // on_url_complete routes; this is only a safety net
  if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > ctx_.limits.max_body_bytes)
    return reject(413, error_kind::body_too_large);
  h1_exchange x(*this);
  handler_->on_headers(x);
  if (answer_oom_) return reject(503, error_kind::out_of_memory);  // set_answer found no buffer
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 ||
                        ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > 0);
  if (has_body) {
    phase_ = phase::body;
    set_deadline(clock::now() + ctx_.limits.body_timeout);
    // Expect: 100-continue: the body will be read (echoed or discarded), and no 413 is known yet.
    if (expect_continue_ && !continue_sent_) {
      continue_sent_ = true;
      try {
        out_.append("HTTP/1.1 100 Continue\r\n\r\n");
      } catch (const std::bad_alloc&) {
        return reject(503, error_kind::out_of_memory);
      }
      env_.stats.count_status(100);
    }
  }
  return 0;
}

// A chunk-size line: its size counts against the body limit before any of it is read.
int engine::on_chunk_header() {
  const std::uint64_t size = parser_.content_length;
  if (size > ctx_.limits.max_body_bytes - std::min(body_bytes_, ctx_.limits.max_body_bytes)) {
    if (size >= (std::uint64_t{1} << 63)) return reject(400, error_kind::bad_request);  // no sane size
    return reject(413, error_kind::body_too_large);
  }
  if (size == 0 || !echo_ || hold_) return 0;
  try {
    start_echo_stream();
    char line[24];
    const auto r = std::to_chars(line, line + sizeof line - 2, size, 16);
    char* p = r.ptr;
    *p++ = '\r';
    *p++ = '\n';
    out_.append(std::string_view(line, static_cast<std::size_t>(p - line)));
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  chunk_open_ = true;
  return 0;
}

// Chunk extensions are read and ignored, but every byte counts: per line and toward the body limit.
int engine::on_chunk_extension(std::size_t n) {
  body_bytes_ += n;
  if (body_bytes_ > ctx_.limits.max_body_bytes) return reject(413, error_kind::body_too_large);
  ext_bytes_ += n;
  if (ext_bytes_ > max_chunk_extension_bytes) return reject(400, error_kind::bad_request);
  return 0;
}

int engine::on_chunk_complete() {
  ext_bytes_ = 0;
  if (!chunk_open_) return 0;
  chunk_open_ = false;
  try {
    out_.append("\r\n");
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return 0;
}

int engine::on_body(const char* at, std::size_t n) {
  body_bytes_ += n;
  if (body_bytes_ > ctx_.limits.max_body_bytes) return reject(413, error_kind::body_too_large);
  if (!echo_) return 0;  // read and discarded
  try {
    if (hold_) {  // kept whole, answered once the request is complete
      held_.append(std::string_view(at, n));
      return 0;
    }
    start_echo_stream();
    out_.append(std::string_view(at, n));  // copied into the output: the read buffer can go back at once
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return 0;
}

// Answers the request right here, so a read full of pipelined requests is parsed in one llhttp_execute
// call; pauses only when the batch is full or the connection is to close.
int engine::on_message_complete() {
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
  if (defer_.count() > 0) {  // answered by wake(), once the delay is over; nothing after it is parsed till then
    waiting_ = true;
    wake_at_ = clock::now() + defer_;
    defer_ = {};
    env_.stats.echo_delayed_waiting.add();
    env_.stats.echo_delayed.add();
    return HPE_PAUSED;
  }
  try {
    complete_request();
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return closing_ || batch_ >= ctx_.limits.max_pipeline ? HPE_PAUSED : 0;
}

// ---- answers ----------------------------------------------------------------------------------------

void engine::write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                        std::string_view extra_headers, bool last) {
  last_status_ = status;
  last_length_ = content_length;
  // Written straight into the output: at most max_head_bytes and the extra headers.
  char* const head = out_.space(max_head_bytes + extra_headers.size());
  char* p = head;
  auto put = [&](std::string_view s) {
    if (s.empty()) return;  // an empty view may have a null data()
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  char num[24];
  if (const std::string_view line = status_line(status); !line.empty()) {
    put(line);
  } else {  // a status without a constant line (a route's own)
    put("HTTP/1.1 ");
    const auto r = std::to_chars(num, num + sizeof num, status);
    put(std::string_view(num, static_cast<std::size_t>(r.ptr - num)));
    put(" Unknown\r\nServer: bufpool\r\nDate: ");
  }
  put(std::string_view(env_.date, date_length));
  put("\r\nContent-Type: ");
  put(content_type);
  if (content_length == chunked_length) {
    put("\r\nTransfer-Encoding: chunked");
  } else {
    put("\r\nContent-Length: ");
    const auto r = std::to_chars(num, num + sizeof num, content_length);
    put(std::string_view(num, static_cast<std::size_t>(r.ptr - num)));
  }
  put("\r\n");
  put(extra_headers);
  if (last) put("Connection: close\r\n");
  else if (parser_.http_minor == 0) put("Connection: keep-alive\r\n");
  put("\r\n");
  out_.commit(static_cast<std::size_t>(p - head));
  env_.stats.count_status(status);
  ++batch_;
}

// The echo answer's head, written before the first body byte is echoed: Content-Length for a
// Content-Length request, chunked for a chunked one. Whether it is the connection's last answer is known
// now (Connection: close, HTTP/1.0, request count, draining), and the head says so; closing_ itself is
// set when the message completes (parsing goes on until then).
void engine::start_echo_stream() {
  if (streaming_) return;
  // keep_alive_ is settled when the message completes (a trailer may still say close); what the headers
  // said is known now.
  write_head(answer_status_, "application/octet-stream",
             (parser_.flags & F_CHUNKED) != 0 ? chunked_length : static_cast<std::size_t>(echo_length_),
             h1_exchange(*this).answer_headers(), closing_ || llhttp_should_keep_alive(&parser_) == 0 || last_response());
  streaming_ = true;
}

void h1_exchange::set_answer(unsigned status, std::string_view extra_headers, bool close) noexcept {
  e_.answer_used_ = true;
  e_.answer_status_ = status;
  // Applied when the request is complete (complete_request): closing_ now would stop the parsing of
  // this request's own body.
  if (close) e_.answer_close_ = true;
  if (extra_headers.empty()) return;
  try {
    e_.answer_text_ = e_.env_.pool.get(extra_headers.size());
  } catch (const std::bad_alloc&) {
    e_.answer_oom_ = true;  // the engine answers 503 (this runs inside an llhttp callback: no throw)
    return;
  }
  std::memcpy(e_.answer_text_.data(), extra_headers.data(), extra_headers.size());
  e_.answer_text_.resize(extra_headers.size());
}

void engine::write_whole(unsigned status, std::string_view content_type, const std::string_view* body,
                         std::string_view extra_headers) {
  const bool bodiless = status < 200 || status == 204 || status == 304;
  std::size_t length = bodiless ? 0 : body != nullptr ? body->size() : held_.bytes();
  bufpool::buffer zipped;
  if (gzip_ && accepts_gzip_ && length > 0) zipped = compress_answer(env_.pool, env_.stats, body, held_.pieces());
  // The extra header lines, and the coding's own.
  bufpool::buffer text;
  const std::string_view extra = gzip_ ? coding_headers(env_.pool, extra_headers, static_cast<bool>(zipped), text) : extra_headers;
  if (zipped) length = zipped.size();
  write_head(status, content_type, length, extra, closing_);
  if (head_ || bodiless) {
    held_.clear();
    return;
  }
  if (zipped) out_.push(std::move(zipped));
  else if (body != nullptr) out_.append(*body);
  else out_.splice(held_);
  held_.clear();
}

void h1_exchange::body_pattern(std::size_t n) {
  if (!e_.head_) e_.out_.append_pattern(n);
}

void h1_exchange::end_echo() {
  if (e_.hold_) {  // the body was held whole: one answer with its length (compressed if asked)
    e_.write_whole(e_.answer_status_, "application/octet-stream", nullptr, answer_headers());
    return;
  }
  if (!e_.streaming_) {
    e_.write_head(e_.answer_status_, "application/octet-stream", 0, answer_headers(), e_.closing_);  // no body was sent
  } else if ((e_.parser_.flags & F_CHUNKED) != 0) {
    e_.out_.append("0\r\n\r\n");
  }
  e_.streaming_ = false;
}

}  // namespace bufpool::server::http
