// /echo and /debug: the server as a load-test target, in fortio's grammar (routes/fortio.hpp; docs/design.md
// 2.8).
//
// /echo, any method: the request body back as the answer's body, streamed: each piece is copied into
// the output as it is parsed (the engine does the framing: Content-Length for a Content-Length request,
// chunked for a chunked one), so a connection holds one read buffer and one batch of output whatever
// the body's size (docs/design.md 2.2b). With a query (or echo.default_params when the request brings
// none) the client shapes the answer: status, size (a fixed pattern instead of the body, written from
// pooled buffers), delay (the answer is written when a timer fires; the body, if echoed, is held),
// extra headers, close, gzip. Asks over echo.max_delay or echo.max_size are capped and counted. A bad
// parameter is a 400 naming it; the connection stays open.
//
// /debug: the request itself as text (request line, headers, body); it takes delay, close and header.
#include <array>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "http/engine.hpp"
#include "routes/fortio.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

// What on_headers decided, for respond (exchange::note).
enum note : std::uint8_t { echo_the_body = 0, sized = 1, bad_parameter = 2 };

// A bad parameter's 400: the message set_answer kept, as the body.
void respond_bad_parameter(http::exchange& x) {
  const std::string_view why = x.answer_headers();
  x.write_head(400, "text/plain", why.size() + 1);
  x.body(why);
  x.body("\n");
}

// The query's parameters (or the defaults when it brings none); null: none at all (the plain echo).
// A bad query: a 400 planned, and null.
const fortio::params* params_of(http::exchange& x, const fortio::params* defaults) {
  const std::string_view query = x.query();
  if (query.empty()) return defaults;  // the plain echo: no parsing on the fast path
  thread_local fortio::params p;
  thread_local std::string error;
  if (!fortio::parse(query, p, error)) {
    x.set_answer(400, error, false);  // the message, kept for respond; the body is read and dropped
    x.note(bad_parameter, 0);
    return nullptr;
  }
  return p.any ? &p : defaults;
}

// The delay a request gets: drawn from its distribution, capped at max (and counted).
fortio::duration delay_of(http::exchange& x, const fortio::params& p, const echo_target_settings& cfg) {
  if (p.delay.empty()) return {};
  fortio::duration d = p.delay.pick(fortio::draw()).value_or(fortio::duration{});
  if (d > cfg.max_delay) {
    d = cfg.max_delay;
    x.stats().echo_capped_delay.add();
  }
  return d;
}

// "Name: value\r\n" per header parameter, set as the answer's extra headers with its status and close.
void plan_answer(http::exchange& x, const fortio::params& p, unsigned status) {
  const bool close = p.close > 0 && fortio::draw() < p.close;
  std::array<char, fortio::max_header_text + 4 * fortio::max_headers> text;
  std::size_t len = 0;
  for (std::size_t i = 0; i < p.header_count; ++i) {
    const auto& h = p.headers[i];
    std::memcpy(text.data() + len, h.name.data(), h.name.size());
    len += h.name.size();
    text[len++] = ':';
    text[len++] = ' ';
    std::memcpy(text.data() + len, h.value.data(), h.value.size());
    len += h.value.size();
    text[len++] = '\r';
    text[len++] = '\n';
  }
  x.set_answer(status, {text.data(), len}, close);
}

// The pattern body_pattern writes, n bytes of it in one piece (what a compressed answer is made from):
// one per process, the longest asked for so far, shared by every /echo handler.
std::shared_ptr<const std::string> pattern_source(std::size_t n) {
  static std::mutex m;
  static std::shared_ptr<const std::string> longest;
  const std::lock_guard lock(m);
  if (!longest || longest->size() < n) {
    auto s = std::make_shared<std::string>(n, '\0');
    const std::string_view cycle = http::exchange::pattern_cycle;
    for (std::size_t i = 0; i < n; ++i) (*s)[i] = cycle[i % cycle.size()];
    longest = std::move(s);
  }
  return longest;
}

