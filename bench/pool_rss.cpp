// pool_rss: does memory the pool frees reach the operating system? A pool backed by
// bufpool::chunk_resource ("chunks") or by operator new ("heap": glibc, or jemalloc/mimalloc/tcmalloc
// through LD_PRELOAD) takes 64 MiB of 4 KiB buffers and 64 MiB of 64 KiB buffers while the program
// keeps one small long-lived heap object per 16 buffers (as a server keeps per-connection state), then
// returns every buffer; two rotations later the pool has freed them all. Prints resident memory
// before, at the peak and after, in KiB. Usage: pool_rss chunks|heap
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <bufpool/bufpool.hpp>

namespace {
long resident_kib() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f == nullptr || std::fscanf(f, "%lu %lu", &size, &resident) != 2) return -1;
  std::fclose(f);
  return static_cast<long>(resident * static_cast<unsigned long>(::sysconf(_SC_PAGESIZE)) / 1024);
}
}  // namespace

int main(int argc, char** argv) {
  const std::string backing = argc > 1 ? argv[1] : "chunks";
  bufpool::chunk_resource chunks;
  bufpool::pool_options o;
  o.max_idle_bytes = std::size_t{256} << 20;  // everything returned stays pooled until rotation
  o.ring_capacity = 65536;
  if (backing == "chunks") o.memory = &chunks;
  const long before = resident_kib();
  std::vector<std::unique_ptr<char[]>> state;  // long-lived small objects between the buffers
  long peak = 0;
  {
    bufpool::pool p(o);
    {
      std::vector<bufpool::buffer> held;
      for (int i = 0; i < 16384; ++i) {
        held.push_back(p.get(4096));
        std::memset(held.back().data(), 1, 4096);
        if (i % 16 == 0) state.push_back(std::make_unique<char[]>(200));
      }
      for (int i = 0; i < 1024; ++i) {
        held.push_back(p.get(65536));
        std::memset(held.back().data(), 1, 65536);
        if (i % 16 == 0) state.push_back(std::make_unique<char[]>(200));
      }
      peak = resident_kib();
    }
    for (int i = 0; i < 3; ++i) {  // a buffer unused for two rotations is freed
      p.rotate();
      p.rotate_local();
    }
    const long after = resident_kib();
    std::printf("%-7s before %6ld KiB  peak %7ld KiB  after two rotations %7ld KiB  (+%ld KiB kept)\n",
                backing.c_str(), before, peak, after, after - before);
  }
  return 0;
}
