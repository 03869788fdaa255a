// HTTP/1.1 connection: parsing with llhttp in the pooled read buffer, routing, responses gathered into
// one write per read, limits, timeouts and lingering close. See http_connection.hpp for the data path.
#include "http_connection.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <span>

#include <asio/write.hpp>

namespace bufpool::server {

namespace {

constexpr std::string_view plaintext_body = "Hello, World!";
constexpr std::size_t echo_chunk_bytes = 16384;
constexpr std::size_t out_buffer_bytes = 4096;

std::string_view reason(unsigned status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Writes the JSON of {"message": text} into out (which must hold 2 + 6 * text.size() + 16 bytes):
// serialized per request, as the TechEmpower json test requires, without allocating.
std::size_t write_message_json(char* out, std::string_view text) {
  char* p = out;
  auto put = [&](std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  put("{\"message\":\"");
  for (char c : text) {
    switch (c) {
      case '"': put("\\\""); break;
      case '\\': put("\\\\"); break;
      case '\n': put("\\n"); break;
      case '\r': put("\\r"); break;
      case '\t': put("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          put("\\u00");
          *p++ = hex[(c >> 4) & 0xf];
          *p++ = hex[c & 0xf];
        } else {
          *p++ = c;
        }
    }
  }
  put("\"}");
  return static_cast<std::size_t>(p - out);
}

route route_for(bool admin, llhttp_method_t method, std::string_view path) {
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  const bool get = method == HTTP_GET || method == HTTP_HEAD;
  auto by_method = [](bool ok, route r) { return ok ? r : route::method_not_allowed; };
  if (path == "/healthz") return by_method(get, route::healthz);
  if (admin) {
    if (path == "/stats") return by_method(get, route::stats);
    return route::not_found;
  }
  if (path == "/plaintext") return by_method(get, route::plaintext);
  if (path == "/json") return by_method(get, route::json);
  if (path == "/echo") return by_method(method == HTTP_POST, route::echo);
  return route::not_found;
}

std::string_view allow_for(bool admin, std::string_view path) {
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  if (!admin && path == "/echo") return "Allow: POST\r\n";
  return "Allow: GET, HEAD\r\n";
}

}  // namespace

// Trampolines from llhttp's C callbacks to the connection.
struct llhttp_callbacks {
  static http_connection& c(llhttp_t* p) { return *static_cast<http_connection*>(p->data); }
  static const llhttp_settings_t& get() {
    static const llhttp_settings_t s = [] {
      llhttp_settings_t x;
      llhttp_settings_init(&x);
      x.on_message_begin = [](llhttp_t* p) { return c(p).on_message_begin(); };
      x.on_url = [](llhttp_t* p, const char* at, std::size_t n) { return c(p).on_url(at, n); };
      x.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) { return c(p).on_header_field(at, n); };
      x.on_header_field_complete = [](llhttp_t* p) { return c(p).on_header_field_complete(); };
      x.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) { return c(p).on_header_value(at, n); };
      x.on_header_value_complete = [](llhttp_t* p) { return c(p).on_header_value_complete(); };
      x.on_headers_complete = [](llhttp_t* p) { return c(p).on_headers_complete(); };
      x.on_body = [](llhttp_t* p, const char* at, std::size_t n) { return c(p).on_body(at, n); };
      x.on_message_complete = [](llhttp_t* p) { return c(p).on_message_complete(); };
      return x;
    }();
    return s;
  }
};

http_connection::http_connection(worker& w, asio::ip::tcp::socket socket, const http_context& ctx)
    : w_(w), socket_(std::move(socket)), ctx_(ctx) {
  llhttp_init(&parser_, HTTP_REQUEST, &llhttp_callbacks::get());
  parser_.data = this;
  std::error_code ec;
  socket_.non_blocking(true, ec);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  out_.reserve(8);
  iov_.reserve(8);
  w_.link(this);
  active_counter().add();
  if (!ctx_.admin) w_.stats().http_accepted.add();
}

http_connection::~http_connection() {
  if (phase_ != phase::closed) w_.unlink(this);
  if (active_counted_) active_counter().sub();
}

// Admin connections are counted apart: they do not hold up a graceful stop or count against limits.
counter& http_connection::active_counter() noexcept {
  return ctx_.admin ? w_.stats().admin_active : w_.stats().http_active;
}

void http_connection::start() {
  set_deadline(ctx_.cfg.header_timeout);  // the first request gets the header timeout, as in nginx
  read();
}

void http_connection::set_deadline(clock::duration d) { deadline_ = clock::now() + d; }

// ---- input --------------------------------------------------------------------------------------

// Reads whatever the socket has, without waiting; if nothing is there, waits for readability holding
// no buffer. Loops while input keeps coming and produces no response (a request arriving in pieces).
void http_connection::read() {
  for (;;) {
    if (in_begin_ == in_end_) {
      if (!in_) in_ = w_.pool().get(ctx_.cfg.read_buffer_bytes);
      std::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(in_.data(), in_.capacity()), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        in_.reset();  // an idle connection holds no pooled buffer
        wait_readable();
        return;
      }
      if (ec) {  // EOF or reset: nothing more can be answered, also mid-request
        if (ec != asio::error::eof) w_.stats().count_error(error_kind::io_error);
        close_now();
        return;
      }
      in_begin_ = 0;
      in_end_ = n;
      w_.stats().bytes_in.add(n);
    }
    switch (process_input()) {
      case outcome::need_input: continue;
      case outcome::writing:
      case outcome::closed: return;
    }
  }
}

