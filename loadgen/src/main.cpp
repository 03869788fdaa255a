// bufpool-loadgen: options, the run with its live progress line and server statistics, the report.
//   bufpool-loadgen [options] URL          URL: http://host:port/path or tcp://host:port (echo)
//   bufpool-loadgen merge A.json B.json ... prints the merged report (JSON) of runs from several machines
// Exit status: 0 ok; 1 the run failed (target unreachable, every connection failed, the target stopped
// answering, --max-error-rate exceeded, report not writable); 2 invalid options; 130 / 143 stopped by
// SIGINT / SIGTERM (the summary and the report, marked interrupted, are still written).
#include <pthread.h>
#include <signal.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <thread>

#include "capacity.hpp"
#include "engine.hpp"
#include "live_view.hpp"
#include "report.hpp"
#include "settings.hpp"

using namespace bufpool::loadgen;

namespace {

constexpr const char* usage_text =
    "usage: bufpool-loadgen [OPTIONS] URL [URL...]      run a load (--help lists every option)\n"
    "       bufpool-loadgen merge [--force] A.json B.json ...\n"
    "                                                    merge the reports of runs on several machines\n"
    "       bufpool-loadgen report RUN.json --html FILE      the HTML page of a saved (or merged) report\n";

// `report RUN.json --html FILE`: the page of a saved report.
int report_main(int argc, char** argv) {
  std::string in_file, html;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage_text;
      return 0;
    }
    if (arg == "--html" && i + 1 < argc) {
      html = argv[++i];
    } else if (arg.rfind("--html=", 0) == 0) {
      html = arg.substr(7);
    } else if (arg.rfind("-", 0) != 0 && in_file.empty()) {
      in_file = arg;
    } else {
      std::cerr << "bufpool-loadgen report: unexpected argument " << arg << "\n" << usage_text;
      return 2;
    }
  }
  if (in_file.empty() || html.empty()) {
    std::cerr << usage_text;
    return 2;
  }
  std::ifstream in(in_file);
  if (!in) {
    std::cerr << "bufpool-loadgen report: cannot read " << in_file << "\n";
    return 2;
  }
  try {
    const auto rep = nlohmann::json::parse(in);
    std::ofstream out(html);
    out << html_report(rep);
    if (!out) {
      std::cerr << "bufpool-loadgen report: cannot write " << html << "\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "bufpool-loadgen report: " << in_file << ": " << e.what() << "\n";
    return 2;
  }
  return 0;
}

int merge_main(int argc, char** argv) {
  std::vector<nlohmann::json> reports;
  std::vector<std::string> names;
  bool force = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << usage_text
                << "merge checks that the runs match (same targets, loop kind, rate per instance, durations within\n"
                   "10 % or 1 s), adds counts and histograms exactly, and computes every rate again.\n";
      return 0;
    }
    if (arg == "--force") {
      force = true;
      continue;
    }
    if (arg.rfind("--", 0) == 0) {
      std::cerr << "bufpool-loadgen merge: unknown option " << arg << "\n" << usage_text;
      return 2;
    }
    names.push_back(arg);
    std::ifstream in(argv[i]);
    if (!in) {
      std::cerr << "bufpool-loadgen merge: cannot read " << argv[i] << "\n";
      return 2;
    }
    try {
      reports.push_back(nlohmann::json::parse(in));
    } catch (const std::exception& e) {
      std::cerr << "bufpool-loadgen merge: " << argv[i] << " is not JSON: " << e.what() << "\n";
      return 2;
    }
  }
  if (reports.empty()) {
    std::cerr << usage_text;
    return 2;
  }
  try {
    std::cout << merge_reports(reports, names, force).dump(2) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bufpool-loadgen merge: " << e.what() << "\n";
    return 2;
  }
  return 0;
}

