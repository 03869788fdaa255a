// What a route is to the engine: a handler, called once when a request's headers are complete and once
// when the request is complete. One virtual call each per request; no std::function, no copy of the
// request (the handler sees it through http::exchange, which also takes the answer).
#pragma once

namespace bufpool::server::http {

class exchange;

class handler {
public:
  virtual ~handler() = default;
  /// The headers are complete and passed every check; the body (if any) follows. A handler that
  /// answers with the body itself asks for it here (exchange::echo_body).
  virtual void on_headers(exchange&) const {}
  /// The request is complete: write the answer (exchange::write_head, exchange::body).
  virtual void respond(exchange&) const = 0;
  /// The handler reads the request's header lines (exchange::captured_headers): the engine keeps them
  /// for its requests, in a pooled buffer. Asked once the target is parsed.
  virtual bool wants_headers() const { return false; }
};

}  // namespace bufpool::server::http
