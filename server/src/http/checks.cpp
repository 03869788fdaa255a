#include "http/checks.hpp"

#include <algorithm>

namespace bufpool::server::http {



std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool takes_gzip(std::string_view list) noexcept {
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    std::string_view params;
    if (const auto semi = item.find(';'); semi != std::string_view::npos) {
      params = item.substr(semi + 1);
      item = item.substr(0, semi);
    }
    item = trim(item);
    if (!iequals(item, "gzip") && !iequals(item, "x-gzip") && item != "*") continue;
    // q=0, q=0.0, q=0.000 refuse it; any other weight (or none) takes it.
    params = trim(params);
    if (params.size() >= 2 && (params[0] == 'q' || params[0] == 'Q') && params[1] == '=') {
      std::string_view q = trim(params.substr(2));
      if (!q.empty() && q[0] == '0' && q.find_first_not_of("0.", 0) == std::string_view::npos) continue;
    }
    return true;
  }
  return false;
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
