// The load engine: threads, connections (HTTP and echo), schedules, latency recording, per-second
// series. See engine.hpp for the model.
#include "engine.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include <asio/connect.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>
#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <bufpool/pool.hpp>

namespace bufpool::loadgen {

namespace {

using clock = std::chrono::steady_clock;
using asio::ip::tcp;
// TCP or a Unix socket (--unix-socket): one socket type for both.
using stream_socket = asio::generic::stream_protocol::socket;
using stream_endpoint = asio::generic::stream_protocol::endpoint;

std::int64_t micros(clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

// Collects each thread's per-second figures and hands a second on once every thread reported it.
class second_collector {
public:
  second_collector(std::size_t threads, progress_fn progress) : threads_(threads), progress_(std::move(progress)) {}
  void report(const second_stats& part) {
    std::lock_guard lk(mu_);
    auto& p = pending_[part.second];
    p.stats.second = part.second;
    p.stats.requests += part.requests;
    p.stats.errors += part.errors;
    p.stats.sent += part.sent;
    p.stats.connections += part.connections;
    for (std::size_t i = 0; i < part.failures.size(); ++i) p.stats.failures[i] += part.failures[i];
    p.stats.latency.merge(part.latency);
    if (++p.reported == threads_) {
      if (progress_) progress_(p.stats);
      done_.push_back(std::move(p.stats));
      pending_.erase(part.second);
    }
  }
  std::vector<second_stats> take() {
    std::lock_guard lk(mu_);
    for (auto& [s, p] : pending_) done_.push_back(std::move(p.stats));  // partial seconds at the very end
    pending_.clear();
    std::sort(done_.begin(), done_.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    return std::move(done_);
  }

private:
  struct partial {
    second_stats stats;
    std::size_t reported = 0;
  };
  std::mutex mu_;
  std::size_t threads_;
  progress_fn progress_;
  std::map<std::uint64_t, partial> pending_;
  std::vector<second_stats> done_;
};

struct plan {
  const loadgen_settings& s;
  std::vector<stream_endpoint> endpoints;  // one per target, same order as s.targets (or the Unix socket)
  clock::time_point start;          // first sends
  clock::time_point measure_start;  // end of warm-up
  clock::time_point end;            // stop (duration mode)
  bufpool::pool& pool;
  second_collector& seconds;
  const std::atomic<int>* interrupt;  // a signal asked the run to stop (may be null)
  std::atomic<bool>* lost;            // some thread found the target gone: every thread stops
  asio::ssl::context* tls;            // https:// and tls:// targets (null: plain)
};

using tls_stream = asio::ssl::stream<stream_socket>;

// An open-loop timer wakes early and spins to the intended time: an Asio timer alone fires tens of
// microseconds late on this kind of machine, which the corrected latency would count. How early is
// learned per thread: the timers' recent worst lateness (a maximum that decays by 1/64 per wake) plus
// a margin, so that the spin (CPU the target may need, on a shared machine) stays as short as the
// machine allows.
constexpr auto spin_margin = std::chrono::microseconds(5);
constexpr auto spin_max = std::chrono::microseconds(100);

class connection;

// One thread: an io_context, its connections and its own figures (touched by this thread only).
class thread_state {
public:
  explicit thread_state(const plan& p) : p_(p), tick_(io_) {}
  asio::io_context io_{1};
  run_result result;
  histogram second_hist{60'000'000};
  std::uint64_t second_requests = 0, second_errors = 0, second_index = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(failure::count)> second_failures{};
  /// This thread's figures for the second being closed, handed to the collector, and reset.
  void report_second();
  std::vector<std::shared_ptr<connection>> conns;
  bool stopping = false;
  bool draining = false;   // interrupted: no new requests, answers in flight still count
  clock::time_point drain_deadline{};
  bool time_over = false;  // set by the tick once the duration has passed: no clock read per request
  bool open_loop = false;
  clock::duration spin_ahead = std::chrono::microseconds(60);  // see spin_margin
  clock::duration timer_late = std::chrono::microseconds(55);  // a slowly decaying maximum of the lateness
  void timer_fired(clock::duration late) {
    // The tail matters (a late send is a p99 error): follow the recent maximum, not the mean.
    timer_late = std::max(std::min<clock::duration>(late, spin_max), timer_late - timer_late / 64);
    spin_ahead = std::clamp<clock::duration>(timer_late + spin_margin, spin_margin, spin_max);
  }
  // The first transport failure since the last answer (a response of any status, or echo bytes);
  // the epoch while the target answers.
  clock::time_point failing_since{};
  std::array<std::uint64_t, 600> status_counts{};  // responses by exact status; a map only in the result
  // Requests sent in each second of the measured window, by their actual send time (second 0 = the first).
  std::vector<std::uint64_t> sent_by_second;
  void count_sent(clock::time_point now) {
    if (now < p_.measure_start) return;
    const auto i = static_cast<std::size_t>(std::chrono::duration_cast<std::chrono::seconds>(now - p_.measure_start).count());
    if (i >= sent_by_second.size()) sent_by_second.resize(i + 1);
    ++sent_by_second[i];
  }

  const plan& p() const { return p_; }
  void run();
  /// A transport failure (a status failure is counted in record()).
  void fail(failure f, std::string_view what = {}) {
    result.failures[static_cast<std::size_t>(f)]++;
    const auto now = clock::now();
    if (now >= p_.measure_start) {
      ++second_errors;
      ++second_failures[static_cast<std::size_t>(f)];
    }
    if (failing_since == clock::time_point{}) failing_since = now;
    if (result.first_error.empty()) {
      result.first_error = failure_names[static_cast<std::size_t>(f)];
      if (!what.empty()) (result.first_error += ": ") += what;
    }
  }
  /// Whether a request intended at `t` belongs to the measured window (not warm-up, not after the end).
  bool in_window(clock::time_point t) const {
    return t >= p_.measure_start && (p_.s.requests > 0 || t < p_.end);
  }
  // One completed request: counted (with its status class, 0 for echo) only inside the measured window.
  /// The target answered: whatever failed before no longer counts toward a lost target.
  void answered() noexcept { failing_since = {}; }
  void mark_lost() noexcept {
    result.target_lost = true;
    result.target_lost_at_s = std::chrono::duration<double>(failing_since - p_.measure_start).count();
  }
  void record(clock::time_point intended, clock::time_point sent, clock::time_point now, int status = 0) {
    answered();
    if (!in_window(intended)) return;
    if (status >= 100 && status < 600) {
      result.status[static_cast<std::size_t>(status / 100 - 1)]++;
      ++status_counts[static_cast<std::size_t>(status)];
      if (!p_.s.ok_status.contains(status)) {  // answered, so inside the window: no clock read needed
        result.failures[static_cast<std::size_t>(failure::status)]++;
        ++second_errors;
        ++second_failures[static_cast<std::size_t>(failure::status)];
      }
    }
    result.corrected.record(micros(now - intended));
    if (open_loop) result.uncorrected.record(micros(now - sent));  // closed loop: the same, copied at the end
    second_hist.record(micros(now - intended));
    ++result.requests;
    ++second_requests;
  }
  void stop_all();
  /// Whether the target has failed every attempt for `limit` (no response since the first failure).
  bool failing_for(clock::time_point now, clock::duration limit) const {
    return failing_since != clock::time_point{} && now - failing_since >= limit;
  }

private:
  void on_tick();
  const plan& p_;
  asio::steady_timer tick_;
};

// One connection: HTTP (llhttp in response mode) or echo (byte stream checked against a pattern).
class connection : public std::enable_shared_from_this<connection> {
public:
  connection(thread_state& t, std::size_t id, std::size_t target, std::uint64_t quota, double interval_s, double phase_s)
      : t_(t), id_(id), target_(target), quota_(quota), socket_(t.io_), timer_(t.io_) {
    const auto& s = t_.p().s;
    if (interval_s > 0) {
      open_ = true;
      interval_ = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(interval_s));
      next_intended_ = t_.p().start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(phase_s));
    }
    if (!s.plan.empty()) {  // --stages / --steps: this connection takes requests id, id + C, id + 2C, ...
      // (--shard I/N: of the requests k = I, I + N, I + 2N, ... that fall to this instance)
      open_ = true;
      plan_k_ = static_cast<double>(s.shard_index + s.shard_count * id);
      plan_stride_ = static_cast<double>(s.shard_count * s.connections);
      plan_next();
    }
    if (!s.url.echo) build_requests();
    head_requests_ = method() == "HEAD";
    malformed_every_ = s.malformed > 0 ? std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::llround(1.0 / s.malformed))) : 0;
    llhttp_settings_init(&settings_);
    settings_.on_headers_complete = [](llhttp_t* p) {
      auto* c = static_cast<connection*>(p->data);
      return (!c->inflight_.empty() && c->inflight_.front().head) ? 1 : 0;
    };
    settings_.on_message_complete = [](llhttp_t* p) {
      auto* c = static_cast<connection*>(p->data);
      c->on_response(llhttp_get_status_code(p), llhttp_should_keep_alive(p) != 0);
      return c->closing_ ? HPE_PAUSED : 0;
    };
  }