void http_connection::wait_readable() {
  waiting_ = true;
  socket_.async_wait(asio::socket_base::wait_read, [self = shared_from_this()](std::error_code ec) {
    self->waiting_ = false;
    // While a response is being written, on_written() decides what comes next.
    if (ec || self->phase_ == phase::closed || self->writing_) return;
    if (self->phase_ == phase::lingering) {
      self->linger();
      return;
    }
    self->read();
  });
}

// Parses [in_begin_, in_end_), answering every complete request; flushes the answers.
http_connection::outcome http_connection::process_input() {
  const char* base = reinterpret_cast<const char*>(in_.data());
  while (in_begin_ < in_end_ && !closing_) {
    const llhttp_errno_t err = llhttp_execute(&parser_, base + in_begin_, in_end_ - in_begin_);
    if (err == HPE_OK) {
      in_begin_ = in_end_;
      break;
    }
    if (err == HPE_PAUSED) {  // on_message_complete paused: the batch is full or the connection closes
      in_begin_ = static_cast<std::size_t>(llhttp_get_error_pos(&parser_) - base);
      llhttp_resume(&parser_);
      if (batch_ >= ctx_.cfg.max_pipeline) break;
      continue;
    }
    fail(status_for(err), reject_status_ != 0 ? reject_kind_ : error_kind::bad_request);
    in_begin_ = in_end_;
  }
  if (in_begin_ >= in_end_) {
    in_.reset();  // all parsed: llhttp keeps the state, the bytes are no longer needed
    in_begin_ = in_end_ = 0;
  }
  // Expect: 100-continue: only once the body will really be read (echo), never before a 413.
  if (expect_continue_ && !continue_sent_ && phase_ == phase::body && route_ == route::echo && !closing_) {
    continue_sent_ = true;
    append("HTTP/1.1 100 Continue\r\n\r\n");
    w_.stats().count_status(100);
  }
  if (!out_.empty()) {
    flush();
    return outcome::writing;
  }
  if (closing_) {
    linger();
    return outcome::closed;
  }
  return outcome::need_input;
}

void http_connection::complete_request() {
  ++requests_;
  w_.stats().requests[static_cast<std::size_t>(route_)].add();
  if (!keep_alive_ || requests_ >= ctx_.cfg.max_requests_per_connection ||
      (!ctx_.admin && w_.draining.load(std::memory_order_relaxed)))
    closing_ = true;
  respond(route_);
  phase_ = phase::idle;
  set_deadline(ctx_.cfg.idle_timeout);
}

unsigned http_connection::status_for(llhttp_errno_t err) const {
  if (reject_status_ != 0) return reject_status_;
  if (err == HPE_INVALID_TRANSFER_ENCODING) {
    // Unknown transfer coding -> 501; a malformed one (or chunked not last) -> 400.
    std::string_view te(te_.data(), te_len_);
    const auto comma = te.rfind(',');
    const std::string_view last = trim(comma == std::string_view::npos ? te : te.substr(comma + 1));
    if (!last.empty() && last != "chunked" && te.find("chunked") == std::string_view::npos) return 501;
    return 400;
  }
  return 400;
}

