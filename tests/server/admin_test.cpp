// The admin listener (/stats, /healthz), the statistics' sums, and the graceful stop.
#include <cstring>
#include <set>
#include <sstream>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

namespace {
// What the statistics tests count: ten GET /plaintext and one GET of an unknown path, on one connection.
void ten_plaintext_and_a_404(server& s) {
  client c(s.ports().http);
  for (int i = 0; i < 10; ++i) c.send(get("/plaintext"));
  c.send(get("/nope"));
  c.read_responses(11);
}
}  // namespace

TEST_CASE("admin: /stats has the server and pool sections, and its counters add up") {
  server s(test_settings());
  ten_plaintext_and_a_404(s);
  client a(s.ports().admin);
  a.send(get("/stats"));
  auto r = a.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "application/json");
  auto j = nlohmann::json::parse(r.body);
  const auto& srv = j["server"];
  for (const char* k : {"uptime_s", "threads", "connections", "requests", "responses", "errors", "bytes_in",
                        "bytes_out", "settings"})
    CHECK(srv.contains(k));
  CHECK(srv["threads"] == 2);
  CHECK(srv["connections"]["per_thread"].size() == 2);
  CHECK(srv["requests"]["plaintext"] == 10);
  CHECK(srv["requests"]["not_found"] == 1);
  CHECK(srv["responses"]["2xx"] == 10);
  CHECK(srv["responses"]["4xx"] == 1);
  CHECK(srv["settings"]["http"]["max_body_bytes"] == 1048576);
  const auto& t = j["pool"]["totals"];
  for (const char* k : {"gets", "puts", "hits_private", "hits_shared", "hits_stolen", "hits_victim", "misses",
                        "dropped", "freed_by_rotation", "rotations", "pooled", "pooled_bytes", "outstanding"})
    CHECK(t.contains(k));
  CHECK(t["gets"] == t["hits_private"].get<std::uint64_t>() + t["hits_shared"].get<std::uint64_t>() +
                         t["hits_stolen"].get<std::uint64_t>() + t["hits_victim"].get<std::uint64_t>() +
                         t["misses"].get<std::uint64_t>());
  CHECK(j["pool"]["classes"].size() == 9);
  a.send(get("/healthz"));
  CHECK(a.read_response().body == "ok\n");
  a.send(get("/plaintext"));  // public routes are not on the admin port
  CHECK(a.read_response().status == 404);
}

TEST_CASE("admin: with pool.leak_detection all, /stats lists every buffer out by call stack (pool_leaks)") {
  auto st = test_settings();
  st.pool.leaks = bufpool::leak_detection::all;
  st.leak_report_age = std::chrono::microseconds(0);
  server s(st);
  ten_plaintext_and_a_404(s);
  {
    client c(s.ports().http);
    c.send(post("/echo", std::string(20000, 'e')));
    CHECK(c.read_response().body.size() == 20000);
  }
  client a(s.ports().admin);
  nlohmann::json j;
  std::size_t sampled = 0;
  std::int64_t out = -1;
  // Every buffer out is tracked (level all): the sites add up to what the pool has out. Polled: a
  // worker's ring refill (io_uring) may run between the snapshot and the listing.
  CHECK(bufpool::test::eventually([&] {
    a.send(get("/stats"));
    j = nlohmann::json::parse(a.read_response().body);
    sampled = 0;
    for (const auto& site : j["pool_leaks"]) sampled += site["sampled"].get<std::size_t>();
    out = j["pool"]["totals"]["outstanding"].get<std::int64_t>() + j["pool"]["oversize"]["outstanding"].get<std::int64_t>();
    return static_cast<std::int64_t>(sampled) == out;
  }));
  CHECK(j["pool"]["config"]["leak_detection"] == "all");
  CHECK(j["pool"]["config"]["leak_sample_every"] == 1);
  CHECK(j["pool"]["leak_tracked"].get<std::int64_t>() == out);
  CHECK(out >= 1);  // at least the /stats request's own read buffer
  for (const auto& site : j["pool_leaks"]) {
    CHECK(site["estimated"] == site["sampled"]);
    CHECK(site["stack"].size() >= 2);  // the server's frames (names with -rdynamic, else binary+offset)
    CHECK(site["oldest_s"].get<double>() >= 0.0);
  }
}

