#include "http/h2_engine.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <new>

#include <malloc.h>
#include <nghttp2/nghttp2.h>

#include "http/checks.hpp"
#include "http/gzip.hpp"
#include "routes/table.hpp"

namespace bufpool::server::http {

// One stream's request and answer. Reused (the engine's free list): reset() gives every pooled buffer
// back and keeps the vectors' capacity.
struct h2_stream {
  h2_stream(bufpool::pool& pool, std::pmr::memory_resource* memory) : held(pool, memory), body(pool, memory) {}

  std::int32_t id = 0;
  llhttp_method_t method = HTTP_GET;
  bool has_method = false;
  bufpool::buffer target;    // :path, all of it (up to http.max_uri_bytes)
  bufpool::buffer captured;  // "name: value\n" per header, when the handler wants them
  bool routed = false;
  bool capturing = false;
  std::size_t header_bytes = 0;
  std::size_t header_count = 0;
  unsigned bad_status = 0;  // a limit broken while the headers came: answered with this at their end
  error_kind bad_kind = error_kind::bad_request;
  bool head = false;
  bool accepts_gzip = false;
  const handler* h = nullptr;
  route stats_route = route::not_found;
  std::string_view allow;
  clock::time_point start{};

  // What the handler decided at on_headers (exchange::set_answer, note, defer, hold_body, gzip_answer).
  unsigned answer_status = 200;
  bufpool::buffer answer_text;
  std::uint8_t note_kind = 0;
  std::uint64_t note_value = 0;
  clock::duration defer{};
  clock::time_point due{};
  bool delayed = false;
  bool hold = false;
  bool gzip = false;
  bool answered = false;  // the answer is submitted (or the stream was rejected): later DATA is dropped
  output_batch held;      // the request body
  std::size_t body_bytes = 0;

  // The answer: its status, its header lines ("name: value\r\n"; content-type first) and body pieces.
  unsigned status = 0;
  std::size_t content_length = 0;
  bufpool::buffer head_text;
  output_batch body;
  std::size_t read_piece = 0, read_offset = 0;  // where nghttp2's next DATA frame starts
  std::size_t send_piece = 0, send_offset = 0;  // where the next DATA frame sent takes its bytes

  void reset() noexcept {
    id = 0;
    method = HTTP_GET;
    has_method = routed = capturing = head = accepts_gzip = delayed = hold = gzip = answered = false;
    target.reset();
    captured.reset();
    header_bytes = header_count = 0;
    bad_status = 0;
    h = nullptr;
    allow = {};
    answer_status = 200;
    answer_text.reset();
    note_kind = 0;
    note_value = 0;
    defer = {};
    held.clear();
    body_bytes = 0;
    status = 0;
    content_length = 0;
    head_text.reset();
    body.clear();
    read_piece = read_offset = send_piece = send_offset = 0;
  }
};

// The stream's side of http::exchange.
class h2_exchange final : public exchange {
public:
  h2_exchange(h2_engine& e, h2_stream& s) noexcept : e_(e), s_(s) {}
  llhttp_method_t method() const noexcept override { return s_.method; }
  std::string_view target() const noexcept override { return view(s_.target); }
  bool target_complete() const noexcept override { return true; }
  unsigned version_minor() const noexcept override { return 1; }
  bool head() const noexcept override { return s_.head; }
  std::string_view allow() const noexcept override { return s_.allow; }
  std::string_view captured_headers() const noexcept override { return view(s_.captured); }
  bool accepts_gzip() const noexcept override { return s_.accepts_gzip; }
  // HTTP/2 echoes a body once it is complete, with its length: the stream holds it.
  void echo_body() noexcept override { s_.hold = true; }
  void set_answer(unsigned status, std::string_view extra_headers, bool) noexcept override {
    // `close` has no meaning for one stream of many; the connection stays.
    s_.answer_status = status;
    if (extra_headers.empty()) return;
    try {
      s_.answer_text = e_.env_.pool.get(extra_headers.size());
    } catch (const std::bad_alloc&) {
      s_.bad_status = 503;
      s_.bad_kind = error_kind::out_of_memory;
      return;
    }
    std::memcpy(s_.answer_text.data(), extra_headers.data(), extra_headers.size());
    s_.answer_text.resize(extra_headers.size());
  }
  unsigned answer_status() const noexcept override { return s_.answer_status; }
  std::string_view answer_headers() const noexcept override { return view(s_.answer_text); }
  void note(std::uint8_t kind, std::uint64_t value) noexcept override {
    s_.note_kind = kind;
    s_.note_value = value;
  }
  std::uint8_t note_kind() const noexcept override { return s_.note_kind; }
  std::uint64_t note_value() const noexcept override { return s_.note_value; }
  void defer(clock::duration d) noexcept override { s_.defer = d; }
  void hold_body() noexcept override { s_.hold = true; }
  void gzip_answer() noexcept override { s_.gzip = true; }
  bool gzip_asked() const noexcept override { return s_.gzip; }

