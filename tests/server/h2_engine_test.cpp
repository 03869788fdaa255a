// The HTTP/2 engine (http/h2_engine.hpp) without a socket: an nghttp2 client session in the same
// process writes real frames, the engine answers, the client reads the answers. Some tests write raw
// frames themselves (what a well-behaved client library would refuse to send: floods, bad prefaces).
#include <doctest/doctest.h>

#include <nghttp2/nghttp2.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <bufpool/pool.hpp>

#include "http/h2_engine.hpp"
#include "routes/table.hpp"
#include "settings.hpp"
#include "stats.hpp"

namespace {

namespace srv = bufpool::server;
namespace http = bufpool::server::http;
using namespace std::chrono_literals;

bufpool::pool& h2_pool() {
  static bufpool::pool p;
  return p;
}
// Buffers of the pool handed out and not returned (oversize ones too).
std::int64_t out_now() {
  const auto s = h2_pool().snapshot();
  return s.totals.outstanding + s.oversize.outstanding;
}

// The server side: one engine and what it shares (as engine_rig does for HTTP/1.1).
struct server_side : http::engine_events {
  srv::http_settings limits;
  srv::worker_stats stats;
  std::atomic<bool> draining{false};
  char date[30] = "Wed, 02 Dec 2026 06:00:00 GMT";
  srv::routes::table table;
  std::unique_ptr<http::engine_context> ctx;
  std::unique_ptr<http::engine_env> env;
  std::unique_ptr<http::h2_engine> e;
  bool closed = false;
  std::vector<srv::error_kind> failures;

  explicit server_side(const srv::http_settings& l = {}) : limits(l), table(srv::routes::make_public_table(draining)) {
    ctx = std::make_unique<http::engine_context>(http::engine_context{limits, table, true, false});
    env = std::make_unique<http::engine_env>(http::engine_env{h2_pool(), stats, date, draining});
    e = std::make_unique<http::h2_engine>(*ctx, *env, *this);
  }
  void failed(srv::error_kind kind, unsigned) override { failures.push_back(kind); }

  // Feeds bytes (in pieces of at most `piece` bytes, each in a pooled buffer) and returns what the
  // engine answers, following its results as a connection would.
  std::string exchange(std::string_view bytes, std::size_t piece = 16384) {
    std::string out;
    auto drain_output = [&](http::h2_engine::result r) {
      while (r == http::h2_engine::result::send) {
        std::size_t total = 0;
        for (const iovec& v : e->output(total)) out.append(static_cast<const char*>(v.iov_base), v.iov_len);
        e->output_sent();
        r = e->parse();  // more frames may wait (the batch limit, flow control)
      }
      if (r == http::h2_engine::result::close || e->closing()) closed = true;
    };
    if (bytes.empty()) drain_output(e->parse());
    while (!bytes.empty() && !closed) {
      const std::size_t n = std::min(bytes.size(), piece);
      bufpool::buffer b = e->take_spare();
      if (!b || b.capacity() < n) b = h2_pool().get(std::max<std::size_t>(n, 4096));
      std::memcpy(b.data(), bytes.data(), n);
      bytes.remove_prefix(n);
      e->feed(std::move(b), n);
      drain_output(e->parse());
    }
    return out;
  }
};

// The client: an nghttp2 client session whose frames go into `wire` and whose answers are collected.
struct client_side {
  struct response {
    int status = 0;
    std::map<std::string, std::string> headers;
    std::string body;
    bool closed = false;
    std::uint32_t error = 0;
  };
  nghttp2_session* s = nullptr;
  std::string wire;
  std::map<std::int32_t, response> responses;
  std::vector<std::int32_t> order;  // streams in the order their answers completed
  bool goaway = false;
  std::uint32_t goaway_code = 0;
  // Request bodies being sent (the data provider reads from here).
  std::map<std::int32_t, std::pair<std::string, std::size_t>> bodies;