  void start() { connect(); }

  // Stops for good; counts what was in flight.
  void stop() {
    stopped_ = true;
    t_.result.in_flight_at_stop += count_sent_in_window();
    inflight_.clear();
    finished_ = 0;
    close_transport();
    timer_.cancel();
  }
  ~connection() {
    if (session_ != nullptr) SSL_SESSION_free(session_);
    if (h2_ != nullptr) nghttp2_session_del(h2_);
  }

  /// Connected (HTTP/2: the server's SETTINGS came) and not stopped.
  bool open() const { return connected_ && !stopped_ && (h2_ == nullptr || h2_settled_); }

  /// Nothing written and unanswered (or stopped).
  bool idle() const { return stopped_ || !connected_ || outstanding() == to_send_; }

  // Called by the thread's tick: gives up on a response that is overdue.
  void check_timeout(clock::time_point now) {
    if (stopped_) return;
    if (!connected_ && now > connect_deadline_) {  // a connect or handshake that hangs (no answer at all)
      close_transport();  // on_connect / on_handshake see operation_aborted and count the failure
      connect_deadline_ = clock::time_point::max();
      return;
    }
    if (outstanding() == 0 || !connected_) return;
    if (now - inflight_.front().sent > t_.p().s.timeout) {  // the front is the oldest unanswered
      t_.fail(failure::timeout, "no response within the timeout");
      reconnect();
    }
  }

private:
  struct request_record {
    clock::time_point intended;
    clock::time_point sent;
    bool head = false;
    std::uint64_t echo_end = 0;  // stream offset where this echo request's bytes end
    // HTTP/2: answers come in any order. A record keeps its stream id (ascending in submission
    // order) and is marked done when its stream ends; the front is popped while it is done.
    std::int32_t stream = 0;
    bool done = false;
    int status = 0;             // the :status received
    std::size_t body_sent = 0;  // request body bytes handed to nghttp2
  };
  /// Requests queued or written and not answered (HTTP/2 keeps finished ones until they reach the front).
  std::size_t outstanding() const { return inflight_.size() - finished_; }

  bool done_sending() const {
    if (stopped_ || t_.stopping || t_.draining || plan_done_) return true;
    if (quota_ > 0) return sent_ >= quota_;
    return t_.time_over || read_time_ >= t_.p().end;  // read_time_: no clock read of our own
  }

  void connect() {
    if (stopped_) return;
    t_.result.connections_requested++;
    socket_ = stream_socket(t_.io_);
    connected_ = false;
    connect_deadline_ = clock::now() + t_.p().s.timeout;
    socket_.async_connect(t_.p().endpoints[target_], [self = shared_from_this()](std::error_code ec) { self->on_connect(ec); });
  }

  // The connect or the TLS handshake failed: retried, or given up on (the run reports it).
  void connect_failed(const std::string& why) {
    t_.result.connections_failed++;
    if (t_.result.first_connect_error.empty()) t_.result.first_connect_error = why;
    t_.fail(failure::connect, why);
    ++connect_failures_;
    if (!ever_connected_ && connect_failures_ >= 3) {  // never reached the target: the run reports it
      stopped_ = true;
      return;
    }
    // Once connected, the target may come back: retry 100 ms, 200 ms, ... at most 1 s apart; the
    // thread's tick decides when the target counts as gone (every attempt failing for --timeout).
    timer_.expires_after(std::chrono::milliseconds(std::min(1000, 100 << std::min(connect_failures_ - 1, 4))));
    timer_.async_wait([self = shared_from_this()](std::error_code e) {
      if (!e) self->connect();
    });
  }

  void on_connect(std::error_code ec) {
    if (stopped_) return;
    if (ec) {
      connect_failed(ec.message());
      return;
    }
    std::error_code ignored;
    if (t_.p().s.unix_socket.empty()) socket_.set_option(tcp::no_delay(true), ignored);
    if (t_.p().s.targets[target_].tls) {
      start_tls();
      return;
    }
    established();
  }

  // The TLS handshake on the connected socket (which the TLS stream takes over).
  void start_tls() {
    const auto& s = t_.p().s;
    const std::string& name = s.sni.empty() ? s.targets[target_].host : s.sni;
    tls_ = std::make_shared<tls_stream>(std::move(socket_), *t_.p().tls);
    SSL* ssl = tls_->native_handle();
    asio::error_code ip_ec;
    (void)asio::ip::make_address(name, ip_ec);
    const bool ip = !ip_ec;
    if (!ip) SSL_set_tlsext_host_name(ssl, name.c_str());  // SNI is a host name, never an address
    if (!s.insecure) {
      if (ip) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
      else SSL_set1_host(ssl, name.c_str());
    }
    if (session_ != nullptr) SSL_set_session(ssl, session_);
    handshake_start_ = clock::now();
    tls_->async_handshake(asio::ssl::stream_base::client,
                          [self = shared_from_this(), keep = tls_, gen = generation_](std::error_code ec) {
                            if (self->stopped_ || gen != self->generation_) return;
                            self->on_handshake(ec, *keep);
                          });
  }

