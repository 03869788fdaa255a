// gzip for answers (fortio's gzip parameter): libdeflate, level 1, one compressor per thread, the
// result in one pooled buffer. libdeflate was measured against zlib on the answers /echo compresses
// (docs/benchmarks.md 12): 1.3-1.8x faster on 256 KiB, about even on 4 KiB. It compresses whole
// buffers only, so the input is one contiguous span and the output one pooled buffer of at most the
// pool's largest class; an answer that does not fit there goes out uncompressed (identity is always an
// acceptable coding), which the caller counts.
#pragma once

#include <span>
#include <string_view>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

#include "stats.hpp"

namespace bufpool::server::http {

/// `in` as one gzip member in a pooled buffer of at most `max_out` bytes; an empty buffer when the
/// result would not fit. Throws std::bad_alloc when no buffer (or no compressor) can be had.
bufpool::buffer gzip(bufpool::pool& pool, std::string_view in, std::size_t max_out);

/// An answer's body compressed for exchange::gzip_answer, whichever engine sends it: `body`, or (when
/// null) the held pieces made contiguous first; at most the pool's largest class. Counts
/// echo_gzip / echo_gzip_skipped in `stats`; an empty buffer when it did not fit (sent uncompressed).
bufpool::buffer compress_answer(bufpool::pool& pool, worker_stats& stats, const std::string_view* body,
                                std::span<const bufpool::buffer> held);

/// The extra header lines of an answer for which gzip was asked: `extra`, then "Vary: Accept-Encoding"
/// and, when `compressed`, "Content-Encoding: gzip", written into `text` (a pooled buffer the caller
/// keeps until the head is written). Returns the lines. Throws std::bad_alloc when no buffer can be had.
std::string_view coding_headers(bufpool::pool& pool, std::string_view extra, bool compressed, bufpool::buffer& text);

}  // namespace bufpool::server::http