  client_side() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, [](nghttp2_session*, const std::uint8_t* d, std::size_t n, int,
                                                       void* u) -> ssize_t {
      static_cast<client_side*>(u)->wire.append(reinterpret_cast<const char*>(d), n);
      return static_cast<ssize_t>(n);
    });
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t nl, const std::uint8_t* value,
               std::size_t vl, std::uint8_t, void* u) -> int {
          auto& r = static_cast<client_side*>(u)->responses[f->hd.stream_id];
          const std::string n(reinterpret_cast<const char*>(name), nl), v(reinterpret_cast<const char*>(value), vl);
          if (n == ":status") r.status = std::stoi(v);
          else r.headers[n] = v;
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* d, std::size_t n, void* u) -> int {
          static_cast<client_side*>(u)->responses[id].body.append(reinterpret_cast<const char*>(d), n);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, std::int32_t id, std::uint32_t error, void* u) -> int {
          auto* c = static_cast<client_side*>(u);
          c->responses[id].closed = true;
          c->responses[id].error = error;
          c->order.push_back(id);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) -> int {
      if (f->hd.type == NGHTTP2_GOAWAY) {
        static_cast<client_side*>(u)->goaway = true;
        static_cast<client_side*>(u)->goaway_code = f->goaway.error_code;
      }
      return 0;
    });
    nghttp2_session_client_new(&s, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~client_side() { nghttp2_session_del(s); }

  std::int32_t request(std::string_view method, std::string_view path, std::vector<std::pair<std::string, std::string>> extra = {},
                       const std::string* body = nullptr) {
    std::vector<std::pair<std::string, std::string>> h = {
        {":method", std::string(method)}, {":scheme", "http"}, {":authority", "test"}, {":path", std::string(path)}};
    for (auto& x : extra) h.push_back(x);
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : h)
      nv.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                    v.size(), NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider data{};
    data.read_callback = [](nghttp2_session* session, std::int32_t id, std::uint8_t* buf, std::size_t length,
                            std::uint32_t* flags, nghttp2_data_source*, void* u) -> ssize_t {
      (void)session;
      auto& [text, at] = static_cast<client_side*>(u)->bodies[id];
      const std::size_t k = std::min(length, text.size() - at);
      std::memcpy(buf, text.data() + at, k);
      at += k;
      if (at == text.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(k);
    };
    const std::int32_t id = nghttp2_submit_request(s, nullptr, nv.data(), nv.size(), body != nullptr ? &data : nullptr, nullptr);
    if (body != nullptr) bodies[id] = {*body, 0};
    return id;
  }
  std::string take_wire() {
    nghttp2_session_send(s);
    return std::exchange(wire, {});
  }
  void receive(std::string_view bytes) {
    const auto rv = nghttp2_session_mem_recv(s, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    REQUIRE(rv == static_cast<ssize_t>(bytes.size()));
  }
};

// Runs both sides until neither has anything to say (or the server closes); `rounds` bounds it.
void converse(client_side& c, server_side& srv_side, int rounds = 1000) {
  for (int i = 0; i < rounds && !srv_side.closed; ++i) {
    const std::string up = c.take_wire();
    const std::string down = srv_side.exchange(up);
    if (!down.empty()) c.receive(down);
    if (up.empty() && down.empty()) {
      if (!srv_side.e->waiting()) return;
      std::this_thread::sleep_until(srv_side.e->wake_at());
      std::string woke;
      auto r = srv_side.e->wake();
      while (r == http::h2_engine::result::send) {
        std::size_t total = 0;
        for (const iovec& v : srv_side.e->output(total)) woke.append(static_cast<const char*>(v.iov_base), v.iov_len);
        srv_side.e->output_sent();
        r = srv_side.e->parse();
      }
      if (!woke.empty()) c.receive(woke);
    }
  }
}

// A raw frame: 9-byte header, then the payload.
std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  const auto n = static_cast<std::uint32_t>(payload.size());
  f += static_cast<char>((n >> 16) & 0xff);
  f += static_cast<char>((n >> 8) & 0xff);
  f += static_cast<char>(n & 0xff);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += static_cast<char>((stream >> 24) & 0x7f);
  f += static_cast<char>((stream >> 16) & 0xff);
  f += static_cast<char>((stream >> 8) & 0xff);
  f += static_cast<char>(stream & 0xff);
  f += payload;
  return f;
}
const std::string preface_and_settings =
    std::string(http::h2_engine::preface) + frame(NGHTTP2_SETTINGS, 0, 0, {});