  // `st` is the stream the handshake ran on (tls_, unless a timeout closed it meanwhile).
  void on_handshake(std::error_code ec, tls_stream& st) {
    SSL* ssl = st.native_handle();
    if (!ec && tls_.get() != &st) ec = asio::error::operation_aborted;
    if (ec) {
      const long v = SSL_get_verify_result(ssl);
      const auto& s = t_.p().s;
      std::string why = "TLS handshake: " + ec.message();
      if (v != X509_V_OK)
        why = "TLS: the certificate of " + (s.sni.empty() ? s.targets[target_].host : s.sni) +
              " was not verified: " + X509_verify_cert_error_string(v) +
              (s.cacert.empty() ? " (against the system's CAs; --cacert FILE or --insecure)" : " (against " + s.cacert + ")");
      ERR_clear_error();
      close_transport();
      connect_failed(why);
      return;
    }
    if (t_.p().s.http2) {  // --http2 over TLS: the server must have chosen h2
      const unsigned char* a = nullptr;
      unsigned n = 0;
      SSL_get0_alpn_selected(ssl, &a, &n);
      const std::string chosen(reinterpret_cast<const char*>(a), n);
      if (chosen != "h2") {
        close_transport();
        connect_failed("TLS: the server did not select h2 by ALPN (" +
                       (chosen.empty() ? std::string("it selected none") : "it selected " + chosen) +
                       "): it does not offer HTTP/2 over TLS");
        return;
      }
    }
    auto& r = t_.result;
    r.handshake.record(micros(clock::now() - handshake_start_));
    ++r.handshakes;
    if (SSL_session_reused(ssl) == 1) ++r.resumed;
    if (r.tls_version.empty()) {
      r.tls_version = SSL_get_version(ssl);
      r.tls_cipher = SSL_get_cipher_name(ssl);
      const unsigned char* a = nullptr;
      unsigned n = 0;
      SSL_get0_alpn_selected(ssl, &a, &n);
      r.tls_alpn.assign(reinterpret_cast<const char*>(a), n);
    }
    established();
  }

  void established() {
    connected_ = true;
    if (!t_.p().s.http2) counted_established();  // HTTP/2: once the server's SETTINGS arrive
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
    closing_ = false;
    echo_sent_ = echo_received_ = 0;
    if (t_.p().s.http2 && !h2_start()) return;
    read();
    schedule();
  }

  void counted_established() {
    connect_failures_ = 0;
    ever_connected_ = true;
    t_.result.connections_established++;
  }

  // Closes the socket, or the TLS stream's: pending operations end with operation_aborted. A TLS
  // connection that ended without a TLS error keeps its session for the next connect (--tls-resume);
  // it is marked shut down, or OpenSSL would mark the session not resumable.
  void close_transport() {
    std::error_code ec;
    socket_.close(ec);
    if (h2_ != nullptr) {  // never from inside one of its callbacks (they only mark records)
      nghttp2_session_del(h2_);
      h2_ = nullptr;
    }
    if (tls_) {
      SSL* ssl = tls_->native_handle();
      if (t_.p().s.tls_resume && SSL_is_init_finished(ssl)) {
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        if (SSL_SESSION* now = SSL_get1_session(ssl)) {
          if (session_ != nullptr) SSL_SESSION_free(session_);
          session_ = now;
        }
      }
      tls_->next_layer().close(ec);
      tls_.reset();  // the pending operations keep it until they end
    }
  }

  // Queues what is due and sends it.
  void schedule() {
    if (!connected_ || stopped_) return;
    const auto limit = t_.p().s.http2 ? t_.p().s.streams : t_.p().s.pipeline;
    const bool open = !h2_goaway_;  // after a GOAWAY no new stream on this connection
    if (!open_) {  // closed loop: keep `pipeline` in flight; pump() stamps the times
      while (open && outstanding() < limit && !done_sending()) enqueue(clock::time_point{});
    } else {
      const auto now = clock::now();
      while (open && next_intended_ <= now && outstanding() < limit && !done_sending()) {
        enqueue(next_intended_);
        if (plan_stride_ > 0) plan_next();
        else next_intended_ += interval_;
      }
      if (open && !done_sending() && outstanding() < limit && !timer_armed_) {
        timer_armed_ = true;
        timer_.expires_at(next_intended_ - t_.spin_ahead);
        timer_.async_wait([self = shared_from_this()](std::error_code e) {
          self->timer_armed_ = false;
          if (e) return;
          const auto fired = clock::now();
          self->t_.timer_fired(fired - self->timer_.expiry());
          const auto due = self->next_intended_;
          while (clock::now() < due) {  // at most spin_ahead, less when the timer fired late
          }
          self->schedule();
        });
      }
    }
    pump();
  }

  void enqueue(clock::time_point intended) {
    request_record r;
    r.intended = intended;
    ++sent_;
    ++to_send_;
    const bool bad = malformed_every_ > 0 && sent_ % malformed_every_ == 0;
    r.head = !bad && head_requests_;
    pending_bad_.push_back(bad);
    if (t_.p().s.url.echo) {
      echo_sent_ += t_.p().s.echo_size;
      r.echo_end = echo_sent_;
    }
    inflight_.push_back(r);
  }

  // A request goes out now: its send time (and, closed loop, its intended time), counted if in the window.
  void stamp(request_record& r, clock::time_point now) {
    r.sent = now;
    if (!open_) r.intended = now;  // closed loop: intended when sent
    if (t_.in_window(r.intended)) {
      ++t_.result.sent;
      t_.count_sent(now);
      if (open_) t_.result.send_lag.record(micros(now - r.intended));
    }
  }

  // One write at a time; everything queued meanwhile goes in the next gather write.
  void pump() {
    if (h2_ != nullptr) {
      pump_h2();
      return;
    }
    if (writing_ || to_send_ == 0 || !connected_) return;
    iov_.clear();
    out_.clear();
    const auto now = clock::now();
    const std::size_t first = inflight_.size() - to_send_;
    for (std::size_t i = first; i < inflight_.size(); ++i) {
      stamp(inflight_[i], now);
      if (t_.p().s.url.echo) {
        const std::size_t n = t_.p().s.echo_size;
        bufpool::buffer b = t_.p().pool.get(n);
        const std::uint64_t begin = inflight_[i].echo_end - n;
        for (std::size_t k = 0; k < n; ++k) b.data()[k] = static_cast<std::byte>(pattern(begin + k));
        out_.push_back(std::move(b));
      } else {
        const bufpool::buffer& b = pending_bad_[i - first] ? bad_request_ : request_;
        iov_.emplace_back(b.data(), b.size());
      }
    }
    pending_bad_.clear();
    for (const auto& b : out_) iov_.emplace_back(b.data(), b.size());
    to_send_ = 0;
    write_out();
  }

