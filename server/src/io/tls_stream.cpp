// TLS over another stream: see tls_stream.hpp and docs/design.md 2.7.
#include "io/tls_stream.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <string>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tls/context.hpp"
#include "worker.hpp"

namespace bufpool::server::io {

namespace {
// The most plaintext one SSL_write takes from a batch: one record.
constexpr std::size_t max_record = 16384;
}  // namespace

int tls_bio_read(bio_st* b, char* out, std::size_t len, std::size_t* got) {
  return static_cast<tls_stream*>(BIO_get_data(b))->bio_read(out, len, got);
}
int tls_bio_write(bio_st* b, const char* in, std::size_t len, std::size_t* put) {
  return static_cast<tls_stream*>(BIO_get_data(b))->bio_write(in, len, put);
}

namespace {
long tls_bio_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // writes need no flush: the stream sends after each SSL call
}
}  // namespace

bio_method_st* tls_stream::bio_method() {
  static BIO_METHOD* const m = [] {
    BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "bufpool tls_stream");
    if (bm == nullptr) throw std::bad_alloc();
    BIO_meth_set_read_ex(bm, tls_bio_read);
    BIO_meth_set_write_ex(bm, tls_bio_write);
    BIO_meth_set_ctrl(bm, tls_bio_ctrl);
    return bm;
  }();
  return m;
}

tls_stream::tls_stream(worker& w, const std::shared_ptr<const tls::context>& ctx, read_size sizes, stream_owner& owner)
    : w_(w), owner_(owner), size_(sizes) {
  ssl_ = ctx->new_ssl();
  if (ssl_ == nullptr) throw std::bad_alloc();
  BIO* bio = BIO_new(bio_method());
  if (bio == nullptr) {
    SSL_free(ssl_);
    throw std::bad_alloc();
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one BIO both ways: the SSL owns its one reference
  SSL_set_accept_state(ssl_);
}

// A connection that ended without a TLS error keeps its session resumable: OpenSSL drops from its cache
// the session of an SSL freed without a completed shutdown (and no close_notify is sent, see
// shutdown_send), so the shutdown is marked done.
tls_stream::~tls_stream() {
  if (handshake_done_ && failure_ == tls_failure::none) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(ssl_);
}

const char* tls_stream::tls_version() const noexcept { return handshake_done_ ? SSL_get_version(ssl_) : nullptr; }
std::string_view tls_stream::alpn() const noexcept {
  const unsigned char* p = nullptr;
  unsigned n = 0;
  if (handshake_done_) SSL_get0_alpn_selected(ssl_, &p, &n);
  return p == nullptr ? std::string_view{} : std::string_view(reinterpret_cast<const char*>(p), n);
}
bool tls_stream::tls_resumed() const noexcept { return handshake_done_ && SSL_session_reused(ssl_) == 1; }

// ---- OpenSSL's side of the BIO --------------------------------------------------------------------

int tls_stream::bio_read(char* out, std::size_t len, std::size_t* got) {
  BIO* b = SSL_get_rbio(ssl_);
  BIO_clear_retry_flags(b);
  if (in_off_ == in_len_) {
    BIO_set_retry_read(b);  // nothing received: SSL_ERROR_WANT_READ, and the stream pulls more
    return 0;
  }
  const std::size_t k = std::min(len, in_len_ - in_off_);
  std::memcpy(out, in_.data() + in_off_, k);
  in_off_ += k;
  *got = k;
  return 1;
}

int tls_stream::bio_write(const char* in, std::size_t len, std::size_t* put) {
  std::size_t left = len;
  while (left > 0) {
    if (out_.empty() || out_.back().len == out_.back().b.capacity()) {
      try {
        // One buffer per record where it can: a full record (16 KiB and its overhead) takes 32 KiB.
        out_.push_back({w_.pool().get(std::clamp<std::size_t>(left, 4096, 2 * max_record)), 0});
      } catch (const std::bad_alloc&) {
        return 0;  // the SSL call fails: the connection closes
      }
    }
    piece& p = out_.back();
    const std::size_t k = std::min(left, p.b.capacity() - p.len);
    std::memcpy(p.b.data() + p.len, in, k);
    p.len += k;
    in += k;
    left -= k;
  }
  *put = len;
  return 1;
}

// ---- input --------------------------------------------------------------------------------------

recv_status tls_stream::pull(bool wait) {
  bufpool::buffer c = std::move(in_);  // the spent buffer, to read into again
  in_off_ = in_len_ = 0;
  std::size_t cn = 0;
  const recv_status st = inner_->receive(c, cn, 0, wait);
  if (st == recv_status::data) {
    in_ = std::move(c);
    in_len_ = cn;
    if (!handshake_done_ && first_byte_at_ == std::chrono::steady_clock::time_point{})
      first_byte_at_ = std::chrono::steady_clock::now();  // the handshake's time starts here
  }
  return st;
}

recv_status tls_stream::fail(tls_failure why) {
  if (failure_ == tls_failure::none) {
    failure_ = why;
    w_.stats().tls_failures[static_cast<std::size_t>(why)].add();
  }
  in_.reset();
  in_off_ = in_len_ = 0;
  ERR_clear_error();
  return recv_status::error;
}

// After an SSL call that did not succeed: true with `out` set when the caller returns it; false when
// more ciphertext came in and the call is to be made again.
bool tls_stream::handle_error(int ret, recv_status& out) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      out = pull(pull_wait_);
      if (out == recv_status::data) return false;
      if (out == recv_status::pending) size_.drained();
      return true;
    case SSL_ERROR_ZERO_RETURN:  // close_notify: the peer sends nothing more
      out = recv_status::end;
      return true;
    default: {
      tls_failure why = handshake_done_ ? tls_failure::protocol : tls_failure::handshake;
      const unsigned long e = ERR_peek_error();
      if (ERR_GET_LIB(e) == ERR_LIB_SSL) {
        const int reason = ERR_GET_REASON(e);
        if (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST) {
          fail(tls_failure::plaintext_http);
          out = refuse_plaintext();
          return true;
        }
        if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE || reason == SSL_R_CERTIFICATE_VERIFY_FAILED)
          why = tls_failure::peer_certificate;
      }
      out = fail(why);
      return true;
    }
  }
}

