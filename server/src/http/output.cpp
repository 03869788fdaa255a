#include "http/output.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "http/exchange.hpp"

namespace bufpool::server::http {

char* output_batch::space(std::size_t n) {
  if (!open_ || out_.back().capacity() - out_.back().size() < n) {
    out_.push_back(pool_.get(std::max(buffer_bytes, n)));
    out_.back().resize(0);
    open_ = true;
  }
  bufpool::buffer& b = out_.back();
  return reinterpret_cast<char*>(b.data() + b.size());
}

void output_batch::append(std::string_view bytes) {
  while (!bytes.empty()) {
    if (!open_ || out_.back().size() == out_.back().capacity()) space(bytes.size());
    bufpool::buffer& b = out_.back();
    const std::size_t take = std::min(bytes.size(), b.capacity() - b.size());
    std::memcpy(b.data() + b.size(), bytes.data(), take);
    b.resize(b.size() + take);
    bytes.remove_prefix(take);
  }
}

void output_batch::append_pattern(std::size_t n) {
  static const std::string pattern = [] {
    constexpr std::string_view cycle = exchange::pattern_cycle;
    std::string p(buffer_bytes, '\0');  // a whole number of cycles: pieces may follow each other
    for (std::size_t i = 0; i < p.size(); ++i) p[i] = cycle[i % cycle.size()];
    return p;
  }();
  while (n > 0) {
    const std::size_t k = std::min(n, pattern.size());
    append(std::string_view(pattern).substr(0, k));
    n -= k;
  }
}

void output_batch::splice(output_batch& from) {
  for (auto& b : from.out_) out_.push_back(std::move(b));
  if (!from.out_.empty()) open_ = from.open_;
  from.clear();
}

std::span<const iovec> output_batch::gather(std::size_t& total) {
  iov_.clear();
  total = 0;
  for (auto& b : out_) {
    iov_.push_back(iovec{b.data(), b.size()});
    total += b.size();
  }
  return iov_;
}

}  // namespace bufpool::server::http
