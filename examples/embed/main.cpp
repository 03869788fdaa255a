// embed_echo: an Asio TCP echo server whose reads go into pooled buffers, with the pool's rotation
// timer, and a client in the same program that checks every echo. It listens on 127.0.0.1, on a port
// the kernel picks, serves `clients` connections of `rounds` messages each, prints the pool's
// statistics as JSON and exits 0 if every echo matched and every buffer came back.
//
// The lifetime rule: declare the pool before the io_contexts, so that it is destroyed after them
// (and after any handler still holding a buffer). The other order is safe too (a buffer may outlive
// its pool and frees itself when returned), but a pool destroyed first cannot count them for you.
#include <array>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include <bufpool/bufpool.hpp>
#include <bufpool/json.hpp>
#include <bufpool/rotation_timer.hpp>
#include <bufpool/version.hpp>

namespace {
using asio::ip::tcp;

// One connection: read into a pooled buffer, write the bytes back from that same buffer, repeat.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket s, bufpool::pool& p) : socket_(std::move(s)), pool_(p) {}
  void start() { read(); }

private:
  void read() {
    buf_ = pool_.get(4096);  // the previous buffer (if any) goes back to the pool here
    socket_.async_read_some(asio::buffer(buf_), [self = shared_from_this()](std::error_code ec, std::size_t n) {
      if (ec) return;  // the client closed: the buffer returns when the session dies
      self->buf_.resize(n);
      asio::async_write(self->socket_, asio::buffer(self->buf_), [self](std::error_code wec, std::size_t) {
        if (!wec) self->read();
      });
    });
  }
  tcp::socket socket_;
  bufpool::pool& pool_;
  bufpool::buffer buf_;
};

void accept(tcp::acceptor& acceptor, std::array<asio::io_context, 2>& workers, bufpool::pool& pool, std::size_t next) {
  // Each connection lives on one worker, round-robin: an io_context per thread, as the server does.
  acceptor.async_accept(workers[next % 2], [&, next](std::error_code ec, tcp::socket s) {
    if (ec) return;
    std::make_shared<session>(std::move(s), pool)->start();
    accept(acceptor, workers, pool, next + 1);
  });
}
}  // namespace

int main() {
  constexpr int clients = 8;
  constexpr int rounds = 200;
  bufpool::pool pool;                         // first: destroyed last
  std::array<asio::io_context, 2> workers;    // one per thread
  asio::io_context accept_context;
  tcp::acceptor acceptor(accept_context, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const unsigned short port = acceptor.local_endpoint().port();
  accept(acceptor, workers, pool, 0);

  bufpool::rotation_timer rotation(pool, {&workers[0], &workers[1]}, std::chrono::milliseconds(100));
  rotation.start();
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& w : workers) guards.push_back(asio::make_work_guard(w));
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w.run(); });
  std::thread acceptor_thread([&] { accept_context.run(); });

  // The client: blocking sockets, every echo compared with what was sent.
  int mismatches = 0;
  {
    asio::io_context client_context;
    std::vector<tcp::socket> socks;
    for (int c = 0; c < clients; ++c) {
      socks.emplace_back(client_context);
      socks.back().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    }
    for (int r = 0; r < rounds; ++r) {
      for (int c = 0; c < clients; ++c) {
        const std::string msg = "client " + std::to_string(c) + " round " + std::to_string(r) + std::string(static_cast<std::size_t>(r % 97), 'x');
        asio::write(socks[c], asio::buffer(msg));
        std::string back(msg.size(), '\0');
        asio::read(socks[c], asio::buffer(back));
        if (back != msg) ++mismatches;
      }
    }
  }  // the client sockets close: each session's read fails and the session (and its buffer) goes

  accept_context.stop();
  acceptor_thread.join();
  rotation.stop();
  guards.clear();
  for (auto& t : threads) t.join();  // run() returns once the sessions are gone

  const bufpool::pool_snapshot s = pool.snapshot();
  std::cout << nlohmann::json{{"bufpool_version", BUFPOOL_VERSION_STRING}, {"pool", s}}.dump(2) << '\n';
  const bool ok = mismatches == 0 && s.totals.outstanding == 0 && s.totals.gets >= clients * rounds;
  std::fprintf(stderr, "embed_echo: %d connections x %d echoes, %d mismatches, %lld buffers out: %s\n", clients,
               rounds, mismatches, static_cast<long long>(s.totals.outstanding), ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
