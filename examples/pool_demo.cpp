// bufpool-demo: a short tour of the pool on two io_context threads, printing the statistics as JSON.
// Run it as build/release/bin/bufpool-demo: an example of embedding the library, no server needed.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>

#include <bufpool/bufpool.hpp>
#include <bufpool/json.hpp>

int main() {
  bufpool::pool pool;  // defaults: classes 256 B..64 KiB, 128 per thread ring, 64 MiB idle cap
  asio::io_context ctx[2] = {asio::io_context(1), asio::io_context(1)};
  bufpool::rotation_timer rotation(pool, {&ctx[0], &ctx[1]}, std::chrono::milliseconds(50));
  rotation.start();

  // Each io_context thread reads "requests" into pooled buffers and hands half of them to the other
  // thread to return, which is what a server's cross-thread writes look like.
  for (int round = 0; round < 1000; ++round) {
    for (int t = 0; t < 2; ++t) {
      asio::post(ctx[t], [&, t, round] {
        bufpool::buffer b = pool.get(static_cast<std::size_t>(512 << (round % 4)));
        b.data()[0] = std::byte{1};
        if (round % 2 == 0) asio::post(ctx[1 - t], [b = std::move(b)] {});
      });
    }
  }
  std::thread threads[2] = {std::thread([&] { ctx[0].run_for(std::chrono::milliseconds(300)); }),
                            std::thread([&] { ctx[1].run_for(std::chrono::milliseconds(300)); })};
  for (auto& t : threads) t.join();
  rotation.stop();
  nlohmann::json j = pool.snapshot();
  std::cout << j.dump(2) << '\n';
  return 0;
}
