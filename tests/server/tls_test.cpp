// HTTPS on the HTTP listener (docs/design.md 2.7), on both backends (the suite runs once per backend):
// versions, ALPN, resumption, client certificates, the reload, hostile input, idle connections.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <poll.h>
#include <unistd.h>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "../support/test_pki.hpp"
#include "test_client.hpp"

using namespace std::chrono_literals;
using bufpool::server::server;
using bufpool::test::client;
using bufpool::test::get;
using bufpool::test::post;
using bufpool::test::test_pki;
using bufpool::test::test_settings;
using bufpool::test::tls_options;

namespace {

std::map<std::string, std::string> tls_settings(std::map<std::string, std::string> more = {}) {
  more.emplace("http.tls.certificate", test_pki().server_cert);
  more.emplace("http.tls.key", test_pki().server_key);
  return more;
}

tls_options verified(int max_version = 0) {
  tls_options o;
  o.ca = test_pki().ca_cert;
  o.max_version = max_version;
  return o;
}

// One GET /plaintext on a new TLS connection: true if it was answered 200.
bool served(server& s, const tls_options& o) {
  try {
    client c(s.ports().http, o);
    if (!c.send(get("/plaintext"))) return false;
    return c.read_response(5s).status == 200;
  } catch (const std::exception&) {
    return false;
  }
}

// Reads exactly n bytes of plaintext from a TLS client (what the echo listener sends back), or what
// came before the timeout.
std::string tls_read(client& c, std::size_t n, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    if (SSL_pending(c.ssl()) == 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{c.fd(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    }
    std::size_t got = 0;
    if (SSL_read_ex(c.ssl(), buf, std::min(sizeof buf, n - out.size()), &got) == 1) {
      out.append(buf, got);
    } else if (SSL_get_error(c.ssl(), 0) != SSL_ERROR_WANT_READ) {
      break;
    }
  }
  return out;
}

std::uint64_t tls_stat(server& s, const char* key) { return s.stats()["server"]["tls"][key].get<std::uint64_t>(); }
std::uint64_t tls_failures(server& s, const char* reason) {
  return s.stats()["server"]["tls"]["failures"][reason].get<std::uint64_t>();
}

}  // namespace

TEST_CASE("tls: GET over TLS 1.3 and 1.2, keep-alive, ALPN http/1.1, the certificate verified against its CA") {
  server s(test_settings(tls_settings()));
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    client c(s.ports().http, verified(version));
    CHECK(SSL_version(c.ssl()) == version);
    CHECK(c.alpn() == "http/1.1");
    for (int i = 0; i < 3; ++i) {
      c.send(get("/plaintext"));
      const auto r = c.read_response();
      CHECK(r.status == 200);
      CHECK(r.body == "Hello, World!");
      CHECK(r.keep_alive);
    }
    c.send(get("/json"));
    CHECK(nlohmann::json::parse(c.read_response().body)["message"] == "Hello, World!");
  }
  CHECK(tls_stat(s, "handshakes") == 2);
  const auto st = s.stats()["server"]["tls"];
  CHECK(st["enabled"] == true);
  CHECK(st["versions"]["TLSv1.2"] == 1);
  CHECK(st["versions"]["TLSv1.3"] == 1);
  CHECK(st["handshake_time"]["count"] == 2);
  CHECK(st["handshake_time"]["sum_s"].get<double>() > 0);
  client a(s.ports().admin);
  a.send(get("/metrics"));
  const std::string m = a.read_response().body;
  CHECK(m.find("\nbufpool_tls_handshakes_total 2\n") != std::string::npos);
  CHECK(m.find("\nbufpool_tls_version_handshakes_total{version=\"TLSv1.3\"} 1\n") != std::string::npos);
  CHECK(m.find("\nbufpool_tls_handshake_duration_seconds_count 2\n") != std::string::npos);
  CHECK(m.find("\nbufpool_tls_failures_total{reason=\"handshake_timeout\"} 0\n") != std::string::npos);
}

