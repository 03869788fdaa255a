// The admin listener's routes: GET /stats (JSON), GET /metrics (Prometheus text), GET / (the live
// dashboard page, dashboard.cpp). Their bodies are made per request by the server (stats_json,
// metrics_text): an admin request may allocate; the data path's routes never do.
#include "http/engine.hpp"
#include "routes/table.hpp"

namespace bufpool::server::routes {

namespace {

class text final : public http::handler {
public:
  text(std::string_view content_type, std::function<std::string()> body)
      : content_type_(content_type), body_(std::move(body)) {}

private:
  void respond(http::exchange& x) const override {
    const std::string b = body_();
    x.write_head(200, content_type_, b.size());
    x.body(b);
  }
  std::string_view content_type_;
  std::function<std::string()> body_;
};

class dashboard final : public http::handler {
  void respond(http::exchange& x) const override {
    const std::string_view b = dashboard_html();
    x.write_head(200, "text/html; charset=utf-8", b.size());
    x.body(b);
  }
};

}  // namespace

std::unique_ptr<http::handler> text_handler(std::string_view content_type, std::function<std::string()> body) {
  return std::make_unique<text>(content_type, std::move(body));
}
std::unique_ptr<http::handler> dashboard_handler() { return std::make_unique<dashboard>(); }

}  // namespace bufpool::server::routes