// A plain-HTTP request on the TLS port gets one 400 in clear text, as nginx answers it, and the
// connection closes once it is sent: at once when the inner stream took it, else when its send
// completes (io_uring sends at the end of the turn), through on_sent and the owner's next receive.
recv_status tls_stream::refuse_plaintext() {
  static const std::string text = [] {
    const std::string body = "This port speaks HTTPS: the request came in plain HTTP.\n";
    return "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
           "\r\nConnection: close\r\n\r\n" + body;
  }();
  static const iovec v{const_cast<char*>(text.data()), text.size()};  // static: the kernel may read it later
  if (in_flight_ || closed_) return recv_status::error;
  in_flight_ = refusing_ = true;
  if (inner_->send({&v, 1}, v.iov_len) == send_status::pending) return recv_status::pending;
  in_flight_ = refusing_ = false;
  return recv_status::error;
}

recv_status tls_stream::receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) {
  if (failure_ != tls_failure::none || closed_) {
    b.reset();
    return recv_status::error;
  }
  pull_wait_ = wait;
  recv_status out;
  while (!handshake_done_) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (flush() == send_status::failed) {
      b.reset();
      return fail(tls_failure::io);
    }
    if (r == 1) {
      handshake_done_ = true;
      auto& st = w_.stats();
      st.tls_handshakes.add();
      if (SSL_session_reused(ssl_) == 1) st.tls_resumed.add();
      st.tls_versions[SSL_version(ssl_) == TLS1_3_VERSION ? 1 : 0].add();
      st.tls_ciphers[tls_cipher_index(SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_)))].add();
      st.tls_handshake_time.observe(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now() - first_byte_at_).count());
      break;
    }
    if (handle_error(r, out)) {
      b.reset();
      return out;
    }
  }
  for (;;) {
    switch (take_read_buffer(w_, b, size_.next(expected))) {
      case take_status::ok: break;
      case take_status::over_budget: return recv_status::over_budget;
      case take_status::no_memory: return recv_status::out_of_memory;
    }
    std::size_t got = 0;
    ERR_clear_error();
    const int r = SSL_read_ex(ssl_, b.data(), b.capacity(), &got);
    if (flush() == send_status::failed) {  // what a read can make OpenSSL write (a key update's answer)
      b.reset();
      return fail(tls_failure::io);
    }
    if (r == 1) {
      n = got;
      size_.got(n, b.capacity());
      return recv_status::data;
    }
    if (handle_error(r, out)) {
      b.reset();
      return out;
    }
  }
}

