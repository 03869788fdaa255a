#include "worker.hpp"

#include <asio/post.hpp>
#include <spdlog/spdlog.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ctime>
#include <future>

#include "io/uring.hpp"

namespace bufpool::server {

std::string peer_of(int fd) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if (fd < 0 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) return "-";
  char host[INET6_ADDRSTRLEN] = {};
  unsigned port = 0;
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
    port = ntohs(v6->sin6_port);
  } else {
    return "-";
  }
  return std::string(host) + ":" + std::to_string(port);
}

void log_event(error_kind kind, unsigned status, int fd) {
  if (!spdlog::should_log(spdlog::level::debug)) return;
  const std::string who = peer_of(fd);
  if (status != 0)
    spdlog::debug("rejected: {} {} from {}", status, error_names[static_cast<std::size_t>(kind)], who);
  else
    spdlog::debug("closed: {} ({})", error_names[static_cast<std::size_t>(kind)], who);
}

worker::worker(std::size_t index, bufpool::pool& pool, clock::duration tick, std::pmr::memory_resource* memory)
    : index_(index), pool_(pool), work_(io_.get_executor()), sweep_timer_(io_), tick_(tick),
      http_env_{pool_, stats_, date_.data(), draining, memory} {
  refresh_date();
}

void worker::link(connection_base* c) noexcept {
  c->prev_ = nullptr;
  c->next_ = head_;
  if (head_ != nullptr) head_->prev_ = c;
  head_ = c;
}

void worker::unlink(connection_base* c) noexcept {
  if (c->prev_ != nullptr) c->prev_->next_ = c->next_;
  else if (head_ == c) head_ = c->next_;
  if (c->next_ != nullptr) c->next_->prev_ = c->prev_;
  c->prev_ = c->next_ = nullptr;
}

void worker::wait_for_budget(std::shared_ptr<connection_base> c) {
  stats_.budget_waits.add();
  stats_.budget_waiting.add();
  budget_waiters_.push_back(std::move(c));
}

void worker::resume_waiters() {
  // Each resumed connection may take buffers and put the worker over its budget again; the ones
  // still waiting then stay queued, in order.
  while (!budget_waiters_.empty() && !over_budget()) {
    std::shared_ptr<connection_base> c = std::move(budget_waiters_.front());
    budget_waiters_.pop_front();
    stats_.budget_waiting.sub();
    c->resume();
  }
}

worker::~worker() { stop(); }

void wake_uring(uring_loop& u) noexcept { u.wake(); }

void worker::note_posted() noexcept {
  if (uring_) uring_->need_poll();
}

// With io_uring, the ring is made on the worker thread (SINGLE_ISSUER ties it to the thread that
// makes it); start() waits for that, so that listeners see uring() once they start. A ring that
// cannot be made (the server checked first that one can) leaves this worker on epoll, logged.
void worker::start() {
  sweep();
  std::promise<void> ready;
  auto made = ready.get_future();
  thread_ = std::thread([this, &ready] {
    if (uring_buffers_ == 0) {
      ready.set_value();
      io_.run();
      return;
    }
    try {
      uring_ = std::make_unique<uring_loop>(*this, uring_buffer_bytes_, uring_buffers_);
    } catch (const std::exception& e) {
      spdlog::error("worker {}: io_uring: {}; this worker uses epoll", index_, e.what());
    }
    ready.set_value();
    if (!uring_) {
      io_.run();
      return;
    }
    // Timers and posts that do not wake the ring (the pool's rotation timer posts to every worker)
    // run within this bound.
    uring_->run(io_, std::chrono::milliseconds(50));
    // The loop is destroyed with the worker, after the join: other threads may still call post().
  });
  made.wait();
}

void worker::stop() {
  if (stopped_) return;
  stopped_ = true;
  post([this] {
    // The sweep may already be queued to run (its timer expired): the flag keeps it from re-arming.
    sweeping_ = false;
    sweep_timer_.cancel();
    while (!budget_waiters_.empty()) {  // they hold no buffer; closing them below needs no resume
      budget_waiters_.pop_front();
      stats_.budget_waiting.sub();
    }
    for_each_connection([](connection_base* c) { c->force_close(); });
    work_.reset();
  });
  if (thread_.joinable()) {
    thread_.join();
  } else {
    io_.restart();
    io_.run();  // never started: run the closing handlers here, so no connection outlives its worker
  }
}

void worker::refresh_date() {
  const std::time_t now = std::time(nullptr);
  if (now == date_second_) return;
  date_second_ = now;
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(date_.data(), date_.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

// Every tick: refresh the Date, and fire the deadlines that passed. One timer per worker instead of
// one per connection keeps timer operations off the request path.
void worker::sweep() {
  if (!sweeping_) return;
  refresh_date();
  on_buffers_returned();  // also returns made outside a connection's own handlers
  const auto now = clock::now();
  if (uring_ && ring_trim_interval_ > clock::duration::zero() && now >= next_ring_trim_) {
    if (next_ring_trim_ != clock::time_point{}) uring_->trim_soon();  // not at the first sweep
    next_ring_trim_ = now + ring_trim_interval_;
  }
  for_each_connection([now](connection_base* c) {
    if (c->deadline() <= now) c->on_deadline();
  });
  sweep_timer_.expires_after(tick_);
  sweep_timer_.async_wait([this](std::error_code ec) {
    if (!ec) sweep();
  });
}

}  // namespace bufpool::server