  // Writes iov_ (which points into request buffers and out_), then pumps again.
  void write_out() {
    writing_ = true;
    auto done = [self = shared_from_this(), keep = tls_, gen = generation_](std::error_code ec, std::size_t n) {
      // A write of a connection since dropped: the new connection's write state is not its own.
      if (gen != self->generation_) return;
      self->writing_ = false;
      self->out_.clear();
      if (self->stopped_) return;
      self->t_.result.bytes_out += n;
      if (ec) {
        if (self->connected_) self->t_.fail(failure::write, ec.message());
        self->reconnect();
        return;
      }
      self->pump();
    };
    if (!tls_) {
      asio::async_write(socket_, std::span<const asio::const_buffer>(iov_), std::move(done));
      return;
    }
    // TLS writes one record per buffer: a batch (pipelined requests) goes out as one buffer.
    if (iov_.size() > 1) {
      std::size_t total = 0;
      for (const auto& b : iov_) total += b.size();
      bufpool::buffer one = t_.p().pool.get(total);
      std::size_t at = 0;
      for (const auto& b : iov_) {
        std::memcpy(one.data() + at, b.data(), b.size());
        at += b.size();
      }
      iov_.assign(1, asio::const_buffer(one.data(), total));
      out_.push_back(std::move(one));
    }
    asio::async_write(*tls_, std::span<const asio::const_buffer>(iov_), std::move(done));
  }

  void read() {
    if (!in_) in_ = t_.p().pool.get(16384);
    auto done = [self = shared_from_this(), keep = tls_, gen = generation_](std::error_code ec, std::size_t n) {
      if (self->stopped_ || gen != self->generation_) return;
      self->on_read(ec, n);
    };
    if (tls_) tls_->async_read_some(asio::buffer(in_.data(), in_.capacity()), std::move(done));
    else socket_.async_read_some(asio::buffer(in_.data(), in_.capacity()), std::move(done));
  }

