// HTTP/1.1 connection: parsing with llhttp in the pooled read buffer, routing, responses gathered into
// one write per read, limits, timeouts and lingering close. See http_connection.hpp for the data path.
#include "http_connection.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <new>
#include <span>

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio/bind_allocator.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

namespace bufpool::server {

namespace {

constexpr std::string_view plaintext_body = "Hello, World!";
constexpr std::size_t out_buffer_bytes = 4096;
// The longest response head write_head writes (status line, Server, Date, Content-Type, length,
// extra headers up to 128 bytes, Connection).
constexpr std::size_t max_head_bytes = 512;
// Reads one connection may do in one turn of the io_context before it yields (fairness: a client
// that keeps sending cannot hold its worker; with 4 KiB read buffers, 64 KiB per turn).
constexpr unsigned max_reads_per_turn = 16;
// Bytes read and discarded per turn while lingering.
constexpr std::size_t max_linger_bytes_per_turn = 64 * 1024;
// Chunk-extension bytes allowed on one chunk-size line (they also count toward max_body_bytes).
constexpr std::size_t max_chunk_extension_bytes = 1024;
// What is sent when no buffer can be had: from static memory, so it needs no allocation.
constexpr std::string_view out_of_memory_response =
    "HTTP/1.1 503 Service Unavailable\r\nServer: bufpool\r\nContent-Type: text/plain\r\n"
    "Content-Length: 14\r\nConnection: close\r\nRetry-After: 1\r\n\r\nout of memory\n";

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
    case 505: return "HTTP Version Not Supported";
  }
  return "Unknown";
}

// ASCII only: header names and tokens are ASCII, and the C locale's tolower is a library call per byte.
constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// A 256-entry membership table: one load per byte instead of a search per byte.
using char_table = std::array<bool, 256>;
constexpr char_table make_table(std::string_view extra) {
  char_table t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : extra) t[static_cast<unsigned char>(c)] = true;
  return t;
}
// tchar of RFC 9110 5.6.2: the characters of a header field name.
constexpr char_table tchars = make_table("!#$%&'*+-.^_`|~");
// What a Host value may hold (RFC 9110 7.2 / RFC 3986 authority without userinfo): reg-name or
// IP-literal characters and a port; no '/', '?', '#' or '@'.
constexpr char_table host_chars = make_table("-._~%!$&'()*+,;=:[]");
// ... and the blanks around it (trimmed; blanks inside it are refused).
constexpr char_table host_value_chars = make_table("-._~%!$&'()*+,;=:[] \t");

bool is_tchar(char c) { return tchars[static_cast<unsigned char>(c)]; }

