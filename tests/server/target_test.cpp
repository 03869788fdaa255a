// bufpool-server as a load-test target: /echo with fortio's controls (status, size, header, close),
// any method; bad parameters named in a 400 on a connection that stays open; the chances over 10,000
// requests. Loopback only; the suite runs on both backends.
#include <cmath>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_settings;

TEST_CASE("target: /echo takes fortio's status, size and header, on any method") {
  server s(test_settings());
  client c(s.ports().http);
  c.send(get("/echo?status=418&size=1000&header=Foo:Bar&header=X-Y:a%20b"));
  auto r = c.read_response();
  CHECK(r.status == 418);
  CHECK(r.body.size() == 1000);
  CHECK(r.body.rfind("0123456789ABCDEF", 0) == 0);
  CHECK(r.header("foo") == "Bar");
  CHECK(r.header("x-y") == "a b");
  c.send(post("/echo?status=503&header=Retry-After:1", "hello"));  // no size: the body comes back
  r = c.read_response();
  CHECK(r.status == 503);
  CHECK(r.body == "hello");
  CHECK(r.header("retry-after") == "1");
  c.send("PUT /echo?size=5 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");  // the body is read, not echoed
  r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body == "01234");
  c.send("DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.body.empty());
  c.send(get("/echo?size=300000"));  // capped at 256 KiB, as fortio caps it
  CHECK(c.read_response().body.size() == 262144);
  c.send(get("/echo?status=204&size=100"));  // a 204 carries no body
  r = c.read_response();
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  c.expect_head();
  c.send("HEAD /echo?size=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
  r = c.read_response();
  CHECK(r.header("content-length") == "1000");
  CHECK(r.body.empty());
  c.send(get("/echo?x=1&y"));  // only unknown parameters: the plain echo
  CHECK(c.read_response().status == 200);
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
}

TEST_CASE("target: close=true closes after the answer, close=0 never") {
  server s(test_settings());
  client keep(s.ports().http);
  for (int i = 0; i < 20; ++i) {
    keep.send(get("/echo?size=10&close=0"));
    CHECK(keep.read_response().header("connection") != "close");
  }
  client c(s.ports().http);
  c.send(post("/echo?close=true", "bye"));
  const auto r = c.read_response();
  CHECK(r.body == "bye");
  CHECK(r.header("connection") == "close");
  CHECK(c.closed_by_peer());
}

TEST_CASE("target: a bad parameter is a 400 that names it, and the connection stays open") {
  server s(test_settings());
  client c(s.ports().http);
  const std::map<std::string, std::string> cases = {
      {"status=abc", "status=abc: not a status code"},
      {"status=99", "status=99: not a status code"},
      {"status=600", "status=600: not a status code"},
      {"delay=-1s", "delay=-1s: not a duration"},
      {"delay=5x", "delay=5x: not a duration"},
      {"size=-3", "size=-3: not a size"},
      {"size=1e99", "size=1e99: not a size"},
      {"status=503:60,404:50", "more than 100 percent"},
      {"size=1:5,,2:5", "an empty item"},
      {"header=Fo%20o:v", "not a token"},
      {"header=Foo:a%0D%0AX-Injected:%201", "CR, LF or NUL"},
      {"header=Foo:a%00b", "CR, LF or NUL"},
  };
  for (const auto& [query, expected] : cases) {
    CAPTURE(query);
    c.send(post("/echo?" + query, "body"));
    const auto r = c.read_response();
    CHECK(r.status == 400);
    CHECK(r.body.find(expected) != std::string::npos);
    CHECK(r.header("x-injected").empty());
    CHECK(r.header("connection") != "close");
  }
  std::string many;
  for (int i = 0; i < 33; ++i) many += "header=H" + std::to_string(i) + ":v&";
  c.send(get("/echo?" + many));
  auto r = c.read_response();
  CHECK(r.status == 400);
  CHECK(r.body.find("more than 32 header parameters") != std::string::npos);
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
  // A long query is read whole (here 32 headers, about 6 KiB): every header comes back.
  std::string longq;
  for (int i = 0; i < 32; ++i) longq += "header=X-H" + std::to_string(i) + ":" + std::string(180, 'v') + "&";
  longq += "size=3";
  c.send(get("/echo?" + longq));
  r = c.read_response();
  CHECK(r.status == 200);
  CHECK(r.header("x-h0") == std::string(180, 'v'));
  CHECK(r.header("x-h31") == std::string(180, 'v'));
  CHECK(r.body == "012");
  // Over http.max_uri_bytes (8 KiB): 414, and the connection closes.
  c.send(get("/echo?size=1&pad=" + std::string(9000, 'p')));
  CHECK(c.read_response().status == 414);
  CHECK(c.closed_by_peer());
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}

TEST_CASE("target: over 10,000 requests each status's share is within four standard deviations of its chance") {
  server s(test_settings({{"http.max_requests_per_connection", "20000"}}));
  client c(s.ports().http);
  constexpr int n = 10000, batch = 50;
  std::map<unsigned, int> seen;
  for (int done = 0; done < n; done += batch) {
    std::string requests;
    for (int i = 0; i < batch; ++i) requests += get("/echo?status=404:10,503:5,429:0.5&size=1");
    REQUIRE(c.send(requests));
    for (const auto& r : c.read_responses(batch)) ++seen[r.status];
  }
  for (const auto& [status, percent] : std::map<unsigned, double>{{404, 10}, {503, 5}, {429, 0.5}, {200, 84.5}}) {
    const double q = percent / 100, mean = n * q, sd = std::sqrt(n * q * (1 - q));
    CAPTURE(status);
    CAPTURE(seen[status]);
    CHECK(std::abs(seen[status] - mean) <= 4 * sd);
  }
}
