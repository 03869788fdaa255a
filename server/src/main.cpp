// bufpool-server: configuration, logging, the ready file, signals and the final statistics.
#include <csignal>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/signal_set.hpp>
#include <asio/write.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <bufpool/version.hpp>

#include "server.hpp"
#include "settings.hpp"

namespace {

void write_ready_file(const std::string& path, const bufpool::server::bound_ports& p) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << nlohmann::json{{"http", p.http}, {"echo", p.echo}, {"admin", p.admin}}.dump() << '\n';
    if (!out) throw std::runtime_error("cannot write ready file " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot rename ready file to " + path);
}

// `bufpool-server healthcheck [HOST:PORT]`: GET /healthz on the admin listener (default: the address
// in BUFPOOL_ADMIN_LISTEN, else 127.0.0.1:9901; a wildcard host means this machine), within 2 s.
// Exit 0 on 200, 1 otherwise. The container's HEALTHCHECK runs it: the image has no curl.
int healthcheck(int argc, char** argv) {
  std::string target = argc > 2 ? argv[2] : "";
  if (target.empty()) {
    const char* env = std::getenv("BUFPOOL_ADMIN_LISTEN");
    target = env != nullptr && *env != '\0' ? env : "127.0.0.1:9901";
  }
  const auto colon = target.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "healthcheck: " << target << ": expected HOST:PORT\n";
    return 2;
  }
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  const std::string port = target.substr(colon + 1);
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  std::string reply(256, '\0');
  std::size_t got = 0;
  std::error_code result = asio::error::timed_out;
  asio::ip::tcp::resolver resolver(io);
  resolver.async_resolve(host, port, [&](std::error_code ec, asio::ip::tcp::resolver::results_type r) {
    if (ec) return void(result = ec);
    asio::async_connect(sock, r, [&](std::error_code cec, const asio::ip::tcp::endpoint&) {
      if (cec) return void(result = cec);
      static const char request[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
      asio::async_write(sock, asio::buffer(request, sizeof request - 1), [&](std::error_code wec, std::size_t) {
        if (wec) return void(result = wec);
        asio::async_read(sock, asio::buffer(reply), [&](std::error_code rec, std::size_t n) {
          got = n;
          result = rec == asio::error::eof ? std::error_code() : rec;
        });
      });
    });
  });
  io.run_for(std::chrono::seconds(2));
  reply.resize(got);
  if (result) {
    std::cerr << "healthcheck: " << host << ":" << port << ": " << result.message() << '\n';
    return 1;
  }
  const bool ok = reply.rfind("HTTP/1.1 200", 0) == 0;
  std::cout << "healthcheck: " << host << ":" << port << ": " << reply.substr(0, reply.find('\r')) << '\n';
  return ok ? 0 : 1;
}

// %j in a pattern: the message as the inside of a JSON string (quotes, backslashes and control
// characters escaped), for --log-format json.
class json_message_flag final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (const char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char u[8];
            std::snprintf(u, sizeof u, "\\u%04x", static_cast<unsigned>(c));
            dest.append(std::string_view(u));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<json_message_flag>(); }
};

void configure_logging(const bufpool::server::server_settings& s) {
  spdlog::set_level(spdlog::level::from_str(s.log_level));
  if (s.log_format == "json") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<json_message_flag>('j').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","thread":%t,"msg":"%j"})");
    spdlog::set_formatter(std::move(f));
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace bufpool::server;
  if (argc > 1 && std::strcmp(argv[1], "healthcheck") == 0) return healthcheck(argc, argv);
  bufpool::config::load_result loaded;
  server_settings settings;
  try {
    loaded = bufpool::config::load(server_schema(), argc, argv, bufpool::config::process_environment());
    if (loaded.exit) {
      std::cout << loaded.output;
      return 0;
    }
    settings = settings_from(loaded.values);
  } catch (const bufpool::config::error& e) {
    std::cerr << e.what() << '\n';
    return 2;
  }
  configure_logging(settings);
  for (const auto& w : loaded.warnings) spdlog::warn("{}", w);

  try {
    // Block the stop signals before any thread starts, so that only signal_set sees them.
    asio::io_context signals_io(1);
    asio::signal_set signals(signals_io, SIGINT, SIGTERM, SIGHUP);
    server srv(settings);
    const auto ports = srv.ports();
    spdlog::info("bufpool-server " BUFPOOL_VERSION_STRING ": http {} echo {} admin {}; {} threads, {}, accept {}, pool {} (classes {}..{} B, idle cap {} B)",
                 ports.http ? settings.http_listen.substr(0, settings.http_listen.rfind(':') + 1) + std::to_string(ports.http) : "off",
                 ports.echo ? settings.echo_listen.substr(0, settings.echo_listen.rfind(':') + 1) + std::to_string(ports.echo) : "off",
                 ports.admin ? settings.admin_listen.substr(0, settings.admin_listen.rfind(':') + 1) + std::to_string(ports.admin) : "off",
                 settings.threads, srv.io_backend_name(), settings.accept == accept_mode::single ? "single" : "reuseport",
                 settings.pool.enabled ? "on" : "off", settings.pool.min_class, settings.pool.max_class,
                 settings.pool.max_idle_bytes);
    if (!settings.ready_file.empty()) write_ready_file(settings.ready_file, ports);
    // SIGHUP loads the TLS certificate and key again; SIGINT and SIGTERM stop.
    int signo = 0;
    std::function<void(std::error_code, int)> on_signal = [&](std::error_code ec, int s) {
      if (!ec && s == SIGHUP) {
        if (srv.tls_enabled()) srv.reload_tls();  // each TLS listener's files; logs what it did
        else spdlog::info("signal {}: no TLS listener to reload", s);
        signals.async_wait(on_signal);
        return;
      }
      signo = s;
    };
    signals.async_wait(on_signal);
    signals_io.run();
    spdlog::info("signal {}: draining (grace {} ms)", signo,
                 std::chrono::duration_cast<std::chrono::milliseconds>(settings.shutdown_grace).count());
    srv.stop();
    spdlog::info("final stats: {}", srv.stats().dump());
    return 0;
  } catch (const bufpool::config::error& e) {  // a file a setting names does not load (TLS)
    std::cerr << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    spdlog::error("bufpool-server: {}", e.what());
    return 1;
  }
}
