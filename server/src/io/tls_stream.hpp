// io::tls_stream: TLS over another stream (asio_stream or uring_stream), so that both backends serve
// HTTPS with one TLS implementation (docs/design.md 2.7). To its owner (the connection) it is a stream
// of plaintext; to the inner stream it is the owner, fed and sending ciphertext. OpenSSL reads and
// writes through a BIO of ours over pooled buffers: the ciphertext the inner stream received (kept only
// until OpenSSL has taken it) and the records OpenSSL writes (appended to pooled buffers, sent as one
// gather list, back to the pool when the send completes). With SSL_MODE_RELEASE_BUFFERS a connection
// waiting for its next request holds no buffer of OpenSSL's or of the pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/uio.h>

#include "io/stream.hpp"

struct ssl_st;
struct bio_st;
struct bio_method_st;

namespace bufpool::server::tls {
class context;
}

namespace bufpool::server::io {

/// Why a TLS connection ended in error (counted per reason in the statistics).
enum class tls_failure : std::uint8_t { none, handshake, protocol, plaintext_http, peer_certificate, io, handshake_timeout };

class tls_stream final : public stream, private stream_owner {
public:
  tls_stream(worker& w, const std::shared_ptr<const tls::context>& ctx, read_size sizes, stream_owner& owner);
  ~tls_stream() override;
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;
  /// The stream the ciphertext moves on; constructed with inner_owner() as its owner.
  void attach(stream& inner) noexcept { inner_ = &inner; }
  stream_owner& inner_owner() noexcept { return *this; }

  recv_status receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) override;
  void wait_input() override;
  send_status send(std::span<const iovec> iov, std::size_t total) override;
  discard_status discard(std::size_t max) override;
  bool shutdown_send() noexcept override;
  void close() override;
  int fd() const noexcept override { return inner_->fd(); }
  bool waiting() const noexcept override { return inner_->waiting(); }

  bool handshake_done() const noexcept { return handshake_done_; }
  tls_failure failure() const noexcept { return failure_; }
  /// "TLSv1.3" etc. once the handshake is done (else null).
  const char* tls_version() const noexcept override;
  std::string_view alpn() const noexcept override;
  bool tls_resumed() const noexcept override;

  static bio_method_st* bio_method();

private:
  // stream_owner of the inner stream
  void on_readable() override { owner_.on_readable(); }
  void on_sent(std::error_code ec, std::size_t n) override;
  std::shared_ptr<void> lifeline() override { return owner_.lifeline(); }

  friend int tls_bio_read(bio_st*, char*, std::size_t, std::size_t*);
  friend int tls_bio_write(bio_st*, const char*, std::size_t, std::size_t*);
  int bio_read(char* out, std::size_t len, std::size_t* got);
  int bio_write(const char* in, std::size_t len, std::size_t* put);

  recv_status pull(bool wait);
  recv_status fail(tls_failure why);
  recv_status refuse_plaintext();
  bool handle_error(int ret, recv_status& out);
  send_status flush();  // sends what OpenSSL wrote, unless a send is in flight

  worker& w_;
  ssl_st* ssl_ = nullptr;
  stream_owner& owner_;
  stream* inner_ = nullptr;
  read_size size_;
  // Ciphertext received and not yet taken by OpenSSL.
  bufpool::buffer in_;
  std::size_t in_off_ = 0, in_len_ = 0;
  // Ciphertext OpenSSL wrote: being built (out_), and being sent (sending_).
  struct piece {
    bufpool::buffer b;
    std::size_t len;
  };
  std::vector<piece> out_, sending_;
  std::vector<iovec> sending_iov_;
  bool in_flight_ = false;          // an inner send is in flight
  bool refusing_ = false;           // it is the clear-text 400 to a plain-HTTP request
  bool owner_send_ = false;         // the owner's send is in out_ or sending_: on_sent when it is out
  std::size_t owner_bytes_ = 0;     // its plaintext bytes
  bool handshake_done_ = false;
  bool closed_ = false;
  bool pull_wait_ = true;  // receive's `wait`, for the pulls it makes
  std::chrono::steady_clock::time_point first_byte_at_{};  // the first ciphertext received
  tls_failure failure_ = tls_failure::none;
};

}  // namespace bufpool::server::io
