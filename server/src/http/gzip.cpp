#include "http/gzip.hpp"

#include <cstring>
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

bufpool::buffer compress_answer(bufpool::pool& pool, worker_stats& stats, const std::string_view* body,
                                std::span<const bufpool::buffer> held) {
  const std::size_t max_out = pool.class_size(pool.class_count() - 1);
  bufpool::buffer zipped;
  if (body != nullptr) {
    zipped = gzip(pool, *body, max_out);
  } else {
    std::size_t length = 0;
    for (const auto& b : held) length += b.size();
    if (length <= max_out) {  // the held pieces, made contiguous in one pooled buffer first
      bufpool::buffer whole = pool.get(length);
      std::size_t at = 0;
      for (const auto& b : held) {
        std::memcpy(whole.data() + at, b.data(), b.size());
        at += b.size();
      }
      zipped = gzip(pool, {reinterpret_cast<const char*>(whole.data()), length}, max_out);
    }
  }
  if (zipped) stats.echo_gzip.add();
  else stats.echo_gzip_skipped.add();
  return zipped;
}

std::string_view coding_headers(bufpool::pool& pool, std::string_view extra, bool compressed, bufpool::buffer& text) {
  constexpr std::string_view vary = "Vary: Accept-Encoding\r\n";
  constexpr std::string_view coding = "Content-Encoding: gzip\r\n";
  const std::size_t n = extra.size() + vary.size() + (compressed ? coding.size() : 0);
  text = pool.get(n);
  char* p = reinterpret_cast<char*>(text.data());
  if (!extra.empty()) std::memcpy(p, extra.data(), extra.size());
  std::memcpy(p + extra.size(), vary.data(), vary.size());
  if (compressed) std::memcpy(p + extra.size() + vary.size(), coding.data(), coding.size());
  return {p, n};
}

}  // namespace bufpool::server::http
