// Loopback tests of the HTTP/1.1 server, one per rule: routes and headers, keep-alive, pipelining,
// bodies, Expect, every error status, limits and timeouts. Servers listen on 127.0.0.1:0 and stop at
// the end of each test.
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::expect_error_and_close;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

namespace {
bool valid_date(const std::string& d) {
  std::tm tm{};
  return d.size() == 29 && strptime(d.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) != nullptr;
}

}  // namespace

TEST_CASE("http: GET /plaintext has the TechEmpower headers and body") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/plaintext"));
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "Hello, World!");
  CHECK(r.header("server") == "bufpool");
  CHECK(r.header("content-type") == "text/plain");
  CHECK(r.header("content-length") == "13");
  CHECK(valid_date(r.header("date")));
  CHECK(r.keep_alive);
}

TEST_CASE("http: GET /json serializes the message object") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/json"));
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "application/json");
  auto j = nlohmann::json::parse(r.body);
  CHECK(j == nlohmann::json{{"message", "Hello, World!"}});
  CHECK(r.header("content-length") == std::to_string(r.body.size()));
}

TEST_CASE("http: the Date header changes from one second to the next") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/plaintext"));
  const auto first = c.read_response().header("date");
  std::this_thread::sleep_for(1100ms);
  c.send(get("/plaintext"));
  CHECK(c.read_response().header("date") != first);
}

TEST_CASE("http: GET /healthz, and HEAD answers headers without a body") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/healthz"));
  CHECK(c.read_response().body == "ok\n");
  c.send("HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
  c.expect_head();
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("content-length") == "13");
  CHECK(r.body.empty());
  // The connection is still in sync: the next response is whole.
  c.send(get("/plaintext"));
  CHECK(c.read_response().body == "Hello, World!");
}

TEST_CASE("http: POST /echo returns a Content-Length body") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(post("/echo", "some bytes\r\n\0 and more"));
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "some bytes\r\n\0 and more");
}

TEST_CASE("http: POST /echo returns a chunked body, with trailers") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "hello world");
}

TEST_CASE("http: POST /echo of a large body crosses many pooled chunks intact") {
  server s(test_settings());
  client c(s.ports().http);
  std::string body(900 * 1024, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131) >> 3);
  std::thread writer([&] { c.send(post("/echo", body)); });
  auto r = c.read_response();
  writer.join();
  CHECK(r.status == 200);
  CHECK(r.body.size() == body.size());
  CHECK(r.body == body);
}

TEST_CASE("http: keep-alive serves many requests on one connection") {
  server s(test_settings());
  client c(s.ports().http);
  for (int i = 0; i < 50; ++i) {
    c.send(get(i % 2 ? "/json" : "/plaintext"));
    REQUIRE(c.read_response().status == 200);
  }
}

TEST_CASE("http: pipelined requests are all answered, in order") {
  server s(test_settings());
  client c(s.ports().http);
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += i % 3 == 0 ? post("/echo", std::to_string(i)) : get("/plaintext");
  c.send(batch);
  auto rs = c.read_responses(16);
  for (int i = 0; i < 16; ++i) {
    CAPTURE(i);
    CHECK(rs[i].status == 200);
    CHECK(rs[i].body == (i % 3 == 0 ? std::to_string(i) : std::string("Hello, World!")));
  }
}

TEST_CASE("http: pipelining split at every byte boundary") {
  server s(test_settings());
  const std::string stream = get("/plaintext") + post("/echo", "abcdef") +
                             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n" +
                             get("/json");
  client c(s.ports().http);
  for (std::size_t cut = 1; cut < stream.size(); ++cut) {
    CAPTURE(cut);
    c.send(std::string_view(stream).substr(0, cut));
    std::this_thread::sleep_for(1ms);  // lets the server read the first part on its own
    c.send(std::string_view(stream).substr(cut));
    auto rs = c.read_responses(4);
    REQUIRE(rs[0].body == "Hello, World!");
    REQUIRE(rs[1].body == "abcdef");
    REQUIRE(rs[2].body == "xyz");
    REQUIRE(rs[3].header("content-type") == "application/json");
  }
}

TEST_CASE("http: Expect 100-continue gets the 100 before the body is sent") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  const std::string interim = c.raw_until("\r\n\r\n");
  CHECK(interim.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0) == 0);
  c.send("hello");
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "hello");
}

