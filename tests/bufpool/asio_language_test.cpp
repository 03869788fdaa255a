// The library in Asio's buffer language (issue 21): char access, shared buffers and slices, chains as
// ConstBufferSequences, the read that borrows only when readable, the std::allocator adapter. Sockets
// on 127.0.0.1 only; every wait is bounded.
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include <bufpool/bufpool.hpp>

#include "net.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using bufpool::buffer;
using bufpool::pool;
using bufpool::shared_buffer;

namespace {

std::int64_t outstanding(const pool& p) { return p.snapshot().totals.outstanding; }

buffer text(pool& p, std::string_view s) {
  buffer b = p.get(s.size());
  std::memcpy(b.chars(), s.data(), s.size());
  return b;
}

// A connected pair of TCP sockets on 127.0.0.1.
struct socket_pair {
  net::ip::tcp::socket a, b;
  explicit socket_pair(net::io_context& io) : a(io), b(io) {
    net::ip::tcp::acceptor acc(io, {net::ip::make_address("127.0.0.1"), 0});
    a.connect(acc.local_endpoint());
    acc.accept(b);
  }
};

}  // namespace

TEST_CASE("buffer: char access and a string_view of the bytes in use") {
  pool p;
  buffer b = text(p, "GET / HTTP/1.1\r\n");
  CHECK(b.view() == "GET / HTTP/1.1\r\n");
  CHECK(b.as_chars().size() == 16);
  CHECK(static_cast<void*>(b.chars()) == static_cast<void*>(b.data()));
  b.resize(3);
  CHECK(b.view() == "GET");
}

TEST_CASE("buffer: headroom, prepend and trim_front move the view inside one buffer") {
  pool p;
  buffer b = p.get(1000, 8);
  CHECK(b.size() == 1000);
  CHECK(b.headroom() == 8);
  CHECK(b.capacity() == 1024 - 8);  // 1008 bytes ask for the 1 KiB class; the view starts 8 bytes in
  std::byte* body = b.data();
  std::memset(body, 'b', 1000);
  // A header written in front of the body: the same storage, no copy, the body where it was.
  std::span<std::byte> head = b.prepend(8);
  CHECK(head.data() + 8 == body);
  std::memcpy(head.data(), "LEN=1000", 8);
  CHECK(b.data() == head.data());
  CHECK(b.size() == 1008);
  CHECK(b.headroom() == 0);
  CHECK(b.view().substr(0, 9) == "LEN=1000b");
  CHECK_THROWS_AS(b.prepend(1), std::length_error);
  // A parser strips the header again; the bytes stay in the storage, in front of the view.
  b.trim_front(8);
  CHECK(b.data() == body);
  CHECK(b.headroom() == 8);
  CHECK_THROWS_AS(b.trim_front(1001), std::length_error);
  // A shared buffer made from it sees the view, not the headroom; asio::buffer too.
  CHECK(net::buffer(b).data() == body);
  shared_buffer s = std::move(b).share();
  CHECK(s.data() == body);
  CHECK(s.size() == 1000);
  s.reset();
  // A buffer taken again from the class starts with no headroom.
  buffer again = p.get(1000);
  CHECK(again.headroom() == 0);
  CHECK(again.capacity() == 1024);
  // release() gives the storage's start, which put_raw() takes back.
  buffer r = p.get(10, 54);
  std::byte* storage = r.data() - 54;
  CHECK(r.release() == storage);
  p.put_raw(storage);
  CHECK(p.snapshot().totals.outstanding == 1);  // `again` alone
  CHECK_THROWS_AS(p.get(std::numeric_limits<std::size_t>::max(), 2), std::bad_alloc);
}

