// io::uring_stream: a TCP connection served by its worker's io_uring ring (io.backend = io_uring;
// docs/design.md 2.6). Input is a one-shot recv into a buffer of the ring's provided-buffer ring, which
// the kernel picks only when bytes arrive; at most one received buffer waits here (a recv is armed only
// while there is none). A body that streams in reads past the ring: after a recv that filled its ring
// buffer, the next reads are plain non-blocking recv calls into pooled buffers twice as large each time
// (read_size), until one finds the socket empty; then the ring's recv is armed again, so a waiting
// connection holds no buffer. Output is one SENDMSG per batch; a short send goes on from its completion.
//
// Lifetime: the stream keeps its owner alive (stream_owner::lifeline) while any of its operations is in
// flight or its recv waits for ring buffers: one reference for all of them, taken when the first starts
// and dropped when the last ends. The descriptor is closed by the destructor, which therefore runs after
// the last completion that names it: closing it earlier would free its number while a queued operation
// still names it, and the next socket opened in the process could get that number.
#pragma once

#include <memory>
#include <memory_resource>
#include <vector>

#include <sys/socket.h>

#include "io/stream.hpp"
#include "io/uring.hpp"

namespace bufpool::server {
class worker;
}

namespace bufpool::server::io {

class uring_stream final : public stream {
public:
  uring_stream(worker& w, int fd, read_size sizes, stream_owner& owner);
  ~uring_stream() override;
  recv_status receive(bufpool::buffer& b, std::size_t& n, std::size_t expected, bool wait) override;
  void wait_input() override;
  send_status send(std::span<const iovec> iov, std::size_t total) override;
  discard_status discard(std::size_t max) override;
  bool shutdown_send() noexcept override;
  void close() override;
  int fd() const noexcept override { return fd_; }

private:
  struct op final : uring_op {
    uring_stream* s = nullptr;
    bool recv = false;
    void complete(int res, unsigned flags) override;
    bool buffers_available() override;
  };
  enum class input_end : std::uint8_t { none, eof, error };

  void arm_recv();
  recv_status read_directly(bufpool::buffer& b, std::size_t& n, std::size_t size);
  void hold();
  void release();
  void on_recv(int res, unsigned flags);
  void on_send(int res);

  worker& w_;
  uring_loop& ring_;
  int fd_;
  stream_owner& owner_;
  read_size size_;
  op recv_op_;
  op send_op_;
  std::shared_ptr<void> self_;  // the owner, while ops_ > 0
  unsigned ops_ = 0;
  // A received buffer not handed out yet (at most one).
  bufpool::buffer in_;
  std::size_t in_bytes_ = 0;
  bool recv_armed_ = false;
  bool recv_starved_ = false;   // the recv ended with ENOBUFS: armed again when the ring has buffers
  bool no_memory_ = false;      // ENOBUFS, the pool is out of memory, and request bytes wait
  bool discarding_ = false;     // lingering: what arrives is dropped
  bool closed_ = false;
  bool reset_on_close_ = false;  // bytes came after close(): the destructor's close resets
  input_end input_end_ = input_end::none;
  std::pmr::vector<iovec> iov_;  // what a short send left, when it must go on
  msghdr msg_{};
  std::size_t send_total_ = 0;
  std::size_t send_done_ = 0;
};

}  // namespace bufpool::server::io
