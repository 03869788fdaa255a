// output_batch: the answers of one batch, in pooled buffers, handed out as a gather list. Bytes are
// appended to the last buffer while it has room, else to a new one of at least 4 KiB; both vectors keep
// their capacity, so a steady connection allocates nothing per request. No I/O: whoever sends the
// gather list calls clear() once the kernel no longer reads it.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <span>
#include <string_view>
#include <vector>

#include <sys/uio.h>

#include <bufpool/buffer.hpp>
#include <bufpool/pool.hpp>

namespace bufpool::server::http {

class output_batch {
public:
  static constexpr std::size_t buffer_bytes = 4096;

  output_batch(bufpool::pool& pool, std::pmr::memory_resource* memory) : pool_(pool), out_(memory), iov_(memory) {
    out_.reserve(8);
    iov_.reserve(8);
  }

  /// Room for n more bytes at the end, contiguous (the last buffer's tail, or a new buffer); write
  /// into it, then commit() what was written. Throws std::bad_alloc when no buffer can be had.
  char* space(std::size_t n);
  void commit(std::size_t n) noexcept {
    bufpool::buffer& b = out_.back();
    b.resize(b.size() + n);
  }
  void append(std::string_view bytes);

  bool empty() const noexcept { return out_.empty(); }
  /// Bytes appended so far.
  std::size_t bytes() const noexcept {
    std::size_t total = 0;
    for (const auto& b : out_) total += b.size();
    return total;
  }
  /// The gather list of everything appended, and its total in bytes.
  std::span<const iovec> gather(std::size_t& total);
  /// The buffers appended so far.
  std::span<const bufpool::buffer> pieces() const noexcept { return out_; }
  /// Appends b whole (no copy); the next bytes go to a new buffer.
  void push(bufpool::buffer b) {
    out_.push_back(std::move(b));
    open_ = false;
  }
  /// Moves every buffer of `from` to the end of this batch (no copy); `from` is left empty.
  void splice(output_batch& from);
  /// Every buffer back to the pool.
  void clear() noexcept {
    out_.clear();
    open_ = false;
  }

  /// n bytes of exchange::pattern_cycle, repeated (exchange::body_pattern), copied into the batch.
  void append_pattern(std::size_t n);
  /// Moves piece i out (no copy; the slot is left empty); the next bytes go to a new buffer.
  bufpool::buffer take_piece(std::size_t i) noexcept {
    open_ = false;
    return std::move(out_[i]);
  }

private:
  bufpool::pool& pool_;
  std::pmr::vector<bufpool::buffer> out_;
  std::pmr::vector<iovec> iov_;
  bool open_ = false;  // the last buffer of out_ may take more bytes
};

}  // namespace bufpool::server::http
