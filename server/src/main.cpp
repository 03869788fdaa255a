// bufpool-server: configuration, logging, the ready file, signals and the final statistics.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <spdlog/spdlog.h>

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

}  // namespace

int main(int argc, char** argv) {
  using namespace bufpool::server;
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
  spdlog::set_level(spdlog::level::from_str(settings.log_level));
  for (const auto& w : loaded.warnings) spdlog::warn("{}", w);

  try {
    // Block the stop signals before any thread starts, so that only signal_set sees them.
    asio::io_context signals_io(1);
    asio::signal_set signals(signals_io, SIGINT, SIGTERM);
    server srv(settings);
    const auto ports = srv.ports();
    spdlog::info("bufpool-server: http {} echo {} admin {}; {} threads, accept {}, pool {} (classes {}..{} B, idle cap {} B)",
                 ports.http ? settings.http_listen.substr(0, settings.http_listen.rfind(':') + 1) + std::to_string(ports.http) : "off",
                 ports.echo ? settings.echo_listen.substr(0, settings.echo_listen.rfind(':') + 1) + std::to_string(ports.echo) : "off",
                 ports.admin ? settings.admin_listen.substr(0, settings.admin_listen.rfind(':') + 1) + std::to_string(ports.admin) : "off",
                 settings.threads, settings.accept == accept_mode::single ? "single" : "reuseport",
                 settings.pool.enabled ? "on" : "off", settings.pool.min_class, settings.pool.max_class,
                 settings.pool.max_idle_bytes);
    if (!settings.ready_file.empty()) write_ready_file(settings.ready_file, ports);
    int signo = 0;
    signals.async_wait([&](std::error_code, int s) { signo = s; });
    signals_io.run();
    spdlog::info("signal {}: draining (grace {} ms)", signo,
                 std::chrono::duration_cast<std::chrono::milliseconds>(settings.shutdown_grace).count());
    srv.stop();
    spdlog::info("final stats: {}", srv.stats().dump());
    return 0;
  } catch (const std::exception& e) {
    spdlog::error("bufpool-server: {}", e.what());
    return 1;
  }
}
