#include "http/output.hpp"

#include <algorithm>
#include <cstring>

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
