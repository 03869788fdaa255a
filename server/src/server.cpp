// The server's assembly: one worker per thread, listeners per accept mode, admin, stats, stop.
#include "server.hpp"

#include <liburing.h>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <future>
#include <memory_resource>
#include <thread>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "echo_connection.hpp"
#include "http_connection.hpp"
#include "io/uring.hpp"
#include "worker.hpp"

namespace bufpool::server {

namespace {

// SO_REUSEPORT, which Asio 1.22 does not name.
using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

asio::ip::tcp::endpoint resolve(const std::string& text) {
  const auto ep = config::parse_endpoint(text);
  if (!ep) throw std::invalid_argument("bad endpoint " + text);
  const std::string host = ep->host == "localhost" ? "127.0.0.1" : ep->host;
  return {asio::ip::make_address(host), ep->port};
}

clock::duration sweep_tick(const server_settings& s) {
  const http_settings& h = s.http;
  const auto shortest = std::min({h.header_timeout, h.body_timeout, h.idle_timeout, h.write_timeout, s.echo_idle_timeout,
                                  s.http_tls.enabled() || s.echo_tls.enabled() || s.admin_tls.enabled()
                                      ? h.handshake_timeout
                                      : h.header_timeout,
                                  h.linger_timeout.count() > 0 ? h.linger_timeout : h.header_timeout});
  return std::clamp<clock::duration>(shortest / 4, std::chrono::milliseconds(5), std::chrono::milliseconds(250));
}

}  // namespace

enum class protocol { http, echo, admin };

// A listener: in reuseport mode one acceptor per worker on the same port; in single mode (and for
// admin) one acceptor on its worker that hands each socket to the worker with the fewest connections.
class listener {
public:
  listener(protocol proto, worker& home, std::vector<worker*> targets, asio::ip::tcp::endpoint ep, bool reuse,
           const server_settings& settings, const http_context* http, std::pmr::memory_resource* connections)
      : proto_(proto), home_(home), targets_(std::move(targets)), acceptor_(home.context()), settings_(settings),
        http_(http), connections_(connections) {
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    if (reuse) acceptor_.set_option(reuse_port(true));
    std::error_code ec;
    acceptor_.bind(ep, ec);
    if (ec) throw std::system_error(ec, "cannot bind " + ep.address().to_string() + ":" + std::to_string(ep.port()));
    acceptor_.listen(asio::socket_base::max_listen_connections);
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  /// Echo listeners: TLS with these files (before start).
  void use_tls(const tls::holder* t) noexcept { echo_tls_ = t; }
  void start() {
    home_.post([this] { accept(); });
  }
  // Closes the acceptor on its own thread and waits until that happened.
  void close() {
    std::promise<void> done;
    home_.post([this, &done] {
      std::error_code ec;
      if (ring_accept_ != nullptr) {
        // The ring's accept names the listening descriptor, and may still sit unsubmitted in this
        // turn's queue: the descriptor goes to it, to be closed after its last completion, so its
        // number is not freed (and given to another socket) while the accept can still look it up.
        ring_accept_->fd = acceptor_.release(ec);
        stop_ring_accept();
      }
      acceptor_.close(ec);
      backoff_timer_.cancel();
      done.set_value();
    });
    done.get_future().wait();
  }

private:
  // The worker with the fewest connections, counting those handed to it and not yet admitted.
  worker& pick() {
    auto load = [](worker* w) { return w->stats().active() + w->incoming.load(std::memory_order_relaxed); };
    return **std::min_element(targets_.begin(), targets_.end(), [&](worker* a, worker* b) { return load(a) < load(b); });
  }
  // The io_uring backend's multishot accept (HTTP on its own worker): it lives until its last
  // completion, which may come after the listener is gone (owner is then null).
  struct ring_accept final : uring_op {
    listener* owner = nullptr;
    int fd = -1;  // the listening descriptor, once the listener closed and handed it over
    void complete(int res, unsigned flags) override {
      const bool last = (flags & IORING_CQE_F_MORE) == 0;
      if (owner != nullptr) owner->on_ring_accept(res, last);
      else if (res >= 0) ::close(res);
      if (!last) return;
      if (fd >= 0) ::close(fd);
      delete this;
    }
  };
  // Cancels the ring's accept and detaches it from this listener (its last completion deletes it).
  void stop_ring_accept() {
    if (ring_accept_ == nullptr) return;
    ring_accept_->owner = nullptr;
    home_.uring()->cancel(*ring_accept_);
    ring_accept_ = nullptr;
  }
  void on_ring_accept(int res, bool last) {
    if (last) ring_accept_ = nullptr;
    if (res >= 0) {
      backoff_ = std::chrono::milliseconds(0);
      admit_fd(home_, res);
      if (last && acceptor_.is_open()) accept();
      return;
    }
    if (!acceptor_.is_open() || res == -ECANCELED) return;
    if (!last) stop_ring_accept();  // the accept goes on failing (EMFILE): stop it, pause
    on_accept_error(std::error_code(-res, asio::error::get_system_category()));  // accepts again, maybe after a pause
  }

  void accept() {
    if (proto_ == protocol::http && targets_.size() == 1 && home_.uring() != nullptr) {
      if (ring_accept_ != nullptr) return;
      ring_accept_ = new ring_accept;
      ring_accept_->owner = this;
      home_.uring()->accept(acceptor_.native_handle(), *ring_accept_);
      return;
    }
    acceptor_.async_accept([this](std::error_code ec, asio::ip::tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (ec) {
        on_accept_error(ec);
        return;
      }
      backoff_ = std::chrono::milliseconds(0);
      if (targets_.size() == 1) {
        admit(home_, std::move(s));  // reuseport, admin: the socket is already on its thread
      } else {
        // single: hand the descriptor to the least-loaded worker's io_context.
        worker& target = pick();
        target.incoming.fetch_add(1, std::memory_order_relaxed);
        std::error_code rec;
        const int fd = s.release(rec);
        if (!rec) {
          target.post([this, &target, fd] {
            target.incoming.fetch_sub(1, std::memory_order_relaxed);
            admit_fd(target, fd);
          });
        } else {
          target.incoming.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      accept();
    });
  }
  // Accept failed. Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): accepting again at
  // once would fail again at once and spin, so the listener pauses, 50 ms doubling to 1 s, as nginx
  // pauses its accept events. Anything else (a connection reset while queued) is retried at once.
  // Counted, and logged at most once a second per listener with the number not logged.
  void on_accept_error(std::error_code ec) {
    home_.stats().count_error(error_kind::accept_error);
    const auto pause = backoff_for(ec);
    const auto now = clock::now();
    if (now - last_log_ >= std::chrono::seconds(1)) {
      spdlog::warn("accept on port {}: {} ({} more since the last message); pausing {} ms", port(), ec.message(),
                   unlogged_, pause.count());
      last_log_ = now;
      unlogged_ = 0;
    } else {
      ++unlogged_;
    }
    if (pause.count() == 0) {
      accept();
      return;
    }
    backoff_ = pause;
    backoff_timer_.expires_after(pause);
    backoff_timer_.async_wait([this](std::error_code e) {
      if (!e && acceptor_.is_open()) accept();
    });
  }
  std::chrono::milliseconds backoff_for(std::error_code ec) const {
    const int v = ec.value();
    if (ec.category() != asio::error::get_system_category() ||
        (v != EMFILE && v != ENFILE && v != ENOBUFS && v != ENOMEM))
      return std::chrono::milliseconds(0);
    return std::clamp(backoff_ * 2, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  }

  // On the target worker's thread: a descriptor accepted by the ring or handed over by another worker.
  void admit_fd(worker& w, int fd) {
    if (proto_ == protocol::http && w.uring() != nullptr) {
      if (!room(w)) {
        ::close(fd);
        return;
      }
      const std::pmr::polymorphic_allocator<> alloc(connections_);
      std::shared_ptr<http_connection> c;
      try {
        c = make_http_connection(alloc, w, fd, *http_);
      } catch (const std::bad_alloc&) {
        // No object owns the descriptor (its destructor, which closes it, never ran): close it here.
        w.stats().count_error(error_kind::out_of_memory);
        ::close(fd);
        return;
      }
      try {
        c->start();
      } catch (const std::bad_alloc&) {  // no submission entry for its first recv: nothing is in flight
        w.stats().count_error(error_kind::out_of_memory);
        c->force_close();  // the descriptor closes when c goes
      }
      return;
    }
    admit(w, asio::ip::tcp::socket(w.context(), acceptor_.local_endpoint().protocol(), fd));
  }
  // May w take one more connection? Counted when not.
  bool room(worker& w) {
    if (w.draining.load(std::memory_order_relaxed) && proto_ != protocol::admin) return false;
    const bool full = proto_ == protocol::http   ? w.stats().http_active.get() >= settings_.max_connections_per_thread
                      : proto_ == protocol::echo ? w.stats().echo_active.get() >= settings_.max_echo_connections_per_thread
                                                 : false;
    if (full) {
      w.stats().rejected.add();
      w.stats().count_error(error_kind::connection_limit);
    }
    return !full;
  }

  // On the target worker's thread.
  void admit(worker& w, asio::ip::tcp::socket s) {
    if (!room(w)) return;  // s is closed at once
    // Connection objects live in mapped chunks too: once a burst of connections is gone, their
    // memory goes back to the OS instead of staying in the heap between Asio's long-lived objects.
    const std::pmr::polymorphic_allocator<> alloc(connections_);
    try {
      if (proto_ == protocol::echo && echo_tls_ != nullptr) {
        std::allocate_shared<tls_echo_connection>(alloc, w, std::move(s), *echo_tls_, settings_.echo_buffer_bytes,
                                                  settings_.http.handshake_timeout, settings_.echo_idle_timeout,
                                                  settings_.http.write_timeout)
            ->start();
      } else if (proto_ == protocol::echo) {
        std::allocate_shared<echo_connection>(alloc, w, std::move(s), settings_.echo_buffer_bytes,
                                              settings_.echo_idle_timeout, settings_.http.write_timeout)
            ->start();
      } else {
        make_http_connection(alloc, w, std::move(s), *http_)->start();
      }
    } catch (const std::bad_alloc&) {
      w.stats().count_error(error_kind::out_of_memory);  // the socket closes; the listener goes on
    }
  }

  protocol proto_;
  worker& home_;
  std::vector<worker*> targets_;
  asio::ip::tcp::acceptor acceptor_;
  const server_settings& settings_;
  const http_context* http_;
  const tls::holder* echo_tls_ = nullptr;  // echo over TLS (echo.tls.*)
  std::pmr::memory_resource* connections_;
  asio::steady_timer backoff_timer_{home_.context()};
  ring_accept* ring_accept_ = nullptr;
  std::chrono::milliseconds backoff_{0};
  clock::time_point last_log_{};
  std::uint64_t unlogged_ = 0;
};

server::server(server_settings settings) : settings_(std::move(settings)), started_(std::chrono::steady_clock::now()) {
  // spdlog makes its default logger on first use; make it here, before any worker thread can log
  // (two workers logging first at once race on its creation inside libspdlog, which TSan reports).
  (void)spdlog::default_logger_raw();
  // HTTPS: the files are loaded before anything starts; a bad one is a configuration error.
  settings_.http_tls.alpn_h2 = settings_.http.http2.enabled;
  if (settings_.http_tls.enabled()) tls_ = std::make_unique<tls::holder>(settings_.http_tls, "http.tls.");
  if (settings_.echo_tls.enabled() && !settings_.echo_listen.empty())
    echo_tls_ = std::make_unique<tls::holder>(settings_.echo_tls, "echo.tls.");
  if (settings_.admin_tls.enabled() && !settings_.admin_listen.empty())
    admin_tls_ = std::make_unique<tls::holder>(settings_.admin_tls, "admin.tls.");
  if (settings_.pool.memory == nullptr && settings_.backing == pool_backing::chunks) {
    chunks_ = std::make_unique<bufpool::chunk_resource>();
    settings_.pool.memory = chunks_.get();
  }
  pool_ = std::make_unique<bufpool::pool>(settings_.pool);
  connection_memory_ = std::make_unique<bufpool::chunk_resource>();
  std::pmr::memory_resource* connections =
      settings_.connection_memory != nullptr ? settings_.connection_memory : connection_memory_.get();
  const auto tick = sweep_tick(settings_);
  for (std::size_t i = 0; i < settings_.threads; ++i)
    workers_.push_back(std::make_unique<worker>(i, *pool_, tick, connections));
  if (settings_.backend == io_backend::io_uring) {
    const std::string why = uring_loop::unavailable();
    if (why.empty()) {
      uring_ = true;
      for (auto& w : workers_) w->use_uring(settings_.http.read_buffer_bytes, static_cast<unsigned>(settings_.uring_buffers));
    } else {
      spdlog::warn("io.backend=io_uring is not available here ({}): using epoll", why);
    }
  }
  std::vector<worker*> all;
  for (auto& w : workers_) all.push_back(w.get());

  if (!settings_.access_log.empty()) {
    // Asynchronous and bounded: 8192 lines queued, one thread writing; when the queue is full the
    // oldest line is dropped (counted: access_log.dropped in /stats, bufpool_access_log_dropped_total).
    access_pool_ = std::make_shared<spdlog::details::thread_pool>(8192, 1);
    spdlog::sink_ptr sink;
    if (settings_.access_log == "-") sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
    else sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(settings_.access_log);
    access_log_ = std::make_shared<spdlog::async_logger>("access", sink, access_pool_, spdlog::async_overflow_policy::overrun_oldest);
    access_log_->set_pattern("%Y-%m-%dT%H:%M:%S.%e %v");
    access_log_->set_level(spdlog::level::info);
  }
  public_ctx_ = std::make_unique<http_context>(settings_.http, false, routes::make_public_table(draining_, settings_.echo_target),
                                               access_log_.get());
  public_ctx_->tls = tls_.get();
  admin_ctx_ = std::make_unique<http_context>(
      settings_.http, true,
      routes::make_admin_table(draining_, [this] { return stats().dump(); }, [this] { return metrics(); }), nullptr);
  admin_ctx_->tls = admin_tls_.get();

  auto add = [&](protocol proto, const std::string& where) -> std::uint16_t {
    if (where.empty()) return 0;
    auto ep = resolve(where);
    if (proto == protocol::admin) {
      listeners_.push_back(std::make_unique<listener>(proto, *all.front(), std::vector<worker*>{all.front()}, ep,
                                                      false, settings_, admin_ctx_.get(), connections));
      return listeners_.back()->port();
    }
    const http_context* ctx = proto == protocol::http ? public_ctx_.get() : nullptr;
    if (settings_.accept == accept_mode::single) {
      listeners_.push_back(
          std::make_unique<listener>(proto, *all.front(), all, ep, false, settings_, ctx, connections));
      return listeners_.back()->port();
    }
    // reuseport: the first bind picks the port (port 0), the others join it.
    std::uint16_t port = 0;
    for (worker* w : all) {
      if (port != 0) ep.port(port);
      listeners_.push_back(std::make_unique<listener>(proto, *w, std::vector<worker*>{w}, ep, true, settings_, ctx,
                                                      connections));
      port = listeners_.back()->port();
    }
    return port;
  };
  ports_.http = add(protocol::http, settings_.http_listen);
  const std::size_t before_echo = listeners_.size();
  ports_.echo = add(protocol::echo, settings_.echo_listen);
  for (std::size_t i = before_echo; i < listeners_.size(); ++i) listeners_[i]->use_tls(echo_tls_.get());
  ports_.admin = add(protocol::admin, settings_.admin_listen);

  std::vector<asio::io_context*> contexts;
  for (auto& w : workers_) contexts.push_back(&w->context());
  rotation_ = std::make_unique<bufpool::rotation_timer>(
      *pool_, contexts, std::chrono::duration_cast<std::chrono::milliseconds>(settings_.rotation_interval));
  // The budget of buffer bytes in use, shared evenly: each worker checks its own share, so no
  // atomic is shared between workers on the request path.
  const auto share = static_cast<std::int64_t>(settings_.max_buffer_bytes / workers_.size());
  for (auto& w : workers_) {
    w->set_buffer_budget(std::max<std::int64_t>(share, 1));
    w->set_ring_trim_interval(settings_.rotation_interval);
  }
  trim_timer_ = std::make_unique<asio::steady_timer>(workers_.front()->context());
  for (auto& w : workers_) w->start();
  for (auto& l : listeners_) l->start();
  rotation_->start();
  workers_.front()->post([this] { trim_heap(); });
}

// Once per rotation interval, on worker 0: memory the heap keeps after connections close (their
// objects, Asio's operations) goes back to the OS, and so do the empty chunks the chunk resources keep.
// glibc keeps freed memory below the top of each arena otherwise.
void server::log_error_summary() {
  stats_totals t;
  for (const auto& w : workers_) t.add(w->stats());
  const auto& now = t.errors;
  std::string what;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < now.size(); ++i) {
    const std::uint64_t d = now[i] - errors_logged_[i];
    if (d == 0) continue;
    total += d;
    what += (what.empty() ? "" : ", ") + std::string(error_names[i]) + " " + std::to_string(d);
  }
  const auto at = std::chrono::steady_clock::now();
  if (total > 0)
    spdlog::info("{} failed requests or connections in the last {:.0f} s: {} (log.level=debug logs each one)", total,
                 std::chrono::duration<double>(at - errors_logged_at_).count(), what);
  errors_logged_ = now;
  errors_logged_at_ = at;
}

void server::trim_heap() {
  if (!trimming_) return;
  log_error_summary();
  bool changed = false;
  for (tls::holder* h : tls_holders()) {
    changed = changed || h->files_changed();
    h->tickets().rotate_if_due(std::chrono::steady_clock::now());
  }
  if (changed) reload_tls();
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
  // The chunks kept empty for reuse (bufpool::chunk_resource::max_empty_chunks per bin) go back too.
  if (chunks_) chunks_->release_unused();
  connection_memory_->release_unused();
  trim_timer_->expires_after(settings_.rotation_interval);
  trim_timer_->async_wait([this](std::error_code ec) {
    if (!ec) trim_heap();
  });
}

std::vector<tls::holder*> server::tls_holders() const {
  std::vector<tls::holder*> out;
  for (const auto* h : {&tls_, &echo_tls_, &admin_tls_})
    if (*h) out.push_back(h->get());
  return out;
}

// Every TLS listener loads its files again; each that fails keeps its old ones. True if all loaded.
bool server::reload_tls() {
  bool all = true;
  for (tls::holder* h : tls_holders()) {
    std::string why;
    if (h->reload(why)) {
      tls_reloads_.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("tls: {}certificate and key loaded again; new connections use them", h->prefix());
      continue;
    }
    all = false;
    tls_reload_failures_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("tls: reload refused, the old certificate stays in use: {}", why);
  }
  return all;
}

server::~server() {
  stop();
  // The access log's thread first: dropping the last reference to its pool writes what is queued and
  // joins the thread, so the logger and its file sink are destroyed after their last use there (in
  // the other order the sink could be freed here while that thread, in libspdlog, had just used it).
  access_pool_.reset();
  access_log_.reset();
}

std::size_t server::active_connections() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w->stats().active();
  return n;
}

void server::stop() {
  if (stopped_) return;
  stopped_ = true;
  draining_ = true;
  // 1. Stop accepting on the public listeners (admin stays up: /healthz answers 503 while draining).
  for (auto& w : workers_) w->draining = true;
  for (std::size_t i = 0; i + (ports_.admin != 0 ? 1 : 0) < listeners_.size(); ++i) listeners_[i]->close();
  // 2. Close idle connections; busy ones close after their response.
  for (auto& w : workers_)
    w->post([wp = w.get()] { wp->for_each_connection([](connection_base* c) { c->drain(); }); });
  // 3. Wait for requests in flight, at most the grace period.
  const auto deadline = std::chrono::steady_clock::now() + settings_.shutdown_grace;
  while (active_connections() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // 4. Close what is left and stop.
  if (ports_.admin != 0) listeners_.back()->close();
  rotation_->stop();
  workers_.front()->post([this] {
    trimming_ = false;  // a trim already queued (its timer expired) must not re-arm
    trim_timer_->cancel();
  });
  for (auto& w : workers_) w->stop();
  if (access_log_) access_log_->flush();  // queued behind the last lines; the pool's thread writes them
}

// Where the pool's memory is: the chunk resource's figures, and the process's resident set.
nlohmann::json server::memory_json() const {
  nlohmann::json m = {{"backing", chunks_ ? "chunks" : (settings_.pool.memory != nullptr ? "custom" : "heap")}};
  if (chunks_) {
    const auto c = chunks_->stats();
    m["buffer_chunks"] = {{"mapped_bytes", c.mapped_bytes}, {"in_use_bytes", c.in_use_bytes}, {"chunks", c.chunks},
                   {"large_blocks", c.large_blocks}, {"maps", c.maps}, {"unmaps", c.unmaps}};
  }
  const auto k = connection_memory_->stats();
  m["connection_chunks"] = {{"mapped_bytes", k.mapped_bytes}, {"in_use_bytes", k.in_use_bytes}, {"chunks", k.chunks}};
// glibc's own figures; not under a sanitizer, whose allocator replaces glibc's (ASan does not intercept
// mallinfo2, and glibc's arena it would walk is not the one in use: seen to crash once OpenSSL was linked).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BUFPOOL_NO_MALLINFO 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BUFPOOL_NO_MALLINFO 1
#endif
#endif
#if defined(__GLIBC__) && !defined(BUFPOOL_NO_MALLINFO)
  const struct mallinfo2 mi = ::mallinfo2();
  m["heap"] = {{"in_use_bytes", mi.uordblks + mi.hblkhd}, {"free_bytes", mi.fordblks}, {"arena_bytes", mi.arena}};
#endif
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    unsigned long size = 0, resident = 0;
    if (std::fscanf(f, "%lu %lu", &size, &resident) == 2)
      m["resident_bytes"] = static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    std::fclose(f);
  }
  return m;
}

namespace {

// /stats "http2": connections, streams, resets, frames received by type, GOAWAYs sent by reason.
nlohmann::json h2_json(const stats_totals& t) {
  nlohmann::json frames = nlohmann::json::object(), goaways = nlohmann::json::object();
  for (std::size_t i = 0; i < t.h2_frames.size(); ++i) frames[h2_frame_names[i]] = t.h2_frames[i];
  for (std::size_t i = 0; i < t.h2_goaways.size(); ++i) goaways[h2_error_names[i]] = t.h2_goaways[i];
  return {{"connections", t.h2_connections},
          {"active", t.h2_active},
          {"library_bytes", t.h2_library_bytes},
          {"streams", t.h2_streams},
          {"resets_received", t.h2_resets_received},
          {"resets_sent", t.h2_resets_sent},
          {"frames_received", frames},
          {"goaways_sent", goaways}};
}

}  // namespace

nlohmann::json server::stats() const {
  using nlohmann::json;
  json threads = json::array();
  json requests = json::object();
  json status = json::object();
  json errors = json::object();
  stats_totals t;
  for (const auto& w : workers_) {
    const worker_stats& s = w->stats();
    threads.push_back({{"http_active", s.http_active.get()},
                       {"http_accepted", s.http_accepted.get()},
                       {"echo_active", s.echo_active.get()},
                       {"echo_accepted", s.echo_accepted.get()},
                       {"rejected", s.rejected.get()}});
    t.add(s);
  }
  for (std::size_t i = 0; i < t.requests.size(); ++i) requests[route_names[i]] = t.requests[i];
  for (std::size_t i = 0; i < t.status_class.size(); ++i) status[std::to_string(i + 1) + "xx"] = t.status_class[i];
  for (std::size_t i = 0; i < t.errors.size(); ++i) errors[error_names[i]] = t.errors[i];
  const std::uint64_t active = t.http_active + t.echo_active, accepted = t.http_accepted + t.echo_accepted;
  const double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const pool_snapshot pool = pool_->snapshot();
  // The pool's outstanding buffers, by holder: the kernel's read-buffer rings (io_uring: lent, no
  // connection holds them, and an idle server keeps them there) and everything else (connections'
  // reads and answers).
  const std::int64_t lent = static_cast<std::int64_t>(t.ring_buffers);
  const std::int64_t outstanding = pool.totals.outstanding + pool.oversize.outstanding;
  json tls_failures = json::object();
  for (std::size_t i = 1; i < t.tls_failures.size(); ++i) tls_failures[tls_failure_names[i]] = t.tls_failures[i];
  json tls_ciphers = json::object();
  for (std::size_t i = 0; i < t.tls_ciphers.size(); ++i)
    if (t.tls_ciphers[i] != 0) tls_ciphers[tls_cipher_names[i]] = t.tls_ciphers[i];
  json tls_listeners = json::array();
  std::uint64_t ticket_rotations = 0;
  for (const tls::holder* h : tls_holders()) {
    tls_listeners.push_back(h->prefix().substr(0, h->prefix().find('.')));
    ticket_rotations += h->tickets().rotations();
  }
  // The leak detector's sites (pool.leak_detection): sampled buffers out for longer than
  // pool.leak_report_age, by the call stack that took them. Empty when it is off.
  json leaks = json::array();
  for (const leak_site& site : pool_->leaks(settings_.leak_report_age))
    leaks.push_back({{"sampled", site.sampled},
                     {"estimated", site.estimated},
                     {"bytes", site.bytes},
                     {"oldest_s", std::chrono::duration<double>(site.oldest).count()},
                     {"stack", site.stack}});
  return json{{"server",
               {{"uptime_s", uptime},
                {"threads", workers_.size()},
                {"io", {{"backend", io_backend_name()}, {"ring_buffers", t.ring_buffers}}},
                {"draining", draining_.load()},
                {"connections", {{"active", active}, {"accepted", accepted}, {"rejected", t.rejected}, {"per_thread", threads}}},
                {"requests", requests},
                {"responses", status},
                {"errors", errors},
                {"bytes_in", t.bytes_in},
                {"bytes_out", t.bytes_out},
                {"echo_bytes", t.echo_bytes},
                {"echo_target", {{"delayed", t.echo_delayed},
                                 {"delayed_waiting", t.echo_delayed_waiting},
                                 {"capped", {{"delay", t.echo_capped_delay}, {"size", t.echo_capped_size}}},
                                 {"gzip", t.echo_gzip},
                                 {"gzip_skipped", t.echo_gzip_skipped}}},
                {"http2", h2_json(t)},
                {"tls", {{"enabled", !tls_listeners.empty()},
                         {"listeners", tls_listeners},
                         {"handshakes", t.tls_handshakes},
                         {"resumed", t.tls_resumed},
                         {"failures", tls_failures},
                         {"versions", {{"TLSv1.2", t.tls_versions[0]}, {"TLSv1.3", t.tls_versions[1]}}},
                         {"ciphers", tls_ciphers},
                         {"ticket_key_rotations", ticket_rotations},
                         {"handshake_time", {{"count", t.tls_handshakes}, {"sum_s", static_cast<double>(t.tls_handshake_sum_ns) / 1e9}}},
                         {"reloads", tls_reloads_.load()},
                         {"reload_failures", tls_reload_failures_.load()}}},
                {"buffers", {{"outstanding", outstanding},
                             {"lent_to_kernel", lent},
                             {"held_by_connections", outstanding - lent}}},
                {"buffer_budget", {{"max_buffer_bytes", settings_.max_buffer_bytes},
                                   {"waits", t.budget_waits},
                                   {"waiting", t.budget_waiting}}},
                {"memory", memory_json()},
                {"access_log", {{"enabled", access_log_ != nullptr},
                                {"dropped", access_pool_ ? access_pool_->overrun_counter() : 0}}},
                {"process", {{"open_fds", open_fd_count()}}},
                {"settings", settings_.effective}}},
              {"pool", pool},
              {"pool_leaks", std::move(leaks)}};
}

}  // namespace bufpool::server