  void write_head(unsigned status, std::string_view content_type, std::size_t content_length,
                  std::string_view extra_headers) override {
    s_.status = status;
    s_.content_length = content_length;
    constexpr std::string_view ct = "content-type: ";
    const std::size_t n = ct.size() + content_type.size() + 2 + extra_headers.size();
    s_.head_text = e_.env_.pool.get(n);
    char* p = reinterpret_cast<char*>(s_.head_text.data());
    std::memcpy(p, ct.data(), ct.size());
    std::memcpy(p + ct.size(), content_type.data(), content_type.size());
    std::memcpy(p + ct.size() + content_type.size(), "\r\n", 2);
    if (!extra_headers.empty()) std::memcpy(p + ct.size() + content_type.size() + 2, extra_headers.data(), extra_headers.size());
    s_.head_text.resize(n);
  }
  void body(std::string_view bytes) override {
    if (!s_.head) s_.body.append(bytes);
  }
  void body_pattern(std::size_t n) override {
    if (!s_.head) s_.body.append_pattern(n);
  }
  void write_whole(unsigned status, std::string_view content_type, std::string_view body,
                   std::string_view extra_headers) override {
    whole(status, content_type, &body, extra_headers);
  }
  void end_echo() override { whole(s_.answer_status, "application/octet-stream", nullptr, answer_headers()); }
  std::span<const bufpool::buffer> held_body() const noexcept override { return s_.held.pieces(); }
  worker_stats& stats() noexcept override { return e_.env_.stats; }
  bufpool::pool& pool() noexcept override { return e_.env_.pool; }

private:
  static std::string_view view(const bufpool::buffer& b) noexcept {
    return b ? std::string_view(reinterpret_cast<const char*>(b.data()), b.size()) : std::string_view{};
  }
  // A whole answer: `body`, or the held request body when null; compressed when asked and accepted.
  void whole(unsigned status, std::string_view content_type, const std::string_view* body,
             std::string_view extra_headers) {
    const bool bodiless = status < 200 || status == 204 || status == 304;
    std::size_t length = bodiless ? 0 : body != nullptr ? body->size() : s_.held.bytes();
    bufpool::buffer zipped;
    if (s_.gzip && s_.accepts_gzip && length > 0)
      zipped = compress_answer(e_.env_.pool, e_.env_.stats, body, s_.held.pieces());
    bufpool::buffer text;  // submit() lower-cases the names
    const std::string_view extra =
        s_.gzip ? coding_headers(e_.env_.pool, extra_headers, static_cast<bool>(zipped), text) : extra_headers;
    if (zipped) length = zipped.size();
    write_head(status, content_type, length, extra);
    if (s_.head || bodiless) {
      s_.held.clear();
      return;
    }
    if (zipped) s_.body.push(std::move(zipped));
    else if (body != nullptr) s_.body.append(*body);
    else s_.body.splice(s_.held);
    s_.held.clear();
  }

  h2_engine& e_;
  h2_stream& s_;
};

// ---- nghttp2's callbacks --------------------------------------------------------------------------

struct h2_callbacks {
  static h2_engine& engine(void* user) noexcept { return *static_cast<h2_engine*>(user); }
  static h2_stream* stream(nghttp2_session* session, std::int32_t id) noexcept {
    return static_cast<h2_stream*>(nghttp2_session_get_stream_user_data(session, id));
  }