TEST_CASE("tls: pipelined requests and bodies of 64 KiB and 1 MiB come back whole") {
  server s(test_settings(tls_settings()));
  client c(s.ports().http, verified());
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += get(i % 2 == 0 ? "/plaintext" : "/json");
  c.send(batch);
  const auto rs = c.read_responses(16);
  for (const auto& r : rs) CHECK(r.status == 200);
  for (const std::size_t size : {std::size_t{4096}, std::size_t{65536}, std::size_t{1} << 20}) {
    CAPTURE(size);
    std::string body(size, 'b');
    for (std::size_t i = 0; i < size; ++i) body[i] = static_cast<char>('a' + i % 26);
    c.send(post("/echo", body));
    const auto r = c.read_response(30s);
    CHECK(r.status == 200);
    CHECK(r.body == body);
  }
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}

TEST_CASE("tls: min_version 1.3 refuses a TLS 1.2 client, counted as a handshake failure") {
  server s(test_settings(tls_settings({{"http.tls.min_version", "1.3"}})));
  CHECK_FALSE(served(s, verified(TLS1_2_VERSION)));
  CHECK(served(s, verified(TLS1_3_VERSION)));
  CHECK(bufpool::test::eventually([&] { return tls_failures(s, "handshake") == 1; }));
}

TEST_CASE("tls: a session resumes on a new connection (TLS 1.3 tickets and TLS 1.2)") {
  server s(test_settings(tls_settings()));
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    CAPTURE(version);
    SSL_SESSION* session = nullptr;
    {
      client first(s.ports().http, verified(version));
      first.send(get("/plaintext"));
      CHECK(first.read_response().status == 200);  // TLS 1.3: the tickets came before the answer
      session = SSL_get1_session(first.ssl());
      CHECK_FALSE(SSL_session_reused(first.ssl()));
    }
    REQUIRE(session != nullptr);
    tls_options o = verified(version);
    o.session = session;
    client again(s.ports().http, o);
    CHECK(SSL_session_reused(again.ssl()) == 1);
    again.send(get("/plaintext"));
    CHECK(again.read_response().status == 200);
    SSL_SESSION_free(session);
  }
  CHECK(tls_stat(s, "resumed") == 2);
  CHECK(tls_stat(s, "handshakes") == 4);
}

TEST_CASE("tls: client certificates required: none, one from another CA, and the right one") {
  server s(test_settings(
      tls_settings({{"http.tls.client_auth", "require"}, {"http.tls.client_ca", test_pki().ca_cert}})));
  CHECK_FALSE(served(s, verified()));
  tls_options wrong = verified();
  wrong.cert = test_pki().other_client_cert;
  wrong.key = test_pki().other_client_key;
  CHECK_FALSE(served(s, wrong));
  tls_options right = verified();
  right.cert = test_pki().client_cert;
  right.key = test_pki().client_key;
  CHECK(served(s, right));
  CHECK(bufpool::test::eventually([&] { return tls_failures(s, "peer_certificate") == 2; }));
}

TEST_CASE("tls: client certificates optional: served without one, refused with one from another CA") {
  server s(test_settings(
      tls_settings({{"http.tls.client_auth", "optional"}, {"http.tls.client_ca", test_pki().ca_cert}})));
  CHECK(served(s, verified()));
  tls_options wrong = verified();
  wrong.cert = test_pki().other_client_cert;
  wrong.key = test_pki().other_client_key;
  CHECK_FALSE(served(s, wrong));
}

TEST_CASE("tls: plain HTTP, garbage and a stalled handshake on the TLS port are closed, and no buffer is kept") {
  server s(test_settings(tls_settings({{"limits.handshake_timeout", "300ms"}})));
  {
    client plain(s.ports().http);
    plain.send(get("/plaintext"));
    CHECK(plain.closed_by_peer(5s));
  }
  {
    client garbage(s.ports().http);
    garbage.send(std::string(3000, '\x16') + "\x03\x03 not a record");
    CHECK(garbage.closed_by_peer(5s));
  }
  {
    // Half a ClientHello's record header, then nothing: the handshake timeout closes it.
    client slow(s.ports().http);
    slow.send("\x16\x03\x01");
    CHECK(slow.closed_by_peer(5s));
  }
  CHECK(bufpool::test::eventually([&] { return tls_failures(s, "plaintext_http") == 1; }));
  CHECK(tls_failures(s, "handshake") >= 1);
  CHECK(tls_failures(s, "handshake_timeout") == 1);
  CHECK(served(s, verified()));
  CHECK(bufpool::test::eventually([&] {
    const auto st = s.stats();
    return bufpool::test::connection_buffers(st) == 0 && st["server"]["connections"]["active"] == 0;
  }));
}