  void on_read(std::error_code ec, std::size_t n) {
    // A response without a length ends where the connection does (HTTP/1.0, openssl s_server -www).
    // Over TLS a peer that closes without close_notify ends the same way (stream_truncated).
    if ((ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) && !t_.p().s.url.echo && h2_ == nullptr &&
        !inflight_.empty()) {
      read_time_ = clock::now();
      const std::size_t before = inflight_.size();
      llhttp_finish(&parser_);
      if (inflight_.size() < before) closing_ = true;  // answered: the close is how it ended
      read_time_ = {};
    }
    if (ec && h2_ != nullptr && !h2_settled_) {
      h2_refused(ec == asio::error::eof ? "HTTP/2: the server closed the connection before its SETTINGS (does it speak " +
                                              std::string(t_.p().s.targets[target_].tls ? "h2" : "h2c with prior knowledge") + "?)"
                                        : "HTTP/2: " + ec.message() + " before the server's SETTINGS");
      return;
    }
    if (ec) {
      if (!closing_ || outstanding() != 0)
        t_.fail(ec == asio::error::eof ? failure::closed : failure::read,
                ec == asio::error::eof ? "the server closed the connection" : ec.message());
      reconnect();
      return;
    }
    t_.result.bytes_in += n;
    read_time_ = clock::now();  // the arrival time of every response in this read
    const char* data = reinterpret_cast<const char*>(in_.data());
    if (t_.p().s.url.echo) {
      const auto gen = generation_;
      on_echo_bytes(data, n);
      if (gen != generation_) return;  // it reconnected
    } else if (h2_ != nullptr) {
      if (!h2_settled_ && n >= 5 && std::memcmp(data, "HTTP/", 5) == 0) {
        const std::string_view first(data, std::min<std::size_t>(std::string_view(data, n).find('\r'), std::min<std::size_t>(n, 64)));
        h2_refused("HTTP/2: the server answered the preface with HTTP/1 (\"" + std::string(first) +
                   "\"): it does not speak h2c with prior knowledge");
        return;
      }
      const auto rv = nghttp2_session_mem_recv(h2_, reinterpret_cast<const std::uint8_t*>(data), n);
      if (rv < 0 && !h2_settled_) {
        h2_refused(std::string("HTTP/2: the server's first bytes are not HTTP/2 (") + nghttp2_strerror(static_cast<int>(rv)) + ")");
        return;
      }
      if (rv < 0) {
        t_.fail(failure::parse, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(rv)));
        reconnect();
        return;
      }
      if (h2_goaway_ && outstanding() == 0) {  // every stream below the GOAWAY's last id answered
        reconnect();
        return;
      }
    } else {
      const auto err = llhttp_execute(&parser_, data, n);
      if (err != HPE_OK && err != HPE_PAUSED) {
        t_.fail(failure::parse, llhttp_errno_name(err));
        reconnect();
        return;
      }
      if (closing_) {  // the server closes after this response (e.g. our malformed request)
        reconnect();
        return;
      }
    }
    if (stopped_) return;
    schedule();
    read_time_ = {};
    if (done_sending() && outstanding() == 0 && to_send_ == 0) {
      stopped_ = true;  // quota reached and everything answered
      close_transport();
      return;
    }
    read();
  }

  void on_response(int status, bool keep_alive) {
    if (inflight_.empty()) return;
    const auto now = read_time_;
    const request_record r = inflight_.front();
    inflight_.pop_front();
    if (status >= 100 && status < 200) {  // an interim response does not complete the request
      inflight_.push_front(r);
      return;
    }
    t_.record(r.intended, r.sent, now, status);
    if (!keep_alive) closing_ = true;
  }

  void on_echo_bytes(const char* data, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      if (static_cast<char>(pattern(echo_received_ + i)) != data[i]) {
        t_.fail(failure::echo_mismatch, "an echoed byte differs from the one sent");
        reconnect();  // the stream is out of step: start over on a fresh connection
        return;
      }
    }
    echo_received_ += n;
    const auto now = read_time_;
    if (n > 0) t_.answered();
    while (!inflight_.empty() && inflight_.front().echo_end <= echo_received_) {
      t_.record(inflight_.front().intended, inflight_.front().sent, now);
      inflight_.pop_front();
    }
  }

  // Byte `offset` of this connection's echo stream.
  unsigned char pattern(std::uint64_t offset) const {
    const std::uint64_t x = (offset + id_ * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
    return static_cast<unsigned char>(x >> 56);
  }

  // Drops the connection; requests in flight are lost (not retried), then connects again.
  // Requests written and not answered, inside the measured window.
  std::uint64_t count_sent_in_window() const {
    std::uint64_t n = 0;
    const std::size_t written = inflight_.size() - to_send_;
    for (std::size_t i = 0; i < written; ++i) n += !inflight_[i].done && t_.in_window(inflight_[i].intended) ? 1 : 0;
    return n;
  }

  void reconnect() {
    drop();
    if (stopped_ || done_sending()) {
      stopped_ = true;
      return;
    }
    connect();
  }

  // Closes the connection and forgets its requests (those written count as lost).
  void drop() {
    ++generation_;
    t_.result.lost += count_sent_in_window();  // never answered: reported, not retried
    close_transport();
    connected_ = false;
    closing_ = false;
    writing_ = false;
    inflight_.clear();
    finished_ = 0;
    h2_goaway_ = false;
    pending_bad_.clear();
    to_send_ = 0;
    in_.reset();
  }

  // HTTP/2: the server's first bytes were not its SETTINGS (an HTTP/1.1 server answering the
  // preface, a close, garbage): a failed connection attempt, not an established connection.
  void h2_refused(std::string why) {
    drop();
    connect_failed(std::move(why));
  }

  const std::string& method() const {
    const auto& t = t_.p().s.targets[target_];
    return t.method.empty() ? t_.p().s.method : t.method;
  }

  void build_requests() {
    const auto& s = t_.p().s;
    const target& tg = s.targets[target_];
    std::string host = tg.host.find(':') != std::string::npos ? "[" + tg.host + "]" : tg.host;
    host += ":" + std::to_string(tg.port);
    // A Host or User-Agent given with --header replaces ours.
    auto given = [&](std::string_view name) {
      return std::any_of(s.headers.begin(), s.headers.end(), [&](const std::string& h) {
        return h.size() > name.size() && h[name.size()] == ':' &&
               std::equal(name.begin(), name.end(), h.begin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); });
      });
    };
    std::string req = method() + " " + tg.path + " HTTP/1.1\r\n";
    if (!given("host")) req += "Host: " + host + "\r\n";
    if (!given("user-agent")) req += "User-Agent: bufpool-loadgen\r\n";
    for (const auto& h : s.headers) req += h + "\r\n";
    if (s.disable_keepalive && !given("connection")) req += "Connection: close\r\n";
    if (!s.content_type.empty() && !given("content-type")) req += "Content-Type: " + s.content_type + "\r\n";
    // A body (or Content-Length: 0) for every method but those that define none.
    const std::string& m = method();
    const bool has_body = s.body_from_file || s.chunked || s.body_size > 0 ||
                          (m != "GET" && m != "HEAD" && m != "DELETE" && m != "OPTIONS" && m != "TRACE");
    std::string body;
    if (has_body) {
      body = s.body;
      if (!s.body_from_file) {
        body.assign(s.body_size, 'x');
        for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
      }
      if (s.chunked) {
        req += "Transfer-Encoding: chunked\r\n\r\n";
        for (std::size_t off = 0; off < body.size(); off += 8192) {
          const std::size_t n = std::min<std::size_t>(8192, body.size() - off);
          char hex[20];
          std::snprintf(hex, sizeof hex, "%zx\r\n", n);
          req += hex + body.substr(off, n) + "\r\n";
        }
        req += "0\r\n\r\n";
      } else {
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      }
    } else {
      req += "\r\n";
    }
    request_ = copy_to_pool(req);
    // Malformed on purpose: a Content-Length that is not a number (a server must answer 400 and close).
    bad_request_ = copy_to_pool("GET " + tg.path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: 1x\r\n\r\n");
    if (s.http2) build_h2_request(host, has_body ? &body : nullptr, given);
  }

  // The HTTP/2 request: a name/value list for nghttp2 (pseudo-headers first, names lower case, the
  // headers HTTP/2 forbids left out, Host as :authority), and the body in a pooled buffer.
  template <class Given>
  void build_h2_request(const std::string& host, const std::string* body, const Given& given) {
    const auto& s = t_.p().s;
    const target& tg = s.targets[target_];
    std::string authority = host;
    std::vector<std::pair<std::string, std::string>> fields;
    for (const auto& h : s.headers) {
      const auto colon = h.find(':');
      std::string name = h.substr(0, colon);
      for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      std::string value = h.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
      if (name == "host") authority = value;
      else if (name != "connection" && name != "keep-alive" && name != "proxy-connection" &&
               name != "transfer-encoding" && name != "upgrade" && name != "content-length")
        fields.emplace_back(std::move(name), std::move(value));
    }
    h2_fields_.clear();
    h2_fields_.emplace_back(":method", method());
    h2_fields_.emplace_back(":scheme", tg.tls ? "https" : "http");
    h2_fields_.emplace_back(":authority", authority);
    h2_fields_.emplace_back(":path", tg.path);
    if (!given("user-agent")) h2_fields_.emplace_back("user-agent", "bufpool-loadgen");
    for (auto& f : fields) h2_fields_.push_back(std::move(f));
    if (!s.content_type.empty() && !given("content-type")) h2_fields_.emplace_back("content-type", s.content_type);
    h2_body_ = {};
    h2_has_body_ = body != nullptr;
    if (body != nullptr) {
      h2_fields_.emplace_back("content-length", std::to_string(body->size()));
      if (!body->empty()) h2_body_ = copy_to_pool(*body);
    }
    // nghttp2 keeps these pointers until the HEADERS are sent (NO_COPY): h2_fields_ is not touched again.
    h2_nva_.clear();
    for (const auto& [n, v] : h2_fields_)
      h2_nva_.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                         reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                         NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE});
  }

  // ---- HTTP/2 (--http2): an nghttp2 client session over the connection's transport ----

  static const nghttp2_session_callbacks* h2_callbacks() {
    static nghttp2_session_callbacks* cb = [] {
      nghttp2_session_callbacks* c = nullptr;
      if (nghttp2_session_callbacks_new(&c) != 0) throw std::bad_alloc();
      nghttp2_session_callbacks_set_on_header_callback(c, &connection::h2_on_header);
      nghttp2_session_callbacks_set_on_frame_recv_callback(c, &connection::h2_on_frame);
      nghttp2_session_callbacks_set_on_stream_close_callback(c, &connection::h2_on_close);
      return c;
    }();
    return cb;
  }

  // The session, its SETTINGS and windows (2^30-1, as h2load's defaults: flow control never holds
  // the server's answers back). False if it cannot be made (the connection is dropped).
  bool h2_start() {
    // Until the server's SETTINGS arrive, one stream at a time: nghttp2 would otherwise assume 100,
    // and a server with a lower limit refuses the streams past it (REFUSED_STREAM) in the first
    // round trip. The requests submitted meanwhile wait in the session, their time counted.
    static nghttp2_option* const option = [] {
      nghttp2_option* o = nullptr;
      if (nghttp2_option_new(&o) != 0) throw std::bad_alloc();
      nghttp2_option_set_peer_max_concurrent_streams(o, 1);
      return o;
    }();
    if (nghttp2_session_client_new2(&h2_, h2_callbacks(), this, option) != 0) {
      h2_ = nullptr;
      t_.fail(failure::connect, "HTTP/2: cannot make a session (out of memory)");
      stopped_ = true;
      close_transport();
      return false;
    }
    constexpr std::uint32_t window = (1u << 30) - 1;
    const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, window}};
    nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
    nghttp2_session_set_local_window_size(h2_, NGHTTP2_FLAG_NONE, 0, static_cast<std::int32_t>(window));
    h2_goaway_ = false;
    h2_settled_ = false;
    return true;
  }

  // The record of stream `id`: the written records are in ascending stream order.
  request_record* h2_record(std::int32_t id) {
    const std::size_t written = inflight_.size() - to_send_;
    auto end = inflight_.begin() + static_cast<std::ptrdiff_t>(written);
    auto it = std::lower_bound(inflight_.begin(), end, id, [](const request_record& r, std::int32_t v) { return r.stream < v; });
    return it != end && it->stream == id ? &*it : nullptr;
  }

  // Submits the queued requests as streams, then copies what the session has to send (the preface,
  // SETTINGS, HEADERS, DATA, WINDOW_UPDATE, ACKs) into pooled buffers and writes them.
  void pump_h2() {
    if (writing_ || !connected_) return;
    const auto now = clock::now();
    while (to_send_ > 0) {
      request_record& r = inflight_[inflight_.size() - to_send_];
      nghttp2_data_provider body{};
      body.read_callback = &connection::h2_read_body;
      const std::int32_t id = nghttp2_submit_request(h2_, nullptr, h2_nva_.data(), h2_nva_.size(),
                                                     h2_has_body_ ? &body : nullptr, nullptr);
      if (id < 0) {  // stream ids used up (2^31 on one connection), or no memory: a fresh connection
        reconnect();
        return;
      }
      r.stream = id;
      stamp(r, now);
      --to_send_;
    }
    iov_.clear();
    out_.clear();
    std::size_t total = 0, fill = 0;
    constexpr std::size_t chunk = 32768, most = 256 * 1024;
    while (total < most) {
      const std::uint8_t* data = nullptr;
      const auto n = nghttp2_session_mem_send(h2_, &data);
      if (n < 0) {
        t_.fail(failure::write, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(n)));
        reconnect();
        return;
      }
      if (n == 0) break;
      const auto len = static_cast<std::size_t>(n);
      if (out_.empty() || out_.back().capacity() - fill < len) {
        out_.push_back(t_.p().pool.get(std::max(chunk, len)));
        fill = 0;
      }
      std::memcpy(out_.back().data() + fill, data, len);
      fill += len;
      out_.back().resize(fill);
      total += len;
    }
    if (total == 0) return;
    for (const auto& b : out_) iov_.emplace_back(b.data(), b.size());
    write_out();
  }

  static int h2_on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                          const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || std::memcmp(name, ":status", 7) != 0) return 0;
    auto* c = static_cast<connection*>(user);
    if (request_record* r = c->h2_record(frame->hd.stream_id)) {
      int status = 0;
      const auto* v = reinterpret_cast<const char*>(value);
      std::from_chars(v, v + valuelen, status);
      r->status = status;
    }
    return 0;
  }

  static int h2_on_frame(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* c = static_cast<connection*>(user);
    auto& r = c->t_.result;
    switch (frame->hd.type) {
      case NGHTTP2_GOAWAY:
        ++r.h2_goaways_received;
        c->h2_goaway_ = true;  // no new streams; those above last_stream_id are closed by nghttp2 (REFUSED_STREAM)
        c->closing_ = true;    // the server's close after it is expected
        c->h2_goaway_last_ = frame->goaway.last_stream_id;
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
          c->t_.fail(failure::closed, std::string("HTTP/2 GOAWAY ") + nghttp2_http2_strerror(frame->goaway.error_code));
        break;
      case NGHTTP2_RST_STREAM: ++r.h2_resets_received; break;
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) break;
        if (r.h2_server_max_streams < 0)
          r.h2_server_max_streams = nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (!c->h2_settled_) {  // the server's preface: now the connection counts as established
          c->h2_settled_ = true;
          c->counted_established();
        }
        break;
      default: break;
    }
    return 0;
  }

  // A stream ended: answered (NO_ERROR after a :status), reset by the server, or dropped by a GOAWAY.
  static int h2_on_close(nghttp2_session*, std::int32_t id, std::uint32_t error, void* user) {
    auto* c = static_cast<connection*>(user);
    request_record* r = c->h2_record(id);
    if (r == nullptr || r->done) return 0;
    thread_state& t = c->t_;
    if (error == NGHTTP2_NO_ERROR && r->status != 0) {
      t.record(r->intended, r->sent, c->read_time_ != clock::time_point{} ? c->read_time_ : clock::now(), r->status);
    } else {
      if (t.in_window(r->intended)) ++t.result.lost;  // never answered: reported, not retried
      if (c->h2_goaway_ && id > c->h2_goaway_last_) {
        // Not processed by the server (it said so): lost, and the GOAWAY itself is the news.
      } else if (error == NGHTTP2_NO_ERROR) {
        t.fail(failure::parse, "HTTP/2: a stream ended without a :status");
      } else {
        t.fail(failure::reset, std::string("HTTP/2 RST_STREAM ") + nghttp2_http2_strerror(error));
      }
    }
    r->done = true;
    ++c->finished_;
    while (!c->inflight_.empty() && c->inflight_.front().done) {
      c->inflight_.pop_front();
      --c->finished_;
    }
    return 0;
  }

  // The request body for stream `id`, from the prebuilt pooled copy.
  static ssize_t h2_read_body(nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t length,
                              std::uint32_t* flags, nghttp2_data_source*, void* user) {
    auto* c = static_cast<connection*>(user);
    request_record* r = c->h2_record(id);
    const std::size_t total = c->h2_body_.size();
    const std::size_t from = r != nullptr ? r->body_sent : total;
    const std::size_t n = std::min(length, total - from);
    if (n > 0) std::memcpy(buf, c->h2_body_.data() + from, n);
    if (r != nullptr) r->body_sent += n;
    if (from + n == total) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  bufpool::buffer copy_to_pool(const std::string& s) {
    bufpool::buffer b = t_.p().pool.get(s.size());
    std::memcpy(b.data(), s.data(), s.size());
    return b;
  }

  thread_state& t_;
  std::size_t id_;
  std::size_t target_;  // index in s.targets (and p.endpoints)
  std::uint64_t quota_;
  stream_socket socket_;
  std::shared_ptr<tls_stream> tls_;  // https/tls: owns the socket once connected (each pending operation holds it)
  SSL_SESSION* session_ = nullptr;   // the last connection's session, resumed on the next (--tls-resume)
  clock::time_point handshake_start_{};
  asio::steady_timer timer_;
  bool timer_armed_ = false;
  clock::duration interval_{0};
  bool open_ = false;  // open loop: a fixed rate (interval_) or a plan (--stages, --steps)
  // --stages / --steps: the plan's next request for this connection (k), C connections apart.
  double plan_k_ = 0, plan_stride_ = 0;
  bool plan_done_ = false;
  void plan_next() {
    const auto at = t_.p().s.plan.time_of(plan_k_);
    if (!at) {
      plan_done_ = true;
      return;
    }
    next_intended_ = t_.p().start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(*at));
    plan_k_ += plan_stride_;
  }
  clock::time_point next_intended_{};
  clock::time_point connect_deadline_{};
  clock::time_point read_time_{};  // set while a read is being handled
  bufpool::buffer request_, bad_request_, in_;
  std::vector<bufpool::buffer> out_;
  std::vector<asio::const_buffer> iov_;
  std::deque<request_record> inflight_;
  std::vector<bool> pending_bad_;
  std::size_t to_send_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t malformed_every_ = 0;
  std::uint64_t echo_sent_ = 0, echo_received_ = 0;
  std::uint64_t generation_ = 0;
  int connect_failures_ = 0;
  bool ever_connected_ = false;
  bool connected_ = false, writing_ = false, closing_ = false, stopped_ = false;
  bool head_requests_ = false;  // responses to our (well-formed) requests have no body
  llhttp_t parser_{};
  llhttp_settings_t settings_{};
  std::size_t finished_ = 0;  // HTTP/2: records done but not yet at the front
  // HTTP/2 (--http2)
  nghttp2_session* h2_ = nullptr;
  bool h2_goaway_ = false;         // the server sent GOAWAY: no new streams on this connection
  bool h2_settled_ = false;        // the server's SETTINGS (its preface) arrived
  std::int32_t h2_goaway_last_ = 0;
  std::vector<std::pair<std::string, std::string>> h2_fields_;
  std::vector<nghttp2_nv> h2_nva_;
  bufpool::buffer h2_body_;
  bool h2_has_body_ = false;
};

