// fortio's echo grammar (the de facto language of load-test targets), parsed without allocating:
//
//   /echo?delay=150us:10,2ms:5&status=404:10,503:5&size=1024:10,512:5&header=Foo:Bar&close=5.3&gzip=true
//
// delay, status and size take one value (always) or a comma-separated list of value:percent (chances,
// summing to at most 100; the rest gets the default: no delay, 200, the request body echoed). close and
// gzip take true, false or a percent. header=Name:Value repeats (at most 32). Durations are Go's
// (time.ParseDuration: 1m30s, 1.5ms, 150us, 150µs). Values are percent-decoded ('+' is a space) as Go's
// url.ParseQuery does. Unknown parameters are ignored, as fortio ignores them. A bad value is an error
// naming the parameter and what is wrong (the body of a 400). See docs/design.md 2.8.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bufpool::server::routes::fortio {

using duration = std::chrono::nanoseconds;

/// Go's time.ParseDuration without the sign: "0", or one or more of a decimal number and a unit (ns,
/// us, µs, μs, ms, s, m, h). Negative or malformed: nullopt.
std::optional<duration> parse_duration(std::string_view text) noexcept;

/// One value and its chance, in percent.
template <class T>
struct choice {
  T value{};
  double percent = 0;
};

/// A parameter's distribution: at most max_choices values with their chances.
inline constexpr std::size_t max_choices = 16;
template <class T>
struct distribution {
  std::array<choice<T>, max_choices> items{};
  std::size_t count = 0;
  bool empty() const noexcept { return count == 0; }
  /// The value a draw in [0, 100) picks (walking the cumulative chances), or nullopt: the default.
  std::optional<T> pick(double draw) const noexcept {
    double upto = 0;
    for (std::size_t i = 0; i < count; ++i) {
      upto += items[i].percent;
      if (draw < upto) return items[i].value;
    }
    return std::nullopt;
  }
};

inline constexpr std::size_t max_headers = 32;
inline constexpr std::size_t max_header_text = 8192;  // the query's own limit (http.max_uri_bytes by default)

struct header {
  std::string_view name, value;  // into params::text
};

struct params {
  distribution<duration> delay;
  distribution<unsigned> status;
  distribution<std::size_t> size;
  double close = 0;  // percent of answers after which the connection closes
  double gzip = 0;   // percent of answers compressed (when the request accepts gzip)
  std::array<header, max_headers> headers{};
  std::size_t header_count = 0;
  // The decoded header names and values.
  std::array<char, max_header_text> text{};
  std::size_t text_len = 0;
  /// Any of the parameters above was given (an empty query, or one with only unknown parameters,
  /// leaves the default params in force).
  bool any = false;
};

/// Parses a query (without its '?') into out. False with `error` set ("status=abc: not a status code
/// (100 to 599)") on the first bad value. Only allocates when it fails (the message).
bool parse(std::string_view query, params& out, std::string& error);

/// A fast per-thread generator of draws in [0, 100) (xoshiro256+; no lock, no system call after the
/// first draw on a thread, which seeds it from the thread's address and the clock).
double draw() noexcept;

}  // namespace bufpool::server::routes::fortio
