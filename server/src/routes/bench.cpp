// The TechEmpower-style routes: GET /plaintext ("Hello, World!") and GET /json ({"message": ...},
// serialized per request as that benchmark requires, without allocating).
#include <cstring>

#include "http/engine.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

constexpr std::string_view hello = "Hello, World!";

// Writes the JSON of {"message": text} into out (which must hold 2 + 6 * text.size() + 16 bytes).
std::size_t write_message_json(char* out, std::string_view text) {
  char* p = out;
  auto put = [&](std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  };
  put("{\"message\":\"");
  for (char c : text) {
    switch (c) {
      case '"': put("\\\""); break;
      case '\\': put("\\\\"); break;
      case '\n': put("\\n"); break;
      case '\r': put("\\r"); break;
      case '\t': put("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          put("\\u00");
          *p++ = hex[(c >> 4) & 0xf];
          *p++ = hex[c & 0xf];
        } else {
          *p++ = c;
        }
    }
  }
  put("\"}");
  return static_cast<std::size_t>(p - out);
}

class plaintext final : public http::handler {
  void respond(http::exchange& x) const override {
    x.write_head(200, "text/plain", hello.size());
    x.body(hello);
  }
};

class json final : public http::handler {
  void respond(http::exchange& x) const override {
    char body[64];
    const std::size_t n = write_message_json(body, hello);
    x.write_head(200, "application/json", n);
    x.body(std::string_view(body, n));
  }
};

}  // namespace

std::unique_ptr<http::handler> plaintext_handler() { return std::make_unique<plaintext>(); }
std::unique_ptr<http::handler> json_handler() { return std::make_unique<json>(); }

}  // namespace bufpool::server::routes