  // Frames and HEADERS' pieces: copied into the batch; past max_batch_bytes, nghttp2 waits for it.
  static ssize_t send(nghttp2_session*, const std::uint8_t* data, std::size_t length, int, void* user) {
    h2_engine& e = engine(user);
    if (e.out_bytes_ >= h2_engine::max_batch_bytes) return NGHTTP2_ERR_WOULDBLOCK;
    try {
      e.out_.append({reinterpret_cast<const char*>(data), length});
    } catch (const std::bad_alloc&) {
      e.oom_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    e.out_bytes_ += length;
    return static_cast<ssize_t>(length);
  }

  // A DATA frame (NGHTTP2_DATA_FLAG_NO_COPY): its 9-byte header copied, its payload taken from the
  // answer's pieces: a piece that is the whole payload and at least min_push bytes is moved into the
  // batch as it is (no copy), smaller ones are copied.
  static constexpr std::size_t min_push = 1024;
  static int send_data(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* framehd, std::size_t length,
                       nghttp2_data_source* source, void* user) {
    h2_engine& e = engine(user);
    h2_stream& s = *static_cast<h2_stream*>(source->ptr);
    if (e.out_bytes_ >= h2_engine::max_batch_bytes) return NGHTTP2_ERR_WOULDBLOCK;
    try {
      e.out_.append({reinterpret_cast<const char*>(framehd), 9});
      std::size_t left = length;
      while (left > 0) {
        const bufpool::buffer& piece = s.body.pieces()[s.send_piece];
        const std::size_t size = piece.size();
        const std::size_t k = std::min(left, size - s.send_offset);
        if (s.send_offset == 0 && k == size && k >= min_push) {
          e.out_.push(s.body.take_piece(s.send_piece));
          e.counters_.data_bytes_moved += k;
        } else {
          e.out_.append({reinterpret_cast<const char*>(piece.data()) + s.send_offset, k});
          e.counters_.data_bytes_copied += k;
        }
        s.send_offset += k;
        left -= k;
        if (s.send_offset == size) {
          ++s.send_piece;
          s.send_offset = 0;
        }
      }
      (void)frame;  // no padding is asked for (no select_padding callback)
    } catch (const std::bad_alloc&) {
      e.oom_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    e.out_bytes_ += 9 + length;
    return 0;
  }

  // The data provider: how much of the answer's body the next DATA frame carries (one piece at most).
  static ssize_t read(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t length,
                                   std::uint32_t* flags, nghttp2_data_source* source, void*) {
    h2_stream& s = *static_cast<h2_stream*>(source->ptr);
    const auto pieces = s.body.pieces();
    while (s.read_piece < pieces.size() && s.read_offset == pieces[s.read_piece].size()) {
      ++s.read_piece;
      s.read_offset = 0;
    }
    if (s.read_piece == pieces.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    // The cursor passes a piece as soon as it is read to its end: send_data may move it out next.
    const std::size_t size = pieces[s.read_piece].size();
    const std::size_t k = std::min(length, size - s.read_offset);
    s.read_offset += k;
    if (s.read_offset == size) {
      ++s.read_piece;
      s.read_offset = 0;
    }
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (s.read_piece == pieces.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(k);
  }

  static int begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_engine& e = engine(user);
    h2_stream* s = nullptr;
    try {
      s = e.new_stream(frame->hd.stream_id);
    } catch (const std::bad_alloc&) {
      e.oom_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
  }

  static int header(nghttp2_session* session, const nghttp2_frame* frame, const std::uint8_t* name_bytes,
                    std::size_t namelen, const std::uint8_t* value_bytes, std::size_t valuelen, std::uint8_t,
                    void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    h2_stream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // trailers: ignored
    h2_engine& e = engine(user);
    const std::string_view name(reinterpret_cast<const char*>(name_bytes), namelen);
    const std::string_view value(reinterpret_cast<const char*>(value_bytes), valuelen);
    // HPACK's accounting (RFC 9113 6.5.2: name + value + 32 per field), against http.max_header_bytes
    // and http.max_headers: a 431 at the end of the block (the decoded size is what counts, so an HPACK
    // bomb that references one large table entry many times is caught here too).
    s->header_bytes += namelen + valuelen + 32;
    ++s->header_count;
    if (s->bad_status != 0) return 0;
    if (s->header_bytes > e.ctx_.limits.max_header_bytes || s->header_count > e.ctx_.limits.max_headers) {
      s->bad_status = 431;
      s->bad_kind = error_kind::headers_too_large;
      return 0;
    }
    try {
      if (!name.empty() && name[0] == ':') {
        if (name == ":method") {
          s->has_method = e.method_of(value, s->method);
          if (!s->has_method) {
            s->bad_status = 501;
            s->bad_kind = error_kind::not_implemented;
          }
        } else if (name == ":path") {
          if (valuelen > e.ctx_.limits.max_uri_bytes) {
            s->bad_status = 414;
            s->bad_kind = error_kind::uri_too_long;
            return 0;
          }
          s->target = e.env_.pool.get(valuelen);
          std::memcpy(s->target.data(), value.data(), valuelen);
          s->target.resize(valuelen);
        }
        return 0;
      }
      if (!s->routed) e.route(*s);  // the pseudo-headers come first (nghttp2 enforces it)
      if (name == "accept-encoding" && takes_gzip(value)) s->accepts_gzip = true;
      if (s->capturing) e.capture(*s, name, value);
    } catch (const std::bad_alloc&) {
      s->bad_status = 503;
      s->bad_kind = error_kind::out_of_memory;
    }
    return 0;
  }

  static int frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    h2_engine& e = engine(user);
    if (frame->hd.type < e.counters_.frames.size()) {
      ++e.counters_.frames[frame->hd.type];
      e.env_.stats.h2_frames[frame->hd.type].add();
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      ++e.counters_.resets_received;
      e.env_.stats.h2_resets_received.add();
    }
    if ((frame->hd.type == NGHTTP2_PING || frame->hd.type == NGHTTP2_SETTINGS) &&
        (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
      // PING and SETTINGS floods: nghttp2 only sees ACKs pile up when the batch is not sent in time
      // (max_outbound_ack); this counts the frames themselves, whatever the client reads.
      const clock::time_point now = clock::now();
      if (now - e.control_window_ >= std::chrono::seconds(1)) {
        e.control_window_ = now;
        e.control_frames_ = 0;
      }
      if (++e.control_frames_ > e.ctx_.limits.http2.max_control_frames_per_second && !e.failed_) {
        e.failed_ = true;
        e.env_.stats.count_error(error_kind::bad_request);
        nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM);
      }
      return 0;
    }
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    h2_stream* s = stream(session, frame->hd.stream_id);
    if (s == nullptr) return 0;
    try {
      if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) e.headers_done(*s);
      if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) e.request_done(*s);
    } catch (const std::bad_alloc&) {
      e.oom_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t id, const std::uint8_t* data,
                        std::size_t len, void* user) {
    h2_stream* s = stream(session, id);
    if (s == nullptr || s->answered) return 0;
    h2_engine& e = engine(user);
    s->body_bytes += len;
    try {
      if (s->body_bytes > e.ctx_.limits.max_body_bytes) {
        e.reject(*s, 413, error_kind::body_too_large);
        return 0;
      }
      if (s->hold) s->held.append({reinterpret_cast<const char*>(data), len});
    } catch (const std::bad_alloc&) {
      e.oom_ = true;
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int stream_close(nghttp2_session* session, std::int32_t id, std::uint32_t, void* user) {
    h2_stream* s = stream(session, id);
    if (s != nullptr) engine(user).free_stream(s);
    return 0;
  }

  static int frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    h2_engine& e = engine(user);
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      ++e.counters_.resets_sent;
      e.env_.stats.h2_resets_sent.add();
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      e.counters_.goaway_sent = true;
      e.counters_.goaway_error = frame->goaway.error_code;
      if (frame->goaway.error_code < e.env_.stats.h2_goaways.size()) e.env_.stats.h2_goaways[frame->goaway.error_code].add();
    }
    return 0;
  }

  static nghttp2_session_callbacks* make() {
    nghttp2_session_callbacks* cb = nullptr;
    if (nghttp2_session_callbacks_new(&cb) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_send_callback(cb, send);
    nghttp2_session_callbacks_set_send_data_callback(cb, send_data);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, frame_send);
    return cb;
  }
  // One set for every session (nghttp2 copies it into each).
  static const nghttp2_session_callbacks* shared() {
    static const struct holder {
      nghttp2_session_callbacks* cb = make();
      ~holder() { nghttp2_session_callbacks_del(cb); }
    } h;
    return h.cb;
  }
};

// ---- nghttp2's memory ------------------------------------------------------------------------------
// malloc and free, counted: each block's usable size is added to the session's and the worker's
// library_bytes while nghttp2 holds it (docs/benchmarks.md 14: where an idle connection's memory goes).
struct h2_memory {
  static void count(void* user, std::size_t add, std::size_t sub) noexcept {
    h2_engine& e = *static_cast<h2_engine*>(user);
    e.counters_.library_bytes += add;
    e.counters_.library_bytes -= sub;
    if (add != 0) e.env_.stats.h2_library_bytes.add(add);
    if (sub != 0) e.env_.stats.h2_library_bytes.sub(sub);
  }
  static void* alloc(std::size_t n, void* user) {
    void* p = std::malloc(n);
    if (p != nullptr) count(user, ::malloc_usable_size(p), 0);
    return p;
  }
  static void release(void* p, void* user) {
    if (p == nullptr) return;
    count(user, 0, ::malloc_usable_size(p));
    std::free(p);
  }
  static void* zeroed(std::size_t n, std::size_t size, void* user) {
    void* p = std::calloc(n, size);
    if (p != nullptr) count(user, ::malloc_usable_size(p), 0);
    return p;
  }
  static void* resize(void* p, std::size_t n, void* user) {
    const std::size_t old = p != nullptr ? ::malloc_usable_size(p) : 0;
    void* q = std::realloc(p, n);
    if (q != nullptr) count(user, ::malloc_usable_size(q), old);
    else if (n == 0) count(user, 0, old);  // realloc(p, 0) freed p
    return q;
  }
};

// ---- the engine -----------------------------------------------------------------------------------

h2_engine::h2_engine(const engine_context& ctx, engine_env& env, engine_events& events)
    : ctx_(ctx), env_(env), events_(events), out_(env.pool, env.memory) {
  const http2_settings& limits_ = ctx_.limits.http2;
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) throw std::bad_alloc();
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_option_set_stream_reset_rate_limit(opt, limits_.max_resets_per_second, limits_.max_resets_per_second);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_option_set_max_settings(opt, 32);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  // nghttp2's allocations: malloc, counted (the session keeps its own copy of this).
  nghttp2_mem mem = {this, &h2_memory::alloc, &h2_memory::release, &h2_memory::zeroed, &h2_memory::resize};
  const int rv = nghttp2_session_server_new3(&session_, h2_callbacks::shared(), this, opt, &mem);
  nghttp2_option_del(opt);
  if (rv != 0) throw std::bad_alloc();
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.initial_window_size},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, limits_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<std::uint32_t>(ctx_.limits.max_header_bytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  env_.stats.h2_connections.add();
  env_.stats.h2_active.add();
  set_deadline(clock::now() + ctx_.limits.idle_timeout);
}

h2_engine::~h2_engine() {
  nghttp2_session_del(session_);  // no callbacks: the stream states are the engine's own (streams_)
  env_.stats.h2_active.sub();
  for (std::size_t i = 0; i < delayed_.size(); ++i) env_.stats.echo_delayed_waiting.sub();
}

bool h2_engine::later(const h2_stream* a, const h2_stream* b) noexcept { return a->due > b->due; }

bool h2_engine::method_of(std::string_view name, llhttp_method_t& m) noexcept {
  // HTTP's methods as llhttp knows them (not RTSP's): the same set HTTP/1.1 requests may use.
  static constexpr llhttp_method_t known[] = {
#define BUFPOOL_H2_METHOD(NUM, NAME, STRING) HTTP_##NAME,
      HTTP_METHOD_MAP(BUFPOOL_H2_METHOD)
#undef BUFPOOL_H2_METHOD
  };
  for (const llhttp_method_t k : known) {
    if (name == llhttp_method_name(k)) {
      m = k;
      return true;
    }
  }
  return false;
}

h2_stream* h2_engine::new_stream(std::int32_t id) {
  h2_stream* s = nullptr;
  if (!free_.empty()) {
    s = free_.back();
    free_.pop_back();
  } else {
    free_.reserve(streams_.size() + 1);  // so that giving it back never allocates
    streams_.push_back(std::make_unique<h2_stream>(env_.pool, env_.memory));
    s = streams_.back().get();
  }
  s->id = id;
  s->start = clock::now();
  ++live_;
  ++counters_.streams;
  env_.stats.h2_streams.add();
  return s;
}

void h2_engine::free_stream(h2_stream* s) noexcept {
  if (s->delayed) {
    auto it = std::find(delayed_.begin(), delayed_.end(), s);
    if (it != delayed_.end()) {
      delayed_.erase(it);
      std::make_heap(delayed_.begin(), delayed_.end(), later);
      env_.stats.echo_delayed_waiting.sub();
    }
  }
  s->reset();
  --live_;
  free_.push_back(s);  // room was reserved when it was made
}

void h2_engine::route(h2_stream& s) {
  s.routed = true;
  s.head = s.method == HTTP_HEAD;
  const routes::match m = ctx_.routes.find(s.method, h2_exchange(*this, s).target());
  s.h = m.handler;
  s.stats_route = m.stats;
  s.allow = m.allow;
  s.capturing = s.h->wants_headers();
}

void h2_engine::capture(h2_stream& s, std::string_view name, std::string_view value) {
  const std::size_t n = name.size() + 2 + value.size() + 1;
  if (!s.captured) {
    s.captured = env_.pool.get(ctx_.limits.max_header_bytes);
    s.captured.resize(0);
  }
  if (s.captured.size() + n > s.captured.capacity()) return;  // cut at http.max_header_bytes
  char* p = reinterpret_cast<char*>(s.captured.data()) + s.captured.size();
  std::memcpy(p, name.data(), name.size());
  std::memcpy(p + name.size(), ": ", 2);
  std::memcpy(p + name.size() + 2, value.data(), value.size());
  p[n - 1] = '\n';
  s.captured.resize(s.captured.size() + n);
}

// The header block is complete: the route's on_headers, unless a limit was broken.
void h2_engine::headers_done(h2_stream& s) {
  if (!s.routed) route(s);
  if (s.bad_status != 0) {
    reject(s, s.bad_status, s.bad_kind);
    return;
  }
  h2_exchange x(*this, s);
  s.h->on_headers(x);
  if (s.bad_status != 0) reject(s, s.bad_status, s.bad_kind);
}

void h2_engine::request_done(h2_stream& s) {
  if (s.answered) return;
  if (s.defer.count() > 0) {  // answered when due; the other streams go on meanwhile
    s.delayed = true;
    s.due = clock::now() + s.defer;
    delayed_.push_back(&s);
    std::push_heap(delayed_.begin(), delayed_.end(), later);
    env_.stats.echo_delayed.add();
    env_.stats.echo_delayed_waiting.add();
    return;
  }
  answer(s);
}

void h2_engine::answer(h2_stream& s) {
  env_.stats.requests[static_cast<std::size_t>(s.stats_route)].add();
  h2_exchange x(*this, s);
  s.h->respond(x);
  submit(s);
  const auto now = clock::now();
  env_.stats.latency[static_cast<std::size_t>(s.stats_route)].observe(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.start).count());
  if (ctx_.log_answers)
    events_.answered({llhttp_method_name(s.method), x.target(), 2, 0, s.status, s.content_length, now - s.start});
}

// A request that broke a limit (or whose headers asked for what cannot be served): its status as a
// short text answer on this stream; the connection goes on.
void h2_engine::reject(h2_stream& s, unsigned status, error_kind kind) {
  env_.stats.count_error(kind);
  events_.failed(kind, status);
  s.body.clear();
  s.held.clear();
  s.hold = false;
  h2_exchange x(*this, s);
  const std::string_view reason = status == 413   ? "body too large\n"
                                  : status == 414 ? "uri too long\n"
                                  : status == 431 ? "header fields too large\n"
                                  : status == 501 ? "method not implemented\n"
                                  : status == 503 ? "out of memory\n"
                                                  : "bad request\n";
  x.write_head(status, "text/plain", reason.size(), {});
  x.body(reason);
  submit(s);
}

// Connection-specific header fields have no place in HTTP/2 (RFC 9113 8.2.2): dropped from the answer.
static bool connection_specific(std::string_view name) noexcept {
  return iequals(name, "connection") || iequals(name, "keep-alive") || iequals(name, "proxy-connection") ||
         iequals(name, "transfer-encoding") || iequals(name, "upgrade");
}

void h2_engine::submit(h2_stream& s) {
  s.answered = true;
  constexpr std::size_t max_fields = 2 + 64;
  nghttp2_nv nv[max_fields];
  std::size_t n = 0;
  char status_text[4];
  const unsigned status = s.status == 0 ? 500 : s.status;
  std::to_chars(status_text, status_text + 3, status);
  auto add = [&](std::string_view name, std::string_view value) {
    if (n == max_fields) return;
    nv[n++] = nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                         reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                         NGHTTP2_NV_FLAG_NONE};
  };
  add(":status", {status_text, 3});
  const bool bodiless = status < 200 || status == 204 || status == 304;
  char length_text[24];
  if (!bodiless) {
    const auto r = std::to_chars(length_text, length_text + sizeof length_text, s.content_length);
    add("content-length", {length_text, static_cast<std::size_t>(r.ptr - length_text)});
  }
  // The head's lines, "Name: value\r\n": names lower-cased in place (the buffer is the stream's).
  if (s.head_text) {
    char* p = reinterpret_cast<char*>(s.head_text.data());
    char* const end = p + s.head_text.size();
    while (p < end) {
      char* eol = static_cast<char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
      if (eol == nullptr) eol = end;
      char* colon = static_cast<char*>(std::memchr(p, ':', static_cast<std::size_t>(eol - p)));
      if (colon != nullptr) {
        for (char* c = p; c < colon; ++c) *c = lower(*c);
        const std::string_view name(p, static_cast<std::size_t>(colon - p));
        std::string_view value(colon + 1, static_cast<std::size_t>(eol - colon - 1));
        value = trim(value);
        if (!value.empty() && value.back() == '\r') value.remove_suffix(1);
        if (!connection_specific(name) && name != "content-length") add(name, value);
      }
      p = eol + 1;
    }
  }
  env_.stats.count_status(status);
  nghttp2_data_provider data{};
  data.source.ptr = &s;
  data.read_callback = h2_callbacks::read;
  const bool with_body = !bodiless && !s.head && s.body.bytes() > 0;
  const int rv = nghttp2_submit_response(session_, s.id, nv, n, with_body ? &data : nullptr);
  if (rv != 0) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
  s.head_text.reset();
  s.answer_text.reset();
  s.target.reset();
  s.captured.reset();
}