// A framing or limit error: answer with `status`, then close with a lingering close.
void http_connection::fail(unsigned status, error_kind kind) {
  w_.stats().count_error(status == 501 ? error_kind::not_implemented : kind);
  closing_ = true;
  body_.clear();
  std::string_view text;
  switch (status) {
    case 408: text = "request timeout\n"; break;
    case 413: text = "request body too large\n"; break;
    case 414: text = "request target too long\n"; break;
    case 431: text = "request header fields too large\n"; break;
    case 501: text = "transfer coding not implemented\n"; break;
    default: text = "bad request\n"; break;
  }
  write_head(status, "text/plain", text.size());
  append_body(text);
}

// ---- llhttp callbacks ---------------------------------------------------------------------------

int http_connection::reject(unsigned status, error_kind kind) {
  reject_status_ = status;
  reject_kind_ = kind;
  return -1;  // HPE_USER: llhttp_execute stops with an error
}

int http_connection::on_message_begin() {
  phase_ = phase::headers;
  set_deadline(ctx_.cfg.header_timeout);
  path_len_ = url_len_ = field_len_ = value_len_ = te_len_ = 0;
  header_bytes_ = header_count_ = body_bytes_ = 0;
  host_seen_ = expect_continue_ = te_seen_ = continue_sent_ = false;
  keep_alive_ = true;
  route_ = route::not_found;
  return 0;
}

int http_connection::on_url(const char* at, std::size_t n) {
  url_len_ += n;
  header_bytes_ += n;
  if (url_len_ > ctx_.cfg.max_uri_bytes) return reject(414, error_kind::uri_too_long);
  const std::size_t room = path_.size() - path_len_;
  std::memcpy(path_.data() + path_len_, at, std::min(room, n));
  path_len_ += std::min(room, n);
  return 0;
}

int http_connection::on_header_field(const char* at, std::size_t n) {
  header_bytes_ += n + 4;  // ": " and CRLF
  if (header_bytes_ > ctx_.cfg.max_header_bytes) return reject(431, error_kind::headers_too_large);
  const std::size_t room = field_.size() - std::min(field_.size(), field_len_);
  std::memcpy(field_.data() + std::min(field_.size(), field_len_), at, std::min(room, n));
  field_len_ += n;  // may exceed the array: then it is no header we look at
  return 0;
}

int http_connection::on_header_field_complete() {
  if (++header_count_ > ctx_.cfg.max_headers) return reject(431, error_kind::headers_too_large);
  value_len_ = 0;
  return 0;
}

int http_connection::on_header_value(const char* at, std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > ctx_.cfg.max_header_bytes) return reject(431, error_kind::headers_too_large);
  const std::size_t room = value_.size() - std::min(value_.size(), value_len_);
  std::memcpy(value_.data() + std::min(value_.size(), value_len_), at, std::min(room, n));
  value_len_ += n;
  return 0;
}

int http_connection::on_header_value_complete() {
  const std::string_view name(field_.data(), std::min(field_len_, field_.size()));
  const std::string_view value(value_.data(), std::min(value_len_, value_.size()));
  if (field_len_ <= field_.size()) {
    if (iequals(name, "host")) {
      host_seen_ = true;
    } else if (iequals(name, "expect")) {
      expect_continue_ = value_len_ <= value_.size() && iequals(trim(value), "100-continue");
    } else if (iequals(name, "transfer-encoding")) {
      te_seen_ = true;
      te_len_ = std::min(value.size(), te_.size());
      for (std::size_t i = 0; i < te_len_; ++i)  // kept in lower case: codings are case-insensitive
        te_[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(value[i])));
    }
  }
  field_len_ = 0;
  return 0;
}

int http_connection::on_headers_complete() {
  const bool http11 = parser_.http_major == 1 && parser_.http_minor == 1;
  if (http11 && !host_seen_) return reject(400, error_kind::bad_request);
  if (te_seen_ && parser_.http_major == 1 && parser_.http_minor == 0)
    return reject(400, error_kind::bad_request);  // no transfer codings in HTTP/1.0 (RFC 9112 6.1)
  route_ = route_for(ctx_.admin, static_cast<llhttp_method_t>(parser_.method),
                     std::string_view(path_.data(), path_len_));
  if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > ctx_.cfg.max_body_bytes)
    return reject(413, error_kind::body_too_large);
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 ||
                        ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > 0);
  if (has_body) {
    phase_ = phase::body;
    set_deadline(ctx_.cfg.body_timeout);
  }
  return 0;
}

