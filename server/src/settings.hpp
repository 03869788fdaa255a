// server_settings: every setting of bufpool-server, its schema (defaults, ranges, flags, environment
// names) and the typed struct the server runs from. One table: server_schema() in settings.cpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string>

#include <nlohmann/json.hpp>

#include <bufpool/config/config.hpp>
#include <bufpool/options.hpp>

#include "tls/context.hpp"

namespace bufpool::server {

enum class accept_mode { reuseport, single };
enum class io_backend { io_uring, epoll };
/// Where the pool's buffer memory comes from.
enum class pool_backing { chunks, heap };

/// HTTP limits and timeouts, each configurable; defaults no looser than nginx's.
/// HTTP/2 (http/h2_engine.hpp): its SETTINGS and the guards against its attacks.
struct http2_settings {
  bool enabled = true;  // h2c with prior knowledge on plain HTTP listeners (the connection preface)
  std::uint32_t max_concurrent_streams = 128;
  std::uint32_t initial_window_size = 65535;
  std::uint32_t max_frame_size = 16384;
  std::uint32_t max_resets_per_second = 100;  // rapid reset (CVE-2023-44487): past it, GOAWAY
  std::uint32_t max_continuations = 8;        // CONTINUATION frames per header block (CVE-2024-27316)
  std::uint32_t max_control_frames_per_second = 1000;  // PING and SETTINGS floods: past it, GOAWAY
};

struct http_settings {
  std::size_t read_buffer_bytes = 4096;
  std::size_t max_read_buffer_bytes = 65536;  // a read that fills its buffer doubles the next, up to this
  std::size_t max_header_bytes = 16384;   // request line + headers -> 431
  std::size_t max_headers = 100;          // -> 431
  std::size_t max_uri_bytes = 8192;       // -> 414
  std::size_t max_body_bytes = 1 << 20;   // -> 413
  std::chrono::microseconds header_timeout{10'000'000};  // -> 408
  std::chrono::microseconds handshake_timeout{10'000'000};  // TLS handshake: close
  std::chrono::microseconds body_timeout{30'000'000};    // -> 408
  std::chrono::microseconds idle_timeout{60'000'000};    // keep-alive idle: close
  std::chrono::microseconds write_timeout{30'000'000};   // a write that makes no progress: close
  std::chrono::microseconds linger_timeout{2'000'000};   // lingering close after an error
  std::size_t max_requests_per_connection = 1000;
  std::size_t max_pipeline = 32;           // responses gathered into one write
  http2_settings http2;
};

/// /echo as a load-test target (fortio's server flags: -max-echo-delay, -maxpayloadsizekb,
/// -echo-server-default-params); docs/design.md 2.8.
struct echo_target_settings {
  std::chrono::microseconds max_delay{1'500'000};  // a larger delay is capped to this (and counted)
  std::size_t max_size = 256 * 1024;                 // a larger size is capped to this (and counted)
  std::string default_params;  // fortio's grammar; in force for a request without parameters of its own
  bool any_path = false;       // every path no other route takes behaves as /echo
};

struct server_settings {
  std::size_t threads = 0;  // 0: one per core
  accept_mode accept = accept_mode::reuseport;
  io_backend backend = io_backend::io_uring;  // what was asked; /stats server.io_backend says what runs
  std::size_t uring_buffers = 256;               // a power of two
  std::string http_listen = "127.0.0.1:8080";
  std::string echo_listen = "127.0.0.1:8081";   // "" disables
  std::string admin_listen = "127.0.0.1:9901";  // "" disables
  std::string ready_file;
  std::string log_level = "info";
  std::string log_format = "text";  // or "json"
  std::string access_log;           // "" off, "-" stdout, else a file

  http_settings http;
  echo_target_settings echo_target;
  tls::settings http_tls;   // HTTPS on the HTTP listener when its certificate is set
  tls::settings echo_tls;   // TLS on the echo listener
  tls::settings admin_tls;  // HTTPS on the admin listener
  std::size_t echo_buffer_bytes = 16384;
  std::size_t max_connections_per_thread = 10000;       // HTTP
  std::size_t max_echo_connections_per_thread = 10000;  // echo
  std::chrono::microseconds echo_idle_timeout{60'000'000};
  std::size_t max_buffer_bytes = 0;  // budget of buffer bytes in use, all workers together (0: none)
  pool_backing backing = pool_backing::chunks;  // ignored when pool.memory is set (tests, embedders)
  std::chrono::microseconds shutdown_grace{10'000'000};
  pool_options pool;
  /// Where connection objects are allocated (tests inject failures here); null: a chunk_resource of
  /// the server's own.
  std::pmr::memory_resource* connection_memory = nullptr;
  std::chrono::microseconds rotation_interval{10'000'000};
  std::chrono::microseconds leak_report_age{60'000'000};  // /stats pool_leaks: sampled buffers out this long
  nlohmann::json effective;  // the configuration in force, echoed in /stats
};

/// The schema of every server setting.
const config::schema& server_schema();
/// The typed settings from an effective configuration (as load() returns it).
server_settings settings_from(const nlohmann::json& values);

}  // namespace bufpool::server