void thread_state::run() {
  std::this_thread::sleep_until(p_.start);  // every thread starts together, and nothing before `start`
  for (auto& c : conns) c->start();
  // The tick: timeouts every 100 ms, the per-second figures at each second of the measured window.
  tick_.expires_at(p_.start + std::chrono::milliseconds(100));
  tick_.async_wait([this](std::error_code ec) {
    if (!ec) on_tick();
  });
  io_.run();
}

void thread_state::on_tick() {
  const auto now = clock::now();
  for (auto& c : conns) c->check_timeout(now);
  // A signal: stop sending, give the answers in flight up to a second (and no more than --timeout).
  if (!draining && p_.interrupt != nullptr && p_.interrupt->load(std::memory_order_relaxed) != 0) {
    draining = true;
    drain_deadline = now + std::min<clock::duration>(std::chrono::seconds(1), p_.s.timeout);
    result.interrupted = p_.interrupt->load(std::memory_order_relaxed);
    result.interrupted_at_s = std::chrono::duration<double>(now - p_.measure_start).count();
  }
  if (draining && (now >= drain_deadline || std::all_of(conns.begin(), conns.end(), [](const auto& c) { return c->idle(); }))) {
    stop_all();
    return;
  }
  // The target is gone: every attempt of this thread has failed for --timeout (or another thread
  // found so). Stop, and say since when.
  if (failing_for(now, p_.s.timeout) || p_.lost->load(std::memory_order_relaxed)) {
    if (failing_since != clock::time_point{}) mark_lost();
    p_.lost->store(true, std::memory_order_relaxed);
    stop_all();
    return;
  }
  // Report every whole second of the measured window that has passed.
  while (now >= p_.measure_start + std::chrono::seconds(second_index + 1)) {
    report_second();
    ++second_index;
  }
  const bool duration_over = p_.s.requests == 0 && now >= p_.end;
  time_over = duration_over;
  // The run ends while the target has answered nothing for a while (at least a second, or --timeout
  // if shorter): that is a target that went away, not a run that completed.
  if (duration_over && failing_for(now, std::min<clock::duration>(std::chrono::seconds(1), p_.s.timeout))) mark_lost();
  // Every connection finished its quota or gave up (a target that refuses every connection).
  const bool all_done = std::all_of(conns.begin(), conns.end(), [](const auto& c) { return c.use_count() == 1; });
  if (duration_over || all_done) {
    stop_all();
    return;
  }
  tick_.expires_at(tick_.expiry() + std::chrono::milliseconds(100));
  tick_.async_wait([this](std::error_code ec) {
    if (!ec) on_tick();
  });
}