TEST_CASE("http: Expect 100-continue with a body over the limit gets 413 and no 100") {
  server s(test_settings({{"http.max_body_bytes", "1000"}}));
  client c(s.ports().http);
  c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n");
  const std::string got = c.raw_until("\r\n\r\n");
  CHECK(got.rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(got.find("100 Continue") == std::string::npos);
  CHECK(c.closed_by_peer());
}

TEST_CASE("http: 400 for a malformed request line, and the connection closes") {
  server s(test_settings());
  expect_error_and_close(s, "GET\x01 / HTTP/1.1\r\nHost: t\r\n\r\n", 400);
}

TEST_CASE("http: 400 for Content-Length together with Transfer-Encoding") {
  server s(test_settings());
  expect_error_and_close(s,
                         "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "3\r\nabc\r\n0\r\n\r\n",
                         400);
}

TEST_CASE("http: 400 for a duplicate Content-Length") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400);
}

TEST_CASE("http: 400 for a Content-Length that is not a number") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3x\r\n\r\nabc", 400);
}

TEST_CASE("http: 400 for a bad chunk size") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                         400);
}

TEST_CASE("http: 400 for HTTP/1.1 without Host, while HTTP/1.0 without Host is fine") {
  server s(test_settings());
  expect_error_and_close(s, "GET /plaintext HTTP/1.1\r\n\r\n", 400);
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.0\r\n\r\n");
  auto r = c.read_response();
  CHECK(r.status == 200);
  CHECK(c.closed_by_peer());  // HTTP/1.0 without keep-alive closes
}

TEST_CASE("http: an empty header value is allowed (RFC 9110 5.5), with or without a blank after the colon") {
  server s(test_settings());
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Empty:\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: t\r\nX-Empty: \r\n\r\n");
  CHECK(c.read_response().status == 200);
  CHECK(c.read_response().status == 200);
}

TEST_CASE("http: 400 for Transfer-Encoding in HTTP/1.0") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400);
}

TEST_CASE("http: 501 for an unknown transfer coding, and 400 when chunked is not the last coding") {
  server s(test_settings());
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501);
  expect_error_and_close(s, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked, gzip\r\n\r\n", 400);
}

TEST_CASE("http: 404 for an unknown path, and the admin routes are not on the public port") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/nope"));
  CHECK(c.read_response().status == 404);
  c.send(get("/stats"));
  CHECK(c.read_response().status == 404);
  c.send(get("/plaintext"));  // a 404 keeps the connection
  CHECK(c.read_response().status == 200);
}

TEST_CASE("http: 405 with Allow for a known path and the wrong method") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(post("/plaintext", "x"));
  auto r = c.read_response();
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET, HEAD");
  c.send("TRACE /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.read_response();
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
}

TEST_CASE("http: 408 when the headers do not arrive in time") {
  server s(test_settings({{"http.header_timeout", "200ms"}}));
  client c(s.ports().http);
  c.send("GET /plaintext HTTP/1.1\r\nHost: t\r\n");  // never finished
  auto r = c.read_response(5s);
  CHECK(r.status == 408);
  CHECK(c.closed_by_peer());
  CHECK(s.stats()["server"]["errors"]["header_timeout"] == 1);
}

TEST_CASE("http: 413 for a Content-Length over the limit and for a chunked body that grows over it") {
  server s(test_settings({{"http.max_body_bytes", "100"}}));
  expect_error_and_close(s, post("/echo", std::string(101, 'x')), 413);
  // A route that discards its body (an echo answer would already have begun: see the streaming tests).
  std::string chunked = "POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 5; ++i) chunked += "20\r\n" + std::string(32, 'y') + "\r\n";
  chunked += "0\r\n\r\n";
  expect_error_and_close(s, chunked, 413);
  client c(s.ports().http);
  c.send(post("/echo", std::string(100, 'z')));  // exactly the limit is fine
  CHECK(c.read_response().status == 200);
}

TEST_CASE("http: 414 for a request target over the limit") {
  server s(test_settings({{"http.max_uri_bytes", "100"}}));
  expect_error_and_close(s, get("/" + std::string(200, 'a')), 414);
}

