// Idle connections (issue 21's aim: 10,000 idle connections with the readable-then-borrow read hold
// no buffer). The server side runs in this process: CONNECTIONS sockets, each reading in a loop with
// one of two reads, in one run:
//   borrow  bufpool::async_read_some(socket, pool, 4096, ...): waits for readability, then takes a buffer
//   plain   socket.async_read_some(asio::buffer(b), ...) into a pooled buffer taken before the read
//           (what an Asio program writes: the buffer is held while the connection is idle)
// The clients are a child process (this program with "client PORT N": the descriptors of both sides do
// not fit one process's limit). Per read kind: pooled buffers out while every connection is idle, then
// after each client sent one 64-byte message and it was read, and the server's RSS while idle.
// Usage: idle_bench [CONNECTIONS=10000]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <bufpool/bufpool.hpp>

namespace {

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

void raise_fd_limit() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

// The child: N connections; on "s" from stdin each sends 64 bytes; on EOF it exits.
int client(unsigned short port, std::size_t n) {
  asio::io_context io;
  std::vector<asio::ip::tcp::socket> socks;
  for (std::size_t i = 0; i < n; ++i) {
    socks.emplace_back(io);
    socks.back().connect({asio::ip::make_address("127.0.0.1"), port});
  }
  std::printf("connected\n");
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) == 1) {
    if (c != 's') continue;
    const std::string msg(64, 'm');
    for (auto& s : socks) asio::write(s, asio::buffer(msg));
    std::printf("sent\n");
    std::fflush(stdout);
  }
  return 0;
}

struct outcome {
  std::int64_t idle_out, after_out;
  long idle_rss_kib;
  std::size_t reads;
};

outcome run(const char* self, std::size_t n, bool borrow) {
  bufpool::pool pool;
  asio::io_context io;
  asio::ip::tcp::acceptor acc(io, {asio::ip::make_address("127.0.0.1"), 0}, true);
  acc.listen(4096);
  int to_child[2], from_child[2];
  if (pipe(to_child) != 0 || pipe(from_child) != 0) std::abort();
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    const std::string port = std::to_string(acc.local_endpoint().port()), count = std::to_string(n);
    execl(self, self, "client", port.c_str(), count.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  FILE* child_out = fdopen(from_child[0], "r");

  std::vector<std::unique_ptr<asio::ip::tcp::socket>> socks;
  std::size_t reads = 0;
  std::function<void(asio::ip::tcp::socket&)> read_loop = [&](asio::ip::tcp::socket& s) {
    if (borrow) {
      bufpool::async_read_some(s, pool, 4096, [&](std::error_code ec, bufpool::buffer b) {
        if (ec) return;
        ++reads;
        b.reset();
        read_loop(s);
      });
    } else {
      auto b = std::make_shared<bufpool::buffer>(pool.get(4096));
      const asio::mutable_buffer view = asio::buffer(*b);
      s.async_read_some(view, [&, b](std::error_code ec, std::size_t) {
        if (ec) return;
        ++reads;
        read_loop(s);
      });
    }
  };
  std::function<void()> accept = [&] {
    acc.async_accept([&](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec) return;
      socks.push_back(std::make_unique<asio::ip::tcp::socket>(std::move(s)));
      read_loop(*socks.back());
      if (socks.size() < n) accept();
    });
  };
  accept();
  while (socks.size() < n) io.run_for(std::chrono::milliseconds(10));
  char line[64];
  if (std::fgets(line, sizeof line, child_out) == nullptr) std::abort();  // "connected"
  io.run_for(std::chrono::milliseconds(500));
  outcome o{};
  o.idle_out = pool.snapshot().totals.outstanding;
  o.idle_rss_kib = rss_kib();
  if (::write(to_child[1], "s", 1) != 1) std::abort();
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (reads < n && std::chrono::steady_clock::now() < end) io.run_for(std::chrono::milliseconds(10));
  io.run_for(std::chrono::milliseconds(200));
  o.after_out = pool.snapshot().totals.outstanding;
  o.reads = reads;
  close(to_child[1]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::fclose(child_out);
  socks.clear();
  io.run_for(std::chrono::milliseconds(100));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  raise_fd_limit();
  if (argc > 1 && std::strcmp(argv[1], "client") == 0)
    return client(static_cast<unsigned short>(std::atoi(argv[2])), std::strtoul(argv[3], nullptr, 10));
  const std::size_t n = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 10000;
  std::printf("%zu idle connections, reads of up to 4 KiB\n", n);
  std::printf("%-44s %14s %14s %14s %10s\n", "read", "buffers idle", "RSS idle KiB", "buffers after", "reads");
  for (bool borrow : {true, false}) {
    const outcome o = run(argv[0], n, borrow);
    std::printf("%-44s %14lld %14ld %14lld %10zu\n",
                borrow ? "bufpool::async_read_some (borrow)" : "socket.async_read_some (buffer held)",
                static_cast<long long>(o.idle_out), o.idle_rss_kib, static_cast<long long>(o.after_out), o.reads);
  }
  return 0;
}