TEST_CASE("shared_buffer: copies and slices share one count in the header, the last returns the buffer") {
  pool p;
  {
    buffer b = text(p, "hello, shared world");
    const std::size_t cap = b.capacity();
    shared_buffer s = std::move(b).share();
    CHECK_FALSE(b);
    CHECK(s.use_count() == 1);
    CHECK(s.view() == "hello, shared world");
    shared_buffer c = s;
    shared_buffer part = s.slice(7, 6);
    CHECK(part.view() == "shared");
    CHECK(s.use_count() == 3);
    CHECK_THROWS_AS(s.slice(10, 100), std::out_of_range);
    CHECK_THROWS_AS(s.slice(20, 0), std::out_of_range);
    CHECK(s.slice(19, 0).empty());
    s.reset();
    c.reset();
    CHECK(outstanding(p) == 1);  // the slice still holds it
    CHECK(part.use_count() == 1);
    CHECK(cap >= 19);
  }
  CHECK(outstanding(p) == 0);
  bufpool::test::check_identities(p.snapshot());
  // Sharing costs no bigger class: a 64 KiB message stays in the 64 KiB class.
  shared_buffer big = p.get(65536).share();
  CHECK(big.size() == 65536);
  CHECK(p.snapshot().oversize.outstanding == 0);
}

TEST_CASE("local_shared_buffer: copies and slices on one thread share the count, the last returns the buffer") {
  pool p;
  buffer b = text(p, "one thread, many holders");
  std::byte* data = b.data();
  bufpool::local_shared_buffer s = std::move(b).share_local();
  CHECK_FALSE(b);
  CHECK(s.use_count() == 1);
  std::vector<bufpool::local_shared_buffer> holders(100, s);
  CHECK(s.use_count() == 101);
  bufpool::local_shared_buffer part = s.slice(4, 6);
  CHECK(part.view() == "thread");
  CHECK(s.use_count() == 102);
  CHECK(net::buffer(part).data() == static_cast<const void*>(data + 4));
  CHECK_THROWS_AS(s.slice(20, 10), std::out_of_range);
  holders.clear();
  s.reset();
  CHECK(p.snapshot().totals.outstanding == 1);  // `part` still holds it
  part = bufpool::local_shared_buffer();
  CHECK(p.snapshot().totals.outstanding == 0);
  CHECK(p.snapshot().totals.puts == 1);  // returned exactly once
}

TEST_CASE("shared_buffer: released on many threads at once, the buffer comes back exactly once") {
  pool p;
  for (int round = 0; round < 200 / bufpool::test::scale_down; ++round) {
    shared_buffer s = text(p, "fan-out message").share();
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([copy = s]() mutable {
        CHECK(copy.view() == "fan-out message");
        copy.reset();
      });
    s.reset();
    for (auto& t : threads) t.join();
  }
  CHECK(outstanding(p) == 0);
  bufpool::test::check_identities(p.snapshot());
}

TEST_CASE("shared_buffer: the last holder after the pool is gone frees the memory") {
  bufpool::test::counting_resource mem;
  shared_buffer survivor;
  {
    bufpool::pool_options o;
    o.memory = &mem;
    pool p(o);
    survivor = text(p, "outlives its pool").share();
  }
  CHECK(survivor.view() == "outlives its pool");
  survivor.reset();
  CHECK(mem.allocations.load() == mem.frees.load());
}

TEST_CASE("chain: a ConstBufferSequence of pooled pieces, written by one gather write, consumed in part") {
  pool p;
  net::io_context io;
  socket_pair sp(io);
  bufpool::chain c;
  c.append(text(p, "HEAD"));
  shared_buffer body = text(p, "-body-").share();
  c.append(body);
  c.append(body.slice(1, 4));
  c.append(buffer{});  // empty pieces are not kept
  CHECK(c.size() == 3);
  CHECK(c.bytes() == 14);
  static_assert(net::is_const_buffer_sequence<bufpool::chain>::value);
  std::size_t written = 0;
  net::async_write(sp.a, c, [&](bufpool::net_error_code ec, std::size_t n) {
    CHECK_FALSE(ec);
    written = n;
  });
  io.run_for(2s);
  CHECK(written == 14);
  std::string got(14, '\0');
  net::read(sp.b, net::buffer(got));
  CHECK(got == "HEAD-body-body");
  c.consume(6);  // "HEAD" and "-b" of the second piece
  CHECK(c.size() == 2);
  CHECK(c.begin()->view() == "ody-");
  c.consume(100);
  CHECK(c.empty());
  body.reset();
  CHECK(outstanding(p) == 0);
}