h2_engine::result h2_engine::parse() {
  if (has_input()) {
    const auto* data = in_.data() + in_begin_;
    const std::size_t n = in_end_ - in_begin_;
    in_begin_ = in_end_;
    const auto rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), n);
    if (rv < 0 && !failed_) {
      // A fatal protocol error (bad preface, a flood nghttp2 caught, a compression error): nghttp2 has
      // queued a GOAWAY where the protocol asks for one; make sure one goes, then close. Counted once.
      failed_ = true;
      env_.stats.count_error(oom_ ? error_kind::out_of_memory : error_kind::bad_request);
      const std::uint32_t code = rv == NGHTTP2_ERR_FLOODED           ? NGHTTP2_ENHANCE_YOUR_CALM
                                 : rv == NGHTTP2_ERR_CALLBACK_FAILURE ? NGHTTP2_INTERNAL_ERROR
                                                                      : NGHTTP2_PROTOCOL_ERROR;
      if (!counters_.goaway_sent) nghttp2_session_terminate_session(session_, code);
    }
    touch();
  }
  return flush();
}

h2_engine::result h2_engine::flush() {
  if (nghttp2_session_send(session_) != 0) closing_ = true;
  const bool done = nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
  if (done) closing_ = true;
  if (!out_.empty()) return result::send;
  return closing_ ? result::close : result::need_input;
}