// The last byte of [begin, end) that is not SP or HT; `otherwise` if there is none.
char last_non_blank(const char* begin, const char* end, char otherwise) {
  while (end != begin) {
    --end;
    if (*end != ' ' && *end != '\t') return *end;
  }
  return otherwise;
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

// The path of an origin-form target, or of an absolute-form one (RFC 9112 3.2.2: a server MUST
// accept "GET http://host/path"), without its query.
std::string_view path_of(std::string_view target) {
  if (!target.empty() && target.front() == '/') {  // origin-form, nearly always
    if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    return target;
  }
  auto starts_with_ci = [&](std::string_view prefix) {
    return target.size() >= prefix.size() && iequals(target.substr(0, prefix.size()), prefix);
  };
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (starts_with_ci(scheme)) {
      const auto slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  return target;
}

route route_for(bool admin, llhttp_method_t method, std::string_view path) {
  path = path_of(path);
  const bool get = method == HTTP_GET || method == HTTP_HEAD;
  auto by_method = [](bool ok, route r) { return ok ? r : route::method_not_allowed; };
  if (path == "/healthz") return by_method(get, route::healthz);
  if (admin) {
    if (path == "/stats") return by_method(get, route::stats);
    if (path == "/metrics") return by_method(get, route::metrics);
    if (path == "/") return by_method(get, route::dashboard);
    return route::not_found;
  }
  if (path == "/plaintext") return by_method(get, route::plaintext);
  if (path == "/json") return by_method(get, route::json);
  if (path == "/echo") return by_method(method == HTTP_POST, route::echo);
  return route::not_found;
}

std::string_view allow_for(bool admin, std::string_view path) {
  path = path_of(path);
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
      x.on_chunk_header = [](llhttp_t* p) { return c(p).on_chunk_header(); };
      x.on_chunk_extension_name = [](llhttp_t* p, const char*, std::size_t n) { return c(p).on_chunk_extension(n); };
      x.on_chunk_extension_value = [](llhttp_t* p, const char*, std::size_t n) { return c(p).on_chunk_extension(n); };
      x.on_chunk_complete = [](llhttp_t* p) { return c(p).on_chunk_complete(); };
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

http_connection::http_connection(worker& w, int fd, const http_context& ctx)
    : w_(w), socket_(w.context()), ring_(w.uring()), fd_(fd), ctx_(ctx) {
  llhttp_init(&parser_, HTTP_REQUEST, &llhttp_callbacks::get());
  parser_.data = this;
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  recv_op_.c = send_op_.c = this;
  recv_op_.recv = true;
  out_.reserve(8);
  riov_.reserve(8);
  w_.link(this);
  active_counter().add();
  if (!ctx_.admin) w_.stats().http_accepted.add();
}

http_connection::~http_connection() {
  if (phase_ != phase::closed) w_.unlink(this);
  if (active_counted_) active_counter().sub();
  if (fd_ >= 0) {
    if (reset_on_close_) {  // as a close with unread bytes does: a reset, so a sender stops at once
      const ::linger abort{1, 0};
      ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    }
    ::close(fd_);
  }
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
// no buffer. Loops while input keeps coming and produces no response (a request arriving in pieces),
// at most max_reads_per_turn times: then it yields, so one client cannot hold its worker.
void http_connection::read() {
  for (unsigned reads = 0;; ++reads) {
    if (in_begin_ == in_end_) {
      if (reads == max_reads_per_turn) {
        in_.reset();
        yield();
        return;
      }
      std::size_t n = 0;
      if (ring_ != nullptr) {  // io_uring: the kernel filled a pooled buffer already, or will
        if (!ring_input_next(n)) return;
      } else {
        if (!in_) {
          if (w_.over_budget()) {  // the server's buffer budget is spent: wait, holding nothing
            budget_wait_ = true;
            w_.wait_for_budget(shared_from_this());
            return;
          }
          try {
            in_ = w_.pool().get(ctx_.cfg.read_buffer_bytes);
          } catch (const std::bad_alloc&) {
            // No buffer: a 503 only if request bytes wait; an idle connection waits for bytes (and is
            // asked again when they come), one whose peer has gone closes.
            switch (peek_input()) {
              case pending_input::bytes: fail_out_of_memory(); return;
              case pending_input::nothing: wait_readable(); return;
              case pending_input::end: close_now(); return;
            }
          }
        }
        std::error_code ec;
        n = socket_.read_some(asio::buffer(in_.data(), in_.capacity()), ec);
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

void http_connection::resume() {
  budget_wait_ = false;
  continue_input();
}

// Lets the other handlers of this io_context run, then reads on.
void http_connection::yield() {
  yielded_ = true;
  asio::post(w_.context(), asio::bind_allocator(alloc(), [self = shared_from_this()] {
    self->yielded_ = false;
    self->continue_input();
  }));
  w_.note_posted();
}

// After a pause (a yield, a wait for the budget): reads on, or lingers on, unless something else
// already drives the connection (a write, a readability wait, the other pause) or it is closed.
void http_connection::continue_input() {
  if (phase_ == phase::closed || writing_ || waiting_ || yielded_ || budget_wait_) return;
  if (phase_ == phase::lingering) linger();
  else read();
}

// ---- io_uring input ------------------------------------------------------------------------------

// The next received buffer into in_ (true), or nothing yet: then the recv is armed and a completion
// resumes the connection (waiting_); at the end of the input, the connection closes.
bool http_connection::ring_input_next(std::size_t& n) {
  in_.reset();
  if (!ring_in_) {
    if (input_end_ != input_end::none) {  // EOF or reset: nothing more can be answered
      if (input_end_ == input_end::error) w_.stats().count_error(error_kind::io_error);
      close_now();
      return false;
    }
    arm_recv();
    waiting_ = true;
    return false;
  }
  in_ = std::move(ring_in_);
  n = ring_in_bytes_;
  return true;
}

void http_connection::arm_recv() {
  if (recv_armed_ || recv_starved_ || ring_in_ || input_end_ != input_end::none || phase_ == phase::closed) return;
  ring_->recv(fd_, recv_op_);  // first: if it throws (no submission entry), nothing is held
  recv_armed_ = true;
  hold_ring();
}

// The connection lives while the kernel may still use it: one reference for all its operations in
// flight (and a recv waiting for buffers), taken when the first starts and dropped when the last ends,
// so a steady connection touches no reference count per request.
void http_connection::hold_ring() {
  if (ring_ops_++ == 0) self_ = shared_from_this();
}

void http_connection::release_ring() {
  if (--ring_ops_ != 0) return;
  const std::shared_ptr<http_connection> last = std::move(self_);  // may destroy *this on return
}

void http_connection::ring_op::complete(int res, unsigned flags) {
  http_connection* conn = c;
  const bool last = (flags & IORING_CQE_F_MORE) == 0;
  if (recv) conn->on_ring_recv(res, flags);
  else conn->on_ring_send(res);
  if (last) conn->release_ring();  // the last thing done here: it may destroy the connection (and this)
}

bool http_connection::ring_op::buffers_available() {
  http_connection* conn = c;
  conn->recv_starved_ = false;
  conn->w_.stats().budget_waiting.sub();
  conn->arm_recv();
  const bool armed = conn->recv_armed_;
  conn->release_ring();  // the wait's hold (after arm_recv took its own)
  return armed;
}

void http_connection::on_ring_recv(int res, unsigned flags) {
  bufpool::buffer b;
  if ((flags & IORING_CQE_F_BUFFER) != 0) b = ring_->take(flags);
  recv_armed_ = false;  // one-shot
  if (phase_ == phase::closed) {
    // The connection closed while this recv was pending, and it took bytes the peer is still sending
    // (they go back to the pool unread). Before the descriptor was kept open until now, close() found
    // them unread and reset the connection; closing an empty queue instead sends a FIN, and a peer
    // blocked on a full window would wait for its zero-window probe (up to two minutes) to learn
    // that nobody reads: so the close resets, as it did.
    if (res > 0) reset_on_close_ = true;
    return;
  }
  if (res > 0) {
    if (phase_ != phase::lingering) {  // else dropped: b goes back to the pool
      ring_in_ = std::move(b);
      ring_in_bytes_ = static_cast<std::size_t>(res);
    }
  } else if (res == 0) {
    input_end_ = input_end::eof;
  } else if (res == -ENOBUFS) {
    // The kernel's ring is empty (the budget is spent, a burst took every buffer, or the pool cannot
    // refill it). The recv polls first, so the socket was readable. If the pool is out of memory and
    // request bytes wait: 503 and close, as on epoll; if it was the peer's end: close. Else wait,
    // holding nothing, until the loop refills the ring.
    const pending_input waiting = ring_->out_of_memory() ? peek_input() : pending_input::nothing;
    if (waiting == pending_input::bytes) {
      fail_out_of_memory();
      return;
    }
    if (waiting == pending_input::end) {
      input_end_ = input_end::eof;
    } else if (!recv_starved_) {
      recv_starved_ = true;
      w_.stats().budget_waits.add();
      w_.stats().budget_waiting.add();
      ring_->when_buffers(recv_op_);
      hold_ring();
    }
  } else if (res != -ECANCELED) {
    input_end_ = input_end::error;
  }
  if (!waiting_) return;
  waiting_ = false;
  if (writing_ || yielded_ || budget_wait_) return;
  if (phase_ == phase::lingering) linger();
  else read();
}

// What the socket holds, without taking it: asked only when no read buffer can be had (the pool is
// out of memory), so that only a connection with request bytes waiting gets the 503; an idle one
// waits for bytes, one whose peer has gone closes.
http_connection::pending_input http_connection::peek_input() {
  char byte;
  const ssize_t n = ::recv(fd(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return pending_input::bytes;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return pending_input::nothing;
  return pending_input::end;  // EOF, or an error
}

// ---- io_uring output -----------------------------------------------------------------------------

// Sends riov_ (total bytes) with one sendmsg; what a short send leaves is sent on completion.
http_connection::write_result http_connection::ring_send(std::size_t total) {
  msg_ = {};
  msg_.msg_iov = riov_.data();
  msg_.msg_iovlen = riov_.size();
  send_total_ = total;
  send_done_ = 0;
  ring_->sendmsg(fd_, &msg_, send_op_);  // first: if it throws (no submission entry), nothing is held
  writing_ = true;
  set_deadline(ctx_.cfg.write_timeout);
  hold_ring();
  return write_result::pending;
}

void http_connection::on_ring_send(int res) {
  if (res < 0) {
    on_written(std::error_code(-res, asio::error::get_system_category()), send_done_);
    return;
  }
  send_done_ += static_cast<std::size_t>(res);
  if (send_done_ < send_total_ && phase_ != phase::closed) {
    std::size_t n = static_cast<std::size_t>(res);
    std::size_t skip = 0;
    while (skip < riov_.size() && n >= riov_[skip].iov_len) n -= riov_[skip++].iov_len;
    riov_.erase(riov_.begin(), riov_.begin() + static_cast<std::ptrdiff_t>(skip));
    riov_.front().iov_base = static_cast<char*>(riov_.front().iov_base) + n;
    riov_.front().iov_len -= n;
    msg_.msg_iov = riov_.data();
    msg_.msg_iovlen = riov_.size();
    ring_->sendmsg(fd_, &msg_, send_op_);
    hold_ring();
    return;
  }
  on_written({}, send_done_);
}

void http_connection::wait_readable() {
  if (ring_ != nullptr) {  // a recv completion resumes the connection
    arm_recv();
    waiting_ = true;
    return;
  }
  waiting_ = true;
  socket_.async_wait(asio::socket_base::wait_read, asio::bind_allocator(alloc(), [self = shared_from_this()](std::error_code ec) {
    self->waiting_ = false;
    // While a response is being written, on_written() decides what comes next.
    if (ec || self->phase_ == phase::closed || self->writing_ || self->yielded_ || self->budget_wait_) return;
    if (self->phase_ == phase::lingering) {
      self->linger();
      return;
    }
    self->read();
  }));
}

// One llhttp_execute over [data, data + n), remembering where it started (for the obs-fold check).
void http_connection::execute(const char* data, std::size_t n) {
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
  if (reject_kind_ == error_kind::out_of_memory && reject_status_ != 0) fail_out_of_memory();
  else fail(reject_status_ != 0 ? reject_status_ : 400, reject_status_ != 0 ? reject_kind_ : error_kind::bad_request);
}

// Parses [in_begin_, in_end_), answering every complete request; flushes the answers.
http_connection::outcome http_connection::process_input() {
  const char* base = reinterpret_cast<const char*>(in_.data());
  while (in_begin_ < in_end_ && !closing_) {
    execute(base + in_begin_, in_end_ - in_begin_);
    if (batch_ >= ctx_.cfg.max_pipeline) break;
  }
  if (closing_) in_begin_ = in_end_;  // nothing after a failed or last request is parsed
  if (writing_) return outcome::writing;  // the 503 of a failed allocation is on its way
  // All parsed: llhttp keeps the state, the bytes are no longer needed. The buffer is kept only to
  // read on into at once; a connection that waits (for its write, for the socket) holds none.
  const bool parsed_all = in_begin_ >= in_end_;
  if (parsed_all) in_begin_ = in_end_ = 0;
  if (!out_.empty()) {
    switch (flush()) {
      case write_result::pending:
        if (parsed_all) in_.reset();
        return outcome::writing;
      case write_result::failed: return outcome::closed;
      case write_result::written: return after_write() ? outcome::need_input : outcome::closed;
    }
  }
  if (closing_) {
    linger();
    return outcome::closed;
  }
  return outcome::need_input;
}

bool http_connection::last_response() const {
  return !keep_alive_ || requests_ + 1 >= ctx_.cfg.max_requests_per_connection ||
         (!ctx_.admin && w_.draining.load(std::memory_order_relaxed));
}

void http_connection::complete_request() {
  if (last_response()) closing_ = true;
  ++requests_;
  w_.stats().requests[static_cast<std::size_t>(route_)].add();
  respond(route_);
  head_ = streaming_ = false;  // a request that fails before its headers are complete is no HEAD
  phase_ = phase::idle;
  const auto now = clock::now();  // one clock read: the latency, and the idle deadline
  w_.stats().latency[static_cast<std::size_t>(route_)].observe(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - request_start_).count());
  if (ctx_.access_log != nullptr) log_access(now);
  deadline_ = now + ctx_.cfg.idle_timeout;
}

// One access-log line, in the spirit of the common log format plus the time taken:
//   127.0.0.1:51234 "GET /plaintext HTTP/1.1" 200 13 42us
// Handed to the asynchronous logger (a bounded queue; when it is full the oldest line is dropped and
// counted): the worker never waits for the disk.
void http_connection::log_access(clock::time_point now) {
  if (peer_.empty()) peer_ = peer_of(fd());
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now - request_start_).count();
  ctx_.access_log->info("{} \"{} {} HTTP/{}.{}\" {} {} {}us", peer_, llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)),
                        std::string_view(path_.data(), path_len_), static_cast<unsigned>(parser_.http_major),
                        static_cast<unsigned>(parser_.http_minor), last_status_, last_length_, us);
}

// A framing or limit error: answer with `status`, then close with a lingering close. If an echo
// answer has already begun, no status can be sent any more: the answer is cut short (its framing
// tells the client it is incomplete) and the connection closes.
void http_connection::fail(unsigned status, error_kind kind) {
  w_.stats().count_error(kind);
  log_event(kind, streaming_ ? 0 : status, fd());
  if (ctx_.access_log != nullptr && !streaming_) {
    last_status_ = status;
    last_length_ = 0;
    log_access(clock::now());
  }
  closing_ = true;
  if (streaming_) {
    w_.stats().count_error(error_kind::response_aborted);
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
    write_head(status, "text/plain", text.size());
    if (!head_) append(text);  // a request that failed before its headers were complete is no HEAD
  } catch (const std::bad_alloc&) {
    fail_out_of_memory();
  }
}

// No buffer could be had: answer 503 from static memory if no answer has begun, and close. The
// answers gathered for this read are dropped with their buffers (one may be half written): the 503
// answers the first request the client got no answer for, and the connection closes, so the client
// knows the requests after it were not served.
void http_connection::fail_out_of_memory() {
  w_.stats().count_error(error_kind::out_of_memory);
  body_bytes_ = 0;
  in_.reset();
  in_begin_ = in_end_ = 0;
  if (writing_ || phase_ == phase::closed || phase_ == phase::lingering) {
    // A send in flight still reads the output buffers: close_now keeps them until its completion
    // (on_written returns them), so none goes back to the pool while the kernel may read it.
    close_now();
    return;
  }
  out_.clear();
  out_open_ = false;
  closing_ = true;
  if (streaming_) {
    close_now();
    return;
  }
  w_.stats().count_status(503);
  if (ring_ != nullptr) {
    riov_.assign({iovec{const_cast<char*>(out_of_memory_response.data()), out_of_memory_response.size()}});
    ring_send(out_of_memory_response.size());
    return;
  }
  writing_ = true;
  asio::async_write(socket_, asio::buffer(out_of_memory_response),
                    asio::bind_allocator(alloc(), [self = shared_from_this()](std::error_code ec, std::size_t n) {
                      self->on_written(ec, n);
                    }));
}

// ---- llhttp callbacks ---------------------------------------------------------------------------
// Callbacks never throw (llhttp is C): an allocation failure becomes a user error and a 503.

int http_connection::reject(unsigned status, error_kind kind) {
  reject_status_ = status;
  reject_kind_ = kind;
  return -1;  // HPE_USER: llhttp_execute stops with an error
}

int http_connection::on_message_begin() {
  phase_ = phase::headers;
  request_start_ = clock::now();  // for the latency histogram: one clock read serves both
  deadline_ = request_start_ + ctx_.cfg.header_timeout;
  path_len_ = url_len_ = field_len_ = value_len_ = te_len_ = 0;
  header_bytes_ = header_count_ = body_bytes_ = 0;
  header_ = header::other;
  host_seen_ = host_bad_ = expect_continue_ = te_seen_ = te_overflow_ = continue_sent_ = head_ = false;
  streaming_ = chunk_open_ = false;
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
  for (std::size_t i = 0; i < n; ++i)
    if (!is_tchar(at[i])) return reject(400, error_kind::bad_request);  // "X A", "Host :"
  const std::size_t room = field_.size() - std::min(field_.size(), field_len_);
  std::memcpy(field_.data() + std::min(field_.size(), field_len_), at, std::min(room, n));
  field_len_ += n;  // may exceed the array: then it is no header we look at
  return 0;
}

int http_connection::on_header_field_complete() {
  if (++header_count_ > ctx_.cfg.max_headers) return reject(431, error_kind::headers_too_large);
  if (field_len_ == 0) return reject(400, error_kind::bad_request);  // ": value"
  value_len_ = 0;
  header_ = header::other;
  const std::string_view name(field_.data(), std::min(field_len_, field_.size()));
  if (field_len_ <= field_.size()) {
    if (iequals(name, "host")) {
      if (host_seen_ || phase_ != phase::headers) return reject(400, error_kind::bad_request);  // RFC 9112 3.2
      host_seen_ = true;
      host_state_ = host_state::none;
      header_ = header::host;
    } else if (iequals(name, "transfer-encoding")) {
      header_ = header::transfer_encoding;
    } else if (iequals(name, "expect")) {
      header_ = header::expect;
    }
  }
  field_len_ = 0;
  return 0;
}

int http_connection::on_header_value(const char* at, std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ > ctx_.cfg.max_header_bytes) return reject(431, error_kind::headers_too_large);
  // obs-fold (RFC 9112 5.2): a value that starts on a line of its own. The byte before the span,
  // after optional whitespace, is ':' for a value, a value byte for a span split across reads, and
  // the LF of a line end only for a folded line.
  const char before = last_non_blank(exec_begin_, at, last_byte_);
  if (before == '\n' || before == '\r') return reject(400, error_kind::bad_request);
  if (header_ == header::other) {  // not a header the connection checks: nothing to keep
    value_len_ += n;
    return 0;
  }
  if (header_ == header::host) {  // checked as it streams by: nothing is copied
    value_len_ += n;
    // The usual span: no blank at all. One pass without branches decides it.
    bool plain = host_state_ != host_state::after;
    for (std::size_t i = 0; i < n; ++i) plain &= host_chars[static_cast<unsigned char>(at[i])];
    if (plain) {
      if (n != 0) host_state_ = host_state::value;
      return 0;
    }
    // Blanks (or a bad byte): where they are decides. Locals: a store to a member through `this`
    // may alias the bytes read through `at`.
    host_state st = host_state_;
    bool ok = true;
    for (std::size_t i = 0; i < n; ++i) {
      const char c = at[i];
      if (c == ' ' || c == '\t') {
        st = st == host_state::none ? host_state::none : host_state::after;
        continue;
      }
      ok &= host_value_chars[static_cast<unsigned char>(c)] & (st != host_state::after);
      st = host_state::value;
    }
    host_state_ = st;
    host_bad_ = host_bad_ || !ok;
    return 0;
  }
  const std::size_t room = value_.size() - std::min(value_.size(), value_len_);
  std::memcpy(value_.data() + std::min(value_.size(), value_len_), at, std::min(room, n));
  value_len_ += n;
  return 0;
}

int http_connection::on_header_value_complete() {
  if (header_ == header::other) return 0;
  if (header_ == header::host) {
    // One authority: no inner whitespace (checked as it came), no longer than a DNS name with a port.
    header_ = header::other;
    if (host_bad_ || value_len_ > value_.size()) return reject(400, error_kind::bad_request);
    return 0;
  }
  const std::string_view value = trim(std::string_view(value_.data(), std::min(value_len_, value_.size())));
  switch (header_) {
    case header::host: break;
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

// The Transfer-Encoding list: every coding must be one we implement (only "chunked": else 501), and
// chunked must be the last and appear once (else 400: the body length cannot be known).
int http_connection::check_transfer_encoding() {
  if (te_overflow_) return reject(400, error_kind::bad_request);
  std::string_view list(te_.data(), te_len_);
  std::size_t chunked = 0;
  bool chunked_last = false;
  bool unknown = false;
  while (!list.empty() || chunked_last) {
    const auto comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (!item.empty()) {
      chunked_last = item == "chunked";
      if (chunked_last) ++chunked;
      else if (!std::all_of(item.begin(), item.end(), is_tchar)) return reject(400, error_kind::bad_request);
      else unknown = true;
    }
    if (list.empty()) break;
  }
  if (unknown) return reject(501, error_kind::not_implemented);
  if (chunked != 1 || !chunked_last) return reject(400, error_kind::bad_request);
  return 0;
}

int http_connection::on_headers_complete() {
  if (parser_.http_major != 1) return reject(505, error_kind::version_not_supported);
  const bool http10 = parser_.http_minor == 0;
  if (!http10 && !host_seen_) return reject(400, error_kind::bad_request);
  if (parser_.method == HTTP_CONNECT) return reject(400, error_kind::bad_request);  // no tunnels here
  parser_.upgrade = 0;  // Upgrade (h2c, websocket) is not offered: answer the request as HTTP/1.1
  if (te_seen_) {
    if (http10) return reject(400, error_kind::bad_request);  // no transfer codings in HTTP/1.0 (RFC 9112 6.1)
    if (check_transfer_encoding() != 0) return -1;
  }
  head_ = parser_.method == HTTP_HEAD;
  echo_length_ = parser_.content_length;  // llhttp counts it down as the body is read
  route_ = route_for(ctx_.admin, static_cast<llhttp_method_t>(parser_.method),
                     std::string_view(path_.data(), path_len_));
  if ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > ctx_.cfg.max_body_bytes)
    return reject(413, error_kind::body_too_large);
  const bool has_body = (parser_.flags & F_CHUNKED) != 0 ||
                        ((parser_.flags & F_CONTENT_LENGTH) != 0 && parser_.content_length > 0);
  if (has_body) {
    phase_ = phase::body;
    set_deadline(ctx_.cfg.body_timeout);
    // Expect: 100-continue: the body will be read (echoed or discarded), and no 413 is known yet.
    if (expect_continue_ && !continue_sent_) {
      continue_sent_ = true;
      try {
        append("HTTP/1.1 100 Continue\r\n\r\n");
      } catch (const std::bad_alloc&) {
        return reject(503, error_kind::out_of_memory);
      }
      w_.stats().count_status(100);
    }
  }
  return 0;
}

// A chunk-size line: its size counts against the body limit before any of it is read.
int http_connection::on_chunk_header() {
  const std::uint64_t size = parser_.content_length;
  if (size > ctx_.cfg.max_body_bytes - std::min(body_bytes_, ctx_.cfg.max_body_bytes)) {
    if (size >= (std::uint64_t{1} << 63)) return reject(400, error_kind::bad_request);  // no sane size
    return reject(413, error_kind::body_too_large);
  }
  if (size == 0 || route_ != route::echo) return 0;
  try {
    start_echo_stream();
    char line[24];
    const auto r = std::to_chars(line, line + sizeof line - 2, size, 16);
    char* p = r.ptr;
    *p++ = '\r';
    *p++ = '\n';
    append(std::string_view(line, static_cast<std::size_t>(p - line)));
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  chunk_open_ = true;
  return 0;
}

// Chunk extensions are read and ignored, but every byte counts: per line and toward the body limit.
int http_connection::on_chunk_extension(std::size_t n) {
  body_bytes_ += n;
  if (body_bytes_ > ctx_.cfg.max_body_bytes) return reject(413, error_kind::body_too_large);
  ext_bytes_ += n;
  if (ext_bytes_ > max_chunk_extension_bytes) return reject(400, error_kind::bad_request);
  return 0;
}

int http_connection::on_chunk_complete() {
  ext_bytes_ = 0;
  if (!chunk_open_) return 0;
  chunk_open_ = false;
  try {
    append("\r\n");
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return 0;
}

int http_connection::on_body(const char* at, std::size_t n) {
  body_bytes_ += n;
  if (body_bytes_ > ctx_.cfg.max_body_bytes) return reject(413, error_kind::body_too_large);
  if (route_ != route::echo) return 0;  // read and discarded
  try {
    start_echo_stream();
    append(std::string_view(at, n));  // copied into the output: the read buffer can go back at once
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return 0;
}

// Answers the request right here, so a read full of pipelined requests is parsed in one
// llhttp_execute call; pauses only when the batch is full or the connection is to close.
int http_connection::on_message_complete() {
  keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
  try {
    complete_request();
  } catch (const std::bad_alloc&) {
    return reject(503, error_kind::out_of_memory);
  }
  return closing_ || batch_ >= ctx_.cfg.max_pipeline ? HPE_PAUSED : 0;
}

// ---- output -------------------------------------------------------------------------------------

// Room for n more bytes at the end of the output, contiguous: the open buffer's tail, or a new one.
char* http_connection::output_space(std::size_t n) {
  if (!out_open_ || out_.back().capacity() - out_.back().size() < n) {
    out_.push_back(w_.pool().get(std::max(out_buffer_bytes, n)));
    out_.back().resize(0);
    out_open_ = true;
  }
  bufpool::buffer& b = out_.back();
  return reinterpret_cast<char*>(b.data() + b.size());
}

void http_connection::append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (!out_open_ || out_.back().size() == out_.back().capacity()) output_space(bytes.size());
    bufpool::buffer& b = out_.back();
    const std::size_t take = std::min(bytes.size(), b.capacity() - b.size());
    std::memcpy(b.data() + b.size(), bytes.data(), take);
    b.resize(b.size() + take);
    bytes.remove_prefix(take);
  }
}

void http_connection::append_body(std::string_view body) {
  if (!head_) append(body);
}

void http_connection::write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                                 std::string_view extra_headers) {
  last_status_ = status;
  last_length_ = content_length;
  // Written straight into the output: at most max_head_bytes (extra headers are capped at 128).
  char* const head = output_space(max_head_bytes);
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
  if (content_length == chunked_length) {
    put("\r\nTransfer-Encoding: chunked");
  } else {
    put("\r\nContent-Length: ");
    r = std::to_chars(num, num + sizeof num, content_length);
    put(std::string_view(num, static_cast<std::size_t>(r.ptr - num)));
  }
  put("\r\n");
  if (extra_headers.size() < 128) put(extra_headers);
  if (closing_) put("Connection: close\r\n");
  else if (parser_.http_minor == 0) put("Connection: keep-alive\r\n");
  put("\r\n");
  bufpool::buffer& b = out_.back();
  b.resize(b.size() + static_cast<std::size_t>(p - head));
  w_.stats().count_status(status);
  ++batch_;
}

// The echo answer's head, written before the first body byte is echoed: Content-Length for a
// Content-Length request, chunked for a chunked one. Whether it is the connection's last answer is
// known now (Connection: close, HTTP/1.0, request count, draining).
void http_connection::start_echo_stream() {
  if (streaming_) return;
  const bool last = last_response();
  const bool was_closing = closing_;
  closing_ = last;  // only for the Connection header: parsing goes on until the message completes
  write_head(200, "application/octet-stream",
             (parser_.flags & F_CHUNKED) != 0 ? chunked_length : static_cast<std::size_t>(echo_length_));
  closing_ = was_closing;
  streaming_ = true;
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
      if (!streaming_) {
        write_head(200, "application/octet-stream", 0);  // no body was sent
      } else if ((parser_.flags & F_CHUNKED) != 0) {
        append("0\r\n\r\n");
      }
      streaming_ = false;
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
    case route::metrics: {
      const std::string body = ctx_.metrics_text ? ctx_.metrics_text() : std::string();
      write_head(200, "text/plain; version=0.0.4; charset=utf-8", body.size());
      append_body(body);
      break;
    }
    case route::dashboard: {
      const std::string_view body = dashboard_html();
      write_head(200, "text/html; charset=utf-8", body.size());
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

// Sends the batch: first one non-blocking gather write, which on a healthy connection takes it all
// (no operation to queue, no completion to dispatch: the read loop goes straight on); what the
// socket does not take is written asynchronously, with reading stopped until it is out.
http_connection::write_result http_connection::flush() {
  if (ring_ != nullptr) {  // io_uring: one sendmsg, submitted with this turn's other operations
    riov_.clear();
    std::size_t total = 0;
    for (auto& b : out_) {
      riov_.push_back(iovec{b.data(), b.size()});
      total += b.size();
    }
    return ring_send(total);
  }
  iov_.clear();
  std::size_t total = 0;
  for (const auto& b : out_) {
    iov_.emplace_back(b.data(), b.size());
    total += b.size();
  }
  std::error_code ec;
  std::size_t n = socket_.write_some(std::span<const asio::const_buffer>(iov_), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) {
    ec.clear();
    n = 0;
  }
  if (ec) {
    finish_write(0);
    w_.stats().count_error(error_kind::io_error);
    close_now();
    return write_result::failed;
  }
  if (n == total) {
    finish_write(n);
    return phase_ == phase::closed ? write_result::failed : write_result::written;
  }
  // The rest of the batch: drop what went out from the gather list.
  w_.stats().bytes_out.add(n);
  std::size_t skip = 0;
  while (n >= iov_[skip].size()) n -= iov_[skip++].size();
  iov_[skip] += n;
  iov_.erase(iov_.begin(), iov_.begin() + static_cast<std::ptrdiff_t>(skip));
  writing_ = true;
  set_deadline(ctx_.cfg.write_timeout);
  // A span, not the vector: async_write copies its buffer sequence, and a vector copy would allocate.
  asio::async_write(socket_, std::span<const asio::const_buffer>(iov_),
                    asio::bind_allocator(alloc(), [self = shared_from_this()](std::error_code e, std::size_t written) {
                      self->on_written(e, written);
                    }));
  return write_result::pending;
}

// The batch is out (or abandoned): its buffers go back to the pool.
void http_connection::finish_write(std::size_t n) {
  writing_ = false;
  out_.clear();
  out_open_ = false;
  batch_ = 0;
  w_.stats().bytes_out.add(n);
  w_.on_buffers_returned();
}

// After a batch went out: lingers if it held the last answer (false), else restores the deadline of
// the phase the connection is in (true: input goes on).
bool http_connection::after_write() {
  if (closing_) {
    linger();
    return false;
  }
  if (phase_ == phase::idle) set_deadline(ctx_.cfg.idle_timeout);
  else if (phase_ == phase::headers) set_deadline(ctx_.cfg.header_timeout);
  else set_deadline(ctx_.cfg.body_timeout);
  return true;
}

void http_connection::on_written(std::error_code ec, std::size_t n) {
  finish_write(n);
  if (phase_ == phase::closed) return;
  if (ec) {
    w_.stats().count_error(error_kind::io_error);
    close_now();
    return;
  }
  if (!after_write()) return;
  if (in_begin_ < in_end_) {  // pipelined requests left over from the last read
    if (process_input() == outcome::need_input) read();
    return;
  }
  read();
}

// ---- closing ------------------------------------------------------------------------------------

// Lingering close: stop sending, then read and discard until the peer closes or linger_timeout passes,
// so that an error response is not destroyed by a reset caused by unread input. At most
// max_linger_bytes_per_turn are read per turn.
void http_connection::linger() {
  if (phase_ != phase::lingering) {
    phase_ = phase::lingering;
    std::error_code ec;
    if (ring_ != nullptr) {
      if (::shutdown(fd_, SHUT_WR) != 0) ec = std::error_code(errno, std::system_category());
    } else {
      socket_.shutdown(asio::socket_base::shutdown_send, ec);
    }
    if (ec || ctx_.cfg.linger_timeout.count() == 0) {
      close_now();
      return;
    }
    set_deadline(ctx_.cfg.linger_timeout);
  }
  in_.reset();
  in_begin_ = in_end_ = 0;
  if (ring_ != nullptr) {  // what arrives is dropped as it comes (on_ring_recv), until the peer closes
    ring_in_.reset();
    if (input_end_ != input_end::none) {
      close_now();
      return;
    }
    arm_recv();
    waiting_ = true;
    return;
  }
  std::array<char, 2048> sink;  // on the stack: lingering needs no pooled buffer
  for (std::size_t total = 0; total < max_linger_bytes_per_turn;) {
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(sink), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      if (!waiting_) wait_readable();
      return;
    }
    if (ec) {
      close_now();
      return;
    }
    total += n;
  }
  yield();
}

void http_connection::close_now() {
  if (phase_ == phase::closed) return;
  phase_ = phase::closed;
  std::error_code ec;
  std::shared_ptr<http_connection> keep;  // leaving the buffer wait below may drop the last reference
  if (ring_ != nullptr) {
    // Ends the recv (it completes with 0) and any send (with an error), also one still queued in
    // this turn's submissions: their completions let go of the connection, and the descriptor is
    // closed only then, by the destructor. Closing it here freed its number while a queued recv or
    // send still named it; the next socket opened in the process (any listener, any thread) could get
    // that number, and the dead connection's recv took that client's bytes, or its send wrote into
    // that client's socket. Received buffers go back to the pool now.
    ::shutdown(fd_, SHUT_RDWR);
    if (recv_armed_) ring_->cancel(recv_op_);
    if (recv_starved_) {  // no recv in flight: leave the queue for buffers, and its hold
      keep = shared_from_this();
      ring_->forget(recv_op_);
      recv_starved_ = false;
      w_.stats().budget_waiting.sub();
      release_ring();
    }
    ring_in_.reset();
  } else {
    socket_.close(ec);
  }
  w_.unlink(this);
  in_.reset();
  if (!writing_) out_.clear();  // a write in flight still reads them; on_written returns them
  w_.on_buffers_returned();
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
    log_event(error_kind::write_timeout, 0, fd());
    close_now();  // cancels the write
    return;
  }
  switch (phase_) {
    case phase::idle:
      w_.stats().count_error(error_kind::idle_timeout);
      log_event(error_kind::idle_timeout, 0, fd());
      close_now();
      return;
    case phase::headers:
    case phase::body:
      fail(408, phase_ == phase::headers ? error_kind::header_timeout : error_kind::body_timeout);
      in_.reset();
      in_begin_ = in_end_ = 0;
      if (writing_) return;
      if (!out_.empty() && flush() != write_result::written) return;
      linger();
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
