// The JSON form of the pool's statistics (nlohmann_json), kept apart so that code that only gets and
// puts buffers does not compile nlohmann_json: include this where snapshots become JSON
// (`nlohmann::json j = pool.snapshot();`).
#pragma once

#include <nlohmann/json.hpp>

#include "stats.hpp"

namespace bufpool {

/// JSON form of one class (or of the totals, which omit "size").
inline void to_json(nlohmann::json& j, const class_stats& s) {
  j = nlohmann::json{{"gets", s.gets},
                     {"puts", s.puts},
                     {"hits_private", s.hits_private},
                     {"hits_shared", s.hits_shared},
                     {"hits_stolen", s.hits_stolen},
                     {"hits_victim", s.hits_victim},
                     {"misses", s.misses},
                     {"dropped", s.dropped},
                     {"freed_by_rotation", s.freed_by_rotation},
                     {"freed_by_thread_exit", s.freed_by_thread_exit},
                     {"rotations", s.rotations},
                     {"pooled", s.pooled},
                     {"pooled_bytes", s.pooled_bytes},
                     {"outstanding", s.outstanding}};
  if (s.size != 0) j["size"] = s.size;
}

inline void to_json(nlohmann::json& j, const oversize_stats& s) {
  j = nlohmann::json{{"gets", s.gets},
                     {"puts", s.puts},
                     {"outstanding", s.outstanding},
                     {"outstanding_bytes", s.outstanding_bytes}};
}

/// JSON form of a snapshot: {"config": {...}, "threads", "thread_caches", "totals", "classes", "oversize"}.
inline void to_json(nlohmann::json& j, const pool_snapshot& s) {
  j = nlohmann::json{{"config",
                      {{"min_class", s.min_class},
                       {"max_class", s.max_class},
                       {"ring_capacity", s.ring_capacity},
                       {"max_idle_bytes", s.max_idle_bytes},
                       {"debug", s.debug},
                       {"enabled", s.enabled},
                       {"leak_detection", s.leak_detection},
                       {"leak_sample_every", s.leak_sample_every}}},
                     {"leak_tracked", s.leak_tracked},
                     {"threads", s.threads},
                     {"thread_caches", s.thread_caches},
                     {"totals", s.totals},
                     {"classes", s.classes},
                     {"oversize", s.oversize}};
}

}  // namespace bufpool
