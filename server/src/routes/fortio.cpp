// fortio's echo grammar: see fortio.hpp.
#include "routes/fortio.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace bufpool::server::routes::fortio {

namespace {

int hex(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` ('+' is a space) into out[0, cap); the decoded length, or nullopt when an
// escape is malformed or the result does not fit.
std::optional<std::size_t> decode(std::string_view in, char* out, std::size_t cap) noexcept {
  std::size_t n = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return std::nullopt;
      const int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (n == cap) return std::nullopt;
    out[n++] = c;
  }
  return n;
}

bool token_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

// A percent: a finite decimal from 0 to 100.
std::optional<double> parse_percent(std::string_view s) noexcept {
  if (s.empty() || s.front() == '+' || s.front() == '-') return std::nullopt;
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v) || v < 0 || v > 100) return std::nullopt;
  return v;
}

// true, false, or a percent.
std::optional<double> parse_chance(std::string_view s) noexcept {
  if (s == "true") return 100.0;
  if (s == "false") return 0.0;
  return parse_percent(s);
}

template <class T>
std::optional<T> parse_unsigned(std::string_view s) noexcept {
  T v{};
  if (s.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

bool fail(std::string& error, std::string_view key, std::string_view raw, std::string_view what) {
  constexpr std::size_t shown = 64;
  error.assign(key);
  error += '=';
  error.append(raw.substr(0, shown));
  if (raw.size() > shown) error += "...";
  error += ": ";
  error += what;
  return false;
}

// A distribution: "v" (always) or "v:p,v:p,...". parse_value(text) -> optional<T>; what: the message
// for a bad value.
template <class T, class F>
bool parse_list(std::string_view key, std::string_view raw, std::string_view value, distribution<T>& out,
                std::string& error, F parse_value, std::string_view what) {
  out.count = 0;
  double sum = 0;
  std::size_t start = 0;
  for (;;) {
    const std::size_t comma = value.find(',', start);
    const std::string_view item = value.substr(start, comma == std::string_view::npos ? value.npos : comma - start);
    if (item.empty()) return fail(error, key, raw, "an empty item in the list");
    if (out.count == max_choices) return fail(error, key, raw, "more than 16 values in the list");
    const std::size_t colon = item.rfind(':');
    const std::optional<T> v = parse_value(item.substr(0, colon));
    if (!v) return fail(error, key, raw, what);
    double percent = 100;
    if (colon != std::string_view::npos) {
      const auto p = parse_percent(item.substr(colon + 1));
      if (!p) return fail(error, key, raw, "a chance is not a percent from 0 to 100");
      percent = *p;
    }
    sum += percent;
    out.items[out.count++] = {*v, percent};
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  if (sum > 100 + 1e-9) return fail(error, key, raw, "the chances add up to more than 100 percent");
  return true;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view s) noexcept {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s == "0") return duration::zero();
  if (s.empty()) return std::nullopt;
  double total = 0;
  while (!s.empty()) {
    // A decimal number: digits, '.', digits (at least one digit).
    std::size_t i = 0;
    double whole = 0, frac = 0, scale = 1;
    bool digits = false;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      whole = whole * 10 + (s[i++] - '0');
      digits = true;
    }
    if (i < s.size() && s[i] == '.') {
      ++i;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        scale /= 10;
        frac += (s[i++] - '0') * scale;
        digits = true;
      }
    }
    if (!digits) return std::nullopt;
    s.remove_prefix(i);
    // The unit: the longest that matches.
    static constexpr std::pair<std::string_view, double> units[] = {
        {"ns", 1.0}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    double unit = 0;
    std::size_t len = 0;
    for (const auto& [name, ns] : units)
      if (s.substr(0, name.size()) == name && name.size() > len) {
        unit = ns;
        len = name.size();
      }
    if (len == 0) return std::nullopt;
    s.remove_prefix(len);
    total += (whole + frac) * unit;
  }
  if (!(total < 9.2e18)) return std::nullopt;  // does not fit in int64 nanoseconds, as in Go
  return duration(static_cast<std::int64_t>(std::llround(total)));
}

bool parse(std::string_view query, params& out, std::string& error) {
  // Only the counts and scalars: the arrays behind them (about 9 KiB) are read up to their counts, and
  // zeroing them on every request cost four times the rest of the request (callgrind).
  out.delay.count = out.status.count = out.size.count = 0;
  out.close = out.gzip = 0;
  out.header_count = out.text_len = 0;
  out.any = false;
  char value_buf[max_header_text];
  std::size_t start = 0;
  while (start <= query.size()) {
    const std::size_t amp = query.find('&', start);
    const std::string_view piece = query.substr(start, amp == std::string_view::npos ? query.npos : amp - start);
    start = amp == std::string_view::npos ? query.size() + 1 : amp + 1;
    if (piece.empty()) continue;
    const std::size_t eq = piece.find('=');
    const std::string_view raw_key = piece.substr(0, eq);
    const std::string_view raw = eq == std::string_view::npos ? std::string_view{} : piece.substr(eq + 1);
    char key_buf[16];
    const auto key_len = decode(raw_key, key_buf, sizeof key_buf);
    if (!key_len) continue;  // not one of ours (or badly encoded): ignored, as unknown parameters are
    const std::string_view key(key_buf, *key_len);
    if (key != "delay" && key != "status" && key != "size" && key != "close" && key != "gzip" && key != "header")
      continue;
    const auto value_len = decode(raw, value_buf, sizeof value_buf);
    if (!value_len) return fail(error, key, raw, "not valid percent-encoding");
    const std::string_view value(value_buf, *value_len);
    out.any = true;
    if (key == "delay") {
      if (!parse_list(key, raw, value, out.delay, error, parse_duration,
                      "not a duration (a number and a unit: ns, us, ms, s, m, h; not negative)"))
        return false;
    } else if (key == "status") {
      auto status = [](std::string_view s) -> std::optional<unsigned> {
        const auto v = parse_unsigned<unsigned>(s);
        return v && *v >= 100 && *v <= 599 ? v : std::nullopt;
      };
      if (!parse_list(key, raw, value, out.status, error, status, "not a status code (100 to 599)")) return false;
    } else if (key == "size") {
      if (!parse_list(key, raw, value, out.size, error, parse_unsigned<std::size_t>,
                      "not a size in bytes (a whole number, not negative)"))
        return false;
    } else if (key == "close" || key == "gzip") {
      const auto chance = parse_chance(value);
      if (!chance) return fail(error, key, raw, "not true, false or a percent from 0 to 100");
      (key == "close" ? out.close : out.gzip) = *chance;
    } else {  // header=Name:Value
      if (out.header_count == max_headers) return fail(error, key, raw, "more than 32 header parameters");
      const std::size_t colon = value.find(':');
      if (colon == std::string_view::npos) return fail(error, key, raw, "not Name:Value");
      std::string_view name = value.substr(0, colon), v = value.substr(colon + 1);
      if (name.empty()) return fail(error, key, raw, "the header name is empty");
      for (const char c : name)
        if (!token_char(c)) return fail(error, key, raw, "the header name is not a token");
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      for (const char c : v)
        if (c == '\r' || c == '\n' || c == '\0') return fail(error, key, raw, "the header value holds CR, LF or NUL");
      if (out.text_len + name.size() + v.size() > out.text.size())
        return fail(error, key, raw, "the headers are too long");
      char* at = out.text.data() + out.text_len;
      std::memcpy(at, name.data(), name.size());
      std::memcpy(at + name.size(), v.data(), v.size());
      out.headers[out.header_count++] = {{at, name.size()}, {at + name.size(), v.size()}};
      out.text_len += name.size() + v.size();
    }
  }
  return true;
}

double draw() noexcept {
  struct state {
    std::uint64_t s[4];
    state() noexcept {
      // splitmix64 from the thread's address and the clock: distinct per thread, no system call.
      std::uint64_t x = reinterpret_cast<std::uintptr_t>(this) ^
                        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      for (auto& v : s) {
        x += 0x9e3779b97f4a7c15ULL;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        v = z ^ (z >> 31);
      }
    }
  };
  thread_local state st;
  std::uint64_t* s = st.s;
  const std::uint64_t result = s[0] + s[3];
  const std::uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return static_cast<double>(result >> 11) * (100.0 / 9007199254740992.0);  // [0, 100)
}

}  // namespace bufpool::server::routes::fortio
