// HTTP/2 in bufpool-server over real sockets (h2c with prior knowledge on the plain listener): Python's
// h2 library (tests/server/h2_client.py, /usr/bin/python3), curl and h2load as clients. Runs on both
// I/O backends (ctest runs the suite twice).
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "../support/test_pki.hpp"
#include "test_client.hpp"

namespace {

using namespace bufpool::test;
using bufpool::server::server;
using namespace std::chrono_literals;

// Runs a command, returns what it printed on stdout (and its exit status).
std::string run(const std::string& command, int* status = nullptr) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(command.c_str(), "r"), ::pclose);
  REQUIRE(p != nullptr);
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p.get())) out.append(buf, n);
  const int rc = ::pclose(p.release());
  if (status != nullptr) *status = rc;
  return out;
}

std::string h2_client(std::uint16_t port, const std::string& scenario) {
  return "timeout 60 /usr/bin/python3 " BUFPOOL_SOURCE_DIR "/tests/server/h2_client.py " + std::to_string(port) + " " +
         scenario;
}

nlohmann::json scenario(std::uint16_t port, const std::string& name) {
  const std::string out = run(h2_client(port, name));
  INFO("client printed: " << out);
  REQUIRE_FALSE(out.empty());
  return nlohmann::json::parse(out);
}

std::uint64_t h2_stat(server& s, const char* a, const char* b = nullptr) {
  const auto j = s.stats()["server"]["http2"][a];
  return b == nullptr ? j.get<std::uint64_t>() : j[b].get<std::uint64_t>();
}

}  // namespace

TEST_CASE("http2: h2c with prior knowledge serves every route of the target on one connection, "
          "and HTTP/1.1 on the same port") {
  server s(test_settings());
  const auto r = scenario(s.ports().http, "routes");
  const auto& x = r["responses"];
  CHECK(x["1"]["status"] == 200);
  CHECK(x["1"]["body"] == "Hello, World!");
  CHECK(x["1"]["headers"]["content-type"] == "text/plain");
  CHECK(x["3"]["status"] == 200);
  CHECK(x["3"]["body"] == R"({"message":"Hello, World!"})");
  CHECK(x["5"]["status"] == 200);  // HEAD: the length, no body
  CHECK(x["5"]["headers"]["content-length"] == "13");
  CHECK(x["5"]["length"] == 0);
  CHECK(r["echo_same"] == nlohmann::json::array({true, true, true}));  // 4 KiB, 64 KiB, 1 MiB bodies
  CHECK(x["11"]["headers"]["content-length"] == "1048576");
  CHECK(r["pattern_same"] == true);
  CHECK(x["15"]["status"] == 404);
  CHECK(r["goaway"].is_null());
  CHECK(h2_stat(s, "connections") == 1);
  CHECK(h2_stat(s, "streams") == 8);
  CHECK(s.stats()["server"]["requests"]["echo"] == 4);

  client c(s.ports().http);  // the same listener still speaks HTTP/1.1
  c.send(get("/plaintext"));
  CHECK(c.read_response().body == "Hello, World!");
}

TEST_CASE("http2: a connection preface that arrives one byte at a time is still HTTP/2") {
  server s(test_settings());
  const auto r = scenario(s.ports().http, "split_preface");
  CHECK(r["responses"]["1"]["status"] == 200);
  CHECK(r["responses"]["1"]["body"] == "Hello, World!");
}

TEST_CASE("http2: a delayed stream does not hold back the other streams of its connection") {
  server s(test_settings());
  const auto r = scenario(s.ports().http, "delays");
  REQUIRE(r["order"].size() == 11);
  CHECK(r["order"].back() == 1);  // the delayed stream (300 ms) is answered last, the ten others first
  CHECK(r["responses"]["1"]["status"] == 200);
  CHECK(r["responses"]["1"]["length"] == 3);
  CHECK(r["took"].get<double>() >= 0.25);
}

TEST_CASE("http2: 128 concurrent streams, twice, on one connection") {
  server s(test_settings());
  const auto r = scenario(s.ports().http, "concurrent");
  CHECK(r["all_ok"] == true);
  CHECK(r["order"].size() == 256);
  CHECK(h2_stat(s, "streams") == 256);
}

TEST_CASE("http2: SETTINGS and PING floods are cut off and counted (GOAWAY ENHANCE_YOUR_CALM)") {
  server s(test_settings());
  const auto a = scenario(s.ports().http, "settings_flood");
  CHECK(a["goaway"] == 11);  // ENHANCE_YOUR_CALM, read by the client before the close
  scenario(s.ports().http, "ping_flood");  // its client stops reading: the GOAWAY may not reach it
  CHECK(eventually([&] { return h2_stat(s, "goaways_sent", "ENHANCE_YOUR_CALM") == 2; }));
  CHECK(eventually([&] { return s.stats()["server"]["connections"]["active"] == 0; }));
  client m(s.ports().admin);
  m.send(get("/metrics"));
  const std::string text = m.read_response().body;
  CHECK(text.find("\nbufpool_http2_goaways_sent_total{reason=\"ENHANCE_YOUR_CALM\"} 2\n") != std::string::npos);
  CHECK(text.find("\nbufpool_http2_connections_total 2\n") != std::string::npos);
}