// Fetches the server's statistics every interval until stopped.
class stats_poller {
public:
  stats_poller(const loadgen_settings& s, server_stats& out) : s_(s), out_(out) {}
  void start() {
    thread_ = std::thread([this] {
      const auto t0 = std::chrono::steady_clock::now();
      std::unique_lock lk(mu_);
      while (!cv_.wait_for(lk, s_.stats_interval, [this] { return stop_; })) {
        lk.unlock();
        nlohmann::json j;
        try {
          j = fetch_json(s_.stats_url, std::chrono::milliseconds(2000));
        } catch (const std::exception&) {
          j = nullptr;
        }
        lk.lock();
        out_.series.push_back({{"t_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
                               {"stats", j}});
        if (j.is_object()) {
          previous_ = std::move(latest_);
          latest_ = j;
        }
      }
    });
  }
  void stop() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  /// The last two statistics fetched (null until there are), for the live view.
  std::pair<nlohmann::json, nlohmann::json> last_two() {
    std::lock_guard lk(mu_);
    return {previous_, latest_};
  }

private:
  const loadgen_settings& s_;
  server_stats& out_;
  nlohmann::json previous_, latest_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

// SIGINT and SIGTERM are blocked in every thread and taken here, by sigtimedwait, so that the run can
// stop cleanly and still report: the engine polls `signo`.
class signal_watch {
public:
  signal_watch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any thread starts: they inherit the mask
    thread_ = std::thread([this] {
      const timespec tick{0, 100'000'000};
      while (!done_.load(std::memory_order_relaxed)) {
        const int s = sigtimedwait(&set_, nullptr, &tick);
        if (s > 0 && signo.load(std::memory_order_relaxed) == 0) signo.store(s, std::memory_order_relaxed);
      }
    });
  }
  ~signal_watch() {
    done_.store(true, std::memory_order_relaxed);
    thread_.join();
  }
  std::atomic<int> signo{0};

private:
  sigset_t set_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "merge") return merge_main(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "report") return report_main(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "help") {
    std::cout << usage_text;
    return 0;
  }

  loadgen_settings s;
  try {
    auto loaded = bufpool::config::load(loadgen_schema(), argc, argv, bufpool::config::process_environment(), {"url..."});
    if (loaded.exit) {
      std::cout << loaded.output;
      if (loaded.output.find("Usage:") != std::string::npos)
        std::cout << "\nSubcommands:\n  merge [--force] A.json B.json ...   merge the reports of runs on several machines "
                     "(merge --help)\n  report RUN.json --html FILE         the HTML page of a saved report\n";
      return 0;
    }
    for (const auto& w : loaded.warnings) std::cerr << "bufpool-loadgen: warning: " << w << "\n";
    s = settings_from(loaded.values, loaded.positional);
  } catch (const bufpool::config::error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }

  signal_watch signals;
  server_stats st;
  if (!s.stats_url.empty()) {
    try {
      st.before = fetch_json(s.stats_url, std::chrono::milliseconds(2000));
    } catch (const std::exception& e) {
      std::cerr << "bufpool-loadgen: warning: cannot fetch --stats-url before the run: " << e.what() << "\n";
    }
  }
  stats_poller poller(s, st);
  if (!s.stats_url.empty()) poller.start();

  // Each measured second: the live block redrawn in place, a line, or a JSON object (live_view.hpp).
  progress_fn progress;
  const progress_mode mode = resolve_progress(s, ::isatty(STDERR_FILENO) == 1);
  std::size_t drawn = 0;  // lines of the live block on the terminal
  if (mode != progress_mode::off) {
    progress = [&s, &poller, mode, &drawn](const second_stats& sec) {
      const auto [before, latest] = poller.last_two();
      const auto p = progress_json(s, sec, before, latest);
      std::string text;
      if (mode == progress_mode::json) {
        text = p.dump() + "\n";
      } else if (mode == progress_mode::lines) {
        text = progress_line(p);
      } else {
        if (drawn > 0) text = "\x1b[" + std::to_string(drawn) + "A\x1b[J";  // up to the block's first line, clear below
        const std::string block = progress_block(s, p);
        drawn = static_cast<std::size_t>(std::count(block.begin(), block.end(), '\n'));
        text += block;
      }
      std::fwrite(text.data(), 1, text.size(), stderr);
      std::fflush(stderr);
    };
  }
  run_result r;
  std::optional<capacity_result> capacity;
  loadgen_settings reported = s;  // what the report's run was: with --find-max, the best trial
  try {
    if (s.find_max) {
      // Trials one after another; a line (or a JSON object) for each as it ends.
      std::size_t n = 0;
      auto on_trial = [&n, mode](const trial& t) {
        if (mode == progress_mode::off) return;
        std::string text;
        if (mode == progress_mode::json)
        {
          auto j = trial_json(t);  // the report's trial entry, numbered
          j["trial"] = n + 1;
          text = j.dump() + "\n";
        }
        else
          text = trial_line(n, t);
        ++n;
        std::fwrite(text.data(), 1, text.size(), stderr);
        std::fflush(stderr);
      };
      capacity = find_max(s, on_trial, &signals.signo);
      if (capacity->trials.empty()) throw std::runtime_error("the search ran no trial");
      const auto& best = capacity->found > 0 ? capacity->trials[capacity->best] : capacity->trials.back();
      r = best.result;
      reported.rate = best.asked;
      reported.effective["rate"] = best.asked;  // the report's config says what this trial ran
      reported.duration = s.trial_duration;
      reported.warmup = s.trial_warmup;
    } else {
      r = run_load(s, progress, &signals.signo);
    }
  } catch (const std::exception& e) {
    poller.stop();
    std::cerr << "bufpool-loadgen: " << e.what() << "\n";
    return 1;
  }
  poller.stop();
  if (!s.stats_url.empty()) {
    try {
      st.after = fetch_json(s.stats_url, std::chrono::milliseconds(2000));
    } catch (const std::exception& e) {
      std::cerr << "bufpool-loadgen: warning: cannot fetch --stats-url after the run: " << e.what() << "\n";
    }
  }