TEST_CASE("shutdown: idle connections close, a request in flight finishes, /healthz says 503 meanwhile") {
  server s(test_settings({{"shutdown.grace", "5s"}}));
  client idle(s.ports().http);
  idle.send(get("/plaintext"));
  idle.read_response();
  client busy(s.ports().http);
  busy.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");  // half the body
  std::this_thread::sleep_for(100ms);
  client admin(s.ports().admin);
  std::thread stopper([&] { s.stop(); });
  CHECK(idle.closed_by_peer(3s));
  admin.send(get("/healthz"));
  auto h = admin.read_response();
  CHECK(h.status == 503);
  busy.send("world");
  auto r = busy.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "helloworld");
  // The echo answer's head went out before the stop began (it is streamed); the connection closes after it.
  CHECK(busy.closed_by_peer(3s));
  stopper.join();
  CHECK(bufpool::test::connection_buffers(s.stats()) == 0);
}

TEST_CASE("shutdown: connections still busy after the grace period are closed") {
  server s(test_settings({{"shutdown.grace", "200ms"}}));
  client busy(s.ports().http);
  busy.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhel");
  std::this_thread::sleep_for(50ms);
  const auto t0 = std::chrono::steady_clock::now();
  s.stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // a bound on the stop, not a speed claim
  CHECK(busy.closed_by_peer(2s));
}

// Regression: a sweep already queued to run when the worker stopped re-armed its timer, so the worker's
// io_context never ran out of work and stop() waited forever. A short sweep tick makes the race likely.
TEST_CASE("shutdown: stopping never hangs when a sweep is due (regression: queued sweep re-armed)") {
  for (int i = 0; i < 100; ++i) {
    server s(test_settings({{"http.idle_timeout", "20ms"}, {"http.linger_timeout", "0s"}}));  // 5 ms ticks
    client c(s.ports().http);
    c.send(get("/plaintext"));
    c.read_response();
    std::this_thread::sleep_for(std::chrono::microseconds(i * 50));
    s.stop();  // ctest's timeout is the bound if this regresses
  }
}

// On io_uring an idle server lends the kernel its rings of read buffers: those are outstanding in the
// pool's figures, and /stats and /metrics count them apart, so an idle server shows no buffer held by
// a connection (as a leak would show), whatever the backend.
TEST_CASE("admin: buffers lent to the kernel are counted apart from those connections hold") {
  server s(test_settings({{"threads", "1"}, {"io.uring_buffers", "16"}}));
  ten_plaintext_and_a_404(s);
  const bool uring = std::string_view(s.io_backend_name()) == "io_uring";
  REQUIRE(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  const auto st = s.stats();
  const auto& b = st["server"]["buffers"];
  CHECK(b["lent_to_kernel"].get<std::int64_t>() == (uring ? 16 : 0));
  CHECK(b["outstanding"].get<std::int64_t>() == st["pool"]["totals"]["outstanding"].get<std::int64_t>());
  CHECK(b["outstanding"].get<std::int64_t>() == b["lent_to_kernel"].get<std::int64_t>());
  client a(s.ports().admin);
  a.send(get("/metrics"));
  const std::string m = a.read_response().body;
  CHECK(m.find("\nbufpool_buffers_held{holder=\"kernel\"} " + std::to_string(uring ? 16 : 0) + "\n") !=
        std::string::npos);
  // The scrape's own connection holds its read buffer (and perhaps its answer's) while it is written.
  const std::string held = "\nbufpool_buffers_held{holder=\"connections\"} ";
  const std::size_t at = m.find(held);
  REQUIRE(at != std::string::npos);
  CHECK(std::stoi(m.substr(at + held.size())) <= 2);
}

TEST_CASE("io_uring: an idle worker's buffer ring gives back what it did not use, and connections idle across it and a burst after it are served") {
  // Rotation every 100 ms: each one, the ring drops to twice the most buffers one turn drew (at least 16).
  server s(test_settings({{"threads", "1"}, {"io.uring_buffers", "256"}, {"pool.rotation_interval", "100ms"}}));
  if (std::string_view(s.io_backend_name()) != "io_uring") {
    MESSAGE("the epoll backend has no buffer ring");
    return;
  }
  auto lent = [&] { return s.stats()["server"]["buffers"]["lent_to_kernel"].get<std::int64_t>(); };
  std::vector<std::unique_ptr<client>> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(std::make_unique<client>(s.ports().http));
    idle.back()->send(get("/plaintext"));
    CHECK(idle.back()->read_response().status == 200);
  }
  // Each of these 20 connections now has a recv armed on the ring when the ring is trimmed.
  REQUIRE(bufpool::test::eventually([&] { return lent() <= 16; }, 10s));
  std::this_thread::sleep_for(250ms);  // more trims with those recvs armed
  CHECK(lent() <= 16);                  // and it stays at the floor (a trim's own refill is not a draw)
  for (auto& c : idle) c->send(get("/plaintext"));
  for (auto& c : idle) CHECK(c->read_response().status == 200);
  // A burst of 64 connections, each with 4 pipelined requests sent at once, against a ring of 16 or so:
  // recvs that find it empty wait for buffers and the level grows; every request is answered.
  std::vector<std::unique_ptr<client>> burst;
  for (int i = 0; i < 64; ++i) burst.push_back(std::make_unique<client>(s.ports().http));
  for (auto& c : burst)
    c->send(get("/plaintext") + get("/plaintext") + get("/json") + post("/echo", std::string(3000, 'x')));
  for (auto& c : burst) {
    const auto rs = c->read_responses(4);
    REQUIRE(rs.size() == 4);
    CHECK(rs[0].status == 200);
    CHECK(rs[2].status == 200);
    CHECK(rs[3].body == std::string(3000, 'x'));
  }
  burst.clear();
  idle.clear();
  // Idle again: back down to the floor, and every pooled buffer out is the ring's (none leaked).
  REQUIRE(bufpool::test::eventually([&] { return lent() <= 16 && bufpool::test::connection_buffers(s.stats()) == 0; },
                                    10s));
  const auto st = s.stats();
  CHECK(st["pool"]["totals"]["outstanding"].get<std::int64_t>() == st["server"]["buffers"]["lent_to_kernel"].get<std::int64_t>());
}

