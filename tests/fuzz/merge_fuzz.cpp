// libFuzzer target: bufpool-loadgen's merge of reports fed arbitrary JSON documents (the input split
// at 0xff bytes, up to four documents). Bad reports must end in an exception (merge prints it and
// exits 1), never in a crash, an out-of-bounds access or undefined behaviour.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "report.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string all(reinterpret_cast<const char*>(data), size);
  std::vector<nlohmann::json> reports;
  std::size_t at = 0;
  while (at <= all.size() && reports.size() < 4) {
    const std::size_t sep = std::min(all.find('\xff', at), all.size());
    auto doc = nlohmann::json::parse(all.substr(at, sep - at), nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return 0;
    reports.push_back(std::move(doc));
    at = sep + 1;
  }
  if (reports.empty()) return 0;
  try {
    // What `bufpool-loadgen merge` does with them.
    (void)bufpool::loadgen::merge_reports(reports).dump(2);
  } catch (const std::exception&) {
  }
  return 0;
}