TEST_CASE("async_read_some: an idle connection holds no buffer, one is taken when bytes arrive") {
  pool p;
  net::io_context io;
  constexpr int n = 200;
  std::vector<std::unique_ptr<socket_pair>> pairs;
  std::vector<std::string> got(n);
  int done = 0;
  for (int i = 0; i < n; ++i) {
    pairs.push_back(std::make_unique<socket_pair>(io));
    bufpool::async_read_some(pairs.back()->b, p, 4096, [&, i](bufpool::net_error_code ec, buffer b) {
      CHECK_FALSE(ec);
      got[static_cast<std::size_t>(i)] = std::string(b.view());
      ++done;
    });
  }
  io.run_for(50ms);
  CHECK(done == 0);
  CHECK(outstanding(p) == 0);  // n reads waiting, no buffer held
  net::write(pairs[7]->a, net::buffer(std::string_view("ping")));
  for (int k = 0; k < 200 && done == 0; ++k) io.run_for(10ms);
  CHECK(done == 1);
  CHECK(got[7] == "ping");
  CHECK(outstanding(p) == 0);  // the handler's buffer went back when it returned
  // End of stream: eof and an empty buffer (a pair of its own: the others still have a read waiting).
  socket_pair closing(io);
  bufpool::net_error_code end;
  bool eof_seen = false;
  bufpool::async_read_some(closing.b, p, 4096, [&](bufpool::net_error_code ec, buffer b) {
    end = ec;
    eof_seen = !b;
  });
  closing.a.shutdown(net::ip::tcp::socket::shutdown_send);
  for (int k = 0; k < 200 && !eof_seen; ++k) io.run_for(10ms);
  CHECK(end == net::error::eof);
  CHECK(eof_seen);
}

TEST_CASE("allocator: containers on pooled memory, freed on any thread") {
  pool p;
  {
    std::vector<int, bufpool::allocator<int>> v{bufpool::allocator<int>(p)};
    for (int i = 0; i < 10000; ++i) v.push_back(i);
    CHECK(v[9999] == 9999);
    CHECK(outstanding(p) >= 1);
    std::basic_string<char, std::char_traits<char>, bufpool::allocator<char>> s{bufpool::allocator<char>(p)};
    s.assign(1000, 'x');
    CHECK(s.size() == 1000);
    auto moved = std::make_unique<std::vector<int, bufpool::allocator<int>>>(std::move(v));
    std::thread([m = std::move(moved)]() mutable { m.reset(); }).join();
  }
  CHECK(outstanding(p) == 0);
  CHECK(bufpool::allocator<int>(p) == bufpool::allocator<char>(p));
  pool other;
  CHECK_FALSE(bufpool::allocator<int>(p) == bufpool::allocator<int>(other));
}

static_assert(net::is_dynamic_buffer_v1<bufpool::byte_queue>::value);
static_assert(net::is_dynamic_buffer_v2<bufpool::byte_queue_view>::value);
static_assert(!net::is_dynamic_buffer_v2<bufpool::byte_queue>::value);  // no ambiguity between the two faces

namespace {
// Lines of 16 B to 100 KiB, each ending in CRLF, sent in one stream.
std::vector<std::string> mixed_lines() {
  std::vector<std::string> lines;
  for (std::size_t n : {16u, 100u, 4095u, 4096u, 4097u, 20000u, 102400u, 16u, 1u, 0u, 65536u}) {
    std::string s(n, 'a');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    lines.push_back(s);
  }
  return lines;
}

// Reads every line with `read_line(callback)`, checking each and consuming it; returns lines read.
template <class ReadLine>
std::size_t read_lines(net::io_context& io, bufpool::byte_queue& q, const std::vector<std::string>& lines,
                       ReadLine read_line) {
  std::size_t index = 0;
  bool failed = false;
  std::function<void()> next = [&] {
    read_line([&](bufpool::net_error_code ec, std::size_t n) {
      if (ec) {
        MESSAGE("read failed: " << ec.message() << " after " << index << " lines");
        failed = true;
        return;
      }
      const std::string_view line = q.linearize().substr(0, n - 2);
      CHECK(line == lines[index]);
      q.consume(n);
      if (++index < lines.size()) next();
    });
  };
  next();
  io.restart();  // an earlier run may have run out of work
  for (int k = 0; k < 500 && index < lines.size() && !failed; ++k) io.run_for(10ms);
  return index;
}
}  // namespace

