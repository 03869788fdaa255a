// http::engine_env: what the HTTP engines of one worker thread share (the worker owns it and outlives
// them). Kept apart from engine.hpp so that worker.hpp need not see llhttp.
#pragma once

#include <atomic>

#include <bufpool/pool.hpp>

#include "stats.hpp"

namespace bufpool::server::http {

struct engine_env {
  bufpool::pool& pool;
  worker_stats& stats;
  const char* date;                   // "Fri, 27 Nov 2026 10:00:00 GMT", refreshed in place
  const std::atomic<bool>& draining;  // the worker is draining (graceful stop)
};

}  // namespace bufpool::server::http
