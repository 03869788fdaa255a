// server: the workers, the listeners (HTTP, echo, admin), the pool and its rotation, statistics, and
// the graceful stop. Usable in-process (tests) and from main.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <asio/steady_timer.hpp>
#include <spdlog/async.h>

#include <bufpool/chunk_resource.hpp>
#include <bufpool/json.hpp>
#include <bufpool/pool.hpp>
#include <bufpool/rotation_timer.hpp>

#include "settings.hpp"
#include "tls/context.hpp"
#include "stats.hpp"

namespace bufpool::server {

/// Open file descriptors of this process (/proc/self/fd).
std::size_t open_fd_count();

class worker;
class listener;
struct http_context;

/// The ports actually bound (0 where a listener is off).
struct bound_ports {
  std::uint16_t http = 0;
  std::uint16_t echo = 0;
  std::uint16_t admin = 0;
};

class server {
public:
  /// Binds every listener (throws std::system_error with the address on failure) and starts the workers.
  explicit server(server_settings settings);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  bound_ports ports() const noexcept { return ports_; }
  /// Graceful stop: stop accepting, close idle connections, let requests in flight finish within
  /// the grace period, then close the rest and join the workers. Idempotent.
  void stop();
  /// The /stats document: {"server": {...}, "pool": snapshot}.
  nlohmann::json stats() const;
  /// The statistics in the Prometheus text exposition format (GET /metrics on the admin listener).
  std::string metrics() const;
  bool draining() const noexcept { return draining_.load(); }
  /// The HTTP data path in force: "io_uring" or "epoll" (io.backend, after the fallback).
  const char* io_backend_name() const noexcept { return uring_ ? "io_uring" : "epoll"; }
  bufpool::pool& pool() noexcept { return *pool_; }
  /// Loads the TLS certificate and key again (SIGHUP; also when a file changed, checked once per
  /// rotation interval): new connections use them, established ones go on. A file that does not load
  /// keeps the old ones, logged. False if nothing was reloaded.
  bool reload_tls();
  /// Some listener serves TLS.
  bool tls_enabled() const { return !tls_holders().empty(); }
  const server_settings& settings() const noexcept { return settings_; }

private:
  std::size_t active_connections() const;
  void trim_heap();
  nlohmann::json memory_json() const;
  /// At info, once per rotation interval: how many requests and connections failed since the last
  /// summary, by kind (debug logs each one). A flood costs one line per interval.
  void log_error_summary();
  std::array<std::uint64_t, static_cast<std::size_t>(bufpool::server::error_kind::count)> errors_logged_{};
  std::chrono::steady_clock::time_point errors_logged_at_ = std::chrono::steady_clock::now();

  server_settings settings_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
  std::atomic<bool> draining_{false};
  bool stopped_ = false;
  bool uring_ = false;  // the workers run the io_uring backend
  std::unique_ptr<bufpool::chunk_resource> chunks_;  // the pool's memory (pool.backing=chunks); outlives pool_
  std::unique_ptr<bufpool::pool> pool_;
  std::unique_ptr<bufpool::chunk_resource> connection_memory_;  // connection objects; outlives the workers
  std::vector<std::unique_ptr<worker>> workers_;
  std::shared_ptr<spdlog::details::thread_pool> access_pool_;  // the access log's own queue and thread
  std::shared_ptr<spdlog::logger> access_log_;
  // TLS per listener, each null when off: the HTTP, echo and admin listeners.
  std::unique_ptr<tls::holder> tls_, echo_tls_, admin_tls_;
  std::vector<tls::holder*> tls_holders() const;
  std::atomic<std::uint64_t> tls_reloads_{0}, tls_reload_failures_{0};
  std::unique_ptr<http_context> public_ctx_;
  std::unique_ptr<http_context> admin_ctx_;
  std::vector<std::unique_ptr<listener>> listeners_;
  std::unique_ptr<bufpool::rotation_timer> rotation_;
  std::unique_ptr<asio::steady_timer> trim_timer_;  // on worker 0: gives the heap's free pages back
  bool trimming_ = true;                             // worker 0's thread only
  bound_ports ports_;
};

}  // namespace bufpool::server
