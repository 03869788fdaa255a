// routes::table: method + path -> handler, built once per listener (the public one, the admin one).
// A path registered for GET also answers HEAD. A path that is in the table but not for the method gets
// the 405 handler, with an Allow line made from the table; a path that is not in it, the 404 handler.
// Adding a route: write its handler (a file of its area) and add() it where the listener's table is
// built (make_public_table / make_admin_table below).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <llhttp.h>

#include "http/handler.hpp"
#include "settings.hpp"
#include "stats.hpp"

namespace bufpool::server::routes {

/// What the table found for a request.
struct match {
  const http::handler* handler;
  route stats;            // where its requests are counted
  std::string_view allow;  // for a 405: "Allow: GET, HEAD\r\n"
};

class table {
public:
  table();
  /// Registers handler h for path and methods (HEAD comes with GET).
  void add(std::string path, std::initializer_list<llhttp_method_t> methods, route stats,
           std::unique_ptr<http::handler> h);
  /// Every path no entry takes goes to h (counted as `stats`) instead of the 404 handler.
  void set_fallback(route stats, std::unique_ptr<http::handler> h) {
    not_found_ = std::move(h);
    not_found_stats_ = stats;
  }
  /// path: the request target (origin- or absolute-form; the query is ignored).
  match find(llhttp_method_t method, std::string_view target) const noexcept;

private:
  struct entry {
    std::string path;
    std::uint64_t methods;  // bit per llhttp method
    route stats;
    std::string allow;
    std::unique_ptr<http::handler> handler;
  };
  std::vector<entry> entries_;
  std::unique_ptr<http::handler> not_found_;
  route not_found_stats_ = route::not_found;
  std::unique_ptr<http::handler> not_allowed_;
};

/// The public listener's routes: /plaintext, /json, /echo, /debug, /healthz (and, with echo.any_path,
/// every other path as /echo).
table make_public_table(const std::atomic<bool>& draining, const echo_target_settings& echo = {});
/// The admin listener's routes: /stats, /metrics, / (the dashboard), /healthz.
table make_admin_table(const std::atomic<bool>& draining, std::function<std::string()> stats_json,
                       std::function<std::string()> metrics_text);

// The handlers, each defined in the file of its area.
std::unique_ptr<http::handler> plaintext_handler();                              // bench.cpp
std::unique_ptr<http::handler> json_handler();                                   // bench.cpp
std::unique_ptr<http::handler> echo_handler(const echo_target_settings& cfg);      // echo.cpp
std::unique_ptr<http::handler> debug_handler(const echo_target_settings& cfg);     // echo.cpp
std::unique_ptr<http::handler> healthz_handler(const std::atomic<bool>& draining);  // health.cpp
std::unique_ptr<http::handler> text_handler(std::string_view content_type,
                                            std::function<std::string()> body);  // admin.cpp
std::unique_ptr<http::handler> dashboard_handler();                              // admin.cpp
/// The dashboard page itself (dashboard.cpp).
std::string_view dashboard_html() noexcept;

}  // namespace bufpool::server::routes