// Reads the server's frames from raw bytes: the GOAWAY's error code, if one came.
bool find_goaway(std::string_view bytes, std::uint32_t& code) {
  while (bytes.size() >= 9) {
    const std::size_t n = (static_cast<std::uint8_t>(bytes[0]) << 16) | (static_cast<std::uint8_t>(bytes[1]) << 8) |
                          static_cast<std::uint8_t>(bytes[2]);
    if (bytes.size() < 9 + n) return false;
    if (static_cast<std::uint8_t>(bytes[3]) == NGHTTP2_GOAWAY && n >= 8) {
      code = (static_cast<std::uint32_t>(static_cast<std::uint8_t>(bytes[13])) << 24) |
             (static_cast<std::uint32_t>(static_cast<std::uint8_t>(bytes[14])) << 16) |
             (static_cast<std::uint32_t>(static_cast<std::uint8_t>(bytes[15])) << 8) |
             static_cast<std::uint8_t>(bytes[16]);
      return true;
    }
    bytes.remove_prefix(9 + n);
  }
  return false;
}

}  // namespace

TEST_CASE("h2 engine: GET /plaintext and /json are answered over HTTP/2, with their length and type") {
  server_side srv_side;
  client_side c;
  const auto a = c.request("GET", "/plaintext");
  const auto b = c.request("GET", "/json");
  converse(c, srv_side);
  REQUIRE(c.responses[a].closed);
  CHECK(c.responses[a].status == 200);
  CHECK(c.responses[a].body == "Hello, World!");
  CHECK(c.responses[a].headers["content-type"] == "text/plain");
  CHECK(c.responses[a].headers["content-length"] == "13");
  CHECK(c.responses[b].status == 200);
  CHECK(c.responses[b].body == R"({"message":"Hello, World!"})");
  CHECK(c.responses[b].headers["content-type"] == "application/json");
  CHECK(srv_side.stats.requests[static_cast<std::size_t>(srv::route::plaintext)].get() == 1);
  CHECK(srv_side.e->open_streams() == 0);
  CHECK_FALSE(srv_side.closed);
}

TEST_CASE("h2 engine: 100 concurrent streams on one connection are all answered, and their state is reused") {
  server_side srv_side;
  client_side c;
  std::vector<std::int32_t> ids;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 100; ++i) ids.push_back(c.request("GET", i % 2 ? "/plaintext" : "/json"));
    converse(c, srv_side);
  }
  for (auto id : ids) {
    CHECK(c.responses[id].status == 200);
    CHECK(c.responses[id].closed);
  }
  CHECK(srv_side.e->stats().streams == 300);
  CHECK(srv_side.e->open_streams() == 0);
}

TEST_CASE("h2 engine: POST /echo sends the body back whole (1 KiB to 1 MiB), and HEAD has no body") {
  for (std::size_t n : {std::size_t{1} << 10, std::size_t{64} << 10, std::size_t{1} << 20}) {
    CAPTURE(n);
    server_side srv_side;
    client_side c;
    std::string body(n, '\0');
    for (std::size_t i = 0; i < n; ++i) body[i] = static_cast<char>('a' + i * 7 % 26);
    const auto id = c.request("POST", "/echo", {{"content-length", std::to_string(n)}}, &body);
    converse(c, srv_side);
    REQUIRE(c.responses[id].closed);
    CHECK(c.responses[id].status == 200);
    CHECK(c.responses[id].headers["content-length"] == std::to_string(n));
    CHECK(c.responses[id].body == body);
  }
  server_side srv_side;
  client_side c;
  const auto id = c.request("HEAD", "/plaintext");
  converse(c, srv_side);
  CHECK(c.responses[id].status == 200);
  CHECK(c.responses[id].headers["content-length"] == "13");
  CHECK(c.responses[id].body.empty());
}

