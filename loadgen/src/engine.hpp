// engine: drives the load. One io_context per thread, each with its share of the connections; every
// buffer the load generator sends or reads comes from a bufpool::pool. Latency is recorded per thread
// into histograms (no shared atomics on the request path) and merged when the run ends.
//
// Closed loop: each connection keeps `pipeline` requests in flight and sends the next as a response
// arrives. Open loop (rate > 0): each connection has a fixed schedule of intended send times
// (rate / connections per second, phases staggered); a request that cannot go out on time (its
// connection has `pipeline` requests in flight) waits and keeps its intended time. Latency is measured
// from the intended time ("corrected": coordinated omission accounted for, as wrk2 does) and from the
// actual send time ("uncorrected"). In the closed loop the two are the same.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "histogram.hpp"
#include "settings.hpp"

namespace bufpool::loadgen {

/// Transport-level failures, counted by kind.
/// Failures, counted by kind. `status`: a response whose status --ok-status does not accept (it is
/// also counted in `requests`: it was answered); the others are transport failures.
/// `reset`: HTTP/2, the server reset a stream before answering it (the request is lost).
enum class failure : std::uint8_t { connect, read, write, timeout, closed, parse, echo_mismatch, status, reset, count };
inline constexpr const char* failure_names[] = {"connect", "read",  "write",         "timeout", "closed",
                                                "parse",   "echo_mismatch", "status", "reset"};

/// One second of the measured window, all threads merged.
struct second_stats {
  std::uint64_t second = 0;  // 0 = the first measured second
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
  std::uint64_t sent = 0;   // requests sent in this second (actual send time)
  std::uint64_t asked = 0;  // --stages / --steps: requests the plan asks in this second (merge adds them)
  histogram latency{60'000'000};  // corrected
  // For the live view: the errors of this second by kind, and the connections open at its end.
  std::array<std::uint64_t, static_cast<std::size_t>(failure::count)> failures{};
  std::uint64_t connections = 0;
};

struct run_result {
  std::uint64_t requests = 0;                  // responses received for requests sent in the window
  std::array<std::uint64_t, 5> status{};       // responses by class, 1xx..5xx (HTTP)
  std::array<std::uint64_t, static_cast<std::size_t>(failure::count)> failures{};
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::uint64_t connections_requested = 0;
  std::uint64_t connections_established = 0;
  std::uint64_t connections_failed = 0;
  std::uint64_t in_flight_at_stop = 0;
  std::uint64_t sent = 0;  // requests written in the window: sent == requests + lost + in_flight_at_stop
  std::uint64_t lost = 0;  // written, then their connection closed before an answer (not retried)
  double elapsed_s = 0;
  histogram corrected{60'000'000};
  histogram uncorrected{60'000'000};
  std::vector<second_stats> series;
  std::string first_connect_error;  // the first connect failure's message, for a clear report
  std::string first_error;          // the first transport failure of any kind, for a clear report
  std::map<int, std::uint64_t> status_codes;  // every response by exact status (HTTP)
  histogram send_lag{60'000'000};   // open loop: actual minus intended send time, us
  int interrupted = 0;              // the signal that stopped the run early (SIGINT, SIGTERM), or 0
  double interrupted_at_s = -1;     // when, seconds since the measured window began
  bool target_lost = false;         // every connection kept failing: the run stopped (or ended) so
  double target_lost_at_s = -1;     // since when, seconds since the measured window began
  std::chrono::system_clock::time_point started_at{};  // wall clock of the first sends
  // TLS (https:// and tls:// targets): every completed handshake of the run (warm-up included).
  std::uint64_t handshakes = 0, resumed = 0;
  histogram handshake{60'000'000};  // handshake time, us (TCP connect excluded)
  std::string tls_version, tls_cipher, tls_alpn;  // of the first handshake
  // HTTP/2 (--http2): the server's SETTINGS_MAX_CONCURRENT_STREAMS as the first connection saw it
  // (-1: none received), and what the server sent that ended streams or connections.
  std::int64_t h2_server_max_streams = -1;
  std::uint64_t h2_resets_received = 0, h2_goaways_received = 0;
  std::uint64_t errors() const noexcept {
    std::uint64_t n = 0;
    for (auto f : failures) n += f;
    return n;
  }
  /// Failures that are not answered requests (every kind but `status`).
  std::uint64_t transport_errors() const noexcept { return errors() - failures[static_cast<std::size_t>(failure::status)]; }
};

/// Called once per measured second (from a worker thread) with that second's merged figures.
using progress_fn = std::function<void(const second_stats&)>;

/// Runs the load described by `s` and returns its figures. Throws std::runtime_error when a target
/// cannot be resolved. `interrupt`, when given, is polled (every 100 ms): once it holds a signal number
/// the run stops sending, waits up to a second for the answers in flight, and returns what it has.
run_result run_load(const loadgen_settings& s, const progress_fn& progress = {},
                    const std::atomic<int>* interrupt = nullptr);

}  // namespace bufpool::loadgen