TEST_CASE("http2: curl --http2-prior-knowledge and h2load get their answers") {
  server s(test_settings());
  const std::string base = "http://127.0.0.1:" + std::to_string(s.ports().http);
  int rc = -1;
  CHECK(run("curl -sS --max-time 10 --http2-prior-knowledge -w ' %{http_version}' " + base + "/plaintext", &rc) ==
        "Hello, World! 2");
  CHECK(rc == 0);
  const std::string echoed =
      run("head -c 100000 /dev/zero | tr '\\0' 'z' | curl -sS --max-time 10 --http2-prior-knowledge --data-binary @- " +
          base + "/echo | wc -c", &rc);
  CHECK(std::stoul(echoed) == 100000);
  const std::string h2load = run("timeout 60 h2load -n 2000 -c 4 -m 16 " + base + "/plaintext 2>&1", &rc);
  INFO(h2load);
  CHECK(rc == 0);
  CHECK(h2load.find("2000 succeeded, 0 failed, 0 errored") != std::string::npos);
  CHECK(s.stats()["server"]["requests"]["plaintext"] == 2001);
}

TEST_CASE("http2: an idle HTTP/2 connection holds no pooled buffer") {
  server s(test_settings());
  // The client asks for four 100 KB answers, then keeps the connection open and idle for 3 s.
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen((h2_client(s.ports().http, "idle") + " 3").c_str(), "r"), ::pclose);
  REQUIRE(p != nullptr);
  char line[4096] = {};
  REQUIRE(std::fgets(line, sizeof line, p.get()) != nullptr);  // the answers are in
  CHECK(s.stats()["server"]["connections"]["active"] == 1);
  CHECK(eventually([&] { return connection_buffers(s.stats()) == 0; }));
  CHECK(s.stats()["server"]["connections"]["active"] == 1);  // still open
  // What nghttp2 keeps for it, counted: its frame buffer (16,394 bytes), stream map, session, HPACK tables.
  CHECK(h2_stat(s, "active") == 1);
  CHECK(h2_stat(s, "library_bytes") > 16384);
  CHECK(h2_stat(s, "library_bytes") < 64 * 1024);
  p.reset();  // the client leaves: nothing of nghttp2's stays behind
  CHECK(eventually([&] { return h2_stat(s, "active") == 0; }));
  CHECK(h2_stat(s, "library_bytes") == 0);
}

TEST_CASE("http2: a client whose windows stay at zero holds answers only until the body timeout: GOAWAY, "
          "close, buffers freed, others served") {
  server s(test_settings({{"http.body_timeout", "300ms"}}));
  // SETTINGS_INITIAL_WINDOW_SIZE 0 and no WINDOW_UPDATE ever: two answers (100 KB and 13 bytes) can
  // send their HEADERS and not one byte of DATA.
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(h2_client(s.ports().http, "zero_window").c_str(), "r"), ::pclose);
  REQUIRE(p != nullptr);
  // Meanwhile another client is served.
  bufpool::test::client other(s.ports().http);
  other.send(bufpool::test::get("/plaintext"));
  CHECK(other.read_response().status == 200);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p.get())) out.append(buf, n);
  INFO("client printed: " << out);
  REQUIRE_FALSE(out.empty());
  const auto r = nlohmann::json::parse(out);
  CHECK(r["responses"]["1"]["status"] == 200);  // the HEADERS went out
  CHECK(r["bytes"] == 0);                       // no DATA: the window never opened
  CHECK(r["goaway"] == 0);                      // then GOAWAY (NO_ERROR) and the close
  CHECK(r["closed"] == true);
  CHECK(eventually([&] { return connection_buffers(s.stats()) == 0; }));  // the held 100 KB answer is freed
  CHECK(h2_stat(s, "goaways_sent", "NO_ERROR") == 1);
}

TEST_CASE("http2: over TLS, ALPN agrees on h2 (preferred to http/1.1): curl --http2 and h2load, "
          "and a client offering only http/1.1 still gets it") {
  server s(test_settings({{"http.tls.certificate", test_pki().server_cert}, {"http.tls.key", test_pki().server_key}}));
  const std::string base = "https://127.0.0.1:" + std::to_string(s.ports().http);
  const std::string ca = " --cacert " + test_pki().ca_cert + " ";
  int rc = -1;
  CHECK(run("curl -sS --max-time 10 --http2" + ca + "-w ' %{http_version}' " + base + "/plaintext", &rc) ==
        "Hello, World! 2");
  CHECK(run("curl -sS --max-time 10 --http1.1" + ca + "-w ' %{http_version}' " + base + "/plaintext", &rc) ==
        "Hello, World! 1.1");
  const std::string echoed = run("head -c 300000 /dev/zero | tr '\\0' 'z' | curl -sS --max-time 10 --http2" + ca +
                                 "--data-binary @- " + base + "/echo | wc -c", &rc);
  CHECK(std::stoul(echoed) == 300000);
  const std::string h2load = run("timeout 60 h2load -n 1000 -c 2 -m 16 " + base + "/plaintext 2>&1", &rc);
  INFO(h2load);
  CHECK(h2load.find("Application protocol: h2") != std::string::npos);
  CHECK(h2load.find("1000 succeeded, 0 failed, 0 errored") != std::string::npos);
  CHECK(h2_stat(s, "connections") == 4);  // curl twice over h2 (plaintext, echo), h2load's two
  tls_options o;
  o.ca = test_pki().ca_cert;
  o.alpn = "http/1.1";
  client c(s.ports().http, o);
  CHECK(c.alpn() == "http/1.1");
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
}

TEST_CASE("http2: with http2.enabled=false the preface is an HTTP/1.1 request that fails, and the connection closes") {
  server s(test_settings({{"http2.enabled", "false"}}));
  client c(s.ports().http);
  c.send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  const auto r = c.read_response();
  CHECK(r.status >= 400);
  CHECK_FALSE(r.keep_alive);
  CHECK(h2_stat(s, "connections") == 0);
}
