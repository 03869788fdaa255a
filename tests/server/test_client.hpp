// Test helpers for the server: an in-process server on 127.0.0.1 port 0 with test settings, and a
// blocking loopback client on raw POSIX sockets (no heap allocation on its I/O path) that reads
// responses with llhttp in response mode. Every wait is bounded.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <nlohmann/json.hpp>

#include "server.hpp"
#include "settings.hpp"
#include "tls/context.hpp"

namespace bufpool::test {

/// Settings from the schema's defaults, all listeners on 127.0.0.1:0, then `overrides` (JSON pointer
/// style paths, e.g. {"http.header_timeout", "200ms"}) applied through the same conversion as flags.
inline server::server_settings test_settings(const std::map<std::string, std::string>& overrides = {}) {
  std::vector<std::string> args = {"test", "--http-listen", "127.0.0.1:0", "--echo-listen", "127.0.0.1:0",
                                   "--admin-listen", "127.0.0.1:0", "--threads", "2", "--log-level", "warn"};
  // The whole suite runs once per I/O backend: ctest sets BUFPOOL_TEST_IO_BACKEND (epoll, io_uring).
  if (const char* backend = std::getenv("BUFPOOL_TEST_IO_BACKEND"); backend != nullptr && *backend != '\0')
    args.push_back(std::string("--io.backend=") + backend);
  for (const auto& [k, v] : overrides) args.push_back("--" + k + "=" + v);
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto loaded = config::load(server::server_schema(), static_cast<int>(argv.size()), argv.data(), {});
  return server::settings_from(loaded.values);
}

/// Pooled buffers the server's connections hold (the pool's outstanding ones, less those lent to the
/// kernel's read-buffer rings on io_uring, which no connection holds), as /stats says.
inline std::int64_t connection_buffers(const nlohmann::json& stats) {
  return stats["server"]["buffers"]["held_by_connections"].get<std::int64_t>();
}

/// Polls `pred` until it holds or `timeout` passes (a bound, not a timing assertion): for server state
/// that settles just after the client has its response (a write's completion handler runs later).
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

/// Waits (at most 20 s) until the server has read nothing for 300 ms: a client that sends without
/// reading has filled the socket buffers both ways and its answer is stuck. A fixed sleep was too
/// short under ThreadSanitizer on a loaded machine.
inline void wait_until_reading_stops(server::server& s) {
  auto bytes_in = [&] { return s.stats()["server"]["bytes_in"].get<std::uint64_t>(); };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  std::uint64_t last = bytes_in();
  auto still_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::uint64_t now = bytes_in();
    if (now != last) {
      last = now;
      still_since = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - still_since >= std::chrono::milliseconds(300)) {
      return;
    }
  }
}

