// Compiled with the strictest warnings an embedder may turn on (-Wuseless-cast, -Wold-style-cast,
// -Wsign-conversion, ... and -Werror; see tests/CMakeLists.txt): the library's headers must stay
// clean under them. Not run; building it is the test.
#include <bufpool/bufpool.hpp>
#include <bufpool/chunk_resource.hpp>
#include <bufpool/json.hpp>

int strict_warnings_use_everything() {
  bufpool::chunk_resource memory;
  bufpool::pool_options o;
  o.memory = &memory;
  bufpool::pool p(o);
  bufpool::buffer b = p.get(1000);
  asio::mutable_buffer view = b;
  p.put(std::move(b));
  p.rotate();
  const nlohmann::json j = p.snapshot();
  return static_cast<int>(j.size() + view.size() + p.class_index(5000));
}