TEST_CASE("http: 431 for header bytes and for header count over the limits") {
  server s(test_settings({{"http.max_header_bytes", "1024"}, {"http.max_headers", "10"}}));
  expect_error_and_close(s, get("/plaintext", "X-Big: " + std::string(2000, 'b') + "\r\n"), 431);
  std::string many;
  for (int i = 0; i < 11; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  expect_error_and_close(s, get("/plaintext", many), 431);
}

TEST_CASE("http: an idle keep-alive connection is closed after the idle timeout") {
  server s(test_settings({{"http.idle_timeout", "200ms"}}));
  client c(s.ports().http);
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
  CHECK(c.closed_by_peer(5s));
  CHECK(s.stats()["server"]["errors"]["idle_timeout"] == 1);
}

TEST_CASE("http: the last request allowed on a connection gets Connection: close") {
  server s(test_settings({{"http.max_requests_per_connection", "3"}}));
  client c(s.ports().http);
  c.send(get("/plaintext") + get("/plaintext") + get("/plaintext") + get("/plaintext"));
  auto rs = c.read_responses(3);
  CHECK(rs[0].header("connection").empty());
  CHECK(rs[2].header("connection") == "close");
  CHECK(c.closed_by_peer());
}

TEST_CASE("http: Connection: close from the client is honoured") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/plaintext", "Connection: close\r\n"));
  auto r = c.read_response();
  CHECK(r.header("connection") == "close");
  CHECK(c.closed_by_peer());
}

TEST_CASE("http: connections beyond the per-thread limit are closed at once and counted") {
  server s(test_settings({{"threads", "1"}, {"limits.max_connections_per_thread", "2"}}));
  client a(s.ports().http), b(s.ports().http);
  a.send(get("/plaintext"));
  b.send(get("/plaintext"));
  a.read_response();
  b.read_response();
  client extra(s.ports().http);
  CHECK(extra.closed_by_peer(5s));
  auto st = s.stats()["server"];
  CHECK(st["connections"]["rejected"] == 1);
  CHECK(st["errors"]["connection_limit"] == 1);
}

TEST_CASE("http: an idle connection holds no pooled buffer") {
  server s(test_settings());
  std::vector<std::unique_ptr<client>> cs;
  for (int i = 0; i < 20; ++i) {
    cs.push_back(std::make_unique<client>(s.ports().http));
    cs.back()->send(get("/plaintext"));
    cs.back()->read_response();
  }
  // Every buffer the requests took comes back: nothing is handed out while the connections idle.
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  CHECK(s.stats()["server"]["connections"]["active"] == 20);
  CHECK(s.stats()["pool"]["totals"]["gets"].get<std::uint64_t>() >= 40);  // a read and a write buffer each
}

TEST_CASE("http: single accept mode places connections on the least-loaded thread") {
  server s(test_settings({{"accept.mode", "single"}, {"threads", "2"}}));
  std::vector<std::unique_ptr<client>> cs;
  for (int i = 0; i < 6; ++i) {
    cs.push_back(std::make_unique<client>(s.ports().http));
    cs.back()->send(get("/plaintext"));
    cs.back()->read_response();
  }
  auto per = s.stats()["server"]["connections"]["per_thread"];
  CHECK(per[0]["http_active"] == 3);
  CHECK(per[1]["http_active"] == 3);
}

TEST_CASE("http: pool.enabled=false serves from plain heap buffers") {
  server s(test_settings({{"pool.enabled", "false"}}));
  client c(s.ports().http);
  for (int i = 0; i < 5; ++i) {
    c.send(get("/plaintext"));
    CHECK(c.read_response().status == 200);
  }
  auto t = s.stats()["pool"]["totals"];
  CHECK(t["pooled"] == 0);
  CHECK(t["misses"] == t["gets"]);
}

TEST_CASE("http: a response write that stalls past the write timeout closes the connection") {
  server s(test_settings({{"http.write_timeout", "300ms"}, {"http.max_body_bytes", "33554432"}}));
  client c(s.ports().http);
  // An echo larger than what the kernel buffers on loopback (a few MiB), which the client never reads:
  // the server's write fills the buffers and stalls. (A small SO_RCVBUF on the client is not used: on
  // loopback the client's full receive queue then also stalls its own sending, and the server, its
  // output all in the kernel, waits for body bytes instead: a body timeout, not a write timeout.)
  std::thread writer([&] { c.send(post("/echo", std::string(24u << 20, 'w'))); });
  CHECK(bufpool::test::eventually([&] { return s.stats()["server"]["errors"]["write_timeout"] == 1; }, 10s));
  CHECK(bufpool::test::eventually([&] { return s.stats()["server"]["connections"]["active"] == 0; }));
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  c.shutdown_write();
  writer.join();
}