TEST_CASE("admin: /metrics counts every request once in the route's latency histogram, in Prometheus' format") {
  server s(test_settings());
  ten_plaintext_and_a_404(s);
  client a(s.ports().admin);
  a.send(get("/metrics"));
  auto r = a.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  const std::string& m = r.body;
  CHECK(m.find("# TYPE bufpool_http_request_duration_seconds histogram\n") != std::string::npos);
  CHECK(m.find("\nbufpool_http_request_duration_seconds_count{route=\"plaintext\"} 10\n") != std::string::npos);
  CHECK(m.find("\nbufpool_http_request_duration_seconds_bucket{route=\"plaintext\",le=\"+Inf\"} 10\n") != std::string::npos);
  CHECK(m.find("\nbufpool_http_request_duration_seconds_count{route=\"not_found\"} 1\n") != std::string::npos);
  CHECK(m.find("\nbufpool_http_requests_total{route=\"plaintext\"} 10\n") != std::string::npos);
  CHECK(m.find("\nbufpool_http_responses_total{code=\"4xx\"} 1\n") != std::string::npos);
  CHECK(m.find("\nbufpool_build_info{version=\"" BUFPOOL_PROJECT_VERSION "\"") != std::string::npos);
  CHECK(m.find("\nprocess_open_fds ") != std::string::npos);
  CHECK(m.find("\nbufpool_pool_gets_total{class=\"4096\",tier=\"private\"} ") != std::string::npos);
  // Every sample's family has HELP and TYPE before it.
  std::istringstream in(m);
  std::set<std::string> typed;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) typed.insert(line.substr(7, line.find(' ', 7) - 7));
    if (line.empty() || line[0] == '#') continue;
    std::string name = line.substr(0, line.find_first_of("{ "));
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!typed.count(name) && name.ends_with(suffix)) name = name.substr(0, name.size() - std::strlen(suffix));
    CHECK_MESSAGE(typed.count(name) == 1, line);
  }
}

TEST_CASE("admin: GET / is the self-contained dashboard page") {
  server s(test_settings());
  client a(s.ports().admin);
  a.send(get("/"));
  auto r = a.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/html; charset=utf-8");
  CHECK(r.body.find("fetch(\"/stats\"") != std::string::npos);
  CHECK(r.body.find("src=") == std::string::npos);  // nothing loaded from elsewhere
}