  nlohmann::json report = make_report(reported, r, st);
  std::string text = summary(report);
  if (capacity) {
    report["capacity"] = capacity_json(*capacity);
    text = capacity_text(*capacity) + "The trial the report stands for:\n" + text;
  }
  if (s.latency_spectrum) {
    text += "\n  Detailed Percentile spectrum (corrected):\n" + percentile_spectrum(r.corrected);
    if (s.rate > 0) text += "\n  Detailed Percentile spectrum (uncorrected):\n" + percentile_spectrum(r.uncorrected);
  }
  if (s.json_compact) {  // big runs: no per-second histograms, one line
    for (auto& sec : report["timeseries"]) sec.erase("histogram");
    report["compact"] = true;
  }
  const int indent = s.json_compact ? -1 : 2;
  if (s.json_file == "-") {
    // The JSON report alone on stdout (for pipes and for `kubectl logs` of a load-generator pod); the
    // summary goes to stderr, or nowhere with --quiet.
    if (!s.quiet) std::cerr << text;
    std::cout << report.dump(indent) << "\n" << std::flush;
    if (!std::cout) {
      std::cerr << "bufpool-loadgen: cannot write the report to stdout\n";
      return 1;
    }
  } else {
    std::cout << text << std::flush;
  }
  if (!s.html_file.empty()) {
    std::ofstream out(s.html_file);
    out << html_report(report);
    if (!out) {
      std::cerr << "bufpool-loadgen: cannot write " << s.html_file << "\n";
      return 1;
    }
  }
  if (!s.json_file.empty() && s.json_file != "-") {
    std::ofstream out(s.json_file);
    out << report.dump(indent) << "\n";
    if (!out) {
      std::cerr << "bufpool-loadgen: cannot write " << s.json_file << "\n";
      return 1;
    }
  }
  if (r.interrupted != 0) {
    std::fprintf(stderr, "bufpool-loadgen: interrupted by %s after %.2fs of measured time\n",
                 r.interrupted == SIGINT ? "SIGINT" : "SIGTERM", std::max(0.0, r.interrupted_at_s));
    return 128 + r.interrupted;
  }
  if (r.connections_established == 0) {
    std::cerr << "bufpool-loadgen: every connection to " << s.url.host << ":" << s.url.port << " failed"
              << (r.first_connect_error.empty() ? "" : ": " + r.first_connect_error) << "\n";
    return 1;
  }
  if (capacity) {  // the search's outcome: a rate met the goal, or none did
    if (capacity->interrupted != 0) return 128 + capacity->interrupted;
    if (capacity->found <= 0) {
      std::cerr << "bufpool-loadgen: " << capacity->decision << "\n";
      return 1;
    }
    return 0;
  }
  if (r.target_lost) {
    std::fprintf(stderr, "bufpool-loadgen: the target stopped answering %.2fs into the measured time (%s); the run %s\n",
                 r.target_lost_at_s, r.first_error.empty() ? "every attempt failed" : r.first_error.c_str(),
                 r.elapsed_s + 0.5 < std::chrono::duration<double>(s.duration).count() && s.requests == 0
                     ? "stopped early" : "ended");
    return 1;
  }
  // Answered requests plus the attempts that got no answer; `status` errors are answered requests.
  const double attempts = static_cast<double>(r.requests + r.transport_errors());
  const double error_rate = attempts > 0 ? static_cast<double>(r.errors()) / attempts : 0;
  if (error_rate > s.max_error_rate) {
    std::fprintf(stderr, "bufpool-loadgen: error rate %.4f exceeds --max-error-rate %.4f\n", error_rate, s.max_error_rate);
    return 1;
  }
  if (s.rate > 0 && r.elapsed_s > 0 && static_cast<double>(r.requests) / r.elapsed_s < 0.95 * s.rate)
    std::fprintf(stderr, "bufpool-loadgen: warning: target rate %.1f req/s not met (achieved %.1f)\n", s.rate,
                 static_cast<double>(r.requests) / r.elapsed_s);
  return 0;
}
