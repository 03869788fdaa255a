// libFuzzer target: one HTTP connection of bufpool-server fed arbitrary bytes, split at arbitrary
// points. The connection runs on a worker whose io_context this target drives by hand, over one end of
// a socketpair; the input goes in through the other end in pieces whose lengths the input's first
// bytes choose, and whatever the server answers is read and discarded so that it never stalls.
// After each input the connection must be gone and every pooled buffer back (else: trap).
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "http_connection.hpp"
#include "settings.hpp"
#include "worker.hpp"

namespace {

using namespace bufpool::server;

struct fixture {
  bufpool::pool pool;
  server_settings settings;
  std::atomic<bool> draining{false};
  std::unique_ptr<http_context> ctx;
  fixture() {
    settings.http.max_header_bytes = 2048;  // small limits: the fuzzer reaches them
    settings.http.max_uri_bytes = 512;
    settings.http.max_body_bytes = 4096;
    settings.http.max_headers = 20;
    settings.http.max_pipeline = 4;
    settings.http.read_buffer_bytes = 256;
    settings.http.linger_timeout = std::chrono::microseconds(0);
    ctx = std::make_unique<http_context>(http_context{settings.http, false, draining, {}});
  }
};

void drain(int fd) {
  char sink[65536];
  while (::read(fd, sink, sizeof sink) > 0) {
  }
}

void pump(asio::io_context& io, int peer) {
  for (int i = 0; i < 64; ++i) {
    io.restart();
    const std::size_t ran = io.poll();
    drain(peer);
    if (ran == 0) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  if (size < 2) return 0;
  const std::uint8_t split_seed = data[0];
  data += 1;
  size -= 1;
  {
    worker w(0, f.pool, std::chrono::milliseconds(100));
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
    ::fcntl(fds[1], F_SETFL, O_NONBLOCK);
    {
      asio::ip::tcp::socket s(w.context());
      std::error_code ec;
      s.assign(asio::ip::tcp::v4(), fds[0], ec);  // a stream socket: TCP options fail harmlessly
      std::make_shared<http_connection>(w, std::move(s), *f.ctx)->start();
    }
    pump(w.context(), fds[1]);
    // Pieces of 1..16 bytes, or the rest at once, as the seed byte says.
    std::size_t at = 0;
    unsigned step = split_seed;
    while (at < size) {
      std::size_t n = (step & 0x80) != 0 ? size - at : 1 + (step & 0x0f);
      n = std::min(n, size - at);
      const ssize_t put = ::send(fds[1], data + at, n, MSG_NOSIGNAL);  // the server may have closed
      if (put <= 0) break;
      at += static_cast<std::size_t>(put);
      step = step * 33 + 7;
      pump(w.context(), fds[1]);
    }
    ::shutdown(fds[1], SHUT_WR);
    pump(w.context(), fds[1]);
    ::close(fds[1]);
    pump(w.context(), -1);
    w.stop();  // closes what is still open and runs the handlers that follow
  }
  const auto snap = f.pool.snapshot();
  if (snap.totals.outstanding != 0 || snap.oversize.outstanding != 0) __builtin_trap();  // a buffer leaked
  return 0;
}
