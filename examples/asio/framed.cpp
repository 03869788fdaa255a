// Length-prefixed frames with Asio and bufpool alone (issue 21, program 3): an 8-byte header (the
// body's length, little-endian) and a body. The server runs an io_context per thread (two), reads the
// header, then the body into a pooled buffer taken with headroom for the header, and echoes each frame
// as that one buffer: the header is prepended in front of the body (no second buffer, no copy, one
// write). The frame, shared, is then dropped on the *other* io_context's thread, so buffers go back to the pool from a thread that did not take them. A rotation_timer ages
// the pool on both contexts; the statistics are printed as JSON at the end.
// Run alone it drives itself: CLIENTS clients send FRAMES frames each (0 to 32 KiB), check every echo,
// and it exits 0 (1 on error).  Usage: bufpool-example-framed [CLIENTS=8] [FRAMES=500]
#include <array>
#include <atomic>
#include <functional>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>
#include <bufpool/json.hpp>

namespace {

constexpr std::size_t header_bytes = 8;

class connection : public std::enable_shared_from_this<connection> {
public:
  connection(asio::ip::tcp::socket s, bufpool::pool& p, asio::io_context& other)
      : socket_(std::move(s)), pool_(p), other_(other) {}
  void start() { read_header(); }

private:
  void read_header() {
    asio::async_read(socket_, asio::buffer(head_), [self = shared_from_this()](std::error_code ec, std::size_t) {
      if (!ec) self->read_body();
    });
  }
  void read_body() {
    std::uint64_t length = 0;
    std::memcpy(&length, head_.data(), header_bytes);
    if (length > (1u << 20)) return;  // a bad frame: drop the connection
    body_ = pool_.get(static_cast<std::size_t>(length), header_bytes);  // room for the header in front
    const asio::mutable_buffer view = asio::buffer(body_);
    asio::async_read(socket_, view, [self = shared_from_this()](std::error_code ec, std::size_t) {
      if (!ec) self->echo();
    });
  }
  void echo() {
    std::memcpy(body_.prepend(header_bytes).data(), head_.data(), header_bytes);  // header + body, one buffer
    bufpool::shared_buffer frame = std::move(body_).share();
    const asio::const_buffer view = frame;
    asio::async_write(socket_, view, [self = shared_from_this(), frame](std::error_code ec, std::size_t) mutable {
      asio::post(self->other_, [f = std::move(frame)] {});  // the buffers go back on the other thread
      if (!ec) self->read_header();
    });
  }
  asio::ip::tcp::socket socket_;
  bufpool::pool& pool_;
  asio::io_context& other_;
  std::array<std::byte, header_bytes> head_{};
  bufpool::buffer body_;
};

}  // namespace

int main(int argc, char** argv) {
  const int clients = argc > 1 ? std::atoi(argv[1]) : 8;
  const int frames = argc > 2 ? std::atoi(argv[2]) : 500;
  bufpool::pool pool;
  std::array<asio::io_context, 2> io;
  auto work0 = asio::make_work_guard(io[0]);
  auto work1 = asio::make_work_guard(io[1]);
  bufpool::rotation_timer rotation(pool, {&io[0], &io[1]}, std::chrono::milliseconds(100));
  rotation.start();
  asio::ip::tcp::acceptor acc(io[0], {asio::ip::make_address("127.0.0.1"), 0});
  int next = 0;
  std::function<void()> accept = [&] {
    const int k = next++ % 2;
    acc.async_accept(io[k], [&, k](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      std::make_shared<connection>(std::move(s), pool, io[1 - k])->start();
      accept();
    });
  };
  accept();
  std::thread t0([&] { io[0].run(); }), t1([&] { io[1].run(); });
  std::atomic<int> wrong{0};
  std::vector<std::thread> drivers;
  for (int c = 0; c < clients; ++c)
    drivers.emplace_back([&, c] {
      asio::io_context cio;
      asio::ip::tcp::socket s(cio);
      s.connect(acc.local_endpoint());
      std::mt19937 rng(static_cast<unsigned>(c));
      std::vector<char> body, back;
      for (int f = 0; f < frames; ++f) {
        body.resize(rng() % 32768);
        for (auto& ch : body) ch = static_cast<char>(rng());
        const std::uint64_t length = body.size();
        std::array<asio::const_buffer, 2> out{asio::buffer(&length, header_bytes), asio::buffer(body)};
        asio::write(s, out);
        std::uint64_t echoed = 0;
        asio::read(s, asio::buffer(&echoed, header_bytes));
        back.resize(static_cast<std::size_t>(echoed));
        asio::read(s, asio::buffer(back));
        if (echoed != length || back != body) ++wrong;
      }
    });
  for (auto& d : drivers) d.join();
  rotation.stop();
  asio::post(io[0], [&] { acc.close(); });
  work0.reset();
  work1.reset();
  io[0].stop();
  io[1].stop();
  t0.join();
  t1.join();
  const nlohmann::json stats = pool.snapshot();
  std::cout << stats["totals"].dump() << "\n";
  std::printf("framed: %d clients x %d frames, %d wrong\n", clients, frames, wrong.load());
  return wrong == 0 ? 0 : 1;
}
