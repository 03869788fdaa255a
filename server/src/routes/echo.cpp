// /echo, any method: the request body back as the answer's body, streamed: each piece is copied into
// the output as it is parsed (the engine does the framing: Content-Length for a Content-Length request,
// chunked for a chunked one), so a connection holds one read buffer and one batch of output whatever
// the body's size (docs/design.md 2.2b). With a query in fortio's grammar (routes/fortio.hpp) the
// client shapes the answer: status, size (a fixed pattern instead of the body, written from pooled
// buffers), extra headers, close. A bad parameter is a 400 naming it; the connection stays open.
#include <array>
#include <cstring>

#include "http/engine.hpp"
#include "routes/fortio.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

// What on_headers decided, for respond (exchange::note).
enum note : std::uint8_t { echo_the_body = 0, sized = 1, bad_parameter = 2 };
// The largest answer size a client may ask for (fortio's -maxpayloadsizekb default: 256 KiB).
constexpr std::size_t max_size = 256 * 1024;

class echo final : public http::handler {
  void on_headers(http::exchange& x) const override {
    const std::string_view query = x.query();
    if (query.empty()) {  // the plain echo: no parsing on the fast path
      x.echo_body();
      return;
    }
    thread_local fortio::params p;
    thread_local std::string error;
    if (!fortio::parse(query, p, error)) {
      x.set_answer(400, error, false);  // the message, kept for respond; the body is read and dropped
      x.note(bad_parameter, 0);
      return;
    }
    if (!p.any) {
      x.echo_body();
      return;
    }
    const unsigned status = p.status.empty() ? 200 : p.status.pick(fortio::draw()).value_or(200);
    const std::optional<std::size_t> size = p.size.empty() ? std::nullopt : p.size.pick(fortio::draw());
    const bool close = p.close > 0 && fortio::draw() < p.close;
    // "Name: value\r\n" per header parameter.
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
    if (size) x.note(sized, std::min(*size, max_size));
    else x.echo_body();
  }

  void respond(http::exchange& x) const override {
    switch (x.note_kind()) {
      case bad_parameter: {
        const std::string_view why = x.answer_headers();  // the message set_answer kept
        x.write_head(400, "text/plain", why.size() + 1);
        x.body(why);
        x.body("\n");
        return;
      }
      case sized: {
        const unsigned status = x.answer_status();
        const bool bodiless = status < 200 || status == 204 || status == 304;
        const std::size_t n = bodiless ? 0 : x.note_value();
        x.write_head(status, "application/octet-stream", n, x.answer_headers());
        x.body_pattern(n);
        return;
      }
      default: x.end_echo(); return;
    }
  }
};

}  // namespace

std::unique_ptr<http::handler> echo_handler() { return std::make_unique<echo>(); }

}  // namespace bufpool::server::routes
