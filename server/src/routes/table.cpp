#include "routes/table.hpp"

#include <cstring>

#include "http/checks.hpp"
#include "http/engine.hpp"

namespace bufpool::server::routes {

namespace {

class not_found final : public http::handler {
  void respond(http::exchange& x) const override {
    x.write_head(404, "text/plain", 10);
    x.body("not found\n");
  }
};

class method_not_allowed final : public http::handler {
  void respond(http::exchange& x) const override {
    x.write_head(405, "text/plain", 19, x.allow());
    x.body("method not allowed\n");
  }
};

constexpr std::uint64_t bit(llhttp_method_t m) { return std::uint64_t{1} << static_cast<unsigned>(m); }

}  // namespace

table::table() : not_found_(std::make_unique<not_found>()), not_allowed_(std::make_unique<method_not_allowed>()) {}

void table::add(std::string path, std::initializer_list<llhttp_method_t> methods, route stats,
                std::unique_ptr<http::handler> h) {
  std::uint64_t mask = 0;
  std::string allow = "Allow: ";
  for (llhttp_method_t m : methods) {
    mask |= bit(m);
    if (mask != bit(m)) allow += ", ";
    allow += llhttp_method_name(m);
    if (m == HTTP_GET) {
      mask |= bit(HTTP_HEAD);
      allow += ", HEAD";
    }
  }
  allow += "\r\n";
  entries_.push_back({std::move(path), mask, stats, std::move(allow), std::move(h)});
}

match table::find(llhttp_method_t method, std::string_view target) const noexcept {
  // Origin-form (nearly always): an entry matches when the target starts with its path and the path
  // ends there or at the query, so the target is not searched for '?' first. Else the path of an
  // absolute-form target.
  const std::string_view path = !target.empty() && target.front() == '/' ? target : http::path_of(target);
  for (const entry& e : entries_) {
    const std::size_t n = e.path.size();
    if (path.size() < n || (path.size() > n && path[n] != '?') || std::memcmp(path.data(), e.path.data(), n) != 0)
      continue;
    if ((e.methods & bit(method)) == 0) return {not_allowed_.get(), route::method_not_allowed, e.allow};
    return {e.handler.get(), e.stats, {}};
  }
  return {not_found_.get(), not_found_stats_, {}};
}

table make_public_table(const std::atomic<bool>& draining, const echo_target_settings& echo) {
  table t;
  t.add("/plaintext", {HTTP_GET}, route::plaintext, plaintext_handler());
  t.add("/json", {HTTP_GET}, route::json, json_handler());
  t.add("/echo", {HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_PATCH, HTTP_OPTIONS}, route::echo, echo_handler(echo));
  t.add("/debug", {HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_DELETE, HTTP_PATCH, HTTP_OPTIONS}, route::debug,
        debug_handler(echo));
  if (echo.any_path) t.set_fallback(route::echo, echo_handler(echo));  // as fortio: any other path echoes
  t.add("/healthz", {HTTP_GET}, route::healthz, healthz_handler(draining));
  return t;
}

table make_admin_table(const std::atomic<bool>& draining, std::function<std::string()> stats_json,
                       std::function<std::string()> metrics_text) {
  if (!stats_json) stats_json = [] { return std::string("{}"); };
  if (!metrics_text) metrics_text = [] { return std::string(); };
  table t;
  t.add("/healthz", {HTTP_GET}, route::healthz, healthz_handler(draining));
  t.add("/stats", {HTTP_GET}, route::stats, text_handler("application/json", std::move(stats_json)));
  t.add("/metrics", {HTTP_GET}, route::metrics,
        text_handler("text/plain; version=0.0.4; charset=utf-8", std::move(metrics_text)));
  t.add("/", {HTTP_GET}, route::dashboard, dashboard_handler());
  return t;
}

}  // namespace bufpool::server::routes
