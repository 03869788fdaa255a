// bufpool-loadgen over TLS: against bufpool-server (https, verified, resumption, handshakes in the
// report) and against openssl s_server (SNI sent, client certificate presented, verification on by
// default, --insecure). Servers listen on 127.0.0.1 only; every run is bounded.
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

bufpool::server::server https_server() {
  return bufpool::server::server(bufpool::test::test_settings(
      {{"http.tls.certificate", test_pki().server_cert}, {"http.tls.key", test_pki().server_key}}));
}

// openssl s_server on 127.0.0.1:0 (-www: a status page per request, then close); its port from its
// "ACCEPT 127.0.0.1:PORT" line.
struct s_server {
  explicit s_server(std::vector<std::string> args) : p("/usr/bin/openssl", with_defaults(std::move(args))) {
    port = bufpool::loadgen::test::port_from_output(p, "ACCEPT 127\\.0\\.0\\.1:([0-9]+)");
  }
  static std::vector<std::string> with_defaults(std::vector<std::string> args) {
    std::vector<std::string> all = {"s_server", "-accept", "127.0.0.1:0", "-www", "-cert", test_pki().server_cert,
                                    "-key", test_pki().server_key};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port) + "/"; }
  bufpool::test::child_process p;
  std::uint16_t port = 0;
};

}  // namespace

