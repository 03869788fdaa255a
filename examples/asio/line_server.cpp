// A line protocol server with Asio and bufpool alone (issue 21, program 1): commands end in CRLF,
// some lines are 100 KiB. Each connection reads with async_read_until into a bufpool::byte_queue (pooled
// blocks, never copied to grow, none held while empty) and answers "<length> <first 8 bytes>\r\n".
// Run alone it serves on 127.0.0.1:0 and drives itself: CLIENTS connections send LINES lines each of
// 16 B to 100 KiB, check every answer, then it prints the pool's statistics and exits 0 (1 on error).
// Usage: bufpool-example-lines [CLIENTS=32] [LINES=200]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>
#include <bufpool/json.hpp>

namespace {

class session : public std::enable_shared_from_this<session> {
public:
  session(asio::ip::tcp::socket s, bufpool::pool& p) : socket_(std::move(s)), pool_(p), queue_(p) {}
  void start() { read(); }

private:
  void read() {
    asio::async_read_until(socket_, bufpool::dynamic_buffer(queue_), "\r\n",
                           [self = shared_from_this()](std::error_code ec, std::size_t n) { self->on_line(ec, n); });
  }
  void on_line(std::error_code ec, std::size_t n) {
    if (ec) return;  // eof or an error: the session ends, its queue's blocks go back
    const std::string_view line = queue_.linearize().substr(0, n - 2);
    char text[64];
    const int len = std::snprintf(text, sizeof text, "%zu %.*s\r\n", line.size(), static_cast<int>(std::min<std::size_t>(8, line.size())), line.data());
    queue_.consume(n);
    bufpool::buffer answer = pool_.get(static_cast<std::size_t>(len));
    std::memcpy(answer.chars(), text, static_cast<std::size_t>(len));
    const asio::const_buffer view = asio::buffer(answer);
    asio::async_write(socket_, view, [self = shared_from_this(), a = std::move(answer)](std::error_code e, std::size_t) {
      if (!e) self->read();
    });
  }
  asio::ip::tcp::socket socket_;
  bufpool::pool& pool_;
  bufpool::byte_queue queue_;
};

void accept(asio::ip::tcp::acceptor& acc, bufpool::pool& p) {
  acc.async_accept([&acc, &p](std::error_code ec, asio::ip::tcp::socket s) {
    if (ec) return;
    std::make_shared<session>(std::move(s), p)->start();
    accept(acc, p);
  });
}

std::string line_of(std::size_t i) {
  static const std::size_t sizes[] = {16, 100, 1000, 4096, 10000, 65536, 102400};
  std::string s(sizes[i % std::size(sizes)], 'x');
  for (std::size_t k = 0; k < s.size(); ++k) s[k] = static_cast<char>('a' + (i + k) % 26);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 32;
  const int lines = argc > 2 ? std::atoi(argv[2]) : 200;
  bufpool::pool pool;  // before the io_context: destroyed after it
  asio::io_context io;
  bufpool::rotation_timer rotation(pool, {&io});
  rotation.start();
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  accept(acc, pool);
  std::thread server([&io] { io.run(); });
  const auto port = acc.local_endpoint().port();
  int failures = 0;
  std::vector<std::thread> drivers;
  std::mutex mu;
  for (int c = 0; c < clients; ++c)
    drivers.emplace_back([&, c] {
      asio::io_context cio;
      asio::ip::tcp::socket s(cio);
      s.connect({asio::ip::make_address("127.0.0.1"), port});
      asio::streambuf in;
      for (int i = 0; i < lines; ++i) {
        const std::string l = line_of(static_cast<std::size_t>(c + i));
        asio::write(s, asio::buffer(l + "\r\n"));
        const std::size_t n = asio::read_until(s, in, "\r\n");
        std::string got(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(n));
        in.consume(n);
        const std::string want = std::to_string(l.size()) + " " + l.substr(0, 8) + "\r\n";
        if (got != want) {
          std::lock_guard lk(mu);
          ++failures;
        }
      }
    });
  for (auto& d : drivers) d.join();
  rotation.stop();
  asio::post(io, [&] { acc.close(); });
  io.stop();
  server.join();
  const auto snap = pool.snapshot();
  std::printf("lines: %d clients x %d lines, %d wrong; pool gets %llu, misses %llu\n", clients, lines, failures,
              static_cast<unsigned long long>(snap.totals.gets), static_cast<unsigned long long>(snap.totals.misses));
  return failures == 0 ? 0 : 1;
}
