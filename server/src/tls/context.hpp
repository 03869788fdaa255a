// tls::context: one listener's OpenSSL server context (certificate, key, versions, ALPN, client
// certificates, session resumption), made from its settings; tls::holder: the context new connections
// take, replaced whole by a reload (SIGHUP, or a changed file) while connections keep the one they
// started with (an SSL holds a reference to its SSL_CTX). See docs/design.md 2.7.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct ssl_ctx_st;
struct ssl_st;

namespace bufpool::server::tls {

/// A listener's TLS settings (`<listener>.tls.*`). TLS is on when certificate is set.
struct settings {
  std::string certificate;       // PEM: the chain, leaf first
  std::string key;               // PEM private key
  std::string min_version = "1.2";  // "1.2" or "1.3"
  std::string ciphers;           // TLS 1.2 cipher list; empty: OpenSSL's default
  std::string client_auth = "none";  // none, optional, require
  std::string client_ca;         // PEM CA file (client_auth optional/require)
  std::chrono::microseconds ticket_key_lifetime{3'600'000'000};  // a new ticket key each lifetime
  bool alpn_h2 = false;          // ALPN offers h2 before http/1.1 (HTTP listeners with http2.enabled)
  bool enabled() const noexcept { return !certificate.empty(); }
};

/// The keys that encrypt session tickets: the current one encrypts, the one before it still decrypts
/// (and OpenSSL then issues a fresh ticket), anything older is a full handshake. A listener's keys
/// outlive certificate reloads (its contexts share them), so a new certificate does not end resumption.
/// Handshakes on every worker read them; rotate() runs on the server's maintenance timer.
class ticket_keys {
public:
  explicit ticket_keys(std::chrono::microseconds lifetime);
  /// A new current key once the current one is a lifetime old; true if it made one.
  bool rotate_if_due(std::chrono::steady_clock::time_point now);
  std::uint64_t rotations() const noexcept;
  std::chrono::microseconds lifetime() const noexcept { return lifetime_; }

  struct key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
  };
  /// The key to encrypt with.
  key current() const;
  /// The key named so: 1 the current, 2 the previous (renew the ticket), 0 none.
  int find(const unsigned char* name, key& out) const;

private:
  static key make();
  std::chrono::microseconds lifetime_;
  mutable std::mutex mu_;
  key current_{}, previous_{};
  bool has_previous_ = false;
  std::chrono::steady_clock::time_point made_;
  std::uint64_t rotations_ = 0;
};

class context {
public:
  /// Loads the files; throws config::error naming `prefix` + the key, the file and OpenSSL's reason.
  context(const settings& s, const std::string& prefix, std::shared_ptr<ticket_keys> keys);
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  /// A new server-side SSL for one connection (null if OpenSSL cannot make one: out of memory).
  ssl_st* new_ssl() const noexcept;
  ssl_ctx_st* native() const noexcept { return ctx_; }

private:
  ssl_ctx_st* ctx_ = nullptr;
  std::shared_ptr<ticket_keys> keys_;  // the ticket callback finds them through the SSL_CTX
};

/// The context new connections use; reload() replaces it if the new files load, else keeps it.
class holder {
public:
  holder(settings s, std::string prefix);
  std::shared_ptr<const context> current() const;
  /// Loads the files again; true if a new context is in use. `why` says what failed.
  bool reload(std::string& why);
  /// True if a file's modification time changed since the last load (checked each rotation interval).
  bool files_changed() const;
  const std::string& prefix() const noexcept { return prefix_; }
  ticket_keys& tickets() noexcept { return *keys_; }
  const ticket_keys& tickets() const noexcept { return *keys_; }

private:
  std::vector<std::filesystem::file_time_type> stamps() const;
  settings settings_;
  std::string prefix_;
  std::shared_ptr<ticket_keys> keys_;
  mutable std::mutex mu_;
  std::shared_ptr<const context> current_;
  std::vector<std::filesystem::file_time_type> stamps_;
};

/// OpenSSL's error queue as one line (and the queue emptied).
std::string last_error();

}  // namespace bufpool::server::tls
