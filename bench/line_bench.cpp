// The line server of issue 21 (examples/asio/line_server.cpp's protocol) with two dynamic buffers, in
// one run: bufpool::byte_queue through bufpool::dynamic_buffer(q), and asio::dynamic_buffer(std::string)
// (the peer). 32 client threads send lines of 16 B to 100 KiB (blocking, one at a time) to one server
// thread on 127.0.0.1, which answers each with "<length>\r\n". Per variant: lines per second, the
// server thread's CPU time per line (CLOCK_THREAD_CPUTIME_ID) and its heap allocations per line
// (a counting global operator new) over the measured part (after a warm-up of the same length).
// Usage: line_bench [SECONDS=3] [CLIENTS=32]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <type_traits>
#include <ctime>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>

#include "support.hpp"

namespace {

std::atomic<std::uint64_t> lines_done{0};

template <class Storage>
class session : public std::enable_shared_from_this<session<Storage>> {
public:
  session(asio::ip::tcp::socket s, bufpool::pool& p) : socket_(std::move(s)), storage_(make(p)) {}
  void start() { read(); }

private:
  static Storage make(bufpool::pool& p) {
    if constexpr (std::is_same_v<Storage, bufpool::byte_queue>) return bufpool::byte_queue(p);
    else return Storage();
  }
  auto dyn() {
    if constexpr (std::is_same_v<Storage, bufpool::byte_queue>) return bufpool::dynamic_buffer(storage_);
    else return asio::dynamic_buffer(storage_);
  }
  void read() {
    asio::async_read_until(socket_, dyn(), "\r\n", [self = this->shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return;
      const int len = std::snprintf(self->answer_, sizeof self->answer_, "%zu\r\n", n - 2);
      self->dyn().consume(n);
      lines_done.fetch_add(1, std::memory_order_relaxed);
      asio::async_write(self->socket_, asio::buffer(self->answer_, static_cast<std::size_t>(len)),
                        [self](std::error_code e, std::size_t) {
                          if (!e) self->read();
                        });
    });
  }
  asio::ip::tcp::socket socket_;
  Storage storage_;
  char answer_[32];
};

template <class Storage>
void run(const char* name, double seconds, int clients) {
  bufpool::pool pool;
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::function<void()> accept = [&] {
    acc.async_accept([&](std::error_code ec, asio::ip::tcp::socket s) {
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
      asio::io_context cio;
      asio::ip::tcp::socket s(cio);
      s.connect(acc.local_endpoint());
      static const std::size_t sizes[] = {16, 16, 64, 100, 200, 1000, 4096, 16384, 102400};
      std::vector<std::string> lines;
      for (std::size_t k : sizes) lines.push_back(std::string(k, 'x') + "\r\n");
      char back[64];
      for (std::size_t i = static_cast<std::size_t>(c); !stop.load(std::memory_order_relaxed); ++i) {
        asio::write(s, asio::buffer(lines[i % lines.size()]));
        std::size_t got = 0;
        do got += s.read_some(asio::buffer(back + got, sizeof back - got));
        while (back[got - 1] != '\n');
      }
    });
  bench::measured m;
  std::thread server([&] { m = bench::warm_then_measure(io, seconds, lines_done, stop); });
  server.join();
  for (auto& d : drivers) d.join();
  const double n = static_cast<double>(m.events);
  std::printf("%-34s %10.0f lines/s %8.2f us server CPU/line %8.3f allocations/line\n", name, n / seconds,
              1e6 * m.cpu_s / n, static_cast<double>(m.allocations) / n);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3;
  const int clients = argc > 2 ? std::atoi(argv[2]) : 32;
  std::printf("# line_bench: %d clients, lines of 16 B to 100 KiB, %.0f s measured after %.0f s warm-up\n", clients,
              seconds, seconds);
  for (int round = 0; round < 2; ++round) {
    run<bufpool::byte_queue>("bufpool::byte_queue (v2 face)", seconds, clients);
    run<std::string>("asio::dynamic_buffer(std::string)", seconds, clients);
  }
}
