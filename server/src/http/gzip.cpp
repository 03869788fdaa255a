#include "http/gzip.hpp"

#include <memory>
#include <new>

#include <libdeflate.h>

namespace bufpool::server::http {

namespace {

struct compressor_deleter {
  void operator()(libdeflate_compressor* c) const noexcept { libdeflate_free_compressor(c); }
};

libdeflate_compressor& compressor() {
  // Level 1: the fastest, and on the answers measured within a few percent of level 6's size on text.
  thread_local std::unique_ptr<libdeflate_compressor, compressor_deleter> c(libdeflate_alloc_compressor(1));
  if (!c) throw std::bad_alloc();
  return *c;
}

}  // namespace

bufpool::buffer gzip(bufpool::pool& pool, std::string_view in, std::size_t max_out) {
  libdeflate_compressor& c = compressor();
  const std::size_t bound = libdeflate_gzip_compress_bound(&c, in.size());
  bufpool::buffer out = pool.get(bound < max_out ? bound : max_out);
  const std::size_t n = libdeflate_gzip_compress(&c, in.data(), in.size(), out.data(), out.capacity());
  if (n == 0) return {};  // did not fit
  out.resize(n);
  return out;
}

}  // namespace bufpool::server::http
