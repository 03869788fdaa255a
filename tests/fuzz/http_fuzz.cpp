// libFuzzer target: the HTTP/1.1 engine (server/src/http) fed arbitrary bytes, split at arbitrary
// points, with no socket: the engine_rig plays the connection (pooled read buffers, answers collected,
// a close where the connection would close). The input's first byte chooses the split pattern, whether
// a deadline passes at the end, whether the admin table routes, and whether buffers come from a pool
// whose memory fails now and then (then every get is an allocation, and every fail_every-th one throws).
// After each input the engine is gone and every pooled buffer must be back (else: trap).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "../support/engine_rig.hpp"
#include "../support/failing_resource.hpp"

namespace {

bufpool::server::http_settings small_limits() {
  bufpool::server::http_settings s;
  s.max_header_bytes = 2048;  // small limits: the fuzzer reaches them
  s.max_uri_bytes = 512;
  s.max_body_bytes = 4096;
  s.max_headers = 20;
  s.max_pipeline = 4;
  s.read_buffer_bytes = 256;
  return s;
}

struct pools {
  bufpool::pool normal;
  bufpool::test::failing_resource failing_memory;
  bufpool::pool failing{[this] {
    bufpool::pool_options o;
    o.enabled = false;  // every get allocates: the failing resource is asked each time
    o.memory = &failing_memory;
    return o;
  }()};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static pools p;
  if (size < 2) return 0;
  const std::uint8_t seed = data[0];
  const std::uint8_t mode = data[1];
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  const bool failing = (mode & 0x80) != 0;
  p.failing_memory.fail_every = failing ? 2u + (mode & 0x1f) : 0u;
  bufpool::pool& pool = failing ? p.failing : p.normal;
  {
    bufpool::test::engine_rig r(pool, small_limits(), (mode & 0x40) != 0);
    // Pieces of 1..16 bytes, or the rest at once, as the seed byte says.
    unsigned step = seed;
    r.feed(input, [&](std::size_t) {
      const std::size_t n = (step & 0x80) != 0 ? input.size() : 1 + (step & 0x0f);
      step = step * 33 + 7;
      return n;
    });
    if ((mode & 0x20) != 0) r.timeout();
  }
  for (const bufpool::pool* q : {&p.normal, &p.failing}) {
    const auto snap = q->snapshot();
    if (snap.totals.outstanding != 0 || snap.oversize.outstanding != 0) __builtin_trap();  // a buffer leaked
  }
  return 0;
}
