// What llhttp does not check, as small pure functions over bytes: header-name characters, the Host
// value, Transfer-Encoding lists, obs-fold, trimming; and the request target's path. No state, no I/O:
// the engine (engine.cpp) calls them from its llhttp callbacks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace bufpool::server::http {

// ASCII only: header names and tokens are ASCII, and the C locale's tolower is a library call per byte.
constexpr char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

// A 256-entry membership table: one load per byte instead of a search per byte.
using char_table = std::array<bool, 256>;
constexpr char_table make_table(std::string_view extra) {
  char_table t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (char c : extra) t[static_cast<unsigned char>(c)] = true;
  return t;
}
// tchar of RFC 9110 5.6.2: the characters of a header field name.
inline constexpr char_table tchars = make_table("!#$%&'*+-.^_`|~");
// What a Host value may hold (RFC 9110 7.2 / RFC 3986 authority without userinfo): reg-name or
// IP-literal characters and a port; no '/', '?', '#' or '@'.
inline constexpr char_table host_chars = make_table("-._~%!$&'()*+,;=:[]");
// ... and the blanks around it (trimmed; blanks inside it are refused).
inline constexpr char_table host_value_chars = make_table("-._~%!$&'()*+,;=:[] \t");

inline bool is_tchar(char c) noexcept { return tchars[static_cast<unsigned char>(c)]; }

// The last byte of [begin, end) that is not SP or HT; `otherwise` if there is none.
inline char last_non_blank(const char* begin, const char* end, char otherwise) noexcept {
  while (end != begin) {
    --end;
    if (*end != ' ' && *end != '\t') return *end;
  }
  return otherwise;
}

std::string_view trim(std::string_view s) noexcept;

/// An Accept-Encoding value takes gzip: a "gzip", "x-gzip" or "*" item whose q is not 0 (RFC 9110 12.5.3).
bool takes_gzip(std::string_view accept_encoding) noexcept;

/// The Host value, checked as it streams by (nothing copied): one authority, no blank inside it.
class host_scan {
public:
  void reset() noexcept {
    state_ = state::none;
    bad_ = false;
  }
  void feed(const char* at, std::size_t n) noexcept;
  bool bad() const noexcept { return bad_; }

private:
  enum class state : std::uint8_t { none, value, after };  // before, in, after the value
  state state_ = state::none;
  bool bad_ = false;
};

/// The joined Transfer-Encoding list (lower case): 0 if it is acceptable (chunked, once, last), 501 if
/// it names a coding that is not implemented, 400 otherwise (the body length cannot be known).
unsigned check_transfer_encoding(std::string_view list) noexcept;

/// The path of an origin-form target, or of an absolute-form one (RFC 9112 3.2.2: a server MUST accept
/// "GET http://host/path"), without its query.
std::string_view path_of(std::string_view target) noexcept;
/// The query of a target (after '?', without it); empty if there is none.
std::string_view query_of(std::string_view target) noexcept;

inline void host_scan::feed(const char* at, std::size_t n) noexcept {
  // The usual span: no blank at all. One pass without branches decides it.
  bool plain = state_ != state::after;
  for (std::size_t i = 0; i < n; ++i) plain &= host_chars[static_cast<unsigned char>(at[i])];
  if (plain) {
    if (n != 0) state_ = state::value;
    return;
  }
  // Blanks (or a bad byte): where they are decides. Locals: a store to a member through `this` may
  // alias the bytes read through `at`.
  state st = state_;
  bool ok = true;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = at[i];
    if (c == ' ' || c == '\t') {
      st = st == state::none ? state::none : state::after;
      continue;
    }
    ok &= host_value_chars[static_cast<unsigned char>(c)] & (st != state::after);
    st = state::value;
  }
  state_ = st;
  bad_ = bad_ || !ok;
}

}  // namespace bufpool::server::http
