// bufpool-loadgen: options, the run with its live progress line and server statistics, the report.
//   bufpool-loadgen [options] URL          URL: http://host:port/path or tcp://host:port (echo)
//   bufpool-loadgen merge A.json B.json ... prints the merged report (JSON) of runs from several machines
// Exit status: 0 ok; 1 the run failed (target unreachable, every connection failed, --max-error-rate
// exceeded, report not writable); 2 invalid options.
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "engine.hpp"
#include "report.hpp"
#include "settings.hpp"

using namespace bufpool::loadgen;

namespace {

int merge_main(int argc, char** argv) {
  std::vector<nlohmann::json> reports;
  for (int i = 2; i < argc; ++i) {
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
    std::cerr << "usage: bufpool-loadgen merge A.json B.json ...\n";
    return 2;
  }
  try {
    std::cout << merge_reports(reports).dump(2) << "\n";
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

private:
  const loadgen_settings& s_;
  server_stats& out_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "merge") return merge_main(argc, argv);

  loadgen_settings s;
  try {
    auto loaded = bufpool::config::load(loadgen_schema(), argc, argv, bufpool::config::process_environment(), {"url"});
    if (loaded.exit) {
      std::cout << loaded.output;
      return 0;
    }
    for (const auto& w : loaded.warnings) std::cerr << "bufpool-loadgen: warning: " << w << "\n";
    s = settings_from(loaded.values, loaded.positional.empty() ? std::string() : loaded.positional.front());
  } catch (const bufpool::config::error& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }

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

  progress_fn progress;
  if (!s.quiet) {
    progress = [](const second_stats& sec) {
      std::fprintf(stderr, "[%4llus] %9llu req/s  errors %llu  p50 %.0fus  p99 %.0fus\n",
                   static_cast<unsigned long long>(sec.second + 1), static_cast<unsigned long long>(sec.requests),
                   static_cast<unsigned long long>(sec.errors), sec.latency.percentile(50), sec.latency.percentile(99));
    };
  }
  run_result r;
  try {
    r = run_load(s, progress);
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

  const nlohmann::json report = make_report(s, r, st);
  if (s.json_file == "-") {
    // The JSON report alone on stdout (for pipes and for `kubectl logs` of a load-generator pod); the
    // summary goes to stderr, or nowhere with --quiet.
    if (!s.quiet) std::cerr << summary(report);
    std::cout << report.dump(2) << "\n" << std::flush;
    if (!std::cout) {
      std::cerr << "bufpool-loadgen: cannot write the report to stdout\n";
      return 1;
    }
  } else {
    std::cout << summary(report);
  }
  if (!s.json_file.empty() && s.json_file != "-") {
    std::ofstream out(s.json_file);
    out << report.dump(2) << "\n";
    if (!out) {
      std::cerr << "bufpool-loadgen: cannot write " << s.json_file << "\n";
      return 1;
    }
  }
  if (r.connections_established == 0) {
    std::cerr << "bufpool-loadgen: every connection to " << s.url.host << ":" << s.url.port << " failed"
              << (r.first_connect_error.empty() ? "" : ": " + r.first_connect_error) << "\n";
    return 1;
  }
  const double attempts = static_cast<double>(r.requests + r.errors());
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
