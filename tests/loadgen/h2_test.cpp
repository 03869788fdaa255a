// bufpool-loadgen over HTTP/2 (--http2, --streams): h2c and h2 (ALPN) against bufpool-server, streams
// answered out of order, bodies, a server's stream limit below --streams, and a scripted h2c peer
// (tests/loadgen/h2_peer.py on Python's h2) that resets streams or sends GOAWAY; the options HTTP/2
// refuses, and a server that does not speak it. Servers listen on 127.0.0.1 only; every run is bounded.
#include <chrono>
#include <regex>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "../support/process.hpp"
#include "../support/test_pki.hpp"
#include "engine.hpp"
#include "loadgen_support.hpp"
#include "report.hpp"
#include "server.hpp"
#include "settings.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using namespace bufpool::loadgen;
using bufpool::loadgen::test::run_loadgen;
using bufpool::loadgen::test::settings_for;
using bufpool::test::test_pki;

namespace {

// Every request written in the window is answered, lost or in flight at the stop.
void check_accounting(const run_result& r) { CHECK(r.sent == r.requests + r.lost + r.in_flight_at_stop); }

std::uint64_t h2_streams(bufpool::server::server& s) {
  return s.stats()["server"]["http2"]["streams"].get<std::uint64_t>();
}

// tests/loadgen/h2_peer.py MODE on 127.0.0.1:0; its port from its "PORT n" line.
struct h2_peer {
  explicit h2_peer(const std::string& mode)
      : p("/usr/bin/python3", {BUFPOOL_SOURCE_DIR "/tests/loadgen/h2_peer.py", mode}) {
    port = bufpool::loadgen::test::port_from_output(p, "PORT ([0-9]+)");
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }
  bufpool::test::child_process p;
  std::uint16_t port = 0;
};

}  // namespace

TEST_CASE("loadgen http2: h2c with prior knowledge against bufpool-server, 16 streams per connection") {
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  const auto s = settings_for(url, {"--http2", "--streams", "16", "-t", "2", "-c", "4", "--requests", "4000"});
  const auto r = run_load(s);
  CHECK(r.requests == 4000);
  CHECK(r.errors() == 0);
  CHECK(r.status[1] == 4000);
  check_accounting(r);
  CHECK(r.connections_established == 4);
  CHECK(r.h2_server_max_streams == 128);
  CHECK(h2_streams(srv) == 4000);  // every request was a stream of its own
  CHECK(srv.stats()["server"]["http2"]["connections"] == 4);
  const auto rep = make_report(s, r, {});
  CHECK(rep["summary"]["protocol"] == "h2c");
  CHECK(rep["http2"]["streams_per_connection"] == 16);
  CHECK(rep["http2"]["server_max_concurrent_streams"] == 128);
  CHECK(rep["http2"]["resets_received"] == 0);
  CHECK(summary(rep).find("h2c, 16 streams per connection") != std::string::npos);
  // HTTP/1.1 runs name theirs.
  CHECK(make_report(settings_for(url), r, {})["summary"]["protocol"] == "HTTP/1.1");
}

TEST_CASE("loadgen http2: h2 over TLS agrees on h2 by ALPN, POST bodies of 64 KiB are echoed whole") {
  bufpool::server::server srv(bufpool::test::test_settings(
      {{"http.tls.certificate", test_pki().server_cert}, {"http.tls.key", test_pki().server_key}}));
  const std::string base = "https://127.0.0.1:" + std::to_string(srv.ports().http);
  auto s = settings_for(base + "/plaintext",
                        {"--http2", "--streams", "8", "-t", "1", "-c", "2", "--requests", "1000", "--cacert", test_pki().ca_cert});
  auto r = run_load(s);
  CHECK(r.requests == 1000);
  CHECK(r.errors() == 0);
  CHECK(r.tls_alpn == "h2");
  CHECK(r.handshakes == 2);
  CHECK(make_report(s, r, {})["summary"]["protocol"] == "h2");
  const std::uint64_t before = h2_streams(srv);
  s = settings_for(base + "/echo", {"--http2", "--streams", "4", "-t", "1", "-c", "2", "--requests", "40", "-m", "POST",
                                    "--body-size", "65536", "--cacert", test_pki().ca_cert});
  r = run_load(s);
  CHECK(r.requests == 40);
  CHECK(r.errors() == 0);
  CHECK(r.bytes_out >= 40 * 65536);  // the bodies went out (DATA frames, flow-controlled by the server)
  CHECK(r.bytes_in >= 40 * 65536);   // and came back
  CHECK(h2_streams(srv) == before + 40);
}