clock::time_point h2_engine::wake_at() const noexcept {
  return delayed_.empty() ? clock::time_point::max() : delayed_.front()->due;
}

h2_engine::result h2_engine::wake() {
  const auto now = clock::now();
  const bool all = env_.draining.load(std::memory_order_relaxed);
  while (!delayed_.empty() && (all || delayed_.front()->due <= now)) {
    std::pop_heap(delayed_.begin(), delayed_.end(), later);
    h2_stream* s = delayed_.back();
    delayed_.pop_back();
    s->delayed = false;
    env_.stats.echo_delayed_waiting.sub();
    answer(*s);
  }
  touch();
  return flush();
}

h2_engine::result h2_engine::timeout() {
  env_.stats.count_error(live_ == 0 ? error_kind::idle_timeout : error_kind::body_timeout);
  if (!counters_.goaway_sent) nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
  closing_ = true;
  return flush();
}

void h2_engine::drain() {
  if (!counters_.goaway_sent)
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                          NGHTTP2_NO_ERROR, nullptr, 0);
}

// Idle (no stream open): the idle timeout; otherwise streams in progress get the body timeout from
// the last frame that came.
void h2_engine::touch() noexcept {
  set_deadline(clock::now() + (live_ == 0 ? ctx_.limits.idle_timeout : ctx_.limits.body_timeout));
}

}  // namespace bufpool::server::http