int http_connection::on_body(const char* at, std::size_t n) {
  body_bytes_ += n;
  if (body_bytes_ > ctx_.cfg.max_body_bytes) return reject(413, error_kind::body_too_large);
  if (route_ != route::echo) return 0;  // read and discarded
  while (n > 0) {
    if (body_.empty() || body_.back().size() == body_.back().capacity()) {
      std::size_t want = echo_chunk_bytes;
      if ((parser_.flags & F_CONTENT_LENGTH) != 0) want = std::min<std::size_t>(want, parser_.content_length + n);
      body_.push_back(w_.pool().get(want));
      body_.back().resize(0);
    }
    bufpool::buffer& b = body_.back();
    const std::size_t take = std::min(n, b.capacity() - b.size());
    std::memcpy(b.data() + b.size(), at, take);
    b.resize(b.size() + take);
    at += take;
    n -= take;
  }
  return 0;
}

// Answers the request right here, so a read full of pipelined requests is parsed in one
// llhttp_execute call; pauses only when the batch is full or the connection is to close.
int http_connection::on_message_complete() {
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
  complete_request();
  return closing_ || batch_ >= ctx_.cfg.max_pipeline ? HPE_PAUSED : 0;
}

// ---- output -------------------------------------------------------------------------------------

void http_connection::append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (!out_open_ || out_.back().size() == out_.back().capacity()) {
      out_.push_back(w_.pool().get(std::max(out_buffer_bytes, bytes.size())));
      out_.back().resize(0);
      out_open_ = true;
    }
    bufpool::buffer& b = out_.back();
    const std::size_t take = std::min(bytes.size(), b.capacity() - b.size());
    std::memcpy(b.data() + b.size(), bytes.data(), take);
    b.resize(b.size() + take);
    bytes.remove_prefix(take);
  }
}

void http_connection::append_body(std::string_view body) {
  if (parser_.method != HTTP_HEAD || reject_status_ != 0) append(body);
}