class echo final : public http::handler {
public:
  explicit echo(const echo_target_settings& cfg) : cfg_(cfg), source_(pattern_source(cfg.max_size)) {
    if (!cfg_.default_params.empty()) {
      std::string why;
      if (!fortio::parse(cfg_.default_params, defaults_, why))
        throw std::invalid_argument("echo.default_params: " + why);
      has_defaults_ = defaults_.any;
    }
  }

private:
  void on_headers(http::exchange& x) const override {
    const fortio::params* p = params_of(x, has_defaults_ ? &defaults_ : nullptr);
    if (p == nullptr) {
      if (x.note_kind() != bad_parameter) x.echo_body();
      return;
    }
    const unsigned status = p->status.empty() ? 200 : p->status.pick(fortio::draw()).value_or(200);
    std::optional<std::size_t> size = p->size.empty() ? std::nullopt : p->size.pick(fortio::draw());
    if (size && *size > cfg_.max_size) {
      size = cfg_.max_size;
      x.stats().echo_capped_size.add();
    }
    const fortio::duration delay = delay_of(x, *p, cfg_);
    const bool gzip = p->gzip > 0 && fortio::draw() < p->gzip;
    plan_answer(x, *p, status);
    if (gzip) x.gzip_answer();
    if (size) x.note(sized, *size);
    else if (delay.count() > 0 || gzip) x.hold_body();  // answered whole, once the delay is over
    else x.echo_body();
    if (delay.count() > 0) x.defer(delay);
  }

  void respond(http::exchange& x) const override {
    switch (x.note_kind()) {
      case bad_parameter: respond_bad_parameter(x); return;
      case sized: {
        const unsigned status = x.answer_status();
        const bool bodiless = status < 200 || status == 204 || status == 304;
        const std::size_t n = bodiless ? 0 : x.note_value();
        if (x.gzip_asked()) {  // compressed from one contiguous copy of the pattern (static, echo.max_size long)
          x.write_whole(status, "application/octet-stream", source().substr(0, n), x.answer_headers());
          return;
        }
        x.write_head(status, "application/octet-stream", n, x.answer_headers());
        x.body_pattern(n);
        return;
      }
      default: x.end_echo(); return;
    }
  }

  std::string_view source() const noexcept { return *source_; }

  echo_target_settings cfg_;
  std::shared_ptr<const std::string> source_;  // the pattern, echo.max_size long (shared by the handlers)
  fortio::params defaults_;  // echo.default_params (its header views point into its own text)
  bool has_defaults_ = false;
};

class debug final : public http::handler {
public:
  explicit debug(const echo_target_settings& cfg) : cfg_(cfg) {}

private:
  bool wants_headers() const override { return true; }

  void on_headers(http::exchange& x) const override {
    const fortio::params* p = params_of(x, nullptr);
    if (x.note_kind() == bad_parameter) return;
    const fortio::duration delay = p != nullptr ? delay_of(x, *p, cfg_) : fortio::duration{};
    if (p != nullptr) plan_answer(x, *p, 200);
    x.hold_body();
    if (delay.count() > 0) x.defer(delay);
  }

  void respond(http::exchange& x) const override {
    if (x.note_kind() == bad_parameter) {
      respond_bad_parameter(x);
      return;
    }
    // As fortio's /debug writes it: the request line, the headers, the body.
    char version[16];
    const int vlen = std::snprintf(version, sizeof version, " HTTP/1.%u\n\n", x.version_minor());
    constexpr std::string_view headers_title = "headers:\n\n", body_title = "\nbody:\n\n";
    std::size_t body_bytes = 0;
    for (const auto& b : x.held_body()) body_bytes += b.size();
    const std::string_view method = x.method_name(), target = x.target(), headers = x.captured_headers();
    const std::size_t length = method.size() + 1 + target.size() + static_cast<std::size_t>(vlen) +
                               headers_title.size() + headers.size() + body_title.size() + body_bytes + 1;
    x.write_head(200, "text/plain; charset=utf-8", length, x.answer_headers());
    x.body(method);
    x.body(" ");
    x.body(target);
    x.body({version, static_cast<std::size_t>(vlen)});
    x.body(headers_title);
    x.body(headers);
    x.body(body_title);
    for (const auto& b : x.held_body()) x.body({reinterpret_cast<const char*>(b.data()), b.size()});
    x.body("\n");
  }

  echo_target_settings cfg_;
};

}  // namespace

std::unique_ptr<http::handler> echo_handler(const echo_target_settings& cfg) { return std::make_unique<echo>(cfg); }
std::unique_ptr<http::handler> debug_handler(const echo_target_settings& cfg) { return std::make_unique<debug>(cfg); }

}  // namespace bufpool::server::routes