TEST_CASE("tls: idle keep-alive TLS connections hold no pooled buffer") {
  server s(test_settings(tls_settings({{"threads", "1"}})));
  std::vector<std::unique_ptr<client>> idle;
  for (int i = 0; i < 64; ++i) {
    idle.push_back(std::make_unique<client>(s.ports().http, verified(i % 2 == 0 ? TLS1_3_VERSION : TLS1_2_VERSION)));
    idle.back()->send(post("/echo", std::string(20000, 'e')));  // reads grew past the first size
    CHECK(idle.back()->read_response().body.size() == 20000);
  }
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
  CHECK(s.stats()["server"]["connections"]["active"] == 64);
  for (auto& c : idle) c->send(get("/plaintext"));
  for (auto& c : idle) CHECK(c->read_response().status == 200);
}

TEST_CASE("tls: bad files are configuration errors naming the key, the file and the reason") {
  auto error_of = [](std::map<std::string, std::string> o) -> std::string {
    try {
      server s(test_settings(o));
    } catch (const bufpool::config::error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string missing = test_pki().dir + "/no-such.pem";
  std::string e = error_of({{"http.tls.certificate", missing}, {"http.tls.key", test_pki().server_key}});
  CHECK(e.find("http.tls.certificate") != std::string::npos);
  CHECK(e.find(missing) != std::string::npos);
  CHECK(e.find("No such file") != std::string::npos);
  e = error_of({{"http.tls.certificate", test_pki().server_cert}, {"http.tls.key", test_pki().client_key}});
  CHECK(e.find("http.tls.key") != std::string::npos);
  CHECK(e.find("does not match") != std::string::npos);
  e = error_of({{"http.tls.certificate", test_pki().server_key}, {"http.tls.key", test_pki().server_key}});
  CHECK(e.find("not a PEM certificate") != std::string::npos);
  e = error_of(tls_settings({{"http.tls.client_auth", "require"}}));
  CHECK(e.find("http.tls.client_ca") != std::string::npos);
  e = error_of(tls_settings({{"http.tls.ciphers", "NO-SUCH-CIPHER"}}));
  CHECK(e.find("http.tls.ciphers") != std::string::npos);
  // The echo and admin listeners' files are checked the same way, under their own keys.
  e = error_of({{"echo.tls.certificate", missing}});
  CHECK(e.find("echo.tls.certificate") != std::string::npos);
  e = error_of({{"admin.tls.certificate", test_pki().server_cert}, {"admin.tls.key", test_pki().client_key}});
  CHECK(e.find("admin.tls.key") != std::string::npos);
  CHECK(e.find("does not match") != std::string::npos);
}

TEST_CASE("tls: a reload takes a new certificate for new connections, established ones go on, a bad file keeps the old") {
  const auto dir = std::filesystem::path(test_pki().dir) / "reload";
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  std::filesystem::copy_file(test_pki().server_cert, cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(test_pki().server_key, key, std::filesystem::copy_options::overwrite_existing);
  server s(test_settings({{"http.tls.certificate", cert}, {"http.tls.key", key}}));
  client old(s.ports().http, verified());
  old.send(get("/plaintext"));
  CHECK(old.read_response().status == 200);

  std::filesystem::copy_file(test_pki().other_server_cert, cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(test_pki().other_server_key, key, std::filesystem::copy_options::overwrite_existing);
  CHECK(s.reload_tls());
  tls_options other = verified();
  other.ca = test_pki().other_ca_cert;
  CHECK(served(s, other));
  CHECK_FALSE(served(s, verified()));  // the new certificate is not the first CA's
  old.send(get("/plaintext"));         // the established connection goes on with its session
  CHECK(old.read_response().status == 200);

  { std::ofstream(cert) << "not a certificate\n"; }
  CHECK_FALSE(s.reload_tls());
  CHECK(served(s, other));  // the last good one stays
  CHECK(tls_stat(s, "reloads") == 1);
  CHECK(tls_stat(s, "reload_failures") == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("tls: a changed certificate file is loaded again within a rotation interval") {
  const auto dir = std::filesystem::path(test_pki().dir) / "watch";
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  std::filesystem::copy_file(test_pki().server_cert, cert, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(test_pki().server_key, key, std::filesystem::copy_options::overwrite_existing);
  server s(test_settings({{"http.tls.certificate", cert}, {"http.tls.key", key}, {"pool.rotation_interval", "100ms"}}));
  CHECK(served(s, verified()));
  // Key first, then the certificate: a check between the two sees a mismatch and keeps the old pair.
  std::filesystem::copy_file(test_pki().other_server_key, key, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(test_pki().other_server_cert, cert, std::filesystem::copy_options::overwrite_existing);
  tls_options other = verified();
  other.ca = test_pki().other_ca_cert;
  CHECK(bufpool::test::eventually([&] { return served(s, other); }, 10s));
  std::filesystem::remove_all(dir);
}

TEST_CASE("tls: the access log says the TLS version and whether the session was resumed") {
  const std::string log = bufpool::test::test_pki().dir + "/access-" + std::to_string(::getpid()) + ".log";
  {
    server s(test_settings(tls_settings({{"log.access", log}})));
    SSL_SESSION* session = nullptr;
    {
      client first(s.ports().http, verified(TLS1_2_VERSION));
      first.send(get("/plaintext"));
      CHECK(first.read_response().status == 200);
      session = SSL_get1_session(first.ssl());
    }
    tls_options o = verified(TLS1_2_VERSION);
    o.session = session;
    client again(s.ports().http, o);
    again.send(get("/json"));
    CHECK(again.read_response().status == 200);
    SSL_SESSION_free(session);
  }  // the server's stop writes what its log queue holds
  std::ifstream in(log);
  std::stringstream all;
  all << in.rdbuf();
  CHECK(all.str().find("\"GET /plaintext HTTP/1.1\" 200 13 ") != std::string::npos);
  CHECK(all.str().find(" TLSv1.2 full\n") != std::string::npos);
  CHECK(all.str().find(" TLSv1.2 resumed\n") != std::string::npos);
  std::remove(log.c_str());
}

TEST_CASE("tls: the handshake has its own timeout, and the header timeout starts after it") {
  server s(test_settings(tls_settings({{"limits.handshake_timeout", "300ms"}, {"http.header_timeout", "10s"}})));
  client c(s.ports().http, verified());
  std::this_thread::sleep_for(700ms);  // longer than the handshake timeout, well within the header timeout
  c.send(get("/plaintext"));
  CHECK(c.read_response().status == 200);
  CHECK(tls_failures(s, "handshake_timeout") == 0);
}

TEST_CASE("tls: plain HTTP on the TLS port gets one 400 in clear text, then the connection closes") {
  server s(test_settings(tls_settings()));
  client plain(s.ports().http);
  plain.send(get("/plaintext"));
  const auto r = plain.read_response(5s);
  CHECK(r.status == 400);
  CHECK(r.header("connection") == "close");
  CHECK(r.body.find("HTTPS") != std::string::npos);
  CHECK(plain.closed_by_peer(5s));
  CHECK(plain.unread_responses() == 0);
  CHECK(tls_failures(s, "plaintext_http") == 1);
  CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
}

TEST_CASE("tls: handshakes are counted by the cipher suite the client negotiated") {
  server s(test_settings(tls_settings()));
  std::map<std::string, std::uint64_t> expected;
  for (const int version : {TLS1_3_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}) {
    client c(s.ports().http, verified(version));
    c.send(get("/plaintext"));
    CHECK(c.read_response().status == 200);
    ++expected[SSL_CIPHER_get_name(SSL_get_current_cipher(c.ssl()))];
  }
  const auto ciphers = s.stats()["server"]["tls"]["ciphers"];
  CHECK(ciphers.size() == expected.size());
  for (const auto& [name, count] : expected) {
    CAPTURE(name);
    CHECK(ciphers.value(name, std::uint64_t{0}) == count);
  }
  CHECK_FALSE(ciphers.contains("other"));
  const std::string metrics = s.metrics();
  CHECK(metrics.find("bufpool_tls_cipher_handshakes_total{cipher=\"" + expected.begin()->first + "\"}") !=
        std::string::npos);
}

TEST_CASE("tls: ticket keys rotate: a ticket resumes under the next key, and not once two have passed") {
  // A 2 s key lifetime, checked every 50 ms: the ticket is made under key 0; under key 1 it still
  // resumes (and a fresh ticket is issued); under key 2 it is a full handshake.
  server s(test_settings(tls_settings({{"http.tls.ticket_key_lifetime", "2s"}, {"pool.rotation_interval", "50ms"}})));
  auto rotations = [&] { return tls_stat(s, "ticket_key_rotations"); };
  auto session_from = [&](SSL_SESSION* resume, bool& reused) -> SSL_SESSION* {
    tls_options o = verified(TLS1_3_VERSION);
    o.session = resume;
    client c(s.ports().http, o);
    c.send(get("/plaintext"));
    CHECK(c.read_response().status == 200);  // the tickets came before the answer
    reused = SSL_session_reused(c.ssl()) == 1;
    return SSL_get1_session(c.ssl());
  };
  const std::uint64_t start = rotations();
  bool reused = true;
  SSL_SESSION* first = session_from(nullptr, reused);
  REQUIRE(first != nullptr);
  CHECK_FALSE(reused);
  REQUIRE(bufpool::test::eventually([&] { return rotations() >= start + 1; }, 10s));
  SSL_SESSION* second = session_from(first, reused);
  CHECK(reused);  // under the previous key
  SSL_SESSION_free(second);
  REQUIRE(bufpool::test::eventually([&] { return rotations() >= start + 2; }, 10s));
  SSL_SESSION* third = session_from(first, reused);
  CHECK_FALSE(reused);  // its key is gone
  SSL_SESSION_free(third);
  SSL_SESSION_free(first);
  CHECK(s.metrics().find("bufpool_tls_ticket_key_rotations_total ") != std::string::npos);
}

TEST_CASE("tls: the echo listener over TLS echoes every size, holds no buffer while idle, and times out a stalled handshake") {
  server s(test_settings({{"echo.tls.certificate", test_pki().server_cert},
                          {"echo.tls.key", test_pki().server_key},
                          {"limits.handshake_timeout", "300ms"}}));
  {
    client c(s.ports().echo, verified());
    for (const std::size_t size : {std::size_t{1}, std::size_t{100}, std::size_t{20000}, std::size_t{300000}}) {
      CAPTURE(size);
      std::string data(size, '\0');
      for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + i % 26);
      REQUIRE(c.send(data));
      CHECK(tls_read(c, size) == data);
    }
    // Between messages the connection holds nothing.
    CHECK(bufpool::test::eventually([&] { return bufpool::test::connection_buffers(s.stats()) == 0; }));
    CHECK(s.stats()["server"]["connections"]["active"] == 1);
  }
  {
    client slow(s.ports().echo);
    slow.send("\x16\x03\x01");
    CHECK(slow.closed_by_peer(5s));
  }
  CHECK(tls_failures(s, "handshake_timeout") == 1);
  const auto st = s.stats()["server"];
  CHECK(st["tls"]["listeners"] == nlohmann::json::array({"echo"}));
  CHECK(st["tls"]["handshakes"] == 1);
  CHECK(st["echo_bytes"] == 320101);
  // The HTTP listener is still plain.
  client plain(s.ports().http);
  plain.send(get("/plaintext"));
  CHECK(plain.read_response().status == 200);
  CHECK(bufpool::test::eventually([&] { return s.stats()["server"]["connections"]["active"] == 1; }));
}

TEST_CASE("tls: the admin listener serves /stats over HTTPS with its own files") {
  server s(test_settings({{"admin.tls.certificate", test_pki().server_cert}, {"admin.tls.key", test_pki().server_key}}));
  client c(s.ports().admin, verified());
  c.send(get("/stats"));
  const auto r = c.read_response();
  REQUIRE(r.status == 200);
  CHECK(nlohmann::json::parse(r.body)["server"]["tls"]["listeners"] == nlohmann::json::array({"admin"}));
  client plain(s.ports().admin);
  plain.send(get("/healthz"));
  CHECK(plain.read_response(5s).status == 400);  // clear text on the TLS port
}