// As Beast's algorithms use a DynamicBuffer_v1 they hold by reference: prepare, read_some, commit,
// look at data(). (Asio's own algorithms move a v1 buffer into the operation, so they take the v2
// face, bufpool::dynamic_buffer(queue); the queue is not copyable, which keeps that mistake from
// compiling.)
template <class Handler>
void read_until_crlf_v1(net::ip::tcp::socket& s, bufpool::byte_queue& q, Handler handler) {
  const std::string_view have = q.linearize();
  if (const auto at = have.find("\r\n"); at != std::string_view::npos) {
    net::post(s.get_executor(), [handler, at]() mutable { handler(bufpool::net_error_code(), at + 2); });
    return;
  }
  s.async_read_some(q.prepare(4096), [&s, &q, handler](bufpool::net_error_code ec, std::size_t n) mutable {
    q.commit(n);
    if (ec) return handler(ec, 0);
    read_until_crlf_v1(s, q, handler);
  });
}

TEST_CASE("byte_queue: lines of 16 B to 100 KiB through the v1 face (Beast's way) and the v2 face (async_read_until)") {
  pool p;
  net::io_context io;
  const auto lines = mixed_lines();
  std::string wire;
  for (const auto& l : lines) wire += l + "\r\n";
  for (const bool v2 : {false, true}) {
    CAPTURE(v2);
    socket_pair sp(io);
    bufpool::byte_queue q(p);
    std::thread writer([&] { net::write(sp.a, net::buffer(wire)); });
    const std::size_t read = read_lines(io, q, lines, [&](auto handler) {
      if (v2) net::async_read_until(sp.b, bufpool::dynamic_buffer(q), "\r\n", handler);
      else read_until_crlf_v1(sp.b, q, handler);
    });
    writer.join();
    CHECK(read == lines.size());
    CHECK(q.size() == 0);
    CHECK(q.blocks() == 0);  // an empty queue holds no block
  }
  CHECK(outstanding(p) == 0);
}

TEST_CASE("byte_queue: max_size is honoured: a longer line fails with not_found, as Asio specifies") {
  pool p;
  net::io_context io;
  socket_pair sp(io);
  bufpool::byte_queue q(p, 256, 1000);
  net::write(sp.a, net::buffer(std::string(5000, 'x') + "\r\n"));
  bufpool::net_error_code got;
  bool done = false;
  net::async_read_until(sp.b, bufpool::dynamic_buffer(q), "\r\n", [&](bufpool::net_error_code ec, std::size_t) {
    got = ec;
    done = true;
  });
  for (int k = 0; k < 200 && !done; ++k) io.run_for(10ms);
  CHECK(got == net::error::not_found);
  CHECK(q.size() <= 1000);
  CHECK_THROWS_AS(q.prepare(2000), std::length_error);
}

TEST_CASE("byte_queue: growing adds blocks without copying, consume returns them, linearize makes one view") {
  pool p;
  bufpool::byte_queue q(p, 256);
  auto put = [&](std::string_view s) {
    auto m = q.prepare(s.size());
    net::buffer_copy(m, net::buffer(s));
    q.commit(s.size());
  };
  put(std::string(300, 'a'));
  const auto* first = q.front().data();
  put(std::string(300, 'b'));
  CHECK(q.front().data() == first);  // what was read did not move
  CHECK(q.blocks() == 3);
  CHECK(q.front().size() == 256);
  q.consume(256);
  CHECK(q.blocks() == 2);
  CHECK(outstanding(p) == 2);
  const std::string_view all = q.linearize();
  CHECK(all == std::string(44, 'a') + std::string(300, 'b'));
  CHECK(q.blocks() == 1);
  // The v2 face: grow, write through data(pos, n), shrink.
  auto d = bufpool::dynamic_buffer(q);
  const std::size_t before = d.size();
  d.grow(10);
  net::buffer_copy(d.data(before, 10), net::buffer(std::string_view("0123456789")));
  d.shrink(5);
  CHECK(q.linearize().substr(before) == "01234");
  q.consume(q.size());
  CHECK(q.blocks() == 0);
  CHECK(outstanding(p) == 0);
}
