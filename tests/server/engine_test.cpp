// The HTTP/1.1 engine on its own: bytes in, bytes out, no socket (docs/design.md 2.2). Every request
// here is also fed split at every offset, and must get exactly the same answer bytes.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "../support/engine_rig.hpp"

namespace {

using bufpool::test::engine_rig;
using bufpool::test::statuses;
namespace srv = bufpool::server;

bufpool::pool& test_pool() {
  static bufpool::pool p;
  return p;
}

struct answer {
  std::string out;
  bool closed;
};

answer whole(std::string_view req, const srv::http_settings& limits = {}, bool admin = false) {
  engine_rig r(test_pool(), limits, admin);
  r.feed(req);
  return {r.out, r.closed};
}

// The answer to req fed whole, checked to be the same bytes when req comes in two pieces split at
// every offset, and when it comes one byte at a time.
answer every_split(std::string_view req, const srv::http_settings& limits = {}, bool admin = false) {
  const answer a = whole(req, limits, admin);
  for (std::size_t at = 1; at < req.size(); ++at) {
    engine_rig r(test_pool(), limits, admin);
    r.feed_split(req, at);
    INFO("split at " << at);
    REQUIRE(r.out == a.out);
    REQUIRE(r.closed == a.closed);
  }
  engine_rig r(test_pool(), limits, admin);
  r.feed(req, [](std::size_t) { return 1; });
  REQUIRE(r.out == a.out);
  return a;
}

constexpr std::string_view date = "Date: Wed, 02 Dec 2026 06:00:00 GMT\r\n";

}  // namespace

TEST_CASE("engine: a keep-alive GET /plaintext is answered byte for byte, whatever the split") {
  const answer a = every_split("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(a.out == std::string("HTTP/1.1 200 OK\r\nServer: bufpool\r\n") + std::string(date) +
                     "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!");
  CHECK_FALSE(a.closed);
  CHECK(test_pool().snapshot().totals.outstanding == 0);  // every buffer went back
}

TEST_CASE("engine: pipelined requests are answered in order in one batch, whatever the split") {
  const std::string req =
      "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /json HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
      "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
      "HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
  const answer a = every_split(req);
  CHECK(statuses(a.out) == std::vector<unsigned>{200, 200, 200, 200, 200});
  CHECK(a.out.find("Hello, World!") != std::string::npos);
  CHECK(a.out.find("{\"message\":\"Hello, World!\"}") != std::string::npos);
  CHECK(a.out.find("Content-Length: 5\r\n\r\nhello") != std::string::npos);
  CHECK(a.out.find("Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n") != std::string::npos);
  CHECK(a.out.substr(a.out.rfind("HTTP/1.1")).ends_with("Content-Length: 13\r\n\r\n"));  // HEAD: no body
  CHECK_FALSE(a.closed);
}

TEST_CASE("engine: an empty header value is allowed (RFC 9110 5.5), with or without a blank") {
  CHECK(statuses(every_split("GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n").out) == std::vector<unsigned>{200});
  CHECK(statuses(every_split("GET /plaintext HTTP/1.1\r\nHost: a\r\nX-Empty: \r\n\r\n").out) == std::vector<unsigned>{200});
  CHECK(statuses(every_split("GET /plaintext HTTP/1.1\r\nX-Empty:\r\nHost: a\r\nX-Other:\t\r\n\r\n").out) ==
        std::vector<unsigned>{200});
}