TEST_CASE("h2 engine: /echo?size= answers from the pattern, larger than a frame and than the window") {
  server_side srv_side;
  client_side c;
  const auto id = c.request("GET", "/echo?size=200000");
  converse(c, srv_side);
  REQUIRE(c.responses[id].closed);
  CHECK(c.responses[id].status == 200);
  REQUIRE(c.responses[id].body.size() == 200000);
  const std::string_view cycle = http::exchange::pattern_cycle;
  bool same = true;
  for (std::size_t i = 0; i < c.responses[id].body.size(); ++i) same = same && c.responses[id].body[i] == cycle[i % cycle.size()];
  CHECK(same);
  // The pattern's 4 KiB pieces each make a DATA frame: moved into the batch, not copied; only a piece
  // cut by the edge of the client's flow-control window (65,535 bytes, not a multiple of 4 KiB) or the
  // last, short one is copied (measured: 187,712 of 200,000 bytes moved).
  const auto& k = srv_side.e->stats();
  CHECK(k.data_bytes_moved + k.data_bytes_copied == 200000);
  CHECK(k.data_bytes_moved >= 180000);
}

TEST_CASE("h2 engine: a delay holds only its own stream: the others are answered meanwhile") {
  server_side srv_side;
  client_side c;
  const auto slow = c.request("GET", "/echo?delay=50ms&size=10");
  const auto fast = c.request("GET", "/plaintext");
  const auto t0 = std::chrono::steady_clock::now();
  converse(c, srv_side);
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  REQUIRE(c.order.size() == 2);
  CHECK(c.order[0] == fast);
  CHECK(c.order[1] == slow);
  CHECK(c.responses[slow].status == 200);
  CHECK(c.responses[slow].body.size() == 10);
  CHECK(srv_side.stats.echo_delayed.get() == 1);
  CHECK(srv_side.stats.echo_delayed_waiting.get() == 0);
}

TEST_CASE("h2 engine: fortio parameters: status, extra headers (lower-cased), 404, 405, gzip") {
  server_side srv_side;
  client_side c;
  const auto st = c.request("GET", "/echo?status=418&header=X-Test:yes");
  const auto nf = c.request("GET", "/nowhere");
  const auto na = c.request("POST", "/plaintext");
  const auto gz = c.request("GET", "/echo?size=4000&gzip=true", {{"accept-encoding", "gzip"}});
  const auto bad = c.request("GET", "/echo?status=9999");
  converse(c, srv_side);
  CHECK(c.responses[st].status == 418);
  CHECK(c.responses[st].headers["x-test"] == "yes");
  CHECK(c.responses[nf].status == 404);
  CHECK(c.responses[na].status == 405);
  CHECK(c.responses[na].headers.count("allow") == 1);
  CHECK(c.responses[gz].status == 200);
  CHECK(c.responses[gz].headers["content-encoding"] == "gzip");
  CHECK(c.responses[gz].body.size() < 4000);
  CHECK(c.responses[bad].status == 400);
}

TEST_CASE("h2 engine: limits: a header list over http.max_header_bytes gets 431, a body over max_body_bytes 413, "
          "the connection goes on") {
  srv::http_settings limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 10000;
  server_side srv_side(limits);
  client_side c;
  const auto big = c.request("GET", "/plaintext", {{"x-big", std::string(4000, 'x')}});
  const std::string body(20000, 'b');
  const auto large = c.request("POST", "/echo", {}, &body);
  converse(c, srv_side);
  CHECK(c.responses[big].status == 431);
  CHECK(c.responses[large].status == 413);
  const auto after = c.request("GET", "/plaintext");
  converse(c, srv_side);
  CHECK(c.responses[after].status == 200);
  CHECK_FALSE(srv_side.closed);
}

