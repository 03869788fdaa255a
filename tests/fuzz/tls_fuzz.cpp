// libFuzzer target: the TLS stream (server/src/io/tls_stream) fed arbitrary ciphertext through a fake
// transport, with no socket. The input's first byte chooses the piece sizes and the mode: the bytes
// from the first one (a ClientHello that is not one: the handshake's parser and the failure paths), or
// after a real handshake with an in-memory OpenSSL client (TLS 1.2 or 1.3): then the bytes are records
// of an established connection. Whatever the stream hands out is read; after each input the stream is
// gone and every pooled buffer must be back (else: trap).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../support/test_pki.hpp"
#include "io/tls_stream.hpp"
#include "tls/context.hpp"
#include "worker.hpp"

namespace {

using namespace bufpool::server;

// The transport under the TLS stream: hands out `in` in pieces, collects what is sent.
class fake_transport final : public io::stream {
public:
  fake_transport(bufpool::pool& pool, io::stream_owner& owner) : pool_(pool), owner_(owner) {}
  std::string in;      // bytes still to hand out
  std::string out;     // bytes the TLS stream sent
  unsigned step = 1;   // piece sizes: a pattern from the input's first byte
  bool eof = false;    // the peer closed once `in` is spent
  io::recv_status receive(bufpool::buffer& b, std::size_t& n, std::size_t, bool) override {
    if (in.empty()) {
      b.reset();
      return eof ? io::recv_status::end : io::recv_status::pending;
    }
    const std::size_t want = (step & 0x80) != 0 ? in.size() : 1 + (step & 0x3f);
    step = step * 33 + 7;
    n = std::min(want, in.size());
    if (!b || b.capacity() < n) b = pool_.get(std::max<std::size_t>(n, 256));
    std::memcpy(b.data(), in.data(), n);
    in.erase(0, n);
    return io::recv_status::data;
  }
  void wait_input() override {}
  io::send_status send(std::span<const iovec> iov, std::size_t) override {
    for (const iovec& v : iov) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
    return io::send_status::done;
  }
  io::discard_status discard(std::size_t) override { return io::discard_status::end; }
  bool shutdown_send() noexcept override { return true; }
  void close() override {}
  int fd() const noexcept override { return -1; }

private:
  bufpool::pool& pool_;
  io::stream_owner& owner_;
};

class null_owner final : public io::stream_owner {
public:
  void on_readable() override {}
  void on_sent(std::error_code, std::size_t) override {}
  std::shared_ptr<void> lifeline() override { return nullptr; }
};

struct fixture {
  bufpool::pool pool;
  worker w{0, pool, std::chrono::milliseconds(100)};
  std::shared_ptr<const tls::context> ctx = [] {
    tls::settings s;
    s.certificate = bufpool::test::test_pki().server_cert;
    s.key = bufpool::test::test_pki().server_key;
    return std::make_shared<const tls::context>(s, "http.tls.", std::make_shared<tls::ticket_keys>(s.ticket_key_lifetime));
  }();
  SSL_CTX* client_ctx = [] {
    SSL_CTX* c = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    return c;
  }();
};

// Reads what the stream has (at most `rounds` times); true while it is usable.
bool drain(io::tls_stream& tls, int rounds = 64) {
  for (int i = 0; i < rounds; ++i) {
    bufpool::buffer b;
    std::size_t n = 0;
    const io::recv_status st = tls.receive(b, n, 0, true);
    if (st == io::recv_status::pending) return true;
    if (st != io::recv_status::data) return false;
  }
  return true;
}

// A real handshake between an in-memory client and the stream; false if it did not complete.
bool handshake(fixture& f, io::tls_stream& tls, fake_transport& t, SSL* client, BIO* to_client, BIO* from_client) {
  for (int i = 0; i < 20; ++i) {
    const int r = SSL_do_handshake(client);
    char buf[16384];
    int n;
    while ((n = BIO_read(from_client, buf, sizeof buf)) > 0) t.in.append(buf, static_cast<std::size_t>(n));
    if (!drain(tls)) return false;
    if (!t.out.empty()) {
      BIO_write(to_client, t.out.data(), static_cast<int>(t.out.size()));
      t.out.clear();
    }
    if (r == 1 && tls.handshake_done()) return true;
  }
  (void)f;
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  {
    null_owner owner;
    io::tls_stream tls(f.w, f.ctx, {256, 16384}, owner);
    fake_transport t(f.pool, tls.inner_owner());
    tls.attach(t);
    t.step = mode;
    SSL* client = nullptr;
    if ((mode & 0x40) != 0) {  // records after a real handshake
      client = SSL_new(f.client_ctx);
      BIO* to_client = BIO_new(BIO_s_mem());
      BIO* from_client = BIO_new(BIO_s_mem());
      SSL_set_bio(client, to_client, from_client);
      SSL_set_max_proto_version(client, (mode & 0x20) != 0 ? TLS1_2_VERSION : TLS1_3_VERSION);
      SSL_set_connect_state(client);
      t.step = 0x80;  // the handshake's flights whole
      if (!handshake(f, tls, t, client, to_client, from_client)) __builtin_trap();  // it must work
      t.step = mode;
      // A real request first, then the fuzzer's records.
      const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
      SSL_write(client, req, sizeof req - 1);
      char buf[4096];
      int n;
      while ((n = BIO_read(from_client, buf, sizeof buf)) > 0) t.in.append(buf, static_cast<std::size_t>(n));
    }
    t.in.append(reinterpret_cast<const char*>(data + 1), size - 1);
    t.eof = (mode & 0x10) != 0;  // the peer closes after the input (not during the handshake)
    if (drain(tls, 1 << 20) && tls.handshake_done()) {
      const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
      const iovec v{const_cast<char*>(answer.data()), answer.size()};
      (void)tls.send(std::span<const iovec>(&v, 1), answer.size());
    }
    if (client != nullptr) SSL_free(client);
    ERR_clear_error();
  }
  const auto snap = f.pool.snapshot();
  if (snap.totals.outstanding != 0 || snap.oversize.outstanding != 0) __builtin_trap();  // a buffer leaked
  return 0;
}
