// Helpers the load generator's test files share: settings from flags (as the program parses them) and
// the program run as a child process (exit status and output, bounded at 30 s).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "../support/process.hpp"
#include "settings.hpp"

namespace bufpool::loadgen::test {

inline loadgen_settings settings_for(const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"bufpool-loadgen", "--quiet"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  auto loaded = bufpool::config::load(loadgen_schema(), static_cast<int>(argv.size()), argv.data(), {}, {"url"});
  return settings_from(loaded.values, std::vector<std::string>{url});
}

struct run_output {
  int status = -1;
  std::string out;
};
inline run_output run_loadgen(const std::vector<std::string>& args) {
  bufpool::test::child_process p(BUFPOOL_LOADGEN_BIN, args);
  run_output r;
  r.status = p.wait_exit(std::chrono::seconds(30));
  r.out = p.output();
  return r;
}

}  // namespace bufpool::loadgen::test