TEST_CASE("loadgen tls: https against bufpool-server, verified by name and by address, keep-alive and pipelined") {
  auto srv = https_server();
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  for (const auto& extra : std::vector<std::vector<std::string>>{
           {"--cacert", test_pki().ca_cert, "--sni", "localhost"},        // the name localhost, verified
           {"--cacert", test_pki().ca_cert},                              // the address, verified (IP SAN)
           {"--cacert", test_pki().ca_cert, "--pipeline", "8", "--tls-min", "1.3"}}) {
    std::vector<std::string> args = {"-t", "1", "-c", "4", "--requests", "400"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_load(settings_for(url, args));
    CHECK(r.requests == 400);
    CHECK(r.errors() == 0);
    CHECK(r.handshakes == 4);
    CHECK(r.tls_version == "TLSv1.3");
    CHECK(r.tls_alpn == "http/1.1");
    CHECK(r.handshake.count() == 4);
  }
}

TEST_CASE("loadgen tls: tls:// drives bufpool-server's echo listener over TLS, every byte checked") {
  bufpool::server::server srv(bufpool::test::test_settings(
      {{"echo.tls.certificate", test_pki().server_cert}, {"echo.tls.key", test_pki().server_key}}));
  const std::string url = "tls://127.0.0.1:" + std::to_string(srv.ports().echo);
  for (const char* size : {"64", "20000"}) {
    CAPTURE(size);
    const auto r = run_load(settings_for(url, {"-t", "1", "-c", "3", "--requests", "300", "--size", size,
                                               "--cacert", test_pki().ca_cert}));
    CHECK(r.requests == 300);
    CHECK(r.errors() == 0);
    CHECK(r.handshakes == 3);
    CHECK(r.tls_version == "TLSv1.3");
  }
  CHECK(srv.stats()["server"]["echo_bytes"].get<std::uint64_t>() >= 300 * (64 + 20000));
}

TEST_CASE("loadgen tls: --disable-keepalive makes one handshake per request, resumed unless --tls-resume off") {
  auto srv = https_server();
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  auto r = run_load(settings_for(url, {"-t", "1", "-c", "2", "--requests", "40", "--disable-keepalive",
                                           "--cacert", test_pki().ca_cert}));
  CHECK(r.requests == 40);
  CHECK(r.errors() == 0);
  CHECK(r.handshakes == 40);
  CHECK(r.resumed == 38);  // all but each connection's first
  r = run_load(settings_for(url, {"-t", "1", "-c", "2", "--requests", "20", "--disable-keepalive", "--cacert",
                                      test_pki().ca_cert, "--tls-resume", "off", "--tls-min", "1.2"}));
  CHECK(r.requests == 20);
  CHECK(r.handshakes == 20);
  CHECK(r.resumed == 0);
  // The report says so.
  const auto rep = make_report(settings_for(url, {"--cacert", test_pki().ca_cert}), r, {});
  CHECK(rep["tls"]["handshakes"] == 20);
  CHECK(rep["tls"]["resumed_share"] == 0.0);
  CHECK(rep["tls"]["handshake_us"]["p50"].get<double>() > 0);
}

TEST_CASE("loadgen tls program: verification is on by default, a failure is one clear line and exit 1, --insecure runs") {
  auto srv = https_server();
  const std::string url = "https://127.0.0.1:" + std::to_string(srv.ports().http) + "/plaintext";
  auto r = run_loadgen({"-q", "-c", "2", "-d", "5s", url});
  CHECK(r.status == 1);
  CHECK(r.out.find("TLS: the certificate of 127.0.0.1 was not verified") != std::string::npos);
  CHECK(r.out.find("--cacert FILE or --insecure") != std::string::npos);
  r = run_loadgen({"-q", "-c", "2", "--requests", "20", "-k", url});
  CHECK(r.status == 0);
  r = run_loadgen({"-q", "-c", "2", "--requests", "20", "--cacert", test_pki().other_ca_cert, url});
  CHECK(r.status == 1);
  CHECK(r.out.find("(against " + test_pki().other_ca_cert + ")") != std::string::npos);
}

TEST_CASE("loadgen tls: against openssl s_server, the client certificate is presented where it is required") {
  s_server ss({"-CAfile", test_pki().ca_cert, "-Verify", "1", "-verify_return_error"});
  auto r = run_load(settings_for(ss.url(), {"-t", "1", "-c", "1", "--requests", "3", "--cacert", test_pki().ca_cert,
                                                "--cert", test_pki().client_cert, "--key", test_pki().client_key}));
  CHECK(r.requests == 3);
  CHECK(r.errors() == 0);
  // Without one, s_server refuses it (with TLS 1.3 after the client's side of the handshake is done:
  // the alert ends the first read).
  r = run_load(settings_for(ss.url(), {"-t", "1", "-c", "1", "--requests", "3", "--timeout", "2s", "--cacert",
                                           test_pki().ca_cert}));
  CHECK(r.requests == 0);
  CHECK(r.errors() > 0);
}

TEST_CASE("loadgen tls: against openssl s_server, --sni sends the name (s_server answers with its second certificate)") {
  // s_server switches to -cert2 when the client names "localhost": only then does other_ca verify it.
  s_server ss({"-servername", "localhost", "-cert2", test_pki().other_server_cert, "-key2", test_pki().other_server_key});
  auto r = run_load(settings_for(ss.url(), {"-t", "1", "-c", "1", "--requests", "3", "--cacert",
                                                test_pki().other_ca_cert, "--sni", "localhost"}));
  CHECK(r.requests == 3);
  CHECK(r.errors() == 0);
  // No name sent (an address is never sent as SNI): the first certificate, which other_ca does not verify.
  r = run_load(settings_for(ss.url(), {"-t", "1", "-c", "1", "--requests", "3", "--cacert", test_pki().other_ca_cert}));
  CHECK(r.requests == 0);
  CHECK(r.first_connect_error.find("was not verified") != std::string::npos);
  // --insecure: served whatever the certificate.
  r = run_load(settings_for(ss.url(), {"-t", "1", "-c", "1", "--requests", "3", "-k"}));
  CHECK(r.requests == 3);
}

TEST_CASE("loadgen tls: bad TLS options are refused with the option and the file") {
  auto r = run_loadgen({"--cacert", "/no/such/ca.pem", "https://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("/no/such/ca.pem") != std::string::npos);
  r = run_loadgen({"--connect-to", "nowhere", "https://127.0.0.1:1/"});
  CHECK(r.status == 2);
  CHECK(r.out.find("connect_to = \"nowhere\"") != std::string::npos);
  r = run_loadgen({"-q", "--ciphers", "NO-SUCH", "--requests", "1", "https://127.0.0.1:1/"});
  CHECK(r.status != 0);
  CHECK(r.out.find("--ciphers \"NO-SUCH\"") != std::string::npos);
}
