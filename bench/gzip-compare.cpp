// Compares zlib and libdeflate on the answers /echo compresses: the fixed pattern of ?size= (4 KiB and
// 256 KiB) and a less regular body (JSON-like text), at zlib's level 1 and 6 and libdeflate's 1 and 6.
// One thread, compressor state reused across answers (as the server does: one per worker thread).
// Build and run: bench/run-gzip-compare (one line per case: sizes in and out, answers/s, us/answer).
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <libdeflate.h>
#include <zlib.h>

namespace {

std::string pattern(std::size_t n) {
  const char* cycle = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
  std::string p(n, '\0');
  for (std::size_t i = 0; i < n; ++i) p[i] = cycle[i % 64];
  return p;
}

std::string text(std::size_t n) {
  std::string s;
  unsigned x = 12345;
  while (s.size() < n) {
    x = x * 1103515245 + 12345;
    s += "{\"id\":" + std::to_string(x % 100000) + ",\"name\":\"user" + std::to_string((x >> 8) % 977) +
         "\",\"active\":" + ((x & 1) ? "true" : "false") + "},";
  }
  s.resize(n);
  return s;
}

template <class F>
void time_it(const char* lib, int level, const char* what, const std::string& in, F&& f) {
  std::size_t out = 0;
  const std::size_t rounds = in.size() >= 65536 ? 400 : 20000;
  for (int warm = 0; warm < 10; ++warm) out = f();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < rounds; ++i) out = f();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-10s level %d  %-14s %7zu B -> %6zu B  %9.0f answers/s  %7.1f us/answer\n", lib, level, what,
              in.size(), out, rounds / s, s / rounds * 1e6);
}

}  // namespace

int main() {
  const std::vector<std::pair<std::string, std::string>> inputs = {
      {"pattern 4KiB", pattern(4096)}, {"pattern 256KiB", pattern(262144)},
      {"text 4KiB", text(4096)},       {"text 256KiB", text(262144)}};
  std::vector<unsigned char> out(600000);
  for (int level : {1, 6}) {
    z_stream z{};
    deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // gzip wrapper
    libdeflate_compressor* c = libdeflate_alloc_compressor(level);
    for (const auto& [what, in] : inputs) {
      time_it("zlib", level, what.c_str(), in, [&] {
        deflateReset(&z);
        // As the server feeds it: 4 KiB of input and 4 KiB of output room at a time.
        std::size_t used = 0, pos = 0;
        int r = Z_OK;
        while (r != Z_STREAM_END) {
          const std::size_t take = std::min<std::size_t>(4096, in.size() - pos);
          z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
          z.avail_in = static_cast<uInt>(take);
          const int flush = pos + take == in.size() ? Z_FINISH : Z_NO_FLUSH;
          do {
            z.next_out = out.data() + used;
            z.avail_out = 4096;
            r = deflate(&z, flush);
            used += 4096 - z.avail_out;
          } while (z.avail_out == 0);
          pos += take;
        }
        return used;
      });
      time_it("libdeflate", level, what.c_str(), in, [&] {
        return libdeflate_gzip_compress(c, in.data(), in.size(), out.data(), out.size());
      });
    }
    deflateEnd(&z);
    libdeflate_free_compressor(c);
  }
}