TEST_CASE("h2 engine: HPACK bomb: a field indexed once and referenced many times counts at its decoded size (431)") {
  srv::http_settings limits;
  limits.max_header_bytes = 4096;
  server_side srv_side(limits);
  client_side c;
  const std::string v(1000, 'v');
  const auto first = c.request("GET", "/plaintext", {{"x-a", v}});  // the field enters the dynamic table
  converse(c, srv_side);
  CHECK(c.responses[first].status == 200);
  // 40 references to it: about 40 KB of headers from a few dozen bytes on the wire.
  const auto bomb = c.request("GET", "/plaintext", std::vector<std::pair<std::string, std::string>>(40, {"x-a", v}));
  const std::string up = c.take_wire();
  CHECK(up.size() < 100);
  c.receive(srv_side.exchange(up));
  converse(c, srv_side);
  CHECK(c.responses[bomb].status == 431);
  const auto after = c.request("GET", "/plaintext");  // the connection goes on
  converse(c, srv_side);
  CHECK(c.responses[after].status == 200);
  CHECK_FALSE(srv_side.closed);
}

TEST_CASE("h2 engine: stream ids used up: the last id (2^31-1) is answered, a lower one after it gets nothing, "
          "and the connection stays sound") {
  server_side srv_side;
  client_side c;
  nghttp2_session_set_next_stream_id(c.s, 0x7fffffff);
  const auto last = c.request("GET", "/plaintext");
  CHECK(last == 0x7fffffff);
  converse(c, srv_side);
  CHECK(c.responses[last].status == 200);
  // The client has no id left (nghttp2 refuses to make one); a raw HEADERS on a lower id (a block of
  // static-table entries and a literal that touches no table: :method GET, :scheme http, :path /,
  // :authority t) is a stream that can no longer be opened: no answer, no reset, no stream made.
  CHECK(c.request("GET", "/plaintext") == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE);
  const std::string block("\x82\x86\x84\x01\x01t", 6);
  const std::string down = srv_side.exchange(frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 5, block));
  CHECK(down.empty());
  CHECK(srv_side.e->stats().streams == 1);
  CHECK_FALSE(srv_side.closed);
  // The connection still answers: a PING gets its ACK.
  const std::string pong = srv_side.exchange(frame(NGHTTP2_PING, 0, 0, std::string(8, 'p')));
  REQUIRE(pong.size() >= 17);
  CHECK(static_cast<std::uint8_t>(pong[3]) == NGHTTP2_PING);
  CHECK(static_cast<std::uint8_t>(pong[4]) == NGHTTP2_FLAG_ACK);
}