void http_connection::write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                                 std::string_view extra_headers) {
  char head[512];
  char* p = head;
  auto put = [&](std::string_view s) {
    if (s.empty()) return;  // an empty view may have a null data()
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  char num[24];
  put("HTTP/1.1 ");
  auto r = std::to_chars(num, num + sizeof num, status);
  put(std::string_view(num, static_cast<std::size_t>(r.ptr - num)));
  put(" ");
  put(reason(status));
  put("\r\nServer: bufpool\r\nDate: ");
  put(std::string_view(w_.date(), worker::date_length));
  put("\r\nContent-Type: ");
  put(content_type);
  put("\r\nContent-Length: ");
  r = std::to_chars(num, num + sizeof num, content_length);
  put(std::string_view(num, static_cast<std::size_t>(r.ptr - num)));
  put("\r\n");
  if (extra_headers.size() < 128) put(extra_headers);
  if (closing_) put("Connection: close\r\n");
  else if (parser_.http_minor == 0) put("Connection: keep-alive\r\n");
  put("\r\n");
  append(std::string_view(head, static_cast<std::size_t>(p - head)));
  w_.stats().count_status(status);
  ++batch_;
}

void http_connection::respond(route r) {
  switch (r) {
    case route::plaintext:
      write_head(200, "text/plain", plaintext_body.size());
      append_body(plaintext_body);
      break;
    case route::json: {
      char json[64];
      const std::size_t n = write_message_json(json, plaintext_body);
      write_head(200, "application/json", n);
      append_body(std::string_view(json, n));
      break;
    }
    case route::echo:
      write_head(200, "application/octet-stream", body_bytes_);
      // The body's pooled chunks are written as they are: no copy.
      for (auto& chunk : body_) out_.push_back(std::move(chunk));
      body_.clear();
      out_open_ = false;
      break;
    case route::healthz:
      if (ctx_.draining.load(std::memory_order_relaxed)) {
        write_head(503, "text/plain", 9);
        append_body("draining\n");
      } else {
        write_head(200, "text/plain", 3);
        append_body("ok\n");
      }
      break;
    case route::stats: {
      const std::string body = ctx_.stats_json ? ctx_.stats_json() : std::string("{}");
      write_head(200, "application/json", body.size());
      append_body(body);
      break;
    }
    case route::method_not_allowed:
      write_head(405, "text/plain", 19, allow_for(ctx_.admin, std::string_view(path_.data(), path_len_)));
      append_body("method not allowed\n");
      break;
    case route::not_found:
    case route::count:
      write_head(404, "text/plain", 10);
      append_body("not found\n");
      break;
  }
}

void http_connection::flush() {
  iov_.clear();
  for (const auto& b : out_) iov_.emplace_back(b.data(), b.size());
  writing_ = true;
  set_deadline(ctx_.cfg.write_timeout);
  // A span, not the vector: async_write copies its buffer sequence, and a vector copy would allocate.
  asio::async_write(socket_, std::span<const asio::const_buffer>(iov_),
                    [self = shared_from_this()](std::error_code ec, std::size_t n) {
    self->on_written(ec, n);
  });
}

void http_connection::on_written(std::error_code ec, std::size_t n) {
  writing_ = false;
  out_.clear();  // every buffer goes back to the pool
  out_open_ = false;
  batch_ = 0;
  w_.stats().bytes_out.add(n);
  if (phase_ == phase::closed) return;
  if (ec) {
    w_.stats().count_error(error_kind::io_error);
    close_now();
    return;
  }
  if (closing_) {
    linger();
    return;
  }
  // Restore the deadline of the phase we are in.
  if (phase_ == phase::idle) set_deadline(ctx_.cfg.idle_timeout);
  else if (phase_ == phase::headers) set_deadline(ctx_.cfg.header_timeout);
  else set_deadline(ctx_.cfg.body_timeout);
  if (in_begin_ < in_end_) {  // pipelined requests left over from the last read
    if (process_input() == outcome::need_input) read();
    return;
  }
  read();
}

// ---- closing ------------------------------------------------------------------------------------

// Lingering close: stop sending, then read and discard until the peer closes or linger_timeout passes,
// so that an error response is not destroyed by a reset caused by unread input.
void http_connection::linger() {
  if (phase_ != phase::lingering) {
    phase_ = phase::lingering;
    std::error_code ec;
    socket_.shutdown(asio::socket_base::shutdown_send, ec);
    if (ec || ctx_.cfg.linger_timeout.count() == 0) {
      close_now();
      return;
    }
    set_deadline(ctx_.cfg.linger_timeout);
  }
  in_.reset();
  in_begin_ = in_end_ = 0;
  bufpool::buffer sink = w_.pool().get(4096);
  for (;;) {
    std::error_code ec;
    socket_.read_some(asio::buffer(sink), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) break;
    if (ec) {
      close_now();
      return;
    }
  }
  if (!waiting_) wait_readable();
}

void http_connection::close_now() {
  if (phase_ == phase::closed) return;
  phase_ = phase::closed;
  std::error_code ec;
  socket_.close(ec);
  w_.unlink(this);
  in_.reset();
  body_.clear();
  if (active_counted_) {
    active_counted_ = false;
    active_counter().sub();
  }
}

void http_connection::on_deadline() {
  auto self = shared_from_this();
  deadline_ = clock::time_point::max();
  if (writing_) {
    w_.stats().count_error(error_kind::write_timeout);
    close_now();  // cancels the write
    return;
  }
  switch (phase_) {
    case phase::idle:
      w_.stats().count_error(error_kind::idle_timeout);
      close_now();
      return;
    case phase::headers:
    case phase::body:
      fail(408, error_kind::header_timeout);
      flush();
      return;
    case phase::lingering:
    case phase::closed:
      close_now();
      return;
  }
}

void http_connection::drain() {
  if (ctx_.admin) return;  // the admin port answers until the very end (/healthz: 503)
  auto self = shared_from_this();
  if (phase_ == phase::idle && !writing_ && in_begin_ == in_end_) {
    close_now();
    return;
  }
  // Busy: the next response carries Connection: close (complete_request sees w_.draining).
}

void http_connection::force_close() {
  auto self = shared_from_this();
  close_now();
}

}  // namespace bufpool::server