void thread_state::report_second() {
  second_stats part;
  part.second = second_index;
  part.requests = second_requests;
  part.errors = second_errors;
  part.failures = second_failures;
  // Swapped, not copied: the part's fresh, empty histogram (same bounds) becomes the next second's.
  std::swap(part.latency, second_hist);
  if (second_index < sent_by_second.size()) part.sent = sent_by_second[second_index];
  for (const auto& c : conns) part.connections += c->open() ? 1 : 0;
  p_.seconds.report(part);
  second_requests = second_errors = 0;
  second_failures = {};
}

void thread_state::stop_all() {
  stopping = true;
  // The last (partial) second, if it holds anything.
  if (second_requests > 0 || second_errors > 0) report_second();
  for (auto& c : conns) c->stop();
}

// The client context every TLS connection of the run is made from (OpenSSL's SSL_CTX is shared
// between threads for SSL_new). Bad files or settings: std::runtime_error with one clear line.
std::unique_ptr<asio::ssl::context> make_tls_context(const loadgen_settings& s) {
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX* c = ctx->native_handle();
  auto fail = [](const std::string& what) {
    std::string why;
    while (const unsigned long e = ERR_get_error()) {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      why += (why.empty() ? "" : "; ") + std::string(buf);
    }
    throw std::runtime_error("tls: " + what + (why.empty() ? "" : " (" + why + ")"));
  };
  SSL_CTX_set_min_proto_version(c, s.tls_min == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(c, s.ciphers.c_str()) != 1)
    fail("--ciphers \"" + s.ciphers + "\" is not a cipher list OpenSSL accepts");
  if (!s.insecure) {
    if (!s.cacert.empty() ? SSL_CTX_load_verify_locations(c, s.cacert.c_str(), nullptr) != 1
                          : SSL_CTX_set_default_verify_paths(c) != 1)
      fail(s.cacert.empty() ? "the system's CA store cannot be loaded" : "--cacert " + s.cacert + " is not a PEM CA file");
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  }
  if (!s.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(c, s.cert.c_str()) != 1) fail("--cert " + s.cert + " is not a PEM certificate");
    const std::string& key = s.key.empty() ? s.cert : s.key;
    if (SSL_CTX_use_PrivateKey_file(c, key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(c) != 1)
      fail("--key " + key + " is not the certificate's PEM private key");
  }
  // Sessions are kept per connection (--tls-resume), not in a cache shared between threads.
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  if (!s.alpn.empty()) {
    std::string wire;
    std::size_t from = 0;
    while (from <= s.alpn.size()) {
      const std::size_t comma = std::min(s.alpn.find(',', from), s.alpn.size());
      const std::string proto = s.alpn.substr(from, comma - from);
      if (proto.empty() || proto.size() > 255) fail("--alpn \"" + s.alpn + "\" is not a comma-separated list of protocols");
      wire += static_cast<char>(proto.size());
      wire += proto;
      from = comma + 1;
    }
    SSL_CTX_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(wire.data()), static_cast<unsigned>(wire.size()));
  }
  return ctx;
}

}  // namespace

