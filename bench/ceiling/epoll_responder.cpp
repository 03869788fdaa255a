// bare-epoll-responder: the ceiling for bufpool-server's epoll path (issue 12), as little as an HTTP
// responder can do on this kernel. Per thread: one listener (SO_REUSEPORT), one edge-triggered epoll;
// per connection a fixed 64 KiB input buffer; requests are split on the blank line only (no parsing,
// no bodies); every answer of one read goes out in one write. Not a server: a benchmark peer.
//   bare-epoll-responder [--threads N] [--listen 127.0.0.1:PORT] [--echo]
// --echo: a TCP echo server instead (every byte read is written back, one write per read).
// Listens on 127.0.0.1 only; stops on SIGINT/SIGTERM.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using ceiling::stop;
bool echo_mode = false;
constexpr std::string_view response =
    "HTTP/1.1 200 OK\r\nServer: bare\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

struct conn {
  int fd = -1;
  std::size_t used = 0;  // bytes of an incomplete request kept from the last read
  char in[65536];
};


// Reads until EAGAIN; answers every complete request of each read in one write. False: close it.
bool serve(conn& c, std::string& out) {
  for (;;) {
    const ssize_t n = ::read(c.fd, c.in + c.used, sizeof c.in - c.used);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (echo_mode) {
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = ::write(c.fd, c.in + off, static_cast<std::size_t>(n - off));
        if (w <= 0) return false;
        off += w;
      }
      continue;
    }
    const std::string_view data(c.in, c.used + static_cast<std::size_t>(n));
    std::size_t pos = 0, count = 0;
    for (std::size_t end; (end = data.find("\r\n\r\n", pos)) != std::string_view::npos; pos = end + 4) ++count;
    c.used = data.size() - pos;
    if (c.used == sizeof c.in) return false;  // a request larger than the buffer: not for this peer
    std::memmove(c.in, c.in + pos, c.used);
    if (count == 0) continue;
    out.clear();
    for (std::size_t i = 0; i < count; ++i) out.append(response);
    for (std::size_t off = 0; off < out.size();) {
      const ssize_t w = ::write(c.fd, out.data() + off, out.size() - off);
      if (w <= 0) return false;  // a client that does not read: not for this peer either
      off += static_cast<std::size_t>(w);
    }
  }
}

void worker(std::uint16_t port) {
  const int lfd = ceiling::listen_on(port, SOCK_NONBLOCK);
  const int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the listener
  ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::vector<epoll_event> events(512);
  std::string out;
  while (!stop.load(std::memory_order_relaxed)) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.ptr == nullptr) {
        for (;;) {
          const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0) break;
          int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto* c = new conn;
          c->fd = fd;
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLET | EPOLLRDHUP;
          cev.data.ptr = c;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
        }
        continue;
      }
      auto* c = static_cast<conn*>(events[i].data.ptr);
      if (!serve(*c, out)) {
        ::close(c->fd);
        delete c;
      }
    }
  }
  ::close(ep);
  ::close(lfd);
}

}  // namespace

int main(int argc, char** argv) {
  const ceiling::options o = ceiling::parse(argc, argv, 18110);
  echo_mode = o.echo;
  return ceiling::run(o, [&] { worker(o.port); });
}
