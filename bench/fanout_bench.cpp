// The fan-out of issue 21 (examples/asio/fanout.cpp's shape) with three message types, in one run:
// bufpool::shared_buffer (one pool get per message, the count in the buffer's header), its one-thread
// twin bufpool::local_shared_buffer (the count without atomic operations), and
// std::shared_ptr<const std::string> (the peer: std::make_shared, so one allocation for the count and
// the string object, plus the string's bytes). Each message (1 to 64 KiB, sizes from a fixed seed)
// is made once from a source pattern (one copy in both variants: the bytes arriving) and written to
// SUBSCRIBERS sockets on 127.0.0.1 by one publisher thread; a second thread reads and discards.
// At most WINDOW messages are in flight per subscriber (a fixed ring per subscriber: the queue itself
// allocates nothing). Per variant: messages per second, subscriber writes per second, the publisher
// thread's CPU per message, its heap allocations per message (a counting operator new) and pool gets
// per message, over the measured part after a warm-up.
// Usage: fanout_bench [SECONDS=3] [SUBSCRIBERS=1000] [WINDOW=4]
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>

#include "support.hpp"

namespace {

using string_message = std::shared_ptr<const std::string>;

asio::const_buffer view(const bufpool::shared_buffer& m) { return m; }
asio::const_buffer view(const bufpool::local_shared_buffer& m) { return m; }
asio::const_buffer view(const string_message& m) { return asio::buffer(*m); }

constexpr std::size_t max_window = 16;

template <class Message>
struct publisher;

// One subscriber's server side: a fixed ring of the messages it still has to write.
template <class Message>
struct subscriber {
  asio::ip::tcp::socket socket;
  std::array<Message, max_window> ring{};
  std::size_t head = 0, count = 0;
  publisher<Message>* pub = nullptr;

  explicit subscriber(asio::ip::tcp::socket s) : socket(std::move(s)) {}
  void send(const Message& m);
  void write() {
    asio::async_write(socket, view(ring[head]), [this](std::error_code ec, std::size_t) {
      if (ec) return;
      ring[head] = Message();  // the last holder returns the message
      head = (head + 1) % max_window;
      if (count-- == pub->window) --pub->full;
      if (count > 0) write();
      pub->on_written();
    });
  }
};

template <class Message>
struct publisher {
  bufpool::pool& pool;
  std::vector<std::unique_ptr<subscriber<Message>>> subs;
  std::size_t window;
  std::vector<std::uint32_t> sizes;
  const std::string& pattern;
  std::uint64_t published = 0, written = 0;
  std::size_t full = 0;  // subscribers with `window` messages not yet written
  bool stopping = false;

