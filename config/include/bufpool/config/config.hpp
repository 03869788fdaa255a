// Layered configuration shared by bufpool-server and bufpool-loadgen.
//
// A program describes its settings once in a schema (key path, kind, default, range, help). load()
// then builds the effective configuration as a JSON tree from four layers, each overriding the last:
//   embedded defaults < JSON file (--config FILE) < environment (PREFIX + KEY_PATH) < command-line flags.
// Every value is checked against its setting. Errors name the key path, the value, where it came from
// and what is allowed; unknown keys get a "did you mean" suggestion. All errors are reported at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace bufpool::config {

/// What a setting holds. Durations take wrk's suffixes (us, ms, s, m, h); a bare number means seconds.
/// Integers and numbers given as text take k, M, G (x1000 each: "5k" is 5000). A string_list is a JSON
/// array of strings; its flag may be repeated (each adds one), its environment variable holds one item
/// per line, and a layer's list replaces the one below.
enum class value_kind { boolean, integer, number, string, duration, endpoint, choice, string_list };

/// One configurable value.
struct setting {
  std::string path;                   ///< dotted key path, e.g. "http.listen"
  value_kind kind;                    ///< how the value is parsed and checked
  nlohmann::json default_value;       ///< embedded default (canonical form)
  std::string help;                   ///< one line for --help
  std::int64_t min = std::numeric_limits<std::int64_t>::min();  ///< integer bound, or duration bound in us
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
  std::vector<std::string> choices;   ///< allowed values of a choice
  std::vector<std::string> aliases;   ///< extra flag names, e.g. "--threads"
  bool allow_empty = false;           ///< string/endpoint: "" is allowed (means "off")
};

/// A configuration error; what() holds every problem, one per line.
class error : public std::runtime_error {
public:
  explicit error(const std::vector<std::string>& problems);
  const std::vector<std::string>& problems() const noexcept { return problems_; }

private:
  std::vector<std::string> problems_;
};

/// The settings of one program.
class schema {
public:
  schema(std::string program, std::string env_prefix) : program_(std::move(program)), env_prefix_(std::move(env_prefix)) {}
  schema& add(setting s);
  const std::vector<setting>& settings() const noexcept { return settings_; }
  const setting* find(std::string_view path) const noexcept;
  /// The closest known key path to `path`, or "" if none is close.
  std::string suggest(std::string_view path) const;
  /// The environment variable for a key path: prefix + upper case, '.' -> '_'.
  std::string env_name(std::string_view path) const;
  const std::string& program() const noexcept { return program_; }
  /// What --version prints ("" : no --version flag).
  void set_version(std::string text) { version_ = std::move(text); }
  const std::string& version() const noexcept { return version_; }
  /// The embedded defaults as a JSON tree.
  nlohmann::json defaults() const;

private:
  std::string program_;
  std::string env_prefix_;
  std::string version_;
  std::vector<setting> settings_;
};

/// What load() produced.
struct load_result {
  nlohmann::json values;                 ///< the effective configuration (canonical values)
  std::vector<std::string> positional;   ///< positional arguments, when allowed
  bool exit = false;                     ///< --help, --version or --print-config was handled: print `output`, exit 0
  std::string output;
  std::vector<std::string> warnings;     ///< what was ignored (unknown BUFPOOL_* variables): log them
};

/// Builds the effective configuration. `env` maps variable names to values (pass environ's contents);
/// `positional` names the positional arguments accepted (empty: none; a last name ending in "..."
/// takes every remaining argument). Throws config::error.
load_result load(const schema& s, int argc, const char* const* argv, const std::map<std::string, std::string>& env,
                 const std::vector<std::string>& positional = {});

/// The process environment as a map.
std::map<std::string, std::string> process_environment();

// ---- typed access to an effective configuration --------------------------------------------------

/// The value at a key path (throws std::out_of_range if absent: a programming error).
const nlohmann::json& at(const nlohmann::json& values, std::string_view path);

/// Parses a duration ("500ms", "10s", "2m", "1.5s", "250us"; a bare number is seconds).
std::optional<std::chrono::microseconds> parse_duration(std::string_view text);
/// Canonical text of a duration: the largest unit that keeps it whole.
std::string format_duration(std::chrono::microseconds d);
std::chrono::microseconds duration_at(const nlohmann::json& values, std::string_view path);

/// A HOST:PORT endpoint; IPv6 hosts in brackets ("[::1]:8080").
struct endpoint {
  std::string host;
  std::uint16_t port = 0;
};
std::optional<endpoint> parse_endpoint(std::string_view text);

}  // namespace bufpool::config
