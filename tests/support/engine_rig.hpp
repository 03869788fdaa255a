// engine_rig: one http::engine with everything it needs and nothing else (no socket, no worker, no
// io_context), and a driver that plays the connection's part: it feeds bytes in pieces of chosen
// sizes, each piece in a pooled buffer, collects every batch of answers as bytes, and stops where the
// connection would close. Used by the engine's unit tests and by the HTTP fuzz target.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include <bufpool/pool.hpp>

#include "http/engine.hpp"
#include "routes/table.hpp"
#include "settings.hpp"
#include "stats.hpp"

namespace bufpool::test {

namespace srv = bufpool::server;

struct engine_rig : srv::http::engine_events {
  // What the engine shares with others: the pool, the statistics, the limits, the table.
  bufpool::pool& pool;
  srv::http_settings limits;
  srv::worker_stats stats;
  std::atomic<bool> draining{false};
  char date[30] = "Wed, 02 Dec 2026 06:00:00 GMT";
  srv::routes::table table;
  std::unique_ptr<srv::http::engine_context> ctx;
  std::unique_ptr<srv::http::engine_env> env;
  std::unique_ptr<srv::http::engine> e;

  // What the driver saw.
  std::string out;        // every byte the engine answered, in order
  bool closed = false;    // the connection would close (last answer out, or an error)
  bool out_of_memory = false;
  std::size_t waits = 0;  // delayed answers (result::wait)
  std::vector<srv::error_kind> failures;

  explicit engine_rig(bufpool::pool& p, const srv::http_settings& l = {}, bool admin = false,
                      const srv::echo_target_settings& echo = {})
      : pool(p), limits(l),
        table(admin ? srv::routes::make_admin_table(draining, {}, {}) : srv::routes::make_public_table(draining, echo)) {
    ctx = std::make_unique<srv::http::engine_context>(srv::http::engine_context{limits, table, !admin, false});
    env = std::make_unique<srv::http::engine_env>(srv::http::engine_env{pool, stats, date, draining});
    e = std::make_unique<srv::http::engine>(*ctx, *env, *this);
  }

  void failed(srv::error_kind kind, unsigned) override { failures.push_back(kind); }

  // The connection's loop over one received piece: parse, send, parse what is left.
  void step(srv::http::engine::result r) {
    using result = srv::http::engine::result;
    for (;;) {
      switch (r) {
        case result::out_of_memory:
          out_of_memory = closed = true;
          e->abandon_output();
          out += srv::http::engine::out_of_memory_response;
          return;
        case result::need_input: return;
        case result::close: closed = true; return;
        case result::wait:  // a delayed answer: the rig's timer fires at once
          ++waits;
          r = e->wake();
          continue;
        case result::send: {
          std::size_t total = 0;
          for (const iovec& v : e->output(total)) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
          e->output_sent();
          if (e->closing()) {
            closed = true;
            return;
          }
          if (!e->has_input() && !e->waiting()) return;
          r = e->parse();
        }
      }
    }
  }

  /// Feeds bytes in pieces: piece(i) gives the size of the i-th (at least 1). Stops at a close.
  void feed(std::string_view bytes, const std::function<std::size_t(std::size_t)>& piece) {
    for (std::size_t i = 0; !bytes.empty() && !closed; ++i) {
      const std::size_t n = std::min(bytes.size(), std::max<std::size_t>(1, piece(i)));
      bufpool::buffer b = e->take_spare();
      if (!b || b.capacity() < n) {
        b.reset();
        try {
          b = pool.get(std::max(n, limits.read_buffer_bytes));
        } catch (const std::bad_alloc&) {  // as the connection does: bytes wait, so a 503 and close
          e->note_out_of_memory();
          step(srv::http::engine::result::out_of_memory);
          return;
        }
      }
      std::memcpy(b.data(), bytes.data(), n);
      bytes.remove_prefix(n);
      e->feed(std::move(b), n);
      step(e->parse());
    }
  }
  void feed(std::string_view bytes) {
    feed(bytes, [&](std::size_t) { return bytes.size(); });
  }
  /// Two pieces, split at `at`.
  void feed_split(std::string_view bytes, std::size_t at) {
    feed(bytes, [&](std::size_t i) { return i == 0 ? std::max<std::size_t>(at, 1) : bytes.size(); });
  }
  /// The header or body deadline passed.
  void timeout() {
    if (!closed && e->current_phase() != srv::http::engine::phase::idle) step(e->timeout());
  }
};

/// The status codes of every answer in bytes, in order (answer bodies in tests never hold "HTTP/1.").
inline std::vector<unsigned> statuses(std::string_view out) {
  std::vector<unsigned> s;
  for (std::size_t at = out.find("HTTP/1.1 "); at != std::string_view::npos; at = out.find("HTTP/1.1 ", at + 9))
    if (at + 12 <= out.size()) s.push_back(static_cast<unsigned>(std::stoul(std::string(out.substr(at + 9, 3)))));
  return s;
}

}  // namespace bufpool::test