void tls_stream::wait_input() { inner_->wait_input(); }

// ---- output -------------------------------------------------------------------------------------

send_status tls_stream::flush() {
  if (in_flight_ || out_.empty()) return send_status::done;
  sending_.swap(out_);
  sending_iov_.clear();
  std::size_t total = 0;
  for (const piece& p : sending_) {
    sending_iov_.push_back({p.b.data(), p.len});
    total += p.len;
  }
  in_flight_ = true;
  const send_status s = inner_->send(sending_iov_, total);
  if (s != send_status::pending) {
    in_flight_ = false;
    sending_.clear();  // back to the pool
    if (s == send_status::failed && failure_ == tls_failure::none) failure_ = tls_failure::io;
  }
  return s;
}

// The batch's plaintext goes to OpenSSL in pieces of up to one record: small answers are gathered into
// one staging buffer (one record for a batch of pipelined answers), a piece of a record's size or more
// is written from where it is.
send_status tls_stream::send(std::span<const iovec> iov, std::size_t total) {
  if (failure_ != tls_failure::none || closed_ || !handshake_done_) return send_status::failed;
  bufpool::buffer stage;
  std::size_t fill = 0;
  auto write = [&](const void* p, std::size_t len) {
    std::size_t put = 0;
    ERR_clear_error();
    return SSL_write_ex(ssl_, p, len, &put) == 1;
  };
  try {
    for (const iovec& v : iov) {
      const auto* p = static_cast<const std::byte*>(v.iov_base);
      std::size_t len = v.iov_len;
      if (fill + len > max_record && fill > 0) {
        if (!write(stage.data(), fill)) return fail(tls_failure::protocol), send_status::failed;
        fill = 0;
      }
      if (len >= max_record) {
        if (!write(p, len)) return fail(tls_failure::protocol), send_status::failed;
        continue;
      }
      if (!stage) stage = w_.pool().get(max_record);
      std::memcpy(stage.data() + fill, p, len);
      fill += len;
    }
  } catch (const std::bad_alloc&) {
    return send_status::failed;
  }
  if (fill > 0 && !write(stage.data(), fill)) return fail(tls_failure::protocol), send_status::failed;
  stage.reset();
  owner_send_ = true;
  owner_bytes_ = total;
  if (in_flight_) return send_status::pending;  // goes out after the send in flight (on_sent)
  const send_status s = flush();
  if (s != send_status::pending) owner_send_ = false;
  return s;
}

void tls_stream::on_sent(std::error_code ec, std::size_t) {
  in_flight_ = false;
  if (refusing_) {  // the clear-text 400 is out: the owner's next receive ends the connection
    refusing_ = false;
    if (!closed_) owner_.on_readable();
    return;
  }
  sending_.clear();
  if (!ec && !out_.empty() && !closed_) {
    const send_status s = flush();
    if (s == send_status::pending) return;  // on_sent again
    if (s == send_status::failed) ec = std::make_error_code(std::errc::broken_pipe);
  }
  if (ec && failure_ == tls_failure::none) failure_ = tls_failure::io;
  if (owner_send_) {
    owner_send_ = false;
    owner_.on_sent(ec, ec ? 0 : owner_bytes_);
  }
}

// ---- the rest -----------------------------------------------------------------------------------

discard_status tls_stream::discard(std::size_t max) {
  in_.reset();
  in_off_ = in_len_ = 0;
  return inner_->discard(max);
}

// No close_notify: the inner stream's send may still be queued (io_uring sends from the completion of
// the turn), and HTTP/1.1 answers carry their own length. The peer sees the TCP half-close.
bool tls_stream::shutdown_send() noexcept { return inner_->shutdown_send(); }

void tls_stream::close() {
  closed_ = true;
  in_.reset();
  in_off_ = in_len_ = 0;
  out_.clear();  // sending_ stays until its completion: the kernel may still read it
  inner_->close();
}

}  // namespace bufpool::server::io
