#include "http/checks.hpp"

#include <algorithm>

namespace bufpool::server::http {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

char last_non_blank(const char* begin, const char* end, char otherwise) noexcept {
  while (end != begin) {
    --end;
    if (*end != ' ' && *end != '\t') return *end;
  }
  return otherwise;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void host_scan::feed(const char* at, std::size_t n) noexcept {
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

unsigned check_transfer_encoding(std::string_view list) noexcept {
  std::size_t chunked = 0;
  bool chunked_last = false;
  bool unknown = false;
  while (!list.empty() || chunked_last) {
    const auto comma = list.find(',');
    const std::string_view item = trim(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (!item.empty()) {
      chunked_last = item == "chunked";
      if (chunked_last) ++chunked;
      else if (!std::all_of(item.begin(), item.end(), is_tchar)) return 400;
      else unknown = true;
    }
    if (list.empty()) break;
  }
  if (unknown) return 501;
  if (chunked != 1 || !chunked_last) return 400;
  return 0;
}

std::string_view path_of(std::string_view target) noexcept {
  if (!target.empty() && target.front() == '/') {  // origin-form, nearly always
    if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    return target;
  }
  auto starts_with_ci = [&](std::string_view prefix) {
    return target.size() >= prefix.size() && iequals(target.substr(0, prefix.size()), prefix);
  };
  for (std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (starts_with_ci(scheme)) {
      const auto slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
  return target;
}

std::string_view query_of(std::string_view target) noexcept {
  const auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

}  // namespace bufpool::server::http