run_result run_load(const loadgen_settings& s, const progress_fn& progress, const std::atomic<int>* interrupt) {
  asio::io_context resolver_io;
  tcp::resolver resolver(resolver_io);
  std::vector<stream_endpoint> endpoints;
  const auto connect_to = s.connect_to.empty() ? std::nullopt : config::parse_endpoint(s.connect_to);
  for (const auto& t : s.targets) {
    if (!s.unix_socket.empty()) {  // every target through the one socket; the URL names the host sent
      endpoints.emplace_back(asio::local::stream_protocol::endpoint(s.unix_socket));
      continue;
    }
    std::error_code ec;
    const std::string host = connect_to ? connect_to->host : t.host;
    const auto results = resolver.resolve(host, std::to_string(connect_to ? connect_to->port : t.port), ec);
    if (ec || results.empty()) throw std::runtime_error("cannot resolve " + host + ": " + ec.message());
    endpoints.emplace_back(results.begin()->endpoint());
  }
  std::unique_ptr<asio::ssl::context> tls;
  if (std::any_of(s.targets.begin(), s.targets.end(), [](const target& t) { return t.tls; })) tls = make_tls_context(s);

  bufpool::pool pool;
  second_collector seconds(s.threads, progress);
  // --start-at: the first sends at that wall-clock time (several machines start together); the
  // steady clock takes over from there.
  auto start = clock::now() + std::chrono::milliseconds(20);
  auto started_at = std::chrono::system_clock::now() + std::chrono::milliseconds(20);
  if (s.start_at) {
    const auto wait = *s.start_at - std::chrono::system_clock::now();
    if (wait > std::chrono::system_clock::duration::zero()) {
      start = clock::now() + std::chrono::duration_cast<clock::duration>(wait);
      started_at = *s.start_at;
    } else {  // late (a pod scheduled after the time): say so; merge refuses reports started apart
      std::fprintf(stderr, "bufpool-loadgen: --start-at is %.1f s in the past: starting now\n",
                   std::chrono::duration<double>(-wait).count());
    }
  }
  std::atomic<bool> lost{false};
  plan p{s, endpoints, start, start + s.warmup, start + s.warmup + s.duration, pool, seconds, interrupt, &lost, tls.get()};

  std::vector<std::unique_ptr<thread_state>> threads;
  for (std::size_t t = 0; t < s.threads; ++t) threads.push_back(std::make_unique<thread_state>(p));
  const double per_conn_rate = s.rate > 0 ? s.rate / static_cast<double>(s.connections) : 0;
  const double interval = per_conn_rate > 0 ? 1.0 / per_conn_rate : 0;
  for (std::size_t c = 0; c < s.connections; ++c) {
    std::uint64_t quota = 0;
    if (s.requests > 0) quota = s.requests / s.connections + (c < s.requests % s.connections ? 1 : 0);
    if (s.requests > 0 && quota == 0) continue;
    auto& t = *threads[c % s.threads];
    t.open_loop = interval > 0 || !s.plan.empty();
    const double phase = interval * static_cast<double>(c) / static_cast<double>(s.connections);
    t.conns.push_back(std::make_shared<connection>(t, c, c % s.targets.size(), quota, interval, phase));
  }
  std::vector<std::thread> running;
  for (auto& t : threads) running.emplace_back([&t] { t->run(); });
  for (auto& r : running) r.join();
  const auto finished = clock::now();

  run_result out;
  for (auto& t : threads) {
    run_result& r = t->result;
    if (!t->open_loop) r.uncorrected = r.corrected;  // closed loop: sent when intended
    out.requests += r.requests;
    for (std::size_t i = 0; i < out.status.size(); ++i) out.status[i] += r.status[i];
    for (std::size_t i = 0; i < out.failures.size(); ++i) out.failures[i] += r.failures[i];
    out.bytes_in += r.bytes_in;
    out.bytes_out += r.bytes_out;
    out.connections_requested += r.connections_requested;
    out.connections_established += r.connections_established;
    out.connections_failed += r.connections_failed;
    out.in_flight_at_stop += r.in_flight_at_stop;
    out.sent += r.sent;
    out.lost += r.lost;
    out.corrected.merge(r.corrected);
    out.uncorrected.merge(r.uncorrected);
    out.send_lag.merge(r.send_lag);
    out.handshakes += r.handshakes;
    out.h2_resets_received += r.h2_resets_received;
    out.h2_goaways_received += r.h2_goaways_received;
    if (out.h2_server_max_streams < 0) out.h2_server_max_streams = r.h2_server_max_streams;
    out.resumed += r.resumed;
    out.handshake.merge(r.handshake);
    if (out.tls_version.empty()) {
      out.tls_version = r.tls_version;
      out.tls_cipher = r.tls_cipher;
      out.tls_alpn = r.tls_alpn;
    }
    for (std::size_t code = 0; code < t->status_counts.size(); ++code)
      if (t->status_counts[code] != 0) out.status_codes[static_cast<int>(code)] += t->status_counts[code];
    if (out.first_connect_error.empty()) out.first_connect_error = r.first_connect_error;
    if (out.first_error.empty()) out.first_error = r.first_error;
    if (r.interrupted != 0) {
      out.interrupted = r.interrupted;
      if (out.interrupted_at_s < 0 || r.interrupted_at_s < out.interrupted_at_s) out.interrupted_at_s = r.interrupted_at_s;
    }
    if (r.target_lost) {
      out.target_lost = true;
      if (out.target_lost_at_s < 0 || r.target_lost_at_s < out.target_lost_at_s) out.target_lost_at_s = r.target_lost_at_s;
    }
  }
  out.started_at = started_at;
  auto window_end = s.requests > 0 ? finished : std::min(finished, p.end);
  // Interrupted: the window ends where sending stopped (the drain only collects answers).
  if (out.interrupted != 0 && out.interrupted_at_s >= 0)
    window_end = std::min(window_end, p.measure_start + std::chrono::duration_cast<clock::duration>(
                                                           std::chrono::duration<double>(out.interrupted_at_s)));
  out.elapsed_s = std::max(0.0, std::chrono::duration<double>(window_end - p.measure_start).count());
  out.series = seconds.take();
  std::vector<std::uint64_t> sent;
  for (auto& t : threads) {
    if (t->sent_by_second.size() > sent.size()) sent.resize(t->sent_by_second.size());
    for (std::size_t i = 0; i < t->sent_by_second.size(); ++i) sent[i] += t->sent_by_second[i];
  }
  for (auto& sec : out.series)  // every send counted, also those after their second was reported
    if (sec.second < sent.size()) sec.sent = sent[sec.second];
  return out;
}

}  // namespace bufpool::loadgen