/// One parsed HTTP response.
struct response {
  unsigned status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  bool keep_alive = true;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// How a client speaks TLS (client::start_tls).
struct tls_options {
  std::string ca;            // verify the server against this CA file ("": no verification)
  std::string cert, key;     // a client certificate
  std::string sni = "localhost";
  std::string alpn = "http/1.1";  // "" offers none
  int min_version = 0, max_version = 0;  // TLS1_2_VERSION etc. (0: OpenSSL's)
  SSL_SESSION* session = nullptr;        // resume this session
};

/// A blocking loopback TCP client with timeouts; over TLS after start_tls().
class client {
public:
  explicit client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect failed");
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    llhttp_settings_init(&settings_);
    settings_.on_status_complete = nullptr;
    settings_.on_header_field = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<client*>(p->data);
      if (c->value_done_) {
        c->field_.clear();
        c->value_done_ = false;
      }
      c->field_.append(at, n);
      return 0;
    };
    settings_.on_header_value = [](llhttp_t* p, const char* at, size_t n) {
      auto* c = static_cast<client*>(p->data);
      std::string name = c->field_;
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      c->current_.headers[name].append(at, n);
      c->value_done_ = true;
      return 0;
    };
    settings_.on_body = [](llhttp_t* p, const char* at, size_t n) {
      static_cast<client*>(p->data)->current_.body.append(at, n);
      return 0;
    };
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = static_cast<client*>(p->data);
      c->current_.status = llhttp_get_status_code(p);
      // A response to HEAD has no body whatever Content-Length says.
      return c->head_pending_ > 0 && c->current_.status >= 200 ? 1 : 0;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      auto* c = static_cast<client*>(p->data);
      c->current_.keep_alive = llhttp_should_keep_alive(p) != 0;
      if (c->current_.status >= 200 && c->head_pending_ > 0) --c->head_pending_;
      c->done_.push_back(std::move(c->current_));
      c->current_ = {};
      c->value_done_ = true;
      c->field_.clear();
      return 0;
    };
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
  }
  client(std::uint16_t port, const tls_options& t) : client(port) { start_tls(t); }
  ~client() { close(); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  void close() {
    if (ssl_ != nullptr) {
      SSL_shutdown(ssl_);  // close_notify: else OpenSSL marks the session not resumable
      SSL_free(ssl_);
    }
    if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
    ssl_ = nullptr;
    ssl_ctx_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /// The TLS handshake (blocking, at most 10 s); throws std::runtime_error("tls: ...") if it fails.
  void start_tls(const tls_options& t) {
    std::signal(SIGPIPE, SIG_IGN);  // SSL_write to a peer that has closed: EPIPE, not the signal
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    ERR_clear_error();
    ssl_ctx_ = SSL_CTX_new(TLS_client_method());
    if (t.min_version != 0) SSL_CTX_set_min_proto_version(ssl_ctx_, t.min_version);
    if (t.max_version != 0) SSL_CTX_set_max_proto_version(ssl_ctx_, t.max_version);
    if (!t.ca.empty()) {
      SSL_CTX_load_verify_locations(ssl_ctx_, t.ca.c_str(), nullptr);
      SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
    }
    if (!t.cert.empty() && (SSL_CTX_use_certificate_file(ssl_ctx_, t.cert.c_str(), SSL_FILETYPE_PEM) != 1 ||
                            SSL_CTX_use_PrivateKey_file(ssl_ctx_, t.key.c_str(), SSL_FILETYPE_PEM) != 1))
      throw std::runtime_error("tls: client certificate: " + server::tls::last_error());
    // No client cache: freeing a context flushes its cache, which marks its sessions not resumable.
    SSL_CTX_set_session_cache_mode(ssl_ctx_, SSL_SESS_CACHE_OFF);
    ssl_ = SSL_new(ssl_ctx_);
    SSL_set_fd(ssl_, fd_);
    if (!t.sni.empty()) {
      SSL_set_tlsext_host_name(ssl_, t.sni.c_str());
      if (!t.ca.empty()) SSL_set1_host(ssl_, t.sni.c_str());
    }
    if (!t.alpn.empty()) {
      std::string wire(1, static_cast<char>(t.alpn.size()));
      wire += t.alpn;
      SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
    }
    if (t.session != nullptr) SSL_set_session(ssl_, t.session);
    if (SSL_connect(ssl_) != 1) throw std::runtime_error("tls: handshake failed: " + server::tls::last_error());
  }
  SSL* ssl() const { return ssl_; }
  /// The negotiated ALPN protocol ("" if none).
  std::string alpn() const {
    const unsigned char* p = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(ssl_, &p, &n);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  int fd() const { return fd_; }

  /// Sends everything (blocking); false if the peer is gone.
  bool send(std::string_view data) {
    if (ssl_ != nullptr) {
      std::size_t put = 0;
      return data.empty() || SSL_write_ex(ssl_, data.data(), data.size(), &put) == 1;
    }
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  /// Responses received and parsed but not read yet (a smuggled request's answer would be one).
  std::size_t unread_responses() const { return done_.size(); }
  /// Marks that the next response answers a HEAD request.
  void expect_head() { ++head_pending_; }

  /// Reads until `count` responses are complete; throws on timeout or EOF before that.
  std::vector<response> read_responses(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (done_.size() < count) {
      const int r = recv_some(deadline);
      if (r == 0) throw std::runtime_error("connection closed after " + std::to_string(done_.size()) + " responses");
      if (r < 0) throw std::runtime_error("timed out after " + std::to_string(done_.size()) + " responses");
    }
    std::vector<response> out(std::make_move_iterator(done_.begin()), std::make_move_iterator(done_.begin() + count));
    done_.erase(done_.begin(), done_.begin() + count);
    return out;
  }
  response read_response(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    return read_responses(1, timeout).front();
  }
  /// True if the server closes the connection (EOF or reset) within `timeout`, after any responses.
  bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const int r = recv_some(deadline);
      if (r == 0) return true;
      if (r < 0) return false;
    }
  }
  /// Raw bytes received so far and not parsed as responses (for 100 Continue checks).
  std::string raw_until(std::string_view marker, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string got;
    char buf[4096];
    while (got.find(marker) == std::string::npos) {
      if (!wait_readable(deadline)) return got;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return got;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }

private:
  bool wait_readable(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(left.count())) > 0;
  }
  // 1: data parsed; 0: EOF or reset; -1: timeout.
  int recv_some(std::chrono::steady_clock::time_point deadline) {
    if ((ssl_ == nullptr || SSL_pending(ssl_) == 0) && !wait_readable(deadline)) return -1;
    char buf[65536];
    ssize_t n = 0;
    if (ssl_ != nullptr) {
      std::size_t got = 0;
      if (SSL_read_ex(ssl_, buf, sizeof buf, &got) == 1) {
        n = static_cast<ssize_t>(got);
      } else {
        const int e = SSL_get_error(ssl_, 0);
        if (e == SSL_ERROR_WANT_READ) return 1;  // a record without application data (a ticket)
        ERR_clear_error();
        n = 0;  // close_notify, EOF or a reset
      }
    } else {
      n = ::recv(fd_, buf, sizeof buf, 0);
    }
    if (n <= 0) {
      llhttp_finish(&parser_);
      return 0;
    }
    const auto err = llhttp_execute(&parser_, buf, static_cast<std::size_t>(n));
    if (err != HPE_OK) throw std::runtime_error(std::string("bad response: ") + llhttp_errno_name(err));
    return 1;
  }

  int fd_ = -1;
  SSL_CTX* ssl_ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  response current_;
  std::vector<response> done_;
  std::string field_;
  bool value_done_ = true;
  int head_pending_ = 0;
};

/// A client that sends one large POST /echo from a thread of its own and reads nothing: once the socket
/// buffers both ways are full, its answer stays in the server's pooled buffers until it reads
/// (conn().read_response()). The destructor, also after a failed REQUIRE, unblocks the send and joins.
class stalled_upload {
public:
  // The head goes out from the constructor, so that a short header timeout cannot close the connection
  // before the sender thread runs (under a sanitizer, next to other tests, that took over a second).
  stalled_upload(std::uint16_t port, std::size_t body_bytes) : client_(port) {
    client_.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body_bytes) + "\r\n\r\n");
    sender_ = std::thread([this, body_bytes] { client_.send(std::string(body_bytes, 's')); });
  }
  ~stalled_upload() {
    if (!sender_.joinable()) return;
    ::shutdown(client_.fd(), SHUT_RDWR);
    sender_.join();
  }
  stalled_upload(const stalled_upload&) = delete;
  stalled_upload& operator=(const stalled_upload&) = delete;
  client& conn() { return client_; }
  /// Waits until the whole body has been sent (after the answer was read).
  void join() { sender_.join(); }

private:
  client client_;
  std::thread sender_;  // started by the constructor once the head is out
};

/// Sends `request` on a fresh connection; expects exactly one response with `status` and
/// Connection: close, then the connection closed by the server with no other response before the close
/// (nothing smuggled after the bad request is answered).
inline void expect_error_and_close(server::server& s, const std::string& request, unsigned status) {
  client c(s.ports().http);
  c.send(request);
  auto r = c.read_response();
  CHECK(r.status == status);
  CHECK(r.header("connection") == "close");
  CHECK(c.closed_by_peer());
  CHECK(c.unread_responses() == 0);
}

/// A GET request with Host.
inline std::string get(std::string_view path, std::string_view extra = {}) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n" + std::string(extra) + "\r\n";
}

/// A POST with Content-Length.
inline std::string post(std::string_view path, std::string_view body, std::string_view extra = {}) {
  return "POST " + std::string(path) + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n" + std::string(extra) + "\r\n" + std::string(body);
}

}  // namespace bufpool::test
