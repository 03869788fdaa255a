// live_view: what bufpool-loadgen shows while it runs, once per measured second (--progress):
//   live   a status block redrawn in place (a terminal): rate asked / sent / answered, p50, p99 and
//          p99.9 of the last second, errors by kind, connections open, and the server's pool when
//          --stats-url is given;
//   lines  the same figures as one plain line per second (stderr is not a terminal);
//   json   one JSON object per second on stderr, for scripts;
//   off    nothing (as --quiet).
// auto (the default) is live on a terminal and lines otherwise.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "settings.hpp"

namespace bufpool::loadgen {

enum class progress_mode { off, live, lines, json };

/// The mode --progress and --quiet ask for, `auto` resolved by whether stderr is a terminal.
progress_mode resolve_progress(const loadgen_settings& s, bool stderr_is_terminal);

/// The figures of one second as JSON (the json mode's object, and what the others format). `server`
/// is the latest server statistics fetched and `server_before` the ones before them (either may be null).
nlohmann::json progress_json(const loadgen_settings& s, const second_stats& sec, const nlohmann::json& server_before,
                             const nlohmann::json& server);

/// The live mode's block (lines ending in '\n') and the lines mode's line, from progress_json's object.
std::string progress_block(const loadgen_settings& s, const nlohmann::json& p);
std::string progress_line(const nlohmann::json& p);

}  // namespace bufpool::loadgen
