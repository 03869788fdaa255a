// The one table of server settings, and its conversion into server_settings.
#include "settings.hpp"

#include "routes/fortio.hpp"

#include <bufpool/version.hpp>

#include <unistd.h>

#include <thread>

namespace bufpool::server {

namespace {
using config::setting;
using config::value_kind;
constexpr std::int64_t us_per_ms = 1000;
constexpr std::int64_t us_per_s = 1000000;

// A listener's TLS settings, <listener>.tls.*: TLS is on when the certificate is set.
void add_tls(config::schema& s, const std::string& listener, const std::string& what,
             std::vector<std::string> cert_alias, std::vector<std::string> key_alias) {
  const std::string p = listener + ".tls.";
  s.add({p + "certificate", value_kind::string, "",
         "TLS on the " + what + " listener: the certificate chain, PEM, leaf first (\"\": no TLS); a changed file or "
         "SIGHUP loads it again for new connections", 0, 0, {}, std::move(cert_alias), true});
  s.add({p + "key", value_kind::string, "", "the certificate's private key, PEM (\"\": in the certificate file)",
         0, 0, {}, std::move(key_alias), true});
  s.add({p + "min_version", value_kind::choice, "1.2", "oldest TLS version accepted (1.0 and 1.1 never)", 0, 0,
         {"1.2", "1.3"}, {}, false});
  s.add({p + "ciphers", value_kind::string, "", "TLS 1.2 cipher list (\"\": OpenSSL's secure default)", 0, 0, {},
         {}, true});
  s.add({p + "client_auth", value_kind::choice, "none",
         "client certificates: none, optional (verified when sent), require (mTLS)", 0, 0,
         {"none", "optional", "require"}, {}, false});
  s.add({p + "client_ca", value_kind::string, "", "PEM file of the CAs that client certificates must chain to",
         0, 0, {}, {}, true});
  s.add({p + "ticket_key_lifetime", value_kind::duration, "1h",
         "session tickets: a new key encrypts them each lifetime, the one before still decrypts (and the ticket is "
         "renewed), so a ticket resumes for at most two lifetimes; checked each pool.rotation_interval",
         1000000, std::int64_t{7} * 24 * 3600 * 1000000, {}, {}, false});
}

tls::settings tls_at(const nlohmann::json& v, const std::string& listener) {
  const std::string p = listener + ".tls.";
  tls::settings t;
  t.certificate = config::at(v, p + "certificate").get<std::string>();
  t.key = config::at(v, p + "key").get<std::string>();
  t.min_version = config::at(v, p + "min_version").get<std::string>();
  t.ciphers = config::at(v, p + "ciphers").get<std::string>();
  t.client_auth = config::at(v, p + "client_auth").get<std::string>();
  t.client_ca = config::at(v, p + "client_ca").get<std::string>();
  t.ticket_key_lifetime = config::duration_at(v, p + "ticket_key_lifetime");
  return t;
}

config::schema build() {
  config::schema s("bufpool-server", "BUFPOOL_");
  s.set_version(BUFPOOL_VERSION_STRING " (" BUFPOOL_COMPILER ")");
  auto dur = [](std::string path, std::string def, std::string help, std::int64_t min_us, std::int64_t max_us) {
    return setting{std::move(path), value_kind::duration, std::move(def), std::move(help), min_us, max_us, {}, {}, false};
  };
  auto integer = [](std::string path, std::int64_t def, std::string help, std::int64_t min, std::int64_t max,
                    std::vector<std::string> aliases = {}) {
    return setting{std::move(path), value_kind::integer, def, std::move(help), min, max, {}, std::move(aliases), false};
  };
  s.add(integer("threads", 0, "worker threads, one io_context each (0: one per core)", 0, 1024, {"--threads"}));
  s.add({"accept.mode", value_kind::choice, "reuseport",
         "reuseport: an SO_REUSEPORT acceptor per thread; single: one acceptor hands sockets to the least-loaded thread",
         0, 0, {"reuseport", "single"}, {"--accept"}, false});
  s.add({"io.backend", value_kind::choice, "io_uring",
         "the HTTP data path: io_uring (one ring per thread, read buffers the kernel takes from the pool only when "
         "bytes arrive) or epoll (Asio's reactor); io_uring falls back to epoll, logged, where the kernel does not allow it",
         0, 0, {"io_uring", "epoll"}, {"--io-backend"}, false});
  s.add(integer("io.uring_buffers", 256, "io_uring: pooled read buffers per thread in the kernel's buffer ring (rounded up to a power of two)",
                8, 32768));
  s.add({"http.listen", value_kind::endpoint, "127.0.0.1:8080", "HTTP/1.1 listener (port 0: any free port)", 0, 0, {},
         {"--http-listen"}, false});
  s.add({"echo.listen", value_kind::endpoint, "127.0.0.1:8081", "TCP echo listener (\"\": off)", 0, 0, {},
         {"--echo-listen"}, true});
  s.add({"admin.listen", value_kind::endpoint, "127.0.0.1:9901", "admin listener for /stats and /healthz (\"\": off)", 0,
         0, {}, {"--admin-listen"}, true});
  add_tls(s, "echo", "TCP echo", {}, {});
  add_tls(s, "admin", "admin", {}, {});
  s.add({"ready_file", value_kind::string, "", "once every listener is bound, write {\"http\",\"echo\",\"admin\"} ports here",
         0, 0, {}, {"--ready-file"}, true});
  s.add({"log.level", value_kind::choice, "info", "log level", 0, 0, {"trace", "debug", "info", "warn", "error", "off"},
         {"--log-level"}, false});
  s.add({"log.access", value_kind::string, "", "access log: a file, or - for stdout (\"\": off); asynchronous and "
         "bounded: lines it cannot keep up with are dropped and counted", 0, 0, {}, {"--access-log"}, true});
  s.add({"log.format", value_kind::choice, "text", "log line format: text, or json (one object per line)", 0, 0,
         {"text", "json"}, {"--log-format"}, false});
  add_tls(s, "http", "HTTP", {"--tls-cert"}, {"--tls-key"});
  s.add(integer("http.read_buffer_bytes", 4096, "bytes of each pooled read buffer", 256, 1 << 20));
  s.add(integer("http.max_read_buffer_bytes", 65536,
                "a read that fills its buffer asks the pool for twice the size next time, up to this; once the "
                "socket has nothing more, reads start again at read_buffer_bytes (not above it: reads never grow)",
                256, 1 << 24));
  s.add(integer("http.max_header_bytes", 16384, "request line and headers, at most (else 431)", 256, 1 << 20));
  s.add(integer("http.max_headers", 100, "header fields, at most (else 431)", 1, 10000));
  s.add(integer("http.max_uri_bytes", 8192, "request target, at most (else 414)", 16, 1 << 20));
  s.add(integer("http.max_body_bytes", 1 << 20, "request body, at most (else 413)", 0, std::int64_t{1} << 32));
  s.add(dur("limits.handshake_timeout", "10s", "time to finish a TLS handshake (else the connection is closed); "
            "the header timeout starts after it", us_per_ms, 3600 * us_per_s));
  s.add(dur("http.header_timeout", "10s", "time to receive a request's headers (else 408)", us_per_ms, 3600 * us_per_s));
  s.add(dur("http.body_timeout", "30s", "time to receive a request's body (else 408)", us_per_ms, 3600 * us_per_s));
  s.add(dur("http.idle_timeout", "60s", "idle keep-alive connections are closed after this", us_per_ms, 3600 * us_per_s));
  s.add(dur("http.write_timeout", "30s", "a response write that stalls this long closes the connection", us_per_ms,
            3600 * us_per_s));
  s.add(dur("http.linger_timeout", "2s", "lingering close: how long to drain input after an error response", 0,
            60 * us_per_s));
  s.add(integer("http.max_requests_per_connection", 1000, "then the connection is closed (Connection: close)", 1,
                std::int64_t{1} << 40));
  s.add(integer("http.max_pipeline", 32, "pipelined responses gathered into one write, at most", 1, 1024));
  s.add({"http2.enabled", value_kind::boolean, true,
         "HTTP/2 with prior knowledge (h2c) on plain HTTP listeners: a connection whose first bytes are the "
         "HTTP/2 connection preface speaks HTTP/2 (Upgrade: h2c is not offered)",
         0, 0, {}, {}, false});
  s.add(integer("http2.max_concurrent_streams", 128, "SETTINGS_MAX_CONCURRENT_STREAMS: streams open at once per "
                "connection (more are refused with REFUSED_STREAM)", 1, 1 << 16));
  s.add(integer("http2.initial_window_size", 65535, "SETTINGS_INITIAL_WINDOW_SIZE: bytes of a request body a "
                "client may send on a stream before the server's WINDOW_UPDATE", 1, (std::int64_t{1} << 31) - 1));
  s.add(integer("http2.max_frame_size", 16384, "SETTINGS_MAX_FRAME_SIZE: the largest frame payload the server "
                "accepts", 16384, (1 << 24) - 1));
  s.add(integer("http2.max_resets_per_second", 100, "RST_STREAM frames a client may send per second (a burst of "
                "as many) before GOAWAY: the rapid reset attack, CVE-2023-44487", 1, 1 << 20));
  s.add(integer("http2.max_continuations", 8, "CONTINUATION frames after one HEADERS frame before GOAWAY: "
                "the CONTINUATION flood, CVE-2024-27316", 0, 1024));
  s.add(integer("http2.max_control_frames_per_second", 1000, "PING and SETTINGS frames a client may send per "
                "second before GOAWAY (ENHANCE_YOUR_CALM): the ping and settings floods", 1, 1 << 20));
  s.add(integer("echo.buffer_bytes", 16384, "bytes of each pooled echo buffer", 256, 1 << 20));
  s.add(integer("limits.max_connections_per_thread", 10000,
                "HTTP connections per thread; excess ones are closed at once and counted", 1, 1 << 24));
  s.add(integer("limits.max_echo_connections_per_thread", 10000,
                "echo connections per thread (a limit of its own: echo clients cannot lock HTTP out)", 1, 1 << 24));
  s.add(integer("limits.max_buffer_bytes", 0,
                "server-wide budget of pooled buffer bytes in use; when reached, connections wait to read "
                "(0: an eighth of physical memory)",
                0, std::int64_t{1} << 50));
  s.add(dur("echo.max_delay", "1.5s", "/echo: the longest delay a client may ask for (larger asks are capped and "
            "counted; fortio's -max-echo-delay)", 0, 3600 * us_per_s));
  s.add(integer("echo.max_size", 256 * 1024, "/echo: the largest answer size a client may ask for, in bytes (larger "
                "asks are capped and counted; fortio's -maxpayloadsizekb)", 0, std::int64_t{1} << 30));
  s.add({"echo.default_params", value_kind::string, "",
         "/echo: parameters in fortio's grammar for requests that bring none (fortio's "
         "-echo-server-default-params), e.g. \"delay=0.5s:50,1s:40&status=418\"",
         0, 0, {}, {"--echo-default-params"}, true});
  s.add({"echo.any_path", value_kind::boolean, false, "every path no other route takes answers as /echo (as fortio does)",
         0, 0, {}, {}, false});
  s.add(dur("echo.idle_timeout", "60s", "an echo connection that sends nothing this long is closed", us_per_ms,
            3600 * us_per_s));
  s.add(dur("shutdown.grace", "10s", "on SIGINT/SIGTERM, how long requests in flight may take", 0, 3600 * us_per_s));
  s.add({"pool.enabled", value_kind::boolean, true, "false: plain heap buffers of the same sizes (benchmark baseline)",
         0, 0, {}, {}, false});
  s.add({"pool.backing", value_kind::choice, "chunks",
         "chunks: buffer memory in chunks the server maps and unmaps (freed memory goes back to the OS); "
         "heap: operator new",
         0, 0, {"chunks", "heap"}, {}, false});
  s.add(integer("pool.min_class", 256, "smallest size class (power of two)", 64, 1 << 30));
  s.add(integer("pool.max_class", 65536, "largest size class (power of two)", 64, 1 << 30));
  s.add(integer("pool.ring_capacity", 128, "per-thread shared ring capacity per class (power of two)", 1, 65536));
  s.add(integer("pool.max_idle_bytes", 64 << 20, "cap on idle pooled memory (data and 64-byte headers)", 64, std::int64_t{1} << 40));
  s.add(dur("pool.rotation_interval", "10s", "victim rotation interval: unused buffers are freed within two", us_per_ms,
            3600 * us_per_s));
  s.add({"pool.leak_detection", value_kind::choice, "off",
         "the sampled leak detector: off; sampled (1 get in pool.leak_sample_every records its call stack); all",
         0, 0, {"off", "sampled", "all"}, {}, false});
  s.add(integer("pool.leak_sample_every", 1024, "leak_detection sampled: 1 get in this many per thread", 1,
                std::int64_t{1} << 31));
  s.add(dur("pool.leak_report_age", "60s",
            "/stats lists (pool_leaks) the sampled buffers out for longer than this, by call stack", 0,
            30 * 24 * 3600 * us_per_s));
  return s;
}

std::size_t size_at(const nlohmann::json& v, std::string_view path) {
  return static_cast<std::size_t>(config::at(v, path).get<std::int64_t>());
}
}  // namespace

const config::schema& server_schema() {
  static const config::schema s = build();
  return s;
}

server_settings settings_from(const nlohmann::json& v) {
  server_settings s;
  s.threads = size_at(v, "threads");
  if (s.threads == 0) s.threads = std::max(1u, std::thread::hardware_concurrency());
  s.accept = config::at(v, "accept.mode").get<std::string>() == "single" ? accept_mode::single : accept_mode::reuseport;
  s.backend = config::at(v, "io.backend").get<std::string>() == "epoll" ? io_backend::epoll : io_backend::io_uring;
  s.uring_buffers = 8;
  while (s.uring_buffers < size_at(v, "io.uring_buffers")) s.uring_buffers *= 2;
  s.http_listen = config::at(v, "http.listen").get<std::string>();
  s.echo_listen = config::at(v, "echo.listen").get<std::string>();
  s.admin_listen = config::at(v, "admin.listen").get<std::string>();
  s.ready_file = config::at(v, "ready_file").get<std::string>();
  s.log_level = config::at(v, "log.level").get<std::string>();
  s.log_format = config::at(v, "log.format").get<std::string>();
  s.access_log = config::at(v, "log.access").get<std::string>();
  s.http_tls = tls_at(v, "http");
  s.echo_tls = tls_at(v, "echo");
  s.admin_tls = tls_at(v, "admin");
  s.http.read_buffer_bytes = size_at(v, "http.read_buffer_bytes");
  s.http.max_read_buffer_bytes = size_at(v, "http.max_read_buffer_bytes");
  s.http.max_header_bytes = size_at(v, "http.max_header_bytes");
  s.http.max_headers = size_at(v, "http.max_headers");
  s.http.max_uri_bytes = size_at(v, "http.max_uri_bytes");
  s.http.max_body_bytes = size_at(v, "http.max_body_bytes");
  s.http.header_timeout = config::duration_at(v, "http.header_timeout");
  s.http.handshake_timeout = config::duration_at(v, "limits.handshake_timeout");
  s.http.body_timeout = config::duration_at(v, "http.body_timeout");
  s.http.idle_timeout = config::duration_at(v, "http.idle_timeout");
  s.http.write_timeout = config::duration_at(v, "http.write_timeout");
  s.http.linger_timeout = config::duration_at(v, "http.linger_timeout");
  s.http.max_requests_per_connection = size_at(v, "http.max_requests_per_connection");
  s.http.max_pipeline = size_at(v, "http.max_pipeline");
  s.http.http2.enabled = config::at(v, "http2.enabled").get<bool>();
  s.http.http2.max_concurrent_streams = static_cast<std::uint32_t>(size_at(v, "http2.max_concurrent_streams"));
  s.http.http2.initial_window_size = static_cast<std::uint32_t>(size_at(v, "http2.initial_window_size"));
  s.http.http2.max_frame_size = static_cast<std::uint32_t>(size_at(v, "http2.max_frame_size"));
  s.http.http2.max_resets_per_second = static_cast<std::uint32_t>(size_at(v, "http2.max_resets_per_second"));
  s.http.http2.max_continuations = static_cast<std::uint32_t>(size_at(v, "http2.max_continuations"));
  s.http.http2.max_control_frames_per_second =
      static_cast<std::uint32_t>(size_at(v, "http2.max_control_frames_per_second"));
  s.echo_buffer_bytes = size_at(v, "echo.buffer_bytes");
  s.max_connections_per_thread = size_at(v, "limits.max_connections_per_thread");
  s.max_echo_connections_per_thread = size_at(v, "limits.max_echo_connections_per_thread");
  s.max_buffer_bytes = size_at(v, "limits.max_buffer_bytes");
  if (s.max_buffer_bytes == 0) {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    s.max_buffer_bytes = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) / 8
                                               : std::size_t{1} << 30;
  }
  s.backing = config::at(v, "pool.backing").get<std::string>() == "heap" ? pool_backing::heap : pool_backing::chunks;
  s.echo_idle_timeout = config::duration_at(v, "echo.idle_timeout");
  s.echo_target.max_delay = config::duration_at(v, "echo.max_delay");
  s.echo_target.max_size = size_at(v, "echo.max_size");
  s.echo_target.default_params = config::at(v, "echo.default_params").get<std::string>();
  s.echo_target.any_path = config::at(v, "echo.any_path").get<bool>();
  if (!s.echo_target.default_params.empty()) {  // checked here, so that a bad one stops the start
    routes::fortio::params p;
    std::string why;
    if (!routes::fortio::parse(s.echo_target.default_params, p, why))
      throw config::error({"config: echo.default_params = \"" + s.echo_target.default_params + "\": " + why});
  }
  s.shutdown_grace = config::duration_at(v, "shutdown.grace");
  s.pool.enabled = config::at(v, "pool.enabled").get<bool>();
  s.pool.min_class = size_at(v, "pool.min_class");
  s.pool.max_class = size_at(v, "pool.max_class");
  s.pool.ring_capacity = static_cast<std::uint32_t>(size_at(v, "pool.ring_capacity"));
  s.pool.max_idle_bytes = size_at(v, "pool.max_idle_bytes");
  s.rotation_interval = config::duration_at(v, "pool.rotation_interval");
  const std::string leaks = config::at(v, "pool.leak_detection").get<std::string>();
  s.pool.leaks = leaks == "all" ? leak_detection::all : leaks == "sampled" ? leak_detection::sampled : leak_detection::off;
  s.pool.leak_sample_every = static_cast<std::uint32_t>(size_at(v, "pool.leak_sample_every"));
  s.leak_report_age = config::duration_at(v, "pool.leak_report_age");
  try {
    validate(s.pool);
  } catch (const std::invalid_argument& e) {
    // Name the configuration keys rather than the library's field names.
    std::string msg = e.what();
    const std::string from = "bufpool: pool_options.";
    if (msg.rfind(from, 0) == 0) msg = "config: pool." + msg.substr(from.size());
    throw config::error({msg});
  }
  s.effective = v;
  return s;
}

}  // namespace bufpool::server
