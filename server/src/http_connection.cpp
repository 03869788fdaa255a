// The connection that ties the engine, the stream and the worker together. See http_connection.hpp
// and docs/design.md 2.2.
#include "http_connection.hpp"

#include <cstring>

#include <asio/bind_allocator.hpp>
#include <asio/post.hpp>

#include "io/asio_stream.hpp"
#include "io/tls_stream.hpp"
#include "io/uring_stream.hpp"

namespace bufpool::server {

namespace {

// Reads one connection may do in one turn of the io_context before it yields (fairness: a client that
// keeps sending cannot hold its worker; with 4 KiB read buffers, 64 KiB per turn).
constexpr unsigned max_reads_per_turn = 16;
// An echoed body's pieces wait for the next read while they come to less than this (one send per
// 64 KiB rather than one per read), if that read finds more; else they go out at once.
constexpr std::size_t max_held_output = 64 * 1024;
// Bytes read and discarded per turn while lingering.
constexpr std::size_t max_linger_bytes_per_turn = 64 * 1024;

class asio_connection final : public http_connection {
public:
  asio_connection(worker& w, asio::ip::tcp::socket socket, const http_context& ctx)
      : http_connection(w, ctx), stream_(w, std::move(socket), {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, memory(),
                                          owner()) {
    attach(stream_);
  }

private:
  io::asio_stream stream_;
};

class uring_connection final : public http_connection {
public:
  uring_connection(worker& w, int fd, const http_context& ctx) : http_connection(w, ctx), stream_(w, fd, {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, owner()) {
    attach(stream_);
  }

private:
  io::uring_stream stream_;
};

// HTTPS: the TLS stream is what the connection reads and writes; the transport's stream below it moves
// the ciphertext (tls_ is constructed first and destroyed last: the transport's stream refers to it).
class asio_tls_connection final : public http_connection {
public:
  asio_tls_connection(worker& w, asio::ip::tcp::socket socket, const http_context& ctx)
      : http_connection(w, ctx), tls_(w, ctx.tls->current(), {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, owner()),
        stream_(w, std::move(socket), {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, memory(), tls_.inner_owner()) {
    tls_.attach(stream_);
    attach(tls_);
  }

private:
  io::tls_stream tls_;
  io::asio_stream stream_;
};

class uring_tls_connection final : public http_connection {
public:
  uring_tls_connection(worker& w, int fd, const http_context& ctx)
      : http_connection(w, ctx), tls_(w, ctx.tls->current(), {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, owner()),
        stream_(w, fd, {ctx.cfg.read_buffer_bytes, ctx.cfg.max_read_buffer_bytes}, tls_.inner_owner()) {
    tls_.attach(stream_);
    attach(tls_);
  }

private:
  io::tls_stream tls_;
  io::uring_stream stream_;
};

}  // namespace

std::shared_ptr<http_connection> make_http_connection(const std::pmr::polymorphic_allocator<>& alloc, worker& w,
                                                      asio::ip::tcp::socket socket, const http_context& ctx) {
  if (ctx.tls != nullptr) return std::allocate_shared<asio_tls_connection>(alloc, w, std::move(socket), ctx);
  return std::allocate_shared<asio_connection>(alloc, w, std::move(socket), ctx);
}

std::shared_ptr<http_connection> make_http_connection(const std::pmr::polymorphic_allocator<>& alloc, worker& w,
                                                      int fd, const http_context& ctx) {
  if (ctx.tls != nullptr) return std::allocate_shared<uring_tls_connection>(alloc, w, fd, ctx);
  return std::allocate_shared<uring_connection>(alloc, w, fd, ctx);
}

http_connection::http_connection(worker& w, const http_context& ctx)
    : w_(w), ctx_(ctx), engine_(ctx.engine, w.http_env(), *this) {
  w_.link(this);
  active_counter().add();
  if (!ctx_.admin) w_.stats().http_accepted.add();
}

http_connection::~http_connection() {
  if (state_ != state::closed) w_.unlink(this);
  if (active_counted_) active_counter().sub();
}

// Admin connections are counted apart: they do not hold up a graceful stop or count against limits.
counter& http_connection::active_counter() noexcept {
  return ctx_.admin ? w_.stats().admin_active : w_.stats().http_active;
}

void http_connection::start() {
  // The first request gets the header timeout, as in nginx; over TLS the handshake gets its own first,
  // and the header timeout starts when it is done.
  handshaking_ = ctx_.tls != nullptr;
  sniffing_ = ctx_.tls == nullptr && ctx_.cfg.http2.enabled;
  set_deadline(handshaking_ ? ctx_.cfg.handshake_timeout : ctx_.cfg.header_timeout);
  read();
}

// ---- input ----------------------------------------------------------------------------------------

// Reads whatever the stream has, without waiting; if nothing is there, the stream waits for input
// holding no buffer. Loops while input keeps coming and produces no answer (a request arriving in
// pieces), at most max_reads_per_turn times: then it yields, so one client cannot hold its worker.
void http_connection::read() {
  if (h2_) {
    read_h2();
    return;
  }
  for (unsigned reads = 0;; ++reads) {
    if (!engine_.has_input()) {
      if (reads == max_reads_per_turn) {
        if (!send_held_output()) return;
        engine_.drop_input();
        yield();
        return;
      }
      bufpool::buffer b = engine_.take_spare();  // read into the last buffer again, if there is one
      std::size_t n = 0;
      // Held output (an echoed body's pieces) goes out before the connection waits for anything.
      const bool held = engine_.has_output();
      const io::recv_status got = stream_->receive(b, n, engine_.input_expected(), !held);
      if (handshaking_ && stream_->tls_version() != nullptr) {
        handshaking_ = false;
        set_deadline(ctx_.cfg.header_timeout);
        sniffing_ = stream_->alpn() == "h2";  // then the client's first bytes are the HTTP/2 preface
      }
      if (held && got != io::recv_status::data && got != io::recv_status::end && got != io::recv_status::error) {
        if (!send_held_output()) return;  // a send in flight: on_sent reads on
        if (got == io::recv_status::pending) {
          stream_->wait_input();
          return;
        }
        // Over the budget, or out of memory: the held batch has just gone back to the pool, which may
        // have been what stood in the way (and no wait registered now would be woken by it). Ask again.
        continue;
      }
      switch (got) {
        case io::recv_status::data: break;
        case io::recv_status::pending: return;
        case io::recv_status::end: close_now(); return;  // nothing more can be answered, also mid-request
        case io::recv_status::error:
          w_.stats().count_error(error_kind::io_error);
          close_now();
          return;
        case io::recv_status::over_budget:  // the server's buffer budget is spent: wait, holding nothing
          budget_wait_ = true;
          w_.wait_for_budget(shared_from_this());
          return;
        case io::recv_status::out_of_memory:
          engine_.note_out_of_memory();
          fail_out_of_memory();
          return;
      }
      w_.stats().bytes_in.add(n);
      if (sniffing_) {
        switch (sniff(b, n)) {
          case sniff_result::http1: break;
          case sniff_result::more: continue;  // all of it the preface's beginning: read on
          case sniff_result::http2: read_h2(); return;
        }
        if (state_ == state::closed) return;
      }
      engine_.feed(std::move(b), n);
    }
    switch (process_input()) {
      case outcome::need_input: continue;
      case outcome::writing:
      case outcome::waiting:
      case outcome::closed: return;
    }
  }
}

// ---- HTTP/2 ---------------------------------------------------------------------------------------

// The bytes matched so far were not kept (they are the preface's own): on a mismatch they are put back
// in front of the new ones for the HTTP/1.1 engine, on a match the h2 engine gets the whole preface.
http_connection::sniff_result http_connection::sniff(bufpool::buffer& b, std::size_t& n) {
  constexpr std::string_view preface = http::h2_engine::preface;
  const std::size_t before = preface_matched_;
  const std::size_t k = std::min(n, preface.size() - before);
  const bool match = std::memcmp(b.data(), preface.data() + before, k) == 0;
  if (match && before + k < preface.size()) {
    preface_matched_ = static_cast<std::uint8_t>(before + k);
    return sniff_result::more;
  }
  sniffing_ = false;
  try {
    if (before > 0) {
      bufpool::buffer whole = w_.http_env().pool.get(before + n);
      std::memcpy(whole.data(), preface.data(), before);
      std::memcpy(whole.data() + before, b.data(), n);
      b = std::move(whole);
      n += before;
    }
    if (!match) return sniff_result::http1;
    http::engine_events& events = *this;
    h2_ = std::make_unique<http::h2_engine>(ctx_.engine, w_.http_env(), events);
  } catch (const std::bad_alloc&) {
    w_.stats().count_error(error_kind::out_of_memory);
    close_now();
    return sniff_result::http1;  // closed: read() stops
  }
  h2_->feed(std::move(b), n);
  return sniff_result::http2;
}

// The HTTP/2 read loop: what comes is handed to the engine whole (frames of every stream), answers go
// out as batches; reading goes on while streams wait for their delays. At most max_reads_per_turn reads,
// then a yield, as for HTTP/1.1.
void http_connection::read_h2() {
  for (unsigned reads = 0;; ++reads) {
    if (!h2_->has_input()) {
      if (reads == max_reads_per_turn) {
        h2_->drop_input();
        yield();
        return;
      }
      bufpool::buffer b = h2_->take_spare();
      std::size_t n = 0;
      switch (stream_->receive(b, n, 0, true)) {
        case io::recv_status::data: break;
        case io::recv_status::pending: return;
        case io::recv_status::end: close_now(); return;
        case io::recv_status::error:
          w_.stats().count_error(error_kind::io_error);
          close_now();
          return;
        case io::recv_status::over_budget:
          budget_wait_ = true;
          w_.wait_for_budget(shared_from_this());
          return;
        case io::recv_status::out_of_memory:
          w_.stats().count_error(error_kind::out_of_memory);
          close_now();
          return;
      }
      h2_->feed(std::move(b), n);
      w_.stats().bytes_in.add(n);
    }
    if (!h2_turn(h2_->parse())) return;
  }
}

// Never called while a batch is being sent: the engine appends to the batch the stream is reading.
bool http_connection::h2_turn(http::engine::result r) {
  for (;;) {
    if (state_ == state::closed) return false;
    if (r == http::engine::result::send) {
      switch (flush()) {
        case write_result::pending:
          if (!h2_->has_input()) h2_->drop_input();
          arm_h2_timer();
          return false;  // on_sent goes on
        case write_result::failed: return false;
        case write_result::written: break;
      }
      r = h2_->parse();  // more frames may be ready (the batch limit, window updates)
      continue;
    }
    if (r == http::engine::result::close || h2_->closing()) {
      // Lingering, as after an HTTP/1.1 error: a close with unread input would send a reset, and the
      // reset can destroy the GOAWAY before the client reads it.
      h2_->drop_input();
      linger();
      return false;
    }
    deadline_ = h2_->deadline();
    arm_h2_timer();
    return true;
  }
}

// The connection's one timer, armed for the earliest delayed stream.
void http_connection::arm_h2_timer() {
  if (!h2_->waiting() || state_ == state::closed) return;
  const clock::time_point at = h2_->wake_at();
  if (h2_timer_armed_ && h2_timer_at_ <= at) return;
  if (!delay_timer_) delay_timer_ = std::make_unique<asio::steady_timer>(w_.context());
  h2_timer_armed_ = true;
  h2_timer_at_ = at;
  ++delay_gen_;
  delay_timer_->expires_at(at);
  delay_timer_->async_wait(asio::bind_allocator(alloc(), [self = shared_from_this(), gen = delay_gen_](std::error_code) {
    if (gen == self->delay_gen_) self->h2_wake();
  }));
}

void http_connection::h2_wake() {
  h2_timer_armed_ = false;
  // While a batch is out, on_sent wakes the engine; after a yield or a budget wait, the next turn
  // re-arms the timer (already due: it fires at once).
  if (state_ != state::open || writing_ || yielded_ || budget_wait_) return;
  if (h2_turn(h2_->wake()) && !stream_->waiting()) read_h2();
}

void http_connection::on_readable() {
  // While an answer is being written, on_sent() decides what comes next.
  if (state_ == state::closed || writing_ || yielded_ || budget_wait_ || delayed_) return;
  if (state_ == state::lingering) linger();
  else read();
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
// already drives the connection (a write, a wait for input, the other pause) or it is closed.
void http_connection::continue_input() {
  if (state_ == state::closed || writing_ || stream_->waiting() || yielded_ || budget_wait_ || delayed_) return;
  if (state_ == state::lingering) linger();
  else read();
}

// What the engine's parse (or wake) came to: sends the answers, waits for a delayed one, closes.
http_connection::outcome http_connection::handle(http::engine::result r) {
  switch (r) {
    case http::engine::result::wait:
      wait_for_answer();
      return outcome::waiting;
    case http::engine::result::out_of_memory:
      fail_out_of_memory();
      return writing_ ? outcome::writing : outcome::closed;
    case http::engine::result::need_input:
      take_engine_deadline();
      return outcome::need_input;
    case http::engine::result::close:
      take_engine_deadline();
      linger();
      return outcome::closed;
    case http::engine::result::send: break;
  }
  take_engine_deadline();
  if (engine_.output_may_wait(max_held_output)) return outcome::need_input;  // sent after the next read
  switch (flush()) {
    case write_result::pending:
      // All parsed: the read buffer is kept only to read on into at once; a connection that waits
      // for its write holds none.
      if (!engine_.has_input()) engine_.drop_input();
      return outcome::writing;
    case write_result::failed: return outcome::closed;
    case write_result::written:
      if (!after_write()) return outcome::closed;
      if (engine_.waiting()) {  // the batch before a delayed answer is out: now its timer (read nothing)
        wait_for_answer();
        return outcome::waiting;
      }
      return outcome::need_input;
  }
  return outcome::closed;
}

// ---- delayed answers ------------------------------------------------------------------------------

// A request's answer is delayed (exchange::defer): nothing is read meanwhile, and the connection holds
// no pooled buffer unless pipelined input waits behind the request (its read buffer). One timer per
// connection, made on its first delay; the deadline is a backstop a write timeout after it.
void http_connection::wait_for_answer() {
  if (delayed_) return;
  if (!engine_.has_input()) engine_.drop_input();
  delayed_ = true;
  deadline_ = engine_.wake_at() + ctx_.cfg.write_timeout;
  if (!delay_timer_) delay_timer_ = std::make_unique<asio::steady_timer>(w_.context());
  delay_timer_->expires_at(engine_.wake_at());
  // The generation: a wait cancelled (drain, the backstop) must not answer a later delay early.
  delay_timer_->async_wait(asio::bind_allocator(alloc(), [self = shared_from_this(), gen = delay_gen_](std::error_code) {
    if (gen == self->delay_gen_) self->answer_delayed();
  }));
}

void http_connection::answer_delayed() {
  if (!delayed_ || state_ == state::closed) return;
  delayed_ = false;
  ++delay_gen_;
  if (handle(engine_.wake()) == outcome::need_input) read();
}

// ---- output ---------------------------------------------------------------------------------------

// Sends what process_input() left waiting for a read that found nothing more (or a yield, a budget
// wait): true if it is out (or there was none) and the caller goes on; false if a send is in flight
// (on_sent goes on) or the connection closed.
bool http_connection::send_held_output() {
  if (!engine_.has_output() || writing_) return true;
  switch (flush()) {
    case write_result::written: return after_write();
    case write_result::pending: engine_.drop_input(); return false;
    case write_result::failed: return false;
  }
  return false;
}

http_connection::write_result http_connection::flush() {
  std::size_t total = 0;
  const std::span<const iovec> iov = h2_ ? h2_->output(total) : engine_.output(total);
  return send(iov, total);
}

// The batch goes out at once where the stream can (epoll: one non-blocking gather write, which on a
// healthy connection takes it all: the read loop goes straight on); else reading stops until on_sent.
http_connection::write_result http_connection::send(std::span<const iovec> iov, std::size_t total) {
  switch (stream_->send(iov, total)) {
    case io::send_status::done:
      finish_write(total);
      return state_ == state::closed ? write_result::failed : write_result::written;
    case io::send_status::failed:
      finish_write(0);
      w_.stats().count_error(error_kind::io_error);
      close_now();
      return write_result::failed;
    case io::send_status::pending: break;
  }
  writing_ = true;
  set_deadline(ctx_.cfg.write_timeout);
  return write_result::pending;
}

// The batch is out (or abandoned): its buffers go back to the pool.
void http_connection::finish_write(std::size_t n) {
  writing_ = false;
  if (h2_) h2_->output_sent();
  else engine_.output_sent();
  w_.stats().bytes_out.add(n);
  w_.on_buffers_returned();
}

// After a batch went out: lingers if it held the last answer (false), else restores the deadline of
// the phase the request is in (true: input goes on).
bool http_connection::after_write() {
  if (engine_.closing()) {
    linger();
    return false;
  }
  switch (engine_.current_phase()) {
    case http::engine::phase::idle: set_deadline(ctx_.cfg.idle_timeout); break;
    case http::engine::phase::headers: set_deadline(ctx_.cfg.header_timeout); break;
    case http::engine::phase::body: set_deadline(ctx_.cfg.body_timeout); break;
  }
  return true;
}

void http_connection::on_sent(std::error_code ec, std::size_t n) {
  finish_write(n);
  if (state_ == state::closed) return;
  if (ec) {
    w_.stats().count_error(error_kind::io_error);
    close_now();
    return;
  }
  if (h2_) {  // frames that waited for the batch, delayed streams now due, then reading on
    if (h2_turn(h2_->has_input() ? h2_->parse() : h2_->wake()) && !stream_->waiting()) read_h2();
    return;
  }
  if (!after_write()) return;
  if (engine_.has_input() || engine_.waiting()) {  // pipelined requests left over, or a delayed answer
    if (process_input() == outcome::need_input) read();
    return;
  }
  read();
}

// No buffer could be had (the engine counted it): answer 503 from static memory if no answer has
// begun, and close. The answers gathered for this read are dropped with their buffers (one may be half
// written): the 503 answers the first request the client got no answer for, and the connection closes,
// so the client knows the requests after it were not served.
void http_connection::fail_out_of_memory() {
  if (writing_ || state_ != state::open) {
    // A send in flight still reads the output buffers: close_now keeps them until its completion
    // (on_sent returns them), so none goes back to the pool while the kernel may read it.
    close_now();
    return;
  }
  const bool streaming = engine_.streaming();
  engine_.abandon_output();
  if (streaming) {
    close_now();
    return;
  }
  w_.stats().count_status(503);
  // Static, as its gather list must be: the stream may hand the list itself to the kernel later
  // (io_uring submits at the end of the turn).
  static const iovec v{const_cast<char*>(http::engine::out_of_memory_response.data()),
                       http::engine::out_of_memory_response.size()};
  if (send({&v, 1}, v.iov_len) == write_result::written) after_write();  // closing: lingers
}

// ---- closing --------------------------------------------------------------------------------------

// Lingering close: stop sending, then read and discard until the peer closes or linger_timeout passes,
// so that an error answer is not destroyed by a reset caused by unread input. At most
// max_linger_bytes_per_turn are read per turn.
void http_connection::linger() {
  if (state_ == state::closed) return;
  if (state_ != state::lingering) {
    state_ = state::lingering;
    if (!stream_->shutdown_send() || ctx_.cfg.linger_timeout.count() == 0) {
      close_now();
      return;
    }
    set_deadline(ctx_.cfg.linger_timeout);
  }
  engine_.drop_input();
  switch (stream_->discard(max_linger_bytes_per_turn)) {
    case io::discard_status::pending: return;
    case io::discard_status::end: close_now(); return;
    case io::discard_status::more: yield(); return;
  }
}

void http_connection::close_now() {
  if (state_ == state::closed) return;
  const std::shared_ptr<http_connection> keep = shared_from_this();  // the stream may drop a hold
  state_ = state::closed;
  if (delayed_) {
    delayed_ = false;
    ++delay_gen_;
    delay_timer_->cancel();
  }
  engine_.cancel_wait();
  stream_->close();
  w_.unlink(this);
  engine_.drop_input();
  if (!writing_) engine_.output_sent();  // a send in flight still reads them; on_sent returns them
  if (h2_) {
    if (h2_timer_armed_) {
      h2_timer_armed_ = false;
      ++delay_gen_;
      delay_timer_->cancel();
    }
    h2_->drop_input();
    if (!writing_) h2_->output_sent();
  }
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
    log_event(error_kind::write_timeout, 0, stream_->fd());
    close_now();  // cancels the write
    return;
  }
  if (state_ != state::open) {  // lingering
    close_now();
    return;
  }
  if (h2_) {  // idle, or streams that stopped coming: GOAWAY, then close
    h2_turn(h2_->timeout());
    return;
  }
  if (delayed_) {  // the timer's backstop
    answer_delayed();
    return;
  }
  if (handshaking_) {  // a TLS handshake that did not finish in time (slowloris on the handshake)
    w_.stats().tls_failures[static_cast<std::size_t>(io::tls_failure::handshake_timeout)].add();
    log_event(error_kind::idle_timeout, 0, stream_->fd());
    close_now();
    return;
  }
  switch (engine_.current_phase()) {
    case http::engine::phase::idle:
      w_.stats().count_error(error_kind::idle_timeout);
      log_event(error_kind::idle_timeout, 0, stream_->fd());
      close_now();
      return;
    case http::engine::phase::headers:
    case http::engine::phase::body:
      switch (engine_.timeout()) {  // a 408, or the echo answer cut short
        case http::engine::result::out_of_memory: fail_out_of_memory(); return;
        case http::engine::result::send:
          if (flush() != write_result::written) return;
          break;
        default: break;
      }
      linger();
      return;
  }
}

void http_connection::drain() {
  if (ctx_.admin) return;  // the admin port answers until the very end (/healthz: 503)
  auto self = shared_from_this();
  if (h2_) {  // GOAWAY; the delayed streams are answered now, and the connection closes after its streams
    h2_->drain();
    if (!writing_ && h2_turn(h2_->wake()) && !stream_->waiting()) read_h2();
    return;
  }
  if (delayed_) {  // answered now (with Connection: close: the engine sees the worker draining)
    delay_timer_->cancel();
    answer_delayed();
    return;
  }
  if (engine_.current_phase() == http::engine::phase::idle && !writing_ && !engine_.has_input()) {
    close_now();
    return;
  }
  // Busy: the next answer carries Connection: close (the engine sees the worker draining).
}

void http_connection::force_close() {
  auto self = shared_from_this();
  close_now();
}

// ---- engine events --------------------------------------------------------------------------------

void http_connection::failed(error_kind kind, unsigned status) { log_event(kind, status, stream_->fd()); }

// One access-log line, in the spirit of the common log format plus the time taken:
//   127.0.0.1:51234 "GET /plaintext HTTP/1.1" 200 13 42us
// Handed to the asynchronous logger (a bounded queue; when it is full the oldest line is dropped and
// counted): the worker never waits for the disk.
void http_connection::answered(const answered_request& r) {
  if (peer_.empty()) peer_ = peer_of(stream_->fd());
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(r.took).count();
  if (const char* tls = stream_->tls_version())  // HTTPS: the version, and whether the session was resumed
    ctx_.access_log->info("{} \"{} {} HTTP/{}.{}\" {} {} {}us {} {}", peer_, r.method, r.target, r.major, r.minor,
                          r.status, r.length, us, tls, stream_->tls_resumed() ? "resumed" : "full");
  else
    ctx_.access_log->info("{} \"{} {} HTTP/{}.{}\" {} {} {}us", peer_, r.method, r.target, r.major, r.minor, r.status,
                          r.length, us);
}

}  // namespace bufpool::server