TEST_CASE("engine: each malformed request gets its status, closes, and no answer follows it") {
  srv::http_settings small;
  small.max_uri_bytes = 64;
  small.max_header_bytes = 256;
  small.max_headers = 4;
  small.max_body_bytes = 16;
  const std::string next = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";  // must never be answered
  struct bad {
    std::string req;
    unsigned status;
  };
  const bad cases[] = {
      {"GET /plaintext HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},  // obs-fold
      {"GET /plaintext HTTP/1.1\r\n\r\n", 400},                             // no Host
      {"GET /plaintext HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},      // two Hosts
      {"GET /plaintext HTTP/1.1\r\nHost: a b\r\n\r\n", 400},               // blank inside Host
      {"GET /plaintext HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},               // not an authority
      {"GET /plaintext HTTP/1.1\r\nX A: b\r\nHost: a\r\n\r\n", 400},       // bad name
      {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 400},  // llhttp
      {"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},  // no codings in HTTP/1.0
      {"GET /plaintext HTTP/2.0\r\nHost: a\r\n\r\n", 505},
      {"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
      {"GET /" + std::string(80, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
      {"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431},
      {"GET / HTTP/1.1\r\nHost: a\r\nA: " + std::string(300, 'v') + "\r\n\r\n", 431},
      {"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n", 413},
      {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n", 413},
      {"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(20, 'e') + "\r\n", 413},
      {"GET /plaintext HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
  };
  for (const bad& c : cases) {
    INFO(c.req);
    const answer a = every_split(c.req + next, small);
    CHECK(statuses(a.out) == std::vector<unsigned>{c.status});
    CHECK(a.out.find("Connection: close\r\n") != std::string::npos);
    CHECK(a.closed);
  }
  CHECK(test_pool().snapshot().totals.outstanding == 0);
}

TEST_CASE("engine: 404 and 405 come from the route table, with its Allow line") {
  CHECK(statuses(every_split("GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n").out) == std::vector<unsigned>{404});
  const answer json = every_split("POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
  CHECK(statuses(json.out) == std::vector<unsigned>{405});
  CHECK(json.out.find("Allow: GET, HEAD\r\n") != std::string::npos);
  const answer echo = every_split("TRACE /echo HTTP/1.1\r\nHost: a\r\n\r\n");  // /echo takes the others
  CHECK(statuses(echo.out) == std::vector<unsigned>{405});
  CHECK(echo.out.find("Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n") != std::string::npos);
  const answer plain = every_split("DELETE /plaintext?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(plain.out.find("Allow: GET, HEAD\r\n") != std::string::npos);
  CHECK(statuses(every_split("GET http://a/plaintext HTTP/1.1\r\nHost: a\r\n\r\n").out) == std::vector<unsigned>{200});
  // The admin table: /stats, /metrics, / and /healthz; no /plaintext.
  CHECK(statuses(every_split("GET /stats HTTP/1.1\r\nHost: a\r\n\r\n", {}, true).out) == std::vector<unsigned>{200});
  CHECK(statuses(every_split("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n", {}, true).out) == std::vector<unsigned>{404});
  CHECK(statuses(every_split("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", {}, true).out) ==
        std::vector<unsigned>{405});
}

TEST_CASE("engine: keep-alive and close decisions") {
  SUBCASE("Connection: close closes after the answer, which says so") {
    const answer a = every_split("GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /json HTTP/1.1\r\n\r\n");
    CHECK(statuses(a.out) == std::vector<unsigned>{200});
    CHECK(a.out.find("Connection: close\r\n") != std::string::npos);
    CHECK(a.closed);
  }
  SUBCASE("HTTP/1.0 keep-alive is answered with Connection: keep-alive; without it the connection closes") {
    const answer ka = every_split("GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(ka.out.find("Connection: keep-alive\r\n") != std::string::npos);
    CHECK_FALSE(ka.closed);
    CHECK(every_split("GET /plaintext HTTP/1.0\r\n\r\n").closed);
  }
  SUBCASE("the last request of max_requests_per_connection closes") {
    srv::http_settings l;
    l.max_requests_per_connection = 2;
    const std::string one = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
    const answer a = every_split(one + one + one, l);
    CHECK(statuses(a.out) == std::vector<unsigned>{200, 200});
    CHECK(a.closed);
  }
  SUBCASE("a streamed echo answer says Connection: close in its head when it is the last") {
    const answer a = every_split("POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(a.out.find("Connection: close\r\n\r\nabc") != std::string::npos);
    CHECK(a.closed);
  }
}

TEST_CASE("engine: Expect: 100-continue gets its interim answer before the body is read") {
  const answer a = every_split("POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
  CHECK(a.out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
  CHECK(a.out.ends_with("\r\n\r\nhi"));
}

TEST_CASE("engine: a timeout answers 408 mid-headers, and cuts a streamed echo answer short") {
  engine_rig r(test_pool());
  r.feed("GET /plaintext HTTP/1.1\r\nHost: a\r\n");
  CHECK(r.out.empty());
  r.timeout();
  CHECK(statuses(r.out) == std::vector<unsigned>{408});
  CHECK(r.closed);

  engine_rig s(test_pool());
  s.feed("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(s.out.ends_with("Content-Length: 10\r\n\r\nabc"));
  const auto aborted = s.stats.errors[static_cast<std::size_t>(srv::error_kind::response_aborted)].get();
  s.timeout();
  CHECK(s.out.ends_with("abc"));  // no status can follow a head that is out
  CHECK(s.closed);
  CHECK(s.stats.errors[static_cast<std::size_t>(srv::error_kind::response_aborted)].get() == aborted + 1);
}

TEST_CASE("engine: at most max_pipeline answers per batch, and the rest of the input waits for the next") {
  srv::http_settings l;
  l.max_pipeline = 2;
  engine_rig r(test_pool(), l);
  std::string five;
  for (int i = 0; i < 5; ++i) five += "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
  bufpool::buffer b = test_pool().get(five.size());
  std::memcpy(b.data(), five.data(), five.size());
  r.e->feed(std::move(b), five.size());
  std::vector<std::size_t> batches;
  for (auto res = r.e->parse(); res == srv::http::engine::result::send; res = r.e->parse()) {
    std::size_t total = 0;
    std::string out;
    for (const iovec& v : r.e->output(total)) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
    batches.push_back(statuses(out).size());
    r.e->output_sent();
    if (!r.e->has_input()) break;
  }
  CHECK(batches == std::vector<std::size_t>{2, 2, 1});
}

TEST_CASE("engine: a delayed answer waits (result::wait) and the pipelined requests after it keep their order") {
  const std::string req = "GET /echo?delay=1ms&size=2 HTTP/1.1\r\nHost: a\r\n\r\n"
                          "POST /echo?delay=1ms HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                          "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
  const answer a = every_split(req);
  CHECK(statuses(a.out) == std::vector<unsigned>{200, 200, 200});
  const auto first = a.out.find("\r\n\r\n01HTTP/1.1 200");
  const auto second = a.out.find("Content-Length: 3\r\n\r\nabcHTTP/1.1 200");
  CHECK(first != std::string::npos);
  CHECK(second != std::string::npos);
  CHECK(first < second);
  CHECK(a.out.find("Hello, World!") > second);
  engine_rig r(test_pool());
  r.feed(req);
  CHECK(r.waits == 2);
  CHECK(r.stats.echo_delayed.get() == 2);
  CHECK(r.stats.echo_delayed_waiting.get() == 0);
}

TEST_CASE("engine: /debug shows the request line, every header and the body, whatever the split") {
  const answer a = every_split("POST /debug?x=1 HTTP/1.1\r\nHost: a\r\nX-One: 1\r\nX-Two:  two  \r\nContent-Length: 4\r\n\r\nbody");
  CHECK(statuses(a.out) == std::vector<unsigned>{200});
  CHECK(a.out.find("\r\n\r\nPOST /debug?x=1 HTTP/1.1\n\nheaders:\n\nHost: a\nX-One: 1\nX-Two: two  \n") != std::string::npos);
  CHECK(a.out.find("\nbody:\n\nbody\n") != std::string::npos);
}

TEST_CASE("engine: Accept-Encoding takes gzip unless its weight is 0") {
  using srv::http::takes_gzip;
  CHECK(takes_gzip("gzip"));
  CHECK(takes_gzip("deflate, GZIP;q=0.5"));
  CHECK(takes_gzip("br, *"));
  CHECK(takes_gzip("x-gzip"));
  CHECK(takes_gzip(" gzip ; q=1.0"));
  CHECK_FALSE(takes_gzip(""));
  CHECK_FALSE(takes_gzip("deflate, br"));
  CHECK_FALSE(takes_gzip("gzip;q=0"));
  CHECK_FALSE(takes_gzip("gzip; q=0.000"));
  CHECK_FALSE(takes_gzip("gzipx"));
}

TEST_CASE("engine: close=true with a body, a delay or both is answered whole, whatever the split") {
  for (const char* query : {"close=true", "close=true&delay=1ms", "close=true&delay=1ms&size=3", "close=true&size=3"}) {
    CAPTURE(query);
    const std::string req = std::string("POST /echo?") + query +
                            " HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                            "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
    const answer a = every_split(req);
    CHECK(statuses(a.out) == std::vector<unsigned>{200});
    CHECK(a.closed);
    CHECK(a.out.find("Connection: close\r\n") != std::string::npos);
    CHECK((a.out.ends_with("\r\n\r\nhello") || a.out.ends_with("\r\n\r\n012")));
  }
}
