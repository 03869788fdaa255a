// bare-uring-responder: the ceiling for an io_uring data path (issue 12), as little as an HTTP
// responder on io_uring can do on this kernel. Per thread: one ring (SINGLE_ISSUER | DEFER_TASKRUN
// where the kernel allows), one listener (SO_REUSEPORT) with a multishot accept, and a provided-buffer
// ring of 4 KiB buffers that the kernel takes from only when bytes arrive (an idle connection holds
// none). Per connection one multishot recv; requests are split on the blank line only (no parsing, no
// bodies); the answers of one completion go out in one send. One io_uring_enter per loop turn submits
// and waits for every connection. Not a server: a benchmark peer.
//   bare-uring-responder [--threads N] [--listen 127.0.0.1:PORT] [--echo]
// --echo: a TCP echo server instead (every byte received is sent back).
// Listens on 127.0.0.1 only; stops on SIGINT/SIGTERM.
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using ceiling::stop;
bool echo_mode = false;
constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
constexpr unsigned buffer_count = 1024;  // provided buffers per thread (a power of two)
constexpr unsigned buffer_size = 4096;
constexpr unsigned group = 0;

enum op : std::uint64_t { op_accept = 0, op_recv = 1, op_send = 2 };

struct conn {
  int fd = -1;
  bool recv_armed = false;
  bool sending = false;
  bool closing = false;
  std::string partial;  // an incomplete request kept from the last completion
  std::string out;      // answers waiting for the send in flight
  std::string in_flight;
  std::size_t sent = 0;
};

std::uint64_t tag(conn* c, op o) { return reinterpret_cast<std::uint64_t>(c) | o; }


class loop {
public:
  explicit loop(std::uint16_t port) {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    p.cq_entries = 16384;
    if (io_uring_queue_init_params(1024, &ring_, &p) < 0) {
      p = {};
      p.flags = IORING_SETUP_CQSIZE;
      p.cq_entries = 16384;
      if (int r = io_uring_queue_init_params(1024, &ring_, &p); r < 0) {
        std::fprintf(stderr, "io_uring_queue_init: %s\n", std::strerror(-r));
        std::exit(1);
      }
    }
    // The provided-buffer ring (liburing 2.3 has no io_uring_setup_buf_ring: map and register it).
    const std::size_t ring_bytes = buffer_count * sizeof(io_uring_buf);
    void* mem = ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    br_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uint64_t>(br_);
    reg.ring_entries = buffer_count;
    reg.bgid = group;
    if (int r = io_uring_register_buf_ring(&ring_, &reg, 0); r < 0) {
      std::fprintf(stderr, "io_uring_register_buf_ring: %s\n", std::strerror(-r));
      std::exit(1);
    }
    io_uring_buf_ring_init(br_);
    buffers_.resize(std::size_t{buffer_count} * buffer_size);
    for (unsigned i = 0; i < buffer_count; ++i) give_back(static_cast<unsigned short>(i), i);
    io_uring_buf_ring_advance(br_, static_cast<int>(buffer_count));
    lfd_ = ceiling::listen_on(port, 0);
    arm_accept();
  }

  void run() {
    while (!stop.load(std::memory_order_relaxed)) {
      __kernel_timespec ts{0, 100 * 1000 * 1000};
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      unsigned head = 0, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        handle(cqe);
      }
      io_uring_cq_advance(&ring_, seen);
      if (returned_ != 0) io_uring_buf_ring_advance(br_, static_cast<int>(returned_));  // one publish per turn
      returned_ = 0;
    }
    ::close(lfd_);
    io_uring_queue_exit(&ring_);
  }

private:
  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    if (s == nullptr) {  // the submission queue is full: hand it to the kernel, then take one
      io_uring_submit(&ring_);
      s = io_uring_get_sqe(&ring_);
    }
    return s;
  }
  void give_back(unsigned short bid, unsigned offset) {
    io_uring_buf_ring_add(br_, buffers_.data() + std::size_t{bid} * buffer_size, buffer_size, bid,
                          io_uring_buf_ring_mask(buffer_count), static_cast<int>(offset));
  }
  void arm_accept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_multishot_accept(s, lfd_, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(s, op_accept);
  }
  void arm_recv(conn* c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv_multishot(s, c->fd, nullptr, 0, 0);
    s->flags |= IOSQE_BUFFER_SELECT;
    s->buf_group = group;
    io_uring_sqe_set_data64(s, tag(c, op_recv));
    c->recv_armed = true;
  }
  void send_next(conn* c) {
    if (c->sending || c->out.empty()) return;
    c->in_flight.swap(c->out);
    c->out.clear();
    c->sent = 0;
    submit_send(c);
  }
  void submit_send(conn* c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, c->fd, c->in_flight.data() + c->sent, c->in_flight.size() - c->sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c, op_send));
    c->sending = true;
  }
  void maybe_free(conn* c) {
    if (!c->closing || c->recv_armed || c->sending) return;
    ::close(c->fd);
    delete c;
  }
  void close_conn(conn* c) {
    if (!c->closing) {
      c->closing = true;
      ::shutdown(c->fd, SHUT_RDWR);  // ends the multishot recv
    }
    maybe_free(c);
  }

  // One completion. Buffers go back to the kernel's ring at once, published once per turn.
  void handle(io_uring_cqe* cqe) {
    const std::uint64_t data = io_uring_cqe_get_data64(cqe);
    const auto o = static_cast<op>(data & 3);
    if (o == op_accept) {
      if (cqe->res >= 0) {
        int one = 1;
        ::setsockopt(cqe->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        auto* c = new conn;
        c->fd = cqe->res;
        arm_recv(c);
      }
      if ((cqe->flags & IORING_CQE_F_MORE) == 0 && !stop.load()) arm_accept();
      return;
    }
    auto* c = reinterpret_cast<conn*>(data & ~std::uint64_t{3});
    if (o == op_send) {
      c->sending = false;
      if (cqe->res <= 0 || c->closing) {
        close_conn(c);
        return;
      }
      c->sent += static_cast<std::size_t>(cqe->res);
      if (c->sent < c->in_flight.size()) submit_send(c);
      else send_next(c);
      return;
    }
    // op_recv
    const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more) c->recv_armed = false;
    if (cqe->res <= 0) {
      if (cqe->res == -ENOBUFS && !c->closing) arm_recv(c);  // the ring ran dry for a moment
      else close_conn(c);
      return;
    }
    const auto bid = static_cast<unsigned short>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    const char* bytes = buffers_.data() + std::size_t{bid} * buffer_size;
    const auto n = static_cast<std::size_t>(cqe->res);
    if (echo_mode) {
      c->out.append(bytes, n);
    } else {
      c->partial.append(bytes, n);
      std::size_t pos = 0;
      for (std::size_t end; (end = c->partial.find("\r\n\r\n", pos)) != std::string::npos; pos = end + 4)
        c->out.append(response);
      c->partial.erase(0, pos);
    }
    give_back(bid, returned_++);
    if (!c->closing) {
      send_next(c);
      if (!more) arm_recv(c);
    }
  }

  io_uring ring_{};
  io_uring_buf_ring* br_ = nullptr;
  std::vector<char> buffers_;
  int lfd_ = -1;
  unsigned returned_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const ceiling::options o = ceiling::parse(argc, argv, 18120);
  echo_mode = o.echo;
  return ceiling::run(o, [&] { loop(o.port).run(); });
}
