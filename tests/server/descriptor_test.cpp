// A connection's operations never outlive its descriptor (issue 17). On io_uring a recv or send is
// queued in the submission ring by one handler and submitted at the end of the loop's turn; if the
// connection closed its descriptor in between (the sweep's timeouts, drain and force_close run in
// that turn's io_context::poll), the kernel looked the number up when it took the operation, and found
// whatever socket had been given that number meanwhile: another client's.
//
// The first two tests make that happen on purpose, in one turn: a handler on the worker starts a
// connection (its recv is queued) or times it out (its 408 is queued), closes it as the sweep does,
// and then moves a victim socket to the lowest free descriptor number from the closed one up
// (F_DUPFD), which is the closed number itself if the connection freed it. One turn later the victim
// must still have its bytes, and its peer must have received nothing. Both backends run them.
#include <fcntl.h>

#include <future>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <bufpool/bufpool.hpp>

#include "../support/failing_resource.hpp"
#include "http_connection.hpp"
#include "test_client.hpp"
#include "io/uring.hpp"
#include "worker.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::eventually;
using bufpool::test::get;
using bufpool::test::test_settings;

namespace {

namespace srv = bufpool::server;

// A connected loopback TCP pair: {client side, server side}, both blocking.
std::pair<int, int> tcp_pair() {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(l, 1) == 0);
  REQUIRE(::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  const int c = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  const int s = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(s >= 0);
  ::close(l);
  return {c, s};
}

// One worker running the backend the suite runs (BUFPOOL_TEST_IO_BACKEND; io_uring where the kernel
// allows it), and what its HTTP connections share.
struct one_worker {
  bufpool::pool pool;
  srv::http_settings cfg;
  std::atomic<bool> draining{false};
  srv::http_context ctx{cfg, false, srv::routes::make_public_table(draining), nullptr};
  srv::worker w{0, pool, std::chrono::milliseconds(10)};
  bool uring = false;

  one_worker() {
    const char* backend = std::getenv("BUFPOOL_TEST_IO_BACKEND");
    const bool want_uring = backend == nullptr || std::string_view(backend) != "epoll";
    if (want_uring && srv::uring_loop::unavailable().empty()) {
      w.use_uring(cfg.read_buffer_bytes, 8);
      uring = true;
    }
    w.start();
    MESSAGE("backend: " << std::string(uring ? "io_uring" : "epoll"));
  }
  ~one_worker() { w.stop(); }

