// tls::context: one listener's OpenSSL server context (certificate, key, versions, ALPN, client
// certificates, session resumption), made from its settings; tls::holder: the context new connections
// take, replaced whole by a reload (SIGHUP, or a changed file) while connections keep the one they
// started with (an SSL holds a reference to its SSL_CTX). See docs/design.md 2.7.
#pragma once

#include <chrono>
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
  bool enabled() const noexcept { return !certificate.empty(); }
};

class context {
public:
  /// Loads the files; throws config::error naming `prefix` + the key, the file and OpenSSL's reason.
  context(const settings& s, const std::string& prefix);
  ~context();
  context(const context&) = delete;
  context& operator=(const context&) = delete;
  /// A new server-side SSL for one connection (null if OpenSSL cannot make one: out of memory).
  ssl_st* new_ssl() const noexcept;
  ssl_ctx_st* native() const noexcept { return ctx_; }

private:
  ssl_ctx_st* ctx_ = nullptr;
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

private:
  std::vector<std::filesystem::file_time_type> stamps() const;
  settings settings_;
  std::string prefix_;
  mutable std::mutex mu_;
  std::shared_ptr<const context> current_;
  std::vector<std::filesystem::file_time_type> stamps_;
};

/// OpenSSL's error queue as one line (and the queue emptied).
std::string last_error();

}  // namespace bufpool::server::tls
