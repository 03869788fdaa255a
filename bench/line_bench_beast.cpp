// The line server of issue 21 beside Beast's flat_buffer, on Boost.Asio (Beast needs it). Asio's
// DynamicBuffer_v1 algorithms (async_read_until) decay-copy a flat_buffer passed by reference, so a
// Beast program reads lines with its own loop: prepare, async_read_some, commit, search, consume.
// Both variants here run that same loop, one on bufpool::byte_queue's v1 face (pooled 4 KiB blocks),
// one on boost::beast::flat_buffer (one contiguous allocation that grows), in one run, two rounds.
// 32 client threads (blocking POSIX sockets) send lines of 16 B to 100 KiB one at a time to one
// server thread on 127.0.0.1, which answers "<length>\r\n". Per variant: lines per second, the server
// thread's CPU per line, its heap allocations per line (a counting operator new), after a warm-up.
// Usage: line_bench_beast [SECONDS=3] [CLIENTS=32]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>  // before Boost.Asio 1.74's awaitable.hpp, which uses std::exchange without it
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <bufpool/bufpool.hpp>

#include "support.hpp"

namespace net = boost::asio;

namespace {

std::atomic<std::uint64_t> lines_done{0};
constexpr std::size_t read_bytes = 16384;

template <class Storage>
class session : public std::enable_shared_from_this<session<Storage>> {
public:
  session(net::ip::tcp::socket s, bufpool::pool& p) : socket_(std::move(s)), storage_(make(p)) {}
  void start() { read(); }

private:
  static Storage make(bufpool::pool& p) {
    if constexpr (std::is_same_v<Storage, bufpool::byte_queue>) return bufpool::byte_queue(p);
    else return Storage();
  }
  void read() {
    socket_.async_read_some(storage_.prepare(read_bytes),
                            [self = this->shared_from_this()](boost::system::error_code ec, std::size_t n) {
                              if (ec) return;
                              self->storage_.commit(n);
                              self->scan();
                            });
  }
  // Looks for "\r\n" in what was not searched yet; a line found is answered, else read on.
  void scan() {
    std::size_t at = 0;
    char prev = 0;
    const auto seq = storage_.data();
    for (auto it = net::buffer_sequence_begin(seq); it != net::buffer_sequence_end(seq); ++it) {
      const net::const_buffer b = *it;
      const char* p = static_cast<const char*>(b.data());
      const std::size_t len = b.size();
      std::size_t from = scanned_ > at ? scanned_ - at : 0;
      if (from > 0 && from <= len) prev = p[from - 1];
      for (std::size_t i = from; i < len; ++i) {
        if (p[i] == '\n' && (i > 0 ? p[i - 1] : prev) == '\r') {
          answer(at + i + 1);
          return;
        }
      }
      if (len > 0) prev = p[len - 1];
      at += len;
    }
    scanned_ = at;
    read();
  }
  void answer(std::size_t line) {
    const int len = std::snprintf(answer_, sizeof answer_, "%zu\r\n", line - 2);
    storage_.consume(line);
    scanned_ = 0;
    lines_done.fetch_add(1, std::memory_order_relaxed);
    net::async_write(socket_, net::buffer(answer_, static_cast<std::size_t>(len)),
                     [self = this->shared_from_this()](boost::system::error_code e, std::size_t) {
                       if (!e) self->read();
                     });
  }
  net::ip::tcp::socket socket_;
  Storage storage_;
  std::size_t scanned_ = 0;
  char answer_[32];
};

template <class Storage>
void run(const char* name, double seconds, int clients) {
  bufpool::pool pool;
  net::io_context io;
  net::ip::tcp::acceptor acc(io, {net::ip::make_address("127.0.0.1"), 0});
  const unsigned short port = acc.local_endpoint().port();
  std::function<void()> accept = [&] {
    acc.async_accept([&](boost::system::error_code ec, net::ip::tcp::socket s) {
      if (ec) return;
      std::make_shared<session<Storage>>(std::move(s), pool)->start();
      accept();
    });
  };
  accept();
  std::atomic<bool> stop{false};
  std::vector<std::thread> drivers;
  for (int c = 0; c < clients; ++c)
    drivers.emplace_back([&, c] {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(port);
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) std::abort();
      static const std::size_t sizes[] = {16, 16, 64, 100, 200, 1000, 4096, 16384, 102400};
      std::vector<std::string> lines;
      for (std::size_t k : sizes) lines.push_back(std::string(k, 'x') + "\r\n");
      char back[64];
      for (std::size_t i = static_cast<std::size_t>(c); !stop.load(std::memory_order_relaxed); ++i) {
        const std::string& l = lines[i % lines.size()];
        for (std::size_t sent = 0; sent < l.size();) {
          const ssize_t k = ::send(fd, l.data() + sent, l.size() - sent, MSG_NOSIGNAL);
          if (k <= 0) std::abort();
          sent += static_cast<std::size_t>(k);
        }
        std::size_t got = 0;
        do {
          const ssize_t k = ::recv(fd, back + got, sizeof back - got, 0);
          if (k <= 0) std::abort();
          got += static_cast<std::size_t>(k);
        } while (back[got - 1] != '\n');
      }
      ::close(fd);
    });
  bench::measured m;
  std::thread server([&] { m = bench::warm_then_measure(io, seconds, lines_done, stop); });
  server.join();
  for (auto& d : drivers) d.join();
  const double n = static_cast<double>(m.events);
  std::printf("%-40s %10.0f lines/s %8.2f us server CPU/line %8.3f allocations/line\n", name, n / seconds,
              1e6 * m.cpu_s / n, static_cast<double>(m.allocations) / n);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3;
  const int clients = argc > 2 ? std::atoi(argv[2]) : 32;
  std::printf("# line_bench_beast: %d clients, lines of 16 B to 100 KiB, %.0f s measured after %.0f s warm-up\n",
              clients, seconds, seconds);
  for (int round = 0; round < 2; ++round) {
    run<bufpool::byte_queue>("bufpool::byte_queue (v1 face, own loop)", seconds, clients);
    run<boost::beast::flat_buffer>("boost::beast::flat_buffer (own loop)", seconds, clients);
  }
}
