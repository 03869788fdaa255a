// POST /echo: the request body back as the answer's body, streamed: each piece is copied into the
// output as it is parsed (the engine does the framing: Content-Length for a Content-Length request,
// chunked for a chunked one), so a connection holds one read buffer and one batch of output whatever
// the body's size (docs/design.md 2.2b).
#include "http/engine.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

class echo final : public http::handler {
  void on_headers(http::exchange& x) const override { x.echo_body(); }
  void respond(http::exchange& x) const override { x.end_echo(); }
};

}  // namespace

std::unique_ptr<http::handler> echo_handler() { return std::make_unique<echo>(); }

}  // namespace bufpool::server::routes
