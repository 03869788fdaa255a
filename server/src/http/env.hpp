// http::engine_env: what the HTTP engines of one worker thread share (the worker owns it and outlives
// them). Kept apart from engine.hpp so that worker.hpp need not see llhttp.
#pragma once

#include <atomic>
#include <memory_resource>

#include <bufpool/pool.hpp>

#include "stats.hpp"

namespace bufpool::server::http {

struct engine_env {
  bufpool::pool& pool;
  worker_stats& stats;
  const char* date;                   // "Fri, 27 Nov 2026 10:00:00 GMT", refreshed in place
  const std::atomic<bool>& draining;  // the worker is draining (graceful stop)
  // Where the engines' and streams' own small vectors live: the server passes the memory its
  // connection objects come from (mapped chunks), so that nothing a connection allocates lands in the
  // heap between Asio's long-lived per-socket state, where it would keep pages resident after a burst.
  std::pmr::memory_resource* memory = std::pmr::get_default_resource();
};

}  // namespace bufpool::server::http
