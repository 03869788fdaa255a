// Pub/sub fan-out with Asio and bufpool alone (issue 21, program 2): each message (1 to 64 KiB) is one
// pooled buffer, shared (bufpool::shared_buffer: the count in the buffer's header) by every
// subscriber's write: one pool get per message, no copy. Run alone it serves on 127.0.0.1:0 with
// SUBSCRIBERS connections (a second io_context reads them), publishes MESSAGES messages, checks that
// every subscriber got every byte in order, prints the pool's gets per message and exits 0 (1 on error).
// Usage: bufpool-example-fanout [SUBSCRIBERS=1000] [MESSAGES=50]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>

namespace {

// One subscriber on the server side: a queue of shared messages, written one after the other.
struct subscriber : std::enable_shared_from_this<subscriber> {
  explicit subscriber(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  void send(bufpool::shared_buffer m) {
    queue.push_back(std::move(m));  // a copy of the handle: one increment, no byte copied
    if (queue.size() == 1) write();
  }
  void write() {
    asio::async_write(socket, asio::buffer(queue.front()), [self = shared_from_this()](std::error_code ec, std::size_t) {
      self->queue.pop_front();  // the last holder of a message returns it to the pool
      if (!ec && !self->queue.empty()) self->write();
    });
  }
  asio::ip::tcp::socket socket;
  std::deque<bufpool::shared_buffer> queue;
};

unsigned char byte_at(std::size_t message, std::size_t i) { return static_cast<unsigned char>((message * 131 + i) & 0xff); }

}  // namespace

int main(int argc, char** argv) {
  const std::size_t subscribers = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000;
  const std::size_t messages = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 50;
  bufpool::pool pool;
  asio::io_context io, clients;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::vector<std::shared_ptr<subscriber>> subs;
  std::vector<asio::ip::tcp::socket> readers;
  for (std::size_t i = 0; i < subscribers; ++i) {
    readers.emplace_back(clients);
    readers.back().connect(acc.local_endpoint());
    subs.push_back(std::make_shared<subscriber>(acc.accept()));
  }
  // The readers: each counts its bytes and checks them against the pattern, message by message.
  std::size_t total = 0;
  std::vector<std::size_t> sizes;
  for (std::size_t m = 0; m < messages; ++m) {
    sizes.push_back(1024 + (m * 7919) % (64 * 1024 - 1024));
    total += sizes.back();
  }
  struct progress {
    std::size_t got = 0, message = 0, offset = 0;
    bool bad = false;
    std::vector<unsigned char> buf = std::vector<unsigned char>(16384);
  };
  std::vector<progress> prog(subscribers);
  std::function<void(std::size_t)> read = [&](std::size_t i) {
    readers[i].async_read_some(asio::buffer(prog[i].buf), [&, i](std::error_code ec, std::size_t n) {
      auto& p = prog[i];
      for (std::size_t k = 0; k < n; ++k) {
        if (p.buf[k] != byte_at(p.message, p.offset)) p.bad = true;
        if (++p.offset == sizes[p.message]) {
          ++p.message;
          p.offset = 0;
        }
      }
      p.got += n;
      if (!ec && p.got < total) read(i);
    });
  };
  for (std::size_t i = 0; i < subscribers; ++i) read(i);
  std::thread reader_thread([&] { clients.run_for(std::chrono::seconds(60)); });
  const auto before = pool.snapshot().totals.gets;
  for (std::size_t m = 0; m < messages; ++m) {
    bufpool::buffer b = pool.get(sizes[m]);
    for (std::size_t k = 0; k < sizes[m]; ++k) b.data()[k] = std::byte{byte_at(m, k)};
    asio::post(io, [&subs, msg = std::move(b).share()] {
      for (auto& s : subs) s->send(msg);
    });
  }
  const auto gets = pool.snapshot().totals.gets - before;
  io.run_for(std::chrono::seconds(60));  // returns once every write is done (no more work)
  reader_thread.join();
  std::size_t complete = 0, bad = 0;
  for (const auto& p : prog) {
    complete += p.got == total;
    bad += p.bad;
  }
  subs.clear();
  std::printf("fan-out: %zu messages (%zu bytes each subscriber) to %zu subscribers: %zu complete, %zu corrupt; "
              "pool gets per message %.2f, outstanding after %lld\n",
              messages, total, subscribers, complete, bad, static_cast<double>(gets) / static_cast<double>(messages),
              static_cast<long long>(pool.snapshot().totals.outstanding));
  return complete == subscribers && bad == 0 && gets == messages && pool.snapshot().totals.outstanding == 0 ? 0 : 1;
}
