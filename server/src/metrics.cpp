// GET /metrics: the server's and the pool's statistics in the Prometheus text exposition format
// (version 0.0.4). Names carry the bufpool_ prefix and their unit (_bytes, _seconds, _total); every
// family has HELP and TYPE; size class, tier, route, status class, error kind and listener are labels.
// Everything is read at scrape time from single-writer counters (the workers') and the pool's
// snapshot: nothing is allocated or shared on the request path for it.
#include <dirent.h>
#include <unistd.h>

#include <bufpool/version.hpp>

#include <cstdio>
#include <string>

#include "server.hpp"
#include "stats.hpp"
#include "worker.hpp"

namespace bufpool::server {

namespace {

class writer {
public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // labels: already formatted, e.g. `class="4096",tier="private"` (may be empty).
  void sample(const std::string& name, const std::string& labels, double value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char v[40];
    std::snprintf(v, sizeof v, " %.17g\n", value);
    out_ += v;
  }
  void sample(const std::string& name, const std::string& labels, std::uint64_t value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    out_ += ' ' + std::to_string(value) + '\n';
  }
  void one(const char* name, const char* type, const char* help, double value) {
    family(name, type, help);
    sample(name, "", value);
  }
  std::string take() { return std::move(out_); }

private:
  std::string out_;
};

std::string escape_label(const std::string& v) {
  std::string o;
  for (char c : v) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

}  // namespace

std::size_t open_fd_count() {
  std::size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    if (n > 0) --n;  // the directory's own descriptor
  }
  return n;
}

std::string server::metrics() const {
  writer w;
  const auto snap = pool_->snapshot();
  const std::uint64_t rotations = snap.totals.rotations;

  // ---- build and process ---------------------------------------------------------------------------
  w.family("bufpool_build_info", "gauge", "Version and compiler of this bufpool-server build (always 1).");
  w.sample("bufpool_build_info",
           "version=\"" BUFPOOL_VERSION_STRING "\",compiler=\"" + escape_label(BUFPOOL_COMPILER) + "\"", 1.0);
  const auto mem = memory_json();
  w.one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
        mem.contains("resident_bytes") ? mem["resident_bytes"].get<double>() : 0.0);
  w.one("process_open_fds", "gauge", "Number of open file descriptors.", static_cast<double>(open_fd_count()));
  if (long max_fds = ::sysconf(_SC_OPEN_MAX); max_fds > 0)
    w.one("process_max_fds", "gauge", "Maximum number of open file descriptors.", static_cast<double>(max_fds));
  w.one("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.",
        std::chrono::duration<double>(started_wall_.time_since_epoch()).count());
  w.one("bufpool_uptime_seconds", "gauge", "Seconds since the server started.",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
  w.one("bufpool_threads", "gauge", "Worker threads (one io_context each).", static_cast<double>(workers_.size()));
  w.one("bufpool_draining", "gauge", "1 while the server drains after SIGTERM or SIGINT.", draining_.load() ? 1.0 : 0.0);

  // ---- the pool ------------------------------------------------------------------------------------
  w.family("bufpool_pool_gets_total", "counter", "Buffers handed out, by size class and by the tier that served them.");
  for (const auto& c : snap.classes) {
    const std::string cls = "class=\"" + std::to_string(c.size) + "\"";
    w.sample("bufpool_pool_gets_total", cls + ",tier=\"private\"", c.hits_private);
    w.sample("bufpool_pool_gets_total", cls + ",tier=\"shared\"", c.hits_shared);
    w.sample("bufpool_pool_gets_total", cls + ",tier=\"stolen\"", c.hits_stolen);
    w.sample("bufpool_pool_gets_total", cls + ",tier=\"victim\"", c.hits_victim);
    w.sample("bufpool_pool_gets_total", cls + ",tier=\"miss\"", c.misses);
  }
  auto per_class = [&](const char* name, const char* type, const char* help, auto field) {
    w.family(name, type, help);
    for (const auto& c : snap.classes) w.sample(name, "class=\"" + std::to_string(c.size) + "\"", field(c));
  };
  per_class("bufpool_pool_puts_total", "counter", "Buffers returned, by size class.", [](const auto& c) { return c.puts; });
  per_class("bufpool_pool_dropped_total", "counter", "Returned buffers freed at once (the idle cap or a full ring), by size class.",
            [](const auto& c) { return c.dropped; });
  w.family("bufpool_pool_freed_total", "counter", "Pooled buffers freed, by size class and reason.");
  for (const auto& c : snap.classes) {
    const std::string cls = "class=\"" + std::to_string(c.size) + "\"";
    w.sample("bufpool_pool_freed_total", cls + ",reason=\"rotation\"", c.freed_by_rotation);
    w.sample("bufpool_pool_freed_total", cls + ",reason=\"thread_exit\"", c.freed_by_thread_exit);
  }
  per_class("bufpool_pool_idle_buffers", "gauge", "Buffers pooled (idle), by size class.", [](const auto& c) { return c.pooled; });
  per_class("bufpool_pool_idle_bytes", "gauge", "Bytes of the buffers pooled (idle, data only), by size class.",
            [](const auto& c) { return c.pooled_bytes; });
  per_class("bufpool_pool_outstanding_buffers", "gauge", "Buffers handed out and not returned, by size class.",
            [](const auto& c) { return static_cast<double>(c.outstanding); });
  w.one("bufpool_pool_max_idle_bytes", "gauge", "The pool's cap on idle bytes (data and headers).",
        static_cast<double>(snap.max_idle_bytes));
  w.one("bufpool_pool_rotations_total", "counter", "Rotations of the victim generation so far.", static_cast<double>(rotations));
  w.family("bufpool_pool_oversize_total", "counter", "Requests above the largest class, served unpooled, by operation.");
  w.sample("bufpool_pool_oversize_total", "op=\"get\"", snap.oversize.gets);
  w.sample("bufpool_pool_oversize_total", "op=\"put\"", snap.oversize.puts);
  w.one("bufpool_pool_thread_caches", "gauge", "Thread caches attached to the pool now.", static_cast<double>(snap.threads));

  // ---- the server ----------------------------------------------------------------------------------
  stats_totals t;
  for (const auto& wk : workers_) t.add(wk->stats());
  w.family("bufpool_connections", "gauge", "Open connections, by listener.");
  w.sample("bufpool_connections", "listener=\"http\"", t.http_active);
  w.sample("bufpool_connections", "listener=\"echo\"", t.echo_active);
  w.family("bufpool_connections_accepted_total", "counter", "Connections accepted, by listener.");
  w.sample("bufpool_connections_accepted_total", "listener=\"http\"", t.http_accepted);
  w.sample("bufpool_connections_accepted_total", "listener=\"echo\"", t.echo_accepted);
  w.one("bufpool_connections_rejected_total", "counter", "Connections closed at once: the thread's limit was reached.",
        static_cast<double>(t.rejected));
  w.family("bufpool_http_requests_total", "counter", "HTTP requests completed, by route.");
  for (std::size_t i = 0; i < t.requests.size(); ++i) w.sample("bufpool_http_requests_total", std::string("route=\"") + route_names[i] + "\"", t.requests[i]);
  w.family("bufpool_http_responses_total", "counter", "HTTP responses, by status class.");
  for (std::size_t i = 0; i < t.status_class.size(); ++i)
    w.sample("bufpool_http_responses_total", "code=\"" + std::to_string(i + 1) + "xx\"", t.status_class[i]);
  w.family("bufpool_errors_total", "counter", "Failed requests and connections, by kind.");
  for (std::size_t i = 0; i < t.errors.size(); ++i) w.sample("bufpool_errors_total", std::string("kind=\"") + error_names[i] + "\"", t.errors[i]);
  w.one("bufpool_received_bytes_total", "counter", "Bytes read from clients.", static_cast<double>(t.bytes_in));
  w.one("bufpool_sent_bytes_total", "counter", "Bytes written to clients.", static_cast<double>(t.bytes_out));
  w.one("bufpool_echo_bytes_total", "counter", "Bytes echoed on the echo listener.", static_cast<double>(t.echo_bytes));
  w.one("bufpool_buffer_budget_waits_total", "counter", "Times a connection waited for the buffer budget.",
        static_cast<double>(t.budget_waits));
  w.one("bufpool_buffer_budget_waiting", "gauge", "Connections waiting for the buffer budget now.",
        static_cast<double>(t.budget_waiting));
  w.one("bufpool_access_log_dropped_total", "counter", "Access-log lines dropped because the writer could not keep up.",
        access_pool_ ? static_cast<double>(access_pool_->overrun_counter()) : 0.0);
  w.one("bufpool_buffer_budget_max_bytes", "gauge", "The buffer budget (limits.max_buffer_bytes).",
        static_cast<double>(settings_.max_buffer_bytes));
  w.one("bufpool_io_ring_buffers", "gauge",
        "Pooled read buffers lent to the kernel's io_uring buffer rings now (0 on the epoll backend).",
        static_cast<double>(t.ring_buffers));
  w.family("bufpool_buffers_held", "gauge",
           "Pooled buffers handed out now, by holder: the kernel's io_uring read-buffer rings (lent, held by no "
           "connection) or the connections (reads and answers).");
  {
    const std::int64_t out = snap.totals.outstanding + snap.oversize.outstanding;
    const auto lent = static_cast<std::int64_t>(t.ring_buffers);
    w.sample("bufpool_buffers_held", "holder=\"kernel\"", static_cast<double>(lent));
    w.sample("bufpool_buffers_held", "holder=\"connections\"", static_cast<double>(out - lent));
  }
  w.one("bufpool_http2_connections_total", "counter", "Connections that spoke HTTP/2.",
        static_cast<double>(t.h2_connections));
  w.one("bufpool_http2_streams_total", "counter", "HTTP/2 streams the clients opened.", static_cast<double>(t.h2_streams));
  w.one("bufpool_http2_connections_active", "gauge", "HTTP/2 connections open now.", static_cast<double>(t.h2_active));
  w.one("bufpool_http2_library_bytes", "gauge",
        "Heap bytes nghttp2 holds for the open HTTP/2 connections (sessions, HPACK tables, frame buffers).",
        static_cast<double>(t.h2_library_bytes));
  w.family("bufpool_http2_resets_total", "counter", "HTTP/2 RST_STREAM frames, by direction.");
  w.sample("bufpool_http2_resets_total", "direction=\"received\"", static_cast<double>(t.h2_resets_received));
  w.sample("bufpool_http2_resets_total", "direction=\"sent\"", static_cast<double>(t.h2_resets_sent));
  w.family("bufpool_http2_frames_received_total", "counter", "HTTP/2 frames received, by type.");
  for (std::size_t i = 0; i < t.h2_frames.size(); ++i)
    w.sample("bufpool_http2_frames_received_total", std::string("type=\"") + h2_frame_names[i] + "\"",
             static_cast<double>(t.h2_frames[i]));
  w.family("bufpool_http2_goaways_sent_total", "counter",
           "HTTP/2 GOAWAY frames sent, by error code (ENHANCE_YOUR_CALM: a flood or rapid reset was cut off).");
  for (std::size_t i = 0; i < t.h2_goaways.size(); ++i)
    w.sample("bufpool_http2_goaways_sent_total", std::string("reason=\"") + h2_error_names[i] + "\"",
             static_cast<double>(t.h2_goaways[i]));
  w.one("bufpool_tls_handshakes_total", "counter", "TLS handshakes completed (full and resumed).",
        static_cast<double>(t.tls_handshakes));
  w.one("bufpool_tls_resumed_total", "counter", "TLS handshakes that resumed a session.",
        static_cast<double>(t.tls_resumed));
  w.family("bufpool_tls_version_handshakes_total", "counter", "TLS handshakes completed, by protocol version.");
  w.sample("bufpool_tls_version_handshakes_total", "version=\"TLSv1.2\"", t.tls_versions[0]);
  w.sample("bufpool_tls_version_handshakes_total", "version=\"TLSv1.3\"", t.tls_versions[1]);
  w.family("bufpool_tls_handshake_duration_seconds", "histogram",
           "Time from a TLS connection's first byte to the end of its handshake.");
  {
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < latency_bucket_ns.size(); ++b) {
      cumulative += t.tls_handshake_buckets[b];
      w.sample("bufpool_tls_handshake_duration_seconds_bucket", std::string("le=\"") + latency_bucket_labels[b] + "\"", cumulative);
    }
    cumulative += t.tls_handshake_buckets.back();
    w.sample("bufpool_tls_handshake_duration_seconds_bucket", "le=\"+Inf\"", cumulative);
    w.sample("bufpool_tls_handshake_duration_seconds_sum", "", static_cast<double>(t.tls_handshake_sum_ns) / 1e9);
    w.sample("bufpool_tls_handshake_duration_seconds_count", "", cumulative);
  }
  w.family("bufpool_tls_cipher_handshakes_total", "counter", "TLS handshakes completed, by cipher suite.");
  for (std::size_t i = 0; i < t.tls_ciphers.size(); ++i)
    if (t.tls_ciphers[i] != 0)
      w.sample("bufpool_tls_cipher_handshakes_total", std::string("cipher=\"") + tls_cipher_names[i] + "\"", t.tls_ciphers[i]);
  {
    std::uint64_t key_rotations = 0;
    for (const tls::holder* h : tls_holders()) key_rotations += h->tickets().rotations();
    w.one("bufpool_tls_ticket_key_rotations_total", "counter",
          "Session ticket keys replaced (each <listener>.tls.ticket_key_lifetime).", static_cast<double>(key_rotations));
  }
  w.family("bufpool_tls_failures_total", "counter", "TLS connections ended in error, by reason.");
  for (std::size_t i = 1; i < t.tls_failures.size(); ++i)
    w.sample("bufpool_tls_failures_total", std::string("reason=\"") + tls_failure_names[i] + "\"", t.tls_failures[i]);
  w.one("bufpool_tls_reloads_total", "counter", "Certificate reloads that took effect (SIGHUP or a changed file).",
        static_cast<double>(tls_reloads_.load()));
  w.one("bufpool_tls_reload_failures_total", "counter", "Certificate reloads refused (the old certificate stays).",
        static_cast<double>(tls_reload_failures_.load()));
  w.one("bufpool_echo_delayed_total", "counter", "/echo and /debug answers delayed by a delay parameter.",
        static_cast<double>(t.echo_delayed));
  w.one("bufpool_echo_delayed_waiting", "gauge", "Delayed answers waiting for their timer now.",
        static_cast<double>(t.echo_delayed_waiting));
  w.family("bufpool_echo_capped_total", "counter", "Asks over echo.max_delay or echo.max_size, capped.");
  w.sample("bufpool_echo_capped_total", "param=\"delay\"", t.echo_capped_delay);
  w.sample("bufpool_echo_capped_total", "param=\"size\"", t.echo_capped_size);
  w.family("bufpool_echo_gzip_total", "counter",
           "Answers asked to be compressed and accepting gzip: compressed, or sent as they are (too large).");
  w.sample("bufpool_echo_gzip_total", "outcome=\"compressed\"", t.echo_gzip);
  w.sample("bufpool_echo_gzip_total", "outcome=\"skipped\"", t.echo_gzip_skipped);
  w.one("bufpool_io_uring", "gauge", "1 when the HTTP data path runs on io_uring, 0 on epoll (io.backend).",
        uring_ ? 1.0 : 0.0);

  w.family("bufpool_http_request_duration_seconds", "histogram",
           "Time from a request's first byte to its response being queued, by route.");
  for (std::size_t r = 0; r < t.latency.size(); ++r) {
    const std::string route_label = std::string("route=\"") + route_names[r] + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < latency_bucket_ns.size(); ++b) {
      cumulative += t.latency[r][b];
      w.sample("bufpool_http_request_duration_seconds_bucket", route_label + ",le=\"" + latency_bucket_labels[b] + "\"", cumulative);
    }
    cumulative += t.latency[r].back();
    w.sample("bufpool_http_request_duration_seconds_bucket", route_label + ",le=\"+Inf\"", cumulative);
    w.sample("bufpool_http_request_duration_seconds_sum", route_label, static_cast<double>(t.latency_sum_ns[r]) / 1e9);
    w.sample("bufpool_http_request_duration_seconds_count", route_label, cumulative);
  }
  return w.take();
}

}  // namespace bufpool::server