  Message make(std::size_t n) {
    if constexpr (std::is_same_v<Message, bufpool::shared_buffer>) {
      bufpool::buffer b = pool.get(n);
      std::memcpy(b.data(), pattern.data(), n);
      return std::move(b).share();
    } else if constexpr (std::is_same_v<Message, bufpool::local_shared_buffer>) {
      bufpool::buffer b = pool.get(n);
      std::memcpy(b.data(), pattern.data(), n);
      return std::move(b).share_local();
    } else {
      return std::make_shared<const std::string>(pattern.data(), n);
    }
  }
  void publish() {
    Message m = make(sizes[published % sizes.size()]);
    ++published;
    for (auto& s : subs) s->send(m);
  }
  // A message is published when every subscriber has room for it (fewer than `window` unwritten).
  void on_written() {
    ++written;
    while (!stopping && full == 0) publish();
  }
  void start() {
    while (full == 0) publish();
  }
};

template <class Message>
void subscriber<Message>::send(const Message& m) {
  ring[(head + count) % max_window] = m;  // a copy of the handle: a count increment, no byte copied
  if (++count == pub->window) ++pub->full;
  if (count == 1) write();
}

struct result {
  double messages_per_s, writes_per_s, cpu_us_per_message, allocs_per_message, gets_per_message;
};

template <class Message>
result run(double seconds, std::size_t nsubs, std::size_t window, const std::vector<std::uint32_t>& sizes,
           const std::string& pattern) {
  bufpool::pool pool;
  asio::io_context pub_io, sub_io;
  asio::ip::tcp::acceptor acc(pub_io, {asio::ip::make_address("127.0.0.1"), 0});
  publisher<Message> pub{pool, {}, window, sizes, pattern};
  std::vector<asio::ip::tcp::socket> readers;
  for (std::size_t i = 0; i < nsubs; ++i) {
    readers.emplace_back(sub_io);
    readers.back().connect(acc.local_endpoint());
    pub.subs.push_back(std::make_unique<subscriber<Message>>(acc.accept()));
    pub.subs.back()->pub = &pub;
  }
  // The reading side: every socket read into one scratch buffer, bytes discarded.
  static std::array<char, 256 * 1024> scratch;
  std::function<void(std::size_t)> read = [&](std::size_t i) {
    readers[i].async_read_some(asio::buffer(scratch), [&, i](std::error_code ec, std::size_t) {
      if (!ec) read(i);
    });
  };
  for (std::size_t i = 0; i < nsubs; ++i) read(i);
  std::thread sub_thread([&] { sub_io.run(); });

  result r{};
  std::thread pub_thread([&] {
    pub.start();
    const double warm = seconds / 3;
    auto run_for = [&](double s) {
      const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(s);
      while (std::chrono::steady_clock::now() < end) pub_io.run_for(std::chrono::milliseconds(50));
    };
    run_for(warm);
    const std::uint64_t p0 = pub.published, w0 = pub.written, g0 = pool.snapshot().totals.gets + pool.snapshot().oversize.gets;
    const double c0 = bench::thread_cpu_s();
    bench::news.store(0);
    bench::counting = true;
    const auto m0 = std::chrono::steady_clock::now();
    run_for(seconds);
    const auto m1 = std::chrono::steady_clock::now();
    bench::counting = false;
    const double c1 = bench::thread_cpu_s();
    const auto snap = pool.snapshot();
    const double dt = std::chrono::duration<double>(m1 - m0).count();
    const double msgs = static_cast<double>(pub.published - p0);
    r.messages_per_s = msgs / dt;
    r.writes_per_s = static_cast<double>(pub.written - w0) / dt;
    r.cpu_us_per_message = (c1 - c0) * 1e6 / msgs;
    r.allocs_per_message = static_cast<double>(bench::news.load()) / msgs;
    r.gets_per_message = static_cast<double>(snap.totals.gets + snap.oversize.gets - g0) / msgs;
    pub.stopping = true;
    for (auto& s : pub.subs) s->socket.close();
    pub_io.run_for(std::chrono::milliseconds(200));
  });
  pub_thread.join();
  for (auto& s : readers) s.close();
  sub_io.stop();
  sub_thread.join();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const std::size_t nsubs = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 1000;
  const std::size_t window = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 4;
  if (window < 1 || window >= max_window) {
    std::fprintf(stderr, "fanout_bench: WINDOW must be 1..%zu\n", max_window - 1);
    return 2;
  }
  std::mt19937 rng(21);
  std::uniform_int_distribution<std::uint32_t> size(1024, 64 * 1024);
  std::vector<std::uint32_t> sizes(4096);
  for (auto& s : sizes) s = size(rng);
  std::string pattern(64 * 1024, '\0');
  for (std::size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>('a' + i % 26);

  std::printf("fan-out to %zu subscribers, messages of 1-64 KiB, window %zu, %.1f s per variant\n", nsubs, window,
              seconds);
  std::printf("%-34s %12s %14s %12s %12s %10s\n", "variant", "messages/s", "writes/s", "cpu us/msg", "allocs/msg",
              "gets/msg");
  auto print = [](const char* name, const result& r) {
    std::printf("%-34s %12.0f %14.0f %12.1f %12.2f %10.2f\n", name, r.messages_per_s, r.writes_per_s,
                r.cpu_us_per_message, r.allocs_per_message, r.gets_per_message);
  };
  const result a = run<bufpool::shared_buffer>(seconds, nsubs, window, sizes, pattern);
  print("bufpool::shared_buffer", a);
  const result l = run<bufpool::local_shared_buffer>(seconds, nsubs, window, sizes, pattern);
  print("bufpool::local_shared_buffer", l);
  const result b = run<string_message>(seconds, nsubs, window, sizes, pattern);
  print("std::shared_ptr<const std::string>", b);
  std::printf("ratio to shared_ptr: shared_buffer %.2fx, local_shared_buffer %.2fx messages/s\n",
              a.messages_per_s / b.messages_per_s, l.messages_per_s / b.messages_per_s);
  return 0;
}