TEST_CASE("loadgen http2: streams are answered out of order, each timed on its own") {
  // Half the answers wait 200 ms: on one connection with 8 streams the quick ones pass the slow ones
  // (with HTTP/1.1 pipelining every answer behind a slow one would wait for it).
  bufpool::server::server srv(bufpool::test::test_settings());
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/echo?delay=200ms:50,0s:50";
  const auto r = run_load(settings_for(url, {"--http2", "--streams", "8", "-t", "1", "-c", "1", "--requests", "64"}));
  CHECK(r.requests == 64);
  CHECK(r.errors() == 0);
  check_accounting(r);
  CHECK(r.corrected.max() >= 200'000);          // the slow ones took their 200 ms
  CHECK(r.corrected.percentile(25) < 200'000);  // and at least a quarter did not wait behind them
}

TEST_CASE("loadgen http2: --streams above the server's limit waits for free streams, with no error") {
  bufpool::server::server srv(bufpool::test::test_settings({{"http2.max_concurrent_streams", "4"}}));
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  const auto r = run_load(settings_for(url, {"--http2", "--streams", "32", "-t", "1", "-c", "2", "--requests", "2000"}));
  CHECK(r.requests == 2000);
  CHECK(r.errors() == 0);
  CHECK(r.h2_server_max_streams == 4);
  CHECK(r.h2_resets_received == 0);  // nghttp2 never opened a fifth stream (REFUSED_STREAM would say so)
}

TEST_CASE("loadgen http2: streams the server resets are reset errors and lost, the rest answered") {
  h2_peer peer("reset");
  const auto s = settings_for(peer.url(), {"--http2", "--streams", "4", "-t", "1", "-c", "1", "--requests", "200"});
  const auto r = run_load(s);
  CHECK(r.requests == 100);  // streams 1, 5, 9, ...: every other one
  CHECK(r.failures[static_cast<std::size_t>(failure::reset)] == 100);
  CHECK(r.h2_resets_received == 100);
  CHECK(r.lost == 100);
  check_accounting(r);
  CHECK(r.connections_established == 1);  // a reset stream does not end the connection
  CHECK(r.first_error.find("RST_STREAM INTERNAL_ERROR") != std::string::npos);
  CHECK(make_report(s, r, {})["summary"]["errors"]["reset"] == 100);
}

TEST_CASE("loadgen http2: a GOAWAY ends the connection after its streams, those above its last id are lost") {
  h2_peer peer("goaway");
  const auto s = settings_for(peer.url(), {"--http2", "--streams", "4", "-t", "1", "-c", "1", "--requests", "100"});
  const auto r = run_load(s);
  // Each connection answers streams 1..9 (5 requests) and sends GOAWAY at the first stream above.
  // The last connection may end with the run's quota instead.
  CHECK(r.h2_goaways_received >= 1);
  CHECK(r.connections_established >= r.h2_goaways_received);
  CHECK(r.connections_established <= r.h2_goaways_received + 1);
  CHECK(r.requests >= 5 * r.h2_goaways_received);
  CHECK(r.requests <= 5 * r.connections_established);
  CHECK(r.lost > 0);
  CHECK(r.transport_errors() == 0);  // a graceful GOAWAY (NO_ERROR) is no failure
  check_accounting(r);
  CHECK(r.requests + r.lost + r.in_flight_at_stop == 100);
}

TEST_CASE("loadgen http2 program: options HTTP/2 has no place for are refused with the reason, exit 2") {
  auto r = run_loadgen({"--http2", "--pipeline", "4", "http://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("pipeline = 4 does not apply with http2 = true") != std::string::npos);
  r = run_loadgen({"--streams", "8", "http://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("streams = 8 needs http2 = true (--http2)") != std::string::npos);
  r = run_loadgen({"--http2", "tcp://127.0.0.1:1"});
  CHECK(r.status == 2);
  CHECK(r.out.find("http2 = true needs http:// or https:// targets") != std::string::npos);
  r = run_loadgen({"--http2", "--alpn", "http/1.1,spdy", "https://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("does not offer h2") != std::string::npos);
  for (const char* flag : {"--chunked", "--disable-keepalive"}) {
    r = run_loadgen({"--http2", "-m", "POST", flag, "http://127.0.0.1:1/"});
    CHECK(r.status == 2);
    CHECK(r.out.find("does not apply with http2 = true") != std::string::npos);
  }
}

TEST_CASE("loadgen http2 program: a server without HTTP/2 is unreachable for --http2, with the reason") {
  bufpool::server::server srv(bufpool::test::test_settings(
      {{"http2.enabled", "false"}, {"http.tls.certificate", test_pki().server_cert}, {"http.tls.key", test_pki().server_key}}));
  const std::string port = std::to_string(srv.ports().http);
  // Over TLS it selects http/1.1 by ALPN.
  auto r = run_loadgen({"-q", "--http2", "-c", "2", "-d", "5s", "--cacert", test_pki().ca_cert,
                        "--alpn", "h2,http/1.1", "https://127.0.0.1:" + port + "/plaintext"});
  INFO("the load generator printed:\n" << r.out);
  CHECK(r.status == 1);
  CHECK(r.out.find("the server did not select h2 by ALPN (it selected http/1.1)") != std::string::npos);
  // Over plain TCP it answers the preface as an HTTP/1.1 request.
  bufpool::server::server plain(bufpool::test::test_settings({{"http2.enabled", "false"}}));
  r = run_loadgen({"-q", "--http2", "-c", "2", "-d", "5s", "http://127.0.0.1:" + std::to_string(plain.ports().http) + "/"});
  CHECK(r.status == 1);
  CHECK(r.out.find("the server answered the preface with HTTP/1") != std::string::npos);
  CHECK(r.out.find("it does not speak h2c with prior knowledge") != std::string::npos);
}
