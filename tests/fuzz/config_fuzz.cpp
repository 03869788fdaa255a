// libFuzzer target: bufpool-server's configuration loader fed arbitrary input. The first byte picks
// the form: a configuration file (the rest of the input), or flags and environment variables (the rest
// split at NUL bytes, "K=V" items going to the environment). Every outcome must be a configuration
// or a config::error; any other exception escapes and is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "settings.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace bufpool;
  if (size < 1) return 0;
  const bool as_file = (data[0] & 1) == 0;
  const std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::vector<std::string> args = {"bufpool-server"};
  std::map<std::string, std::string> env;
  int fd = -1;
  if (as_file) {
    fd = ::memfd_create("config", 0);
    if (fd < 0) return 0;
    if (::write(fd, rest.data(), rest.size()) != static_cast<ssize_t>(rest.size())) {
      ::close(fd);
      return 0;
    }
    args.push_back("--config");
    args.push_back("/proc/self/fd/" + std::to_string(fd));
  } else {
    std::size_t at = 0;
    while (at <= rest.size()) {
      const std::size_t nul = std::min(rest.find('\0', at), rest.size());
      const std::string item = rest.substr(at, nul - at);
      const auto eq = item.find('=');
      if (item.rfind("BUFPOOL_", 0) == 0 && eq != std::string::npos) env[item.substr(0, eq)] = item.substr(eq + 1);
      else if (item != "--help" && item != "-h" && item != "--print-config" && item.rfind("--config", 0) != 0)
        args.push_back(item);  // (no --config: it would read whatever file the input names)
      at = nul + 1;
    }
  }
  std::vector<const char*> argv;
  for (auto& a : args) argv.push_back(a.c_str());
  try {
    auto loaded = config::load(server::server_schema(), static_cast<int>(argv.size()), argv.data(), env);
    if (!loaded.exit) (void)server::settings_from(loaded.values);
  } catch (const config::error&) {
  }
  if (fd >= 0) ::close(fd);
  return 0;
}
