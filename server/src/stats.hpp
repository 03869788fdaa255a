// Per-worker statistics of the server. Each counter has one writer (its worker thread), which adds
// with a relaxed load and store; /stats reads them relaxed from the admin thread. Kinds of requests,
// status classes and errors are closed enums so that counting never allocates.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <string_view>

namespace bufpool::server {

/// Routes, public and admin, counted by kind.
enum class route : std::uint8_t {
  plaintext, json, echo, debug, healthz, stats, metrics, dashboard, not_found, method_not_allowed, count
};
inline constexpr const char* route_names[] = {"plaintext", "json",    "echo",      "debug",     "healthz",
                                              "stats",     "metrics", "dashboard", "not_found", "method_not_allowed"};
static_assert(std::size(route_names) == static_cast<std::size_t>(route::count));

/// Why a request or connection failed.
enum class error_kind : std::uint8_t {
  bad_request,            // 400: malformed request, framing error, smuggling attempt
  header_timeout,         // 408: the headers did not arrive in time
  body_timeout,           // 408 (or a cut-short streamed answer): the body did not arrive in time
  body_too_large,         // 413
  uri_too_long,           // 414
  headers_too_large,      // 431
  not_implemented,        // 501: unknown transfer coding
  version_not_supported,  // 505: an HTTP major version other than 1
  response_aborted,       // a streamed echo answer cut short: its request failed after the answer began
  idle_timeout,           // keep-alive HTTP connection closed for idleness
  echo_idle_timeout,      // echo connection closed for idleness
  write_timeout,          // a write stalled
  connection_limit,       // connection closed at once: the thread's limit for its listener is reached
  accept_error,           // accept failed (EMFILE, ENFILE, ENOBUFS, ...): the listener backed off
  out_of_memory,          // a buffer could not be allocated: 503 or a closed connection
  io_error,               // reset, broken pipe and the like
  count
};
inline constexpr const char* error_names[] = {
    "bad_request",       "header_timeout",        "body_timeout",     "body_too_large",
    "uri_too_long",      "headers_too_large",     "not_implemented",  "version_not_supported",
    "response_aborted",  "idle_timeout",          "echo_idle_timeout", "write_timeout",
    "connection_limit",  "accept_error",          "out_of_memory",    "io_error"};
static_assert(std::size(error_names) == static_cast<std::size_t>(error_kind::count));

/// A counter with one writer.
class counter {
public:
  void add(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(std::uint64_t n = 1) noexcept { v_.store(v_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> v_{0};
};

/// Upper bounds (seconds, as Prometheus writes them, and nanoseconds) of the server-side latency
/// histogram's buckets; one more bucket counts everything above the last (+Inf).
inline constexpr std::array<const char*, 15> latency_bucket_labels = {
    "5e-05", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05",   "0.1",     "0.25",   "0.5",   "1",      "5"};
inline constexpr std::array<std::int64_t, 15> latency_bucket_ns = {
    50'000,     100'000,     250'000,     500'000,     1'000'000,   2'500'000,     5'000'000,    10'000'000,
    25'000'000, 50'000'000, 100'000'000, 250'000'000, 500'000'000, 1'000'000'000, 5'000'000'000};

/// A latency histogram with one writer: a count per bucket (not cumulative) and the sum. Recording is
/// a short scan and two single-writer adds: no allocation, no shared atomic. Merged at scrape.
struct latency_histogram {
  std::array<counter, latency_bucket_ns.size() + 1> buckets;
  counter sum_ns;
  void observe(std::int64_t ns) noexcept {
    std::size_t i = 0;
    while (i < latency_bucket_ns.size() && ns > latency_bucket_ns[i]) ++i;
    buckets[i].add();
    sum_ns.add(static_cast<std::uint64_t>(ns < 0 ? 0 : ns));
  }
};

struct worker_stats {
  /// Time from a request's first byte to its response being queued, by route.
  std::array<latency_histogram, static_cast<std::size_t>(route::count)> latency;
  counter http_active, http_accepted, echo_active, echo_accepted, admin_active, rejected;
  std::array<counter, static_cast<std::size_t>(route::count)> requests;
  std::array<counter, 5> status_class;  // 1xx .. 5xx
  std::array<counter, static_cast<std::size_t>(error_kind::count)> errors;
  counter bytes_in, bytes_out, echo_bytes;
  counter budget_waits;    // times a connection waited for the buffer budget
  counter budget_waiting;  // connections waiting for it now
  counter ring_buffers;    // io_uring: pooled buffers in the kernel's read-buffer ring now
  counter tls_handshakes, tls_resumed;  // completed TLS handshakes; of them, resumed sessions
  std::array<counter, 2> tls_versions;  // completed handshakes by version: TLS 1.2, TLS 1.3
  latency_histogram tls_handshake_time;  // from the first ClientHello byte to the handshake's end
  /// TLS connections ended in error, by io::tls_failure (handshake, protocol, plaintext_http,
  /// peer_certificate, io, handshake_timeout; index 0 unused).
  std::array<counter, 7> tls_failures;
  /// Completed handshakes by cipher suite, in tls_cipher_names' order (the last: any other).
  std::array<counter, 12> tls_ciphers;
  // /echo as a load-test target: delayed answers (in all; waiting now), asks capped by echo.max_delay
  // and echo.max_size, gzip answers (compressed; asked and accepted but sent uncompressed: too large).
  counter echo_delayed, echo_delayed_waiting, echo_capped_delay, echo_capped_size, echo_gzip, echo_gzip_skipped;
  // HTTP/2: connections that spoke it, streams the clients opened, RST_STREAM frames received and
  // sent, frames received by type (DATA .. CONTINUATION), GOAWAYs sent by error code (h2_error_names).
  counter h2_connections, h2_streams, h2_resets_received, h2_resets_sent;
  // HTTP/2 connections open now, and the heap bytes nghttp2 holds for them (its sessions, HPACK
  // tables, frame buffers, stream records: malloc_usable_size of each block it has).
  counter h2_active, h2_library_bytes;
  std::array<counter, 10> h2_frames;
  std::array<counter, 14> h2_goaways;

  void count_status(unsigned status) noexcept {
    if (status >= 100 && status < 600) status_class[status / 100 - 1].add();
  }
  void count_error(error_kind e) noexcept { errors[static_cast<std::size_t>(e)].add(); }
  std::uint64_t active() const noexcept { return http_active.get() + echo_active.get(); }
};

/// Names of the TLS failure reasons, in io::tls_failure's order (index 0 unused).
inline constexpr std::array<const char*, 7> tls_failure_names = {"",   "handshake", "protocol", "plaintext_http",
                                                                 "peer_certificate", "io", "handshake_timeout"};

/// The cipher suites counted by name (OpenSSL's names; TLS 1.3's three, then the TLS 1.2 suites of
/// OpenSSL's default list with forward secrecy and AEAD), and "other" for the rest.
inline constexpr std::array<const char*, 12> tls_cipher_names = {
    "TLS_AES_256_GCM_SHA384",        "TLS_AES_128_GCM_SHA256",      "TLS_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES256-GCM-SHA384",   "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES256-GCM-SHA384",     "DHE-RSA-AES128-GCM-SHA256",   "other"};
/// The index of a cipher's name in tls_cipher_names (the last when it is not there).
inline std::size_t tls_cipher_index(const char* name) noexcept {
  if (name != nullptr)
    for (std::size_t i = 0; i + 1 < tls_cipher_names.size(); ++i)
      if (std::string_view(name) == tls_cipher_names[i]) return i;
  return tls_cipher_names.size() - 1;
}

/// HTTP/2's frame types (RFC 9113 6) and error codes (RFC 9113 7), by their numbers.
inline constexpr std::array<const char*, 10> h2_frame_names = {
    "DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"};
inline constexpr std::array<const char*, 14> h2_error_names = {
    "NO_ERROR",       "PROTOCOL_ERROR", "INTERNAL_ERROR",     "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",  "FRAME_SIZE_ERROR", "REFUSED_STREAM",   "CANCEL",             "COMPRESSION_ERROR",
    "CONNECT_ERROR",  "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};

/// Every worker's counters added up (for /stats and /metrics, at read time).
struct stats_totals {
  std::array<std::uint64_t, static_cast<std::size_t>(route::count)> requests{};
  std::array<std::uint64_t, 5> status_class{};
  std::array<std::uint64_t, static_cast<std::size_t>(error_kind::count)> errors{};
  std::uint64_t http_active = 0, echo_active = 0, http_accepted = 0, echo_accepted = 0, rejected = 0;
  std::uint64_t bytes_in = 0, bytes_out = 0, echo_bytes = 0, budget_waits = 0, budget_waiting = 0, ring_buffers = 0;
  std::uint64_t tls_handshakes = 0, tls_resumed = 0;
  std::uint64_t h2_connections = 0, h2_streams = 0, h2_resets_received = 0, h2_resets_sent = 0;
  std::uint64_t h2_active = 0, h2_library_bytes = 0;
  std::array<std::uint64_t, 10> h2_frames{};
  std::array<std::uint64_t, 14> h2_goaways{};
  std::array<std::uint64_t, 2> tls_versions{};
  std::array<std::uint64_t, latency_bucket_ns.size() + 1> tls_handshake_buckets{};
  std::uint64_t tls_handshake_sum_ns = 0;
  std::array<std::uint64_t, 7> tls_failures{};
  std::array<std::uint64_t, 12> tls_ciphers{};
  std::uint64_t echo_delayed = 0, echo_delayed_waiting = 0, echo_capped_delay = 0, echo_capped_size = 0, echo_gzip = 0,
                echo_gzip_skipped = 0;
  std::array<std::array<std::uint64_t, latency_bucket_ns.size() + 1>, static_cast<std::size_t>(route::count)> latency{};
  std::array<std::uint64_t, static_cast<std::size_t>(route::count)> latency_sum_ns{};

  void add(const worker_stats& s) noexcept {
    for (std::size_t i = 0; i < requests.size(); ++i) requests[i] += s.requests[i].get();
    for (std::size_t i = 0; i < status_class.size(); ++i) status_class[i] += s.status_class[i].get();
    for (std::size_t i = 0; i < errors.size(); ++i) errors[i] += s.errors[i].get();
    http_active += s.http_active.get();
    echo_active += s.echo_active.get();
    http_accepted += s.http_accepted.get();
    echo_accepted += s.echo_accepted.get();
    rejected += s.rejected.get();
    bytes_in += s.bytes_in.get();
    bytes_out += s.bytes_out.get();
    echo_bytes += s.echo_bytes.get();
    budget_waits += s.budget_waits.get();
    budget_waiting += s.budget_waiting.get();
    ring_buffers += s.ring_buffers.get();
    tls_handshakes += s.tls_handshakes.get();
    h2_connections += s.h2_connections.get();
    h2_streams += s.h2_streams.get();
    h2_active += s.h2_active.get();
    h2_library_bytes += s.h2_library_bytes.get();
    h2_resets_received += s.h2_resets_received.get();
    h2_resets_sent += s.h2_resets_sent.get();
    for (std::size_t i = 0; i < h2_frames.size(); ++i) h2_frames[i] += s.h2_frames[i].get();
    for (std::size_t i = 0; i < h2_goaways.size(); ++i) h2_goaways[i] += s.h2_goaways[i].get();
    tls_resumed += s.tls_resumed.get();
    for (std::size_t i = 0; i < tls_versions.size(); ++i) tls_versions[i] += s.tls_versions[i].get();
    for (std::size_t b = 0; b < tls_handshake_buckets.size(); ++b) tls_handshake_buckets[b] += s.tls_handshake_time.buckets[b].get();
    tls_handshake_sum_ns += s.tls_handshake_time.sum_ns.get();
    for (std::size_t i = 0; i < tls_failures.size(); ++i) tls_failures[i] += s.tls_failures[i].get();
    for (std::size_t i = 0; i < tls_ciphers.size(); ++i) tls_ciphers[i] += s.tls_ciphers[i].get();
    echo_delayed += s.echo_delayed.get();
    echo_delayed_waiting += s.echo_delayed_waiting.get();
    echo_capped_delay += s.echo_capped_delay.get();
    echo_capped_size += s.echo_capped_size.get();
    echo_gzip += s.echo_gzip.get();
    echo_gzip_skipped += s.echo_gzip_skipped.get();
    for (std::size_t r = 0; r < latency.size(); ++r) {
      for (std::size_t b = 0; b < latency[r].size(); ++b) latency[r][b] += s.latency[r].buckets[b].get();
      latency_sum_ns[r] += s.latency[r].sum_ns.get();
    }
  }
};

}  // namespace bufpool::server