TEST_CASE("h2 engine: a bad preface gets GOAWAY PROTOCOL_ERROR and the connection closes") {
  server_side srv_side;
  const std::string out = srv_side.exchange("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + frame(NGHTTP2_SETTINGS, 0, 0, {}));
  CHECK(srv_side.closed);
  std::uint32_t code = 0;
  REQUIRE(find_goaway(out, code));
  CHECK(code == NGHTTP2_PROTOCOL_ERROR);
}

TEST_CASE("h2 engine: rapid reset (CVE-2023-44487): streams opened and reset at once end the connection with GOAWAY") {
  srv::http_settings limits;
  limits.http2.max_resets_per_second = 50;
  server_side srv_side(limits);
  client_side c;
  bool cut = false;
  for (int i = 0; i < 1000 && !cut; ++i) {
    const auto id = c.request("GET", "/echo?delay=1s");
    std::string up = c.take_wire();  // the HEADERS go out first (nghttp2 drops a request reset before it is sent)
    nghttp2_submit_rst_stream(c.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    up += c.take_wire();
    const std::string down = srv_side.exchange(up);
    if (!down.empty()) c.receive(down);
    cut = srv_side.closed;
  }
  INFO("resets received " << srv_side.e->stats().resets_received << ", streams " << srv_side.e->stats().streams);
  CHECK(cut);
  CHECK(c.goaway);
  CHECK(srv_side.e->stats().resets_received <= 200);
  CHECK(srv_side.stats.echo_delayed_waiting.get() == 0);  // the reset streams' delays are gone with them
}

TEST_CASE("h2 engine: CONTINUATION flood (CVE-2024-27316): a header block in too many frames ends the connection") {
  server_side srv_side;
  std::string bytes = preface_and_settings;
  // HEADERS without END_HEADERS (":method: GET", indexed), then CONTINUATION frames, each a literal
  // header field, never ending.
  bytes += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, "\x82");
  const std::string field = std::string("\x00\x03" "x-a\x03" "abc", 9);
  for (int i = 0; i < 100; ++i) bytes += frame(NGHTTP2_CONTINUATION, 0, 1, field);
  const std::string out = srv_side.exchange(bytes);
  CHECK(srv_side.closed);
  std::uint32_t code = 0;
  REQUIRE(find_goaway(out, code));
  CHECK(srv_side.e->stats().goaway_sent);
}

TEST_CASE("h2 engine: SETTINGS and PING floods (ACKs never read) end the connection with ENHANCE_YOUR_CALM") {
  for (const bool ping : {false, true}) {
    CAPTURE(ping);
    server_side srv_side;
    std::string bytes = preface_and_settings;
    for (int i = 0; i < 5000; ++i)
      bytes += ping ? frame(NGHTTP2_PING, 0, 0, std::string(8, 'p')) : frame(NGHTTP2_SETTINGS, 0, 0, {});
    const std::string out = srv_side.exchange(bytes, bytes.size());  // one read: the ACKs pile up
    CHECK(srv_side.closed);
    std::uint32_t code = 0;
    REQUIRE(find_goaway(out, code));
    CHECK(code == NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

TEST_CASE("h2 engine: more streams than SETTINGS_MAX_CONCURRENT_STREAMS are refused, not queued") {
  srv::http_settings limits;
  limits.http2.max_concurrent_streams = 4;
  server_side srv_side(limits);
  std::string bytes = preface_and_settings;
  // Ten requests with END_HEADERS but no END_STREAM (they stay open), before the client could have seen
  // the server's SETTINGS: the ones past four are refused with RST_STREAM (REFUSED_STREAM).
  for (std::uint32_t id = 1; id <= 19; id += 2)
    bytes += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, "\x83\x86\x84\x41\x04test");  // POST http / test
  srv_side.exchange(bytes);
  CHECK(srv_side.e->open_streams() <= 4);
  CHECK(srv_side.e->stats().resets_sent >= 6);
}

TEST_CASE("h2 engine: an idle connection holds no pooled buffer, and a drain sends GOAWAY then closes") {
  const auto before = out_now();
  server_side srv_side;
  client_side c;
  const std::string body(5000, 'x');
  for (int i = 0; i < 10; ++i) c.request("POST", i % 2 ? "/echo?size=100000" : "/echo", {}, &body);
  converse(c, srv_side);
  for (auto& [id, r] : c.responses) CHECK(r.status == 200);
  srv_side.e->drop_input();  // what the connection does when the input is spent
  CHECK_FALSE(srv_side.e->has_output());
  CHECK(srv_side.e->open_streams() == 0);
  CHECK(out_now() == before);
  srv_side.e->drain();
  const std::string out = srv_side.exchange({});
  std::uint32_t code = 99;
  REQUIRE(find_goaway(out, code));
  CHECK(code == NGHTTP2_NO_ERROR);
}