  // A connection on the server side `fd` of a pair, as the listener would make it.
  std::shared_ptr<srv::http_connection> connection(int fd) {
    const std::pmr::polymorphic_allocator<> alloc(std::pmr::new_delete_resource());
    if (uring) return srv::make_http_connection(alloc, w, fd, ctx);
    return srv::make_http_connection(alloc, w, asio::ip::tcp::socket(w.context(), asio::ip::tcp::v4(), fd), ctx);
  }
  // Runs f on the worker thread, in one handler, and waits for it.
  template <typename F>
  auto on_worker(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    w.post([&task] { task(); });
    REQUIRE(result.wait_for(10s) == std::future_status::ready);
    return result.get();
  }
  // Waits until the worker has run a later turn: what the last handler queued has been submitted.
  void next_turn() {
    on_worker([] { return 0; });
  }
};

// Reads what is already there (no waiting); "" when nothing is.
std::string read_now(int fd) {
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

TEST_CASE("descriptor: a connection closed with its recv still queued never takes another client's bytes") {
  one_worker ow;
  for (int round = 0; round < 20; ++round) {
    auto [peer, fd] = tcp_pair();
    auto [victim_peer, victim] = tcp_pair();
    const std::string bytes = "GET /plaintext HTTP/1.1\r\nHost: victim\r\n\r\n";
    REQUIRE(::send(victim_peer, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
    const int moved = ow.on_worker([&] {
      auto c = ow.connection(fd);
      c->start();        // nothing to read: the recv is queued (io_uring) or readability awaited (epoll)
      c->on_deadline();  // what the sweep does to an idle connection past its deadline: close it
      const int to = ::fcntl(victim, F_DUPFD_CLOEXEC, fd);  // the lowest free number from fd up
      ::close(victim);
      return to;
    });
    ow.next_turn();
    CHECK_MESSAGE(read_now(moved) == bytes, "round " << round << ": the victim's request was taken (its descriptor "
                                                     << (moved == fd ? "got the closed connection's number" : "is another")
                                                     << ")");
    CHECK(bufpool::test::eventually([&] {  // the closed connection's peer sees the close
      char b;
      return ::recv(peer, &b, 1, MSG_DONTWAIT) == 0;
    }));
    ::close(moved);
    ::close(victim_peer);
    ::close(peer);
  }
}

TEST_CASE("descriptor: a connection closed with its send still queued never writes into another client's socket") {
  one_worker ow;
  for (int round = 0; round < 20; ++round) {
    auto [peer, fd] = tcp_pair();
    auto [victim_peer, victim] = tcp_pair();
    const std::string partial = "GET /plaintext HTTP/1.1\r\n";  // the head never ends
    REQUIRE(::send(peer, partial.data(), partial.size(), 0) == static_cast<ssize_t>(partial.size()));
    std::shared_ptr<srv::http_connection> c;
    const auto read_before = ow.w.stats().bytes_in.get();
    ow.on_worker([&] {
      c = ow.connection(fd);
      c->start();
      return 0;
    });
    REQUIRE(eventually([&] { return ow.w.stats().bytes_in.get() == read_before + partial.size(); }));
    const int moved = ow.on_worker([&] {
      c->on_deadline();  // the header timeout: a 408 is written (io_uring: its send is queued)
      c->force_close();  // and the connection is closed in the same turn (as stop's grace period does)
      c.reset();
      const int to = ::fcntl(victim, F_DUPFD_CLOEXEC, fd);
      ::close(victim);
      return to;
    });
    ow.next_turn();
    const std::string got = read_now(victim_peer);
    CHECK_MESSAGE(got.empty(), "round " << round << ": another connection's answer reached the victim: " << got);
    ::close(moved);
    ::close(victim_peer);
    ::close(peer);
  }
}

// The same race as clients see it, as the issue found it: clients whose request gets a 413 keep
// sending (so their connection lingers, a recv queued again every turn, until the linger timeout
// closes it through the sweep), while short-lived clients beside them each check their own answer,
// on the HTTP port and on the echo port. Bounded: 3 s or 3,000 victims.
TEST_CASE("descriptor: lingering connections closed by the sweep never take short-lived clients' requests") {
  server s(test_settings({{"threads", "2"},
                          {"accept.mode", "single"},
                          {"http.linger_timeout", "20ms"},
                          {"http.max_body_bytes", "1024"}}));
  std::atomic<bool> stop{false};
  std::vector<std::thread> lingerers;
  for (int t = 0; t < 4; ++t) {
    lingerers.emplace_back([&] {
      const std::string big = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
      const std::string junk(2048, 'j');
      while (!stop.load()) {
        std::unique_ptr<client> conn;
        try {
          conn = std::make_unique<client>(s.ports().http);
        } catch (const std::exception&) {
          continue;
        }
        client& c = *conn;
        if (!c.send(big)) continue;
        const auto until = std::chrono::steady_clock::now() + 100ms;
        while (!stop.load() && std::chrono::steady_clock::now() < until && c.send(junk)) {
        }
      }
    });
  }
  int http_lost = 0, echo_lost = 0, victims = 0;
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  for (; victims < 3000 && std::chrono::steady_clock::now() < deadline; ++victims) {
    if (victims % 2 == 0) {
      client v(s.ports().http);
      v.send(get("/plaintext", "Connection: close\r\n"));
      try {
        const auto r = v.read_response(5s);
        if (r.status != 200 || r.body != "Hello, World!") ++http_lost;
      } catch (const std::exception&) {
        ++http_lost;
      }
    } else {
      client v(s.ports().echo);
      const std::string msg = "victim " + std::to_string(victims);
      v.send(msg);
      const std::string got = v.raw_until(msg, 5s);
      if (got != msg) ++echo_lost;
    }
  }
  stop = true;
  for (auto& t : lingerers) t.join();
  MESSAGE(std::string(s.io_backend_name()) << ": " << victims << " victims, HTTP answers lost " << http_lost << ", echo lost "
                              << echo_lost << ", 413s " << s.stats()["server"]["errors"]["body_too_large"]);
  CHECK(victims > 100);
  CHECK(http_lost == 0);
  CHECK(echo_lost == 0);
  CHECK(s.stats()["server"]["errors"]["body_too_large"].get<std::uint64_t>() > 0);
}

// The accept path: a connection object that cannot be made (its memory fails) leaves no descriptor
// behind; the client sees the close at once, and the process holds no more descriptors than before.
TEST_CASE("descriptor: an accepted connection whose object cannot be allocated is closed, not leaked") {
  bufpool::test::failing_resource r;
  auto settings = test_settings({{"threads", "1"}});
  settings.connection_memory = &r;
  server s(settings);
  {
    client warm(s.ports().http);  // the worker's first connection: anything made once is made
    warm.send(get("/plaintext"));
    CHECK(warm.read_response().status == 200);
  }
  REQUIRE(eventually([&] { return s.stats()["server"]["connections"]["active"] == 0; }));
  const std::size_t fds_before = srv::open_fd_count();
  r.fail_all = true;
  for (int i = 0; i < 20; ++i) {
    client c(s.ports().http);
    c.send(get("/plaintext"));
    CHECK(c.closed_by_peer(5s));
  }
  // The socket may close while the failed construction unwinds, a moment before the count.
  CHECK(eventually([&] { return s.stats()["server"]["errors"]["out_of_memory"].get<std::uint64_t>() >= 20; }));
  CHECK(eventually([&] { return srv::open_fd_count() <= fds_before; }));
  r.fail_all = false;
  client c(s.ports().http);
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
}

// While the pool is out of memory (the kernel's buffer ring cannot be refilled), a connection that
// sent nothing is not answered 503: its recv waits for bytes, not for a buffer. One that sends a
// request still gets the 503 and a close, and once memory is back the idle ones are served.
TEST_CASE("descriptor: while the pool is out of memory an idle connection gets no 503, a request does") {
  bufpool::test::failing_resource r;
  auto settings = test_settings({{"threads", "1"}, {"pool.enabled", "false"}, {"io.uring_buffers", "8"}});
  settings.pool.memory = &r;
  server s(settings);
  r.fail_all = true;
  for (int i = 0; i < 12; ++i) {  // the ring's 8 buffers are taken and not refilled
    client c(s.ports().http);
    c.send(get("/plaintext"));
    const auto resp = c.read_response();
    CHECK(resp.status == 503);
    CHECK(c.closed_by_peer());
  }
  std::vector<std::unique_ptr<client>> idle;
  for (int i = 0; i < 16; ++i) idle.push_back(std::make_unique<client>(s.ports().http));
  {
    client busy(s.ports().http);  // accepted after the idle ones: by its answer, they have been served
    busy.send(get("/plaintext"));
    CHECK(busy.read_response().status == 503);
  }
  std::this_thread::sleep_for(100ms);
  for (auto& c : idle) {
    pollfd p{c->fd(), POLLIN, 0};
    CHECK_MESSAGE(::poll(&p, 1, 0) == 0, "an idle connection was answered or closed while memory was out");
  }
  r.fail_all = false;
  for (auto& c : idle) {
    c->send(get("/plaintext"));
    CHECK(c->read_response().status == 200);
  }
}

// A connection that waits for a read buffer (io_uring: its recv ended with ENOBUFS; epoll: queued for
// the budget) and is closed by a timeout lets its descriptor go at once, while the budget stays spent.
TEST_CASE("descriptor: a connection closed while it waits for a read buffer is closed at once") {
  server s(test_settings({{"threads", "1"},
                          {"limits.max_buffer_bytes", "1"},
                          {"http.max_body_bytes", "67108864"},
                          {"http.header_timeout", "1s"}}));
  // Its answer, which it does not read, keeps the budget spent.
  bufpool::test::stalled_upload slow(s.ports().http, 16u << 20);
  // Until the socket buffers both ways are full (about 10 MiB on loopback) the connection holds a
  // buffer only for the moment of each read and send; under a sanitizer, next to other tests, filling
  // them can take longer than eventually()'s default 5 s. Once the send stalls, it holds one for good.
  REQUIRE(eventually([&] { return bufpool::test::connection_buffers(s.stats()) >= 1; }, std::chrono::seconds(60)));
  bufpool::test::wait_until_reading_stops(s);
  REQUIRE(bufpool::test::connection_buffers(s.stats()) >= 1);
  std::vector<std::unique_ptr<client>> waiting;
  for (int i = 0; i < 4; ++i) {
    waiting.push_back(std::make_unique<client>(s.ports().http));
    waiting.back()->send("GET /plaintext HTTP/1.1\r\n");  // partial: the header timeout closes it
  }
  REQUIRE(eventually([&] { return s.stats()["server"]["buffer_budget"]["waiting"].get<std::uint64_t>() > 0; }));
  for (auto& c : waiting) CHECK(c->closed_by_peer(5s));
  // io_uring: a closing connection leaves the queue of recvs waiting for buffers at once. (epoll: it
  // stays in the worker's budget queue, its socket closed, until the budget has room.)
  if (std::string_view(s.io_backend_name()) == "io_uring")
    CHECK(eventually([&] { return s.stats()["server"]["buffer_budget"]["waiting"].get<std::uint64_t>() == 0; }));
}
