// capacity: --find-max --slo '...': the highest open-loop rate at which a service meets a latency and
// error goal, found by trials (docs/design.md 4.1, "Capacity search").
#pragma once

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine.hpp"
#include "settings.hpp"

namespace bufpool::loadgen {

/// The goal: latency conditions on the corrected latency, and at most an error rate.
struct slo {
  struct condition {
    double percentile = 99;  // 100: max
    double limit_us = 0;
    bool inclusive = false;  // <= rather than <
    std::string text;        // as written, "p99<10ms"
  };
  std::vector<condition> latency;
  std::optional<double> max_error_rate;  // a fraction
  bool errors_inclusive = false;
  std::string text;
};
/// Parses "p99<10ms,p99.9<=50ms,max<1s,errors<0.1%"; throws config::error naming the condition.
slo parse_slo(std::string_view text);

/// One trial of the search.
struct trial {
  double asked = 0;     // requests per second asked
  double achieved = 0;  // answered per second over the trial's window
  double error_rate = 0;
  bool met = false;
  bool confirmation = false;  // a second run of the highest rate met
  std::size_t repeat = 0;     // which of the rate's --trial-repeats runs (0-based)
  std::size_t repeats = 1;    // --trial-repeats
  bool closes = false;        // the rate's last trial (the majority decided, or the repeats done)
  bool rate_met = false;      // on the closing trial: more than half of the rate's repeats met
  std::string why;            // the first condition that failed ("" when met)
  run_result result;
};

struct capacity_result {
  slo goal;
  std::vector<trial> trials;
  double found = 0;         // the highest rate met (and confirmed); 0: none
  double lowest_failed = 0; // 0: none failed
  std::size_t rates = 0;    // judgements made (each --trial-repeats trials)
  std::size_t best = 0;     // index of the trial whose report stands for the run (valid when found > 0)
  std::string decision;     // the outcome in words
  int interrupted = 0;
};

/// Whether trial t met the goal (and why not); fills t.met, t.why, t.achieved, t.error_rate.
void judge(const slo& goal, trial& t);

/// Runs one trial: the settings of an open-loop run at the trial's rate, its result (run_load; the
/// tests give a model of a service instead).
using trial_runner = std::function<run_result(const loadgen_settings&, const std::atomic<int>*)>;

/// Runs the search. `on_trial` (may be empty) is called after each trial; `interrupt` as for run_load.
capacity_result find_max(const loadgen_settings& s, const std::function<void(const trial&)>& on_trial = {},
                         const std::atomic<int>* interrupt = nullptr, const trial_runner& runner = {});

/// One trial as JSON: the rate asked and achieved, requests, errors, the latency percentiles, whether it
/// met the goal (and why not), its repeat and, on a rate's closing trial, the rate's verdict (else null).
/// The report's trials and `--progress json`'s lines are this.
nlohmann::json trial_json(const trial& t);
/// A trial's outcome in words, from its JSON: "[2/3] " when repeated, met or why it failed, and on a
/// rate's closing trial the rate's verdict. The trial line and the HTML table say this.
std::string trial_verdict(const nlohmann::json& t);
/// The report's "capacity" object.
nlohmann::json capacity_json(const capacity_result& c);
/// One line per trial (for stderr as the search goes), and the summary's table with the decision.
std::string trial_line(std::size_t index, const trial& t);
std::string capacity_text(const capacity_result& c);

}  // namespace bufpool::loadgen
