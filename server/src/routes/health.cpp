// GET /healthz, on the public and the admin listener: 200 "ok", or 503 "draining" once a graceful stop
// has begun (so a load balancer stops sending before the connections close).
#include "http/engine.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

class healthz final : public http::handler {
public:
  explicit healthz(const std::atomic<bool>& draining) : draining_(draining) {}

private:
  void respond(http::exchange& x) const override {
    if (draining_.load(std::memory_order_relaxed)) {
      x.write_head(503, "text/plain", 9);
      x.body("draining\n");
    } else {
      x.write_head(200, "text/plain", 3);
      x.body("ok\n");
    }
  }
  const std::atomic<bool>& draining_;
};

}  // namespace

std::unique_ptr<http::handler> healthz_handler(const std::atomic<bool>& draining) {
  return std::make_unique<healthz>(draining);
}

}  // namespace bufpool::server::routes
