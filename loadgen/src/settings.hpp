// loadgen_settings: every setting of bufpool-loadgen (one schema, shared config library), the target
// URL, and the typed struct the engine runs from.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <bufpool/config/config.hpp>

namespace bufpool::loadgen {

/// A target: http://host:port/path or tcp://host:port (echo).
struct target {
  bool echo = false;
  std::string host;
  std::uint16_t port = 0;
  std::string path = "/";  // HTTP only, with the query
};
/// Parses a target URL; nullopt if it is not one of the two forms.
std::optional<target> parse_target(std::string_view url);

struct loadgen_settings {
  target url;
  std::string url_text;
  std::size_t connections = 64;
  std::size_t threads = 2;
  std::chrono::microseconds duration{10'000'000};
  std::uint64_t requests = 0;  // > 0: stop after this many instead of after duration
  std::chrono::microseconds warmup{0};
  std::size_t pipeline = 1;
  double rate = 0;  // > 0: open loop, requests per second in total
  std::string method = "GET";
  std::size_t body_size = 0;
  bool chunked = false;
  std::size_t echo_size = 64;
  double malformed = 0;
  std::string stats_url;
  std::chrono::microseconds stats_interval{1'000'000};
  std::string json_file;
  bool quiet = false;
  double max_error_rate = 1.0;
  std::chrono::microseconds timeout{5'000'000};
  nlohmann::json effective;
};

const config::schema& loadgen_schema();
/// Typed settings; throws config::error for a bad URL or combination.
loadgen_settings settings_from(const nlohmann::json& values, const std::string& url);

}  // namespace bufpool::loadgen
