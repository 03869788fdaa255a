// The io_uring backend's per-worker loop: the ring, its provided-buffer ring filled from the pool,
// and the turn that runs the io_context and the ring's completions. See uring.hpp.
#include "io/uring.hpp"

#include <dirent.h>
#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <asio/posix/stream_descriptor.hpp>
#include <spdlog/spdlog.h>

#include "worker.hpp"

namespace bufpool::server {

namespace {

constexpr unsigned ring_entries = 1024;
constexpr unsigned cq_entries = 16384;
constexpr unsigned buffer_group = 0;
// Asio handlers one turn runs at most before it looks at the ring's completions (fairness, see run()).
constexpr std::size_t max_handlers_per_turn = 64;

// 0, or the error (a positive errno) io_uring_setup gave.
int make_ring(io_uring* ring) {
  io_uring_params p{};
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
  p.cq_entries = cq_entries;
  return -io_uring_queue_init_params(ring_entries, ring, &p);
}

// Registers `mem` (zeroed, `entries` slots) as the provided-buffer ring of buffer_group; false if the
// kernel refuses.
bool register_ring_memory(io_uring* ring, void* mem, unsigned entries) {
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<std::uint64_t>(mem);
  reg.ring_entries = entries;
  reg.bgid = buffer_group;
  return io_uring_register_buf_ring(ring, &reg, 0) == 0;
}

// Maps and registers a provided-buffer ring of `entries` (liburing 2.3 has no io_uring_setup_buf_ring);
// null if the kernel refuses. `bytes` is what to munmap.
io_uring_buf_ring* register_buffer_ring(io_uring* ring, unsigned entries, std::size_t& bytes) {
  bytes = entries * sizeof(io_uring_buf);
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  if (!register_ring_memory(ring, mem, entries)) {
    ::munmap(mem, bytes);
    return nullptr;
  }
  return static_cast<io_uring_buf_ring*>(mem);
}

// Asio's epoll descriptor for this io_context: not offered by Asio, so found the way the kernel
// shows it. A probe eventfd is registered with the io_context's reactor; the epoll descriptor whose
// /proc/self/fdinfo lists the probe as a target is the reactor's.
int reactor_descriptor(asio::io_context& io) {
  const int probe = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (probe < 0) return -1;
  asio::posix::stream_descriptor d(io, probe);  // registers the probe with the reactor
  int found = -1;
  int matches = 0;  // an epoll instance that kept a registration of a closed descriptor could list the
                    // same number: then it is not known which one is Asio's
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      char link[64] = {};
      const std::string path = std::string("/proc/self/fd/") + e->d_name;
      if (::readlink(path.c_str(), link, sizeof link - 1) <= 0 || std::strcmp(link, "anon_inode:[eventpoll]") != 0)
        continue;
      std::ifstream info(std::string("/proc/self/fdinfo/") + e->d_name);
      std::string line;
      while (std::getline(info, line)) {
        std::istringstream in(line);
        std::string key;
        int target = -1;
        if (in >> key >> target && key == "tfd:" && target == probe) {
          found = std::atoi(e->d_name);
          ++matches;
          break;
        }
      }
    }
    ::closedir(dir);
  }
  std::error_code ec;
  d.close(ec);
  return matches == 1 ? found : -1;
}

}  // namespace

// The loop's own operations: the multishot polls on Asio's descriptor and on the wake-up eventfd.
struct uring_loop::internal_op final : uring_op {
  uring_loop& loop;
  int fd;
  bool armed = false;
  internal_op(uring_loop& l, int f) : loop(l), fd(f) {}
  void complete(int res, unsigned flags) override {
    if ((flags & IORING_CQE_F_MORE) == 0) armed = false;
    loop.needs_poll_ = true;  // Asio has something to do (a socket, a timer, a post from elsewhere)
    if (fd == loop.wake_fd_ && res > 0) {
      std::uint64_t v;
      (void)!::read(fd, &v, sizeof v);  // reset the counter: the next post wakes again
    }
  }
};

// On a thread of its own: making and closing a ring can leave task work for the thread that made it,
// which the kernel delivers by interrupting that thread's blocking system call (EINTR); the caller
// (the thread that constructs the server: an embedder's main thread) must not see that.
std::string uring_loop::unavailable() {
  std::string why;
  std::thread([&why] { why = probe(); }).join();
  return why;
}

std::string uring_loop::probe() {
  io_uring ring{};
  if (const int err = make_ring(&ring); err != 0) {
    std::ifstream disabled("/proc/sys/kernel/io_uring_disabled");
    int d = 0;
    if (disabled >> d && d != 0) return "io_uring is disabled (/proc/sys/kernel/io_uring_disabled = " + std::to_string(d) + ")";
    const std::string what = std::string("io_uring_setup: ") + std::strerror(err);
    if (err == ENOSYS || err == EPERM || err == EACCES)
      return what + "; a seccomp profile refuses it (containers' default profiles do: run with one that allows "
                    "io_uring_setup, io_uring_enter and io_uring_register), or the kernel has no io_uring";
    if (err == EINVAL) return what + "; SINGLE_ISSUER | DEFER_TASKRUN need kernel 6.1 or later";
    return what;
  }
  // Provided-buffer rings (5.19) and multishot recv (6.0) come with DEFER_TASKRUN (6.1); check the
  // buffer ring registration all the same, and the opcodes.
  std::string why;
  std::size_t br_bytes = 0;
  io_uring_buf_ring* br = register_buffer_ring(&ring, 8, br_bytes);
  if (br == nullptr) why = "no provided-buffer rings (kernel 5.19 or later)";
  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    for (int op : {IORING_OP_RECV, IORING_OP_SENDMSG, IORING_OP_ACCEPT, IORING_OP_POLL_ADD, IORING_OP_ASYNC_CANCEL})
      if (why.empty() && !io_uring_opcode_supported(probe, op)) why = "opcode " + std::to_string(op) + " not supported";
    io_uring_free_probe(probe);
  }
  io_uring_queue_exit(&ring);
  if (br != nullptr) ::munmap(br, br_bytes);
  return why;
}

uring_loop::uring_loop(worker& w, std::size_t buffer_bytes, unsigned buffers)
    : w_(w), buffer_bytes_(buffer_bytes), buffers_(buffers), level_(buffers) {
  if (buffers_ == 0 || (buffers_ & (buffers_ - 1)) != 0 || buffers_ > 32768)
    throw std::invalid_argument("io.uring_buffers must be a power of two up to 32768");
  ring_ = new io_uring{};
  if (const int err = make_ring(ring_); err != 0) {
    delete ring_;
    throw std::system_error(err, std::generic_category(), "io_uring_queue_init");
  }
  br_ = register_buffer_ring(ring_, buffers_, br_bytes_);
  if (br_ == nullptr) {
    io_uring_queue_exit(ring_);
    delete ring_;
    throw std::runtime_error("io_uring_register_buf_ring failed");
  }
  io_uring_buf_ring_init(br_);
  slots_.resize(buffers_);
  for (unsigned i = buffers_; i-- > 0;) empty_slots_.push_back(static_cast<std::uint16_t>(i));
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

uring_loop::~uring_loop() {
  close_ring();
  delete reactor_poll_;
  delete wake_poll_;
  if (wake_fd_ >= 0) ::close(wake_fd_);
  slots_.clear();  // the pooled buffers go back to the pool
}

// On the worker thread (see unavailable() for why): unregisters the buffer ring and closes the ring.
void uring_loop::close_ring() noexcept {
  if (ring_ != nullptr) {
    io_uring_queue_exit(ring_);
    delete ring_;
    ring_ = nullptr;
  }
  if (br_ != nullptr) {
    ::munmap(br_, br_bytes_);
    br_ = nullptr;
  }
}

io_uring_sqe* uring_loop::sqe() {
  io_uring_sqe* s = io_uring_get_sqe(ring_);
  if (s == nullptr) {  // the submission queue is full: hand it to the kernel, then take one
    io_uring_submit(ring_);
    s = io_uring_get_sqe(ring_);
    if (s == nullptr) throw std::bad_alloc();
  }
  return s;
}

void uring_loop::wake() noexcept {
  const std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

void uring_loop::recv(int fd, uring_op& op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_recv(s, fd, nullptr, static_cast<std::size_t>(buffer_bytes_), 0);
  s->ioprio |= IORING_RECVSEND_POLL_FIRST;  // a buffer is picked only once the socket is readable
  s->flags |= IOSQE_BUFFER_SELECT;
  op.retry_ = false;
  s->buf_group = buffer_group;
  io_uring_sqe_set_data(s, &op);
  ++in_flight_;
}

void uring_loop::sendmsg(int fd, const msghdr* m, uring_op& op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_sendmsg(s, fd, m, MSG_NOSIGNAL);
  io_uring_sqe_set_data(s, &op);
  ++in_flight_;
}

void uring_loop::accept(int fd, uring_op& op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_multishot_accept(s, fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(s, &op);
  ++in_flight_;
}

void uring_loop::cancel(uring_op& op) {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, &op, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(s, nullptr);  // its own completion is not looked at
}

bufpool::buffer uring_loop::take(unsigned flags) {
  const auto bid = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  empty_slots_.push_back(bid);
  w_.stats().ring_buffers.sub();
  return std::move(slots_[bid]);
}

// Once a turn: buffers into the ring, then the recvs that ran dry re-armed for them. A recv that found
// the ring empty doubles its level (once a turn). The ring is refilled when it is a sixteenth of its
// level short, or when a recv waits: one look at the budget then covers several buffers.
void uring_loop::refill() {
  const unsigned have = in_ring();
  if (have < level_) peak_draw_ = std::max(peak_draw_, level_ - have);
  if (starved_head_ != nullptr && level_ < buffers_) level_ = std::min(buffers_, 2 * level_);
  if (have + std::max(1u, level_ / 16) <= level_ || (have < level_ && starved_head_ != nullptr)) fill();
  wake_starved();
}

bool uring_loop::out_of_memory() {
  if (!out_of_memory_) return false;
  fill();  // the last try may be a turn old: memory may be back
  return out_of_memory_;
}

// Puts pooled buffers into the empty slots of the kernel's ring, up to its level and while the
// worker's budget allows (the budget is read once: nothing else takes buffers in this loop); one
// publish (a release store of the ring's tail) for all of them.
void uring_loop::fill() {
  int added = 0;
  const int mask = io_uring_buf_ring_mask(buffers_);
  out_of_memory_ = false;
  std::int64_t room = w_.budget_room();
  while (in_ring() < level_ && room > 0) {
    const std::uint16_t bid = empty_slots_.back();
    try {
      slots_[bid] = w_.pool().get(buffer_bytes_);
    } catch (const std::bad_alloc&) {
      out_of_memory_ = true;  // tried again next turn; a recv that finds the ring empty meanwhile gets a 503
      break;
    }
    io_uring_buf_ring_add(br_, slots_[bid].data(), static_cast<unsigned>(buffer_bytes_), bid, mask, added++);
    empty_slots_.pop_back();
    room -= static_cast<std::int64_t>(buffer_bytes_);
  }
  if (added != 0) {
    io_uring_buf_ring_advance(br_, added);
    w_.stats().ring_buffers.add(static_cast<std::uint64_t>(added));
  }
}

// Once per rotation interval: the level drops to twice the most buffers one turn drew since the last
// trim (at least the floor). The kernel's ring cannot hand back buffers it has not used, so when it
// holds more than the new level it is unregistered, its buffers go back to the pool, and the same
// memory is registered again, empty, to be filled to the level. That is safe only when the kernel
// has told of every buffer it took: with DEFER_TASKRUN buffers are picked only inside
// io_uring_enter, and every completion of the last one has been read (none ready, none overflowed).
// Else the trim waits for a later turn. A recv armed meanwhile picks from the ring registered again
// (the group keeps its number), so no connection sees the change.
void uring_loop::trim() {
  const unsigned want = std::clamp(2 * peak_draw_, std::min(floor, buffers_), buffers_);
  if (in_ring() > want && !trim_failed_) {
    if (io_uring_cq_ready(ring_) != 0 || (IO_URING_READ_ONCE(*ring_->sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0)
      return;  // a completion not read yet may name a buffer of the ring: next turn
    if (io_uring_unregister_buf_ring(ring_, static_cast<int>(buffer_group)) != 0) {
      trim_failed_ = true;
      spdlog::warn("worker {}: io_uring: the buffer ring could not be unregistered; it keeps its buffers", w_.index());
      trim_due_ = false;
      return;
    }
    std::uint64_t freed = 0;
    for (bufpool::buffer& b : slots_)
      if (b) {
        b.reset();  // back to the pool: the kernel no longer knows the ring
        ++freed;
      }
    empty_slots_.clear();
    for (unsigned i = buffers_; i-- > 0;) empty_slots_.push_back(static_cast<std::uint16_t>(i));
    w_.stats().ring_buffers.sub(freed);
    std::memset(br_, 0, br_bytes_);
    registered_ = register_ring_memory(ring_, br_, buffers_);
    if (!registered_)
      spdlog::error("worker {}: io_uring: the buffer ring could not be registered again; retried each turn, "
                    "recvs wait meanwhile", w_.index());
  }
  level_ = want;
  if (registered_ && in_ring() < level_) fill();  // now, so that the next turn does not count this as a draw
  peak_draw_ = 0;
  trim_due_ = false;
}

void uring_loop::when_buffers(uring_op& op) noexcept {
  if (op.starved_) return;
  op.starved_ = true;
  if (op.retry_ && starved_head_ != nullptr) {  // it was woken and lost its buffer: first again
    op.starved_prev_ = nullptr;
    op.starved_next_ = starved_head_;
    starved_head_->starved_prev_ = &op;
    starved_head_ = &op;
  } else {
    op.starved_prev_ = starved_tail_;
    op.starved_next_ = nullptr;
    if (starved_tail_ != nullptr) starved_tail_->starved_next_ = &op;
    else starved_head_ = &op;
    starved_tail_ = &op;
  }
  op.retry_ = false;
}

void uring_loop::forget(uring_op& op) noexcept {
  if (!op.starved_) return;
  op.starved_ = false;
  if (op.starved_prev_ != nullptr) op.starved_prev_->starved_next_ = op.starved_next_;
  else starved_head_ = op.starved_next_;
  if (op.starved_next_ != nullptr) op.starved_next_->starved_prev_ = op.starved_prev_;
  else starved_tail_ = op.starved_prev_;
  op.starved_prev_ = op.starved_next_ = nullptr;
}

// Re-arms waiting recvs, oldest first, one per buffer the kernel's ring holds that no re-armed recv
// may be about to take. Waking them all (as the first version did) let the first few take the new
// buffers and sent the rest straight back to ENOBUFS, in the same order every time, so the same
// connections kept losing (4.9 million waits for 165,000 requests with 8 buffers and 200 clients).
// Counting the ring's buffers, not the ones just added, also wakes the next recv when a woken one
// did not use its buffer (the peer had closed), so no recv waits while the ring holds a buffer.
void uring_loop::wake_starved() {
  while (starved_head_ != nullptr && woken_ < in_ring()) {
    uring_op* op = starved_head_;
    forget(*op);
    if (op->buffers_available()) {  // a recv is armed: op lives until its completion
      op->woken_ = true;
      ++woken_;
    }
  }
}

void uring_loop::run(asio::io_context& io, std::chrono::milliseconds max_wait) {
  reactor_fd_ = reactor_descriptor(io);
  if (reactor_fd_ < 0)
    spdlog::warn("io_uring: Asio's epoll descriptor not found: echo and admin sockets are served within {} ms",
                 max_wait.count());
  reactor_poll_ = new internal_op(*this, reactor_fd_);
  wake_poll_ = new internal_op(*this, wake_fd_);
  auto arm = [&](internal_op* op) {
    if (op->armed || op->fd < 0) return;
    io_uring_sqe* s = sqe();
    io_uring_prep_poll_multishot(s, op->fd, POLLIN);
    io_uring_sqe_set_data(s, static_cast<uring_op*>(op));
    op->armed = true;
    ++in_flight_;
  };
  auto cancel_everything = [&] {
    io_uring_sqe* s = sqe();
    io_uring_prep_cancel(s, nullptr, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(s, nullptr);
  };
  bool stopping = false;
  int stop_rounds = 0;
  for (;;) {
    if (!stopping) {
      // io_context::poll() costs an epoll_wait even when Asio has nothing to do, so it runs only when
      // something says it might: the poll on Asio's descriptor or the wake-up fired, code on this
      // thread posted to it (need_poll), or the wait timed out.
      // At most max_handlers_per_turn handlers a turn: io_context::poll() would also run what they post,
      // and a connection that yields (posts its next read) while its client keeps sending would run
      // again and again inside one poll, while the ring's completions (other clients) wait. What is
      // left runs after this turn's completions; the wait then only looks (timeout 0).
      if (needs_poll_) {
        needs_poll_ = false;
        std::size_t ran = 0;
        while (ran < max_handlers_per_turn && io.poll_one() != 0) ++ran;
        if (ran == max_handlers_per_turn) needs_poll_ = true;
      }
      if (io.stopped()) {
        // Every connection is closed: their last completions, and the loop's own polls, are to come.
        stopping = true;
        cancel_everything();
      } else {
        if (trim_due_) trim();
        if (!registered_) registered_ = register_ring_memory(ring_, br_, buffers_);
        if (registered_) refill();
        arm(reactor_poll_);
        arm(wake_poll_);
      }
    }
    if (stopping && in_flight_ == 0) break;
    __kernel_timespec ts{};
    const auto wait = stopping ? std::chrono::milliseconds(100) : needs_poll_ ? std::chrono::milliseconds(0) : max_wait;
    ts.tv_sec = wait.count() / 1000;
    ts.tv_nsec = (wait.count() % 1000) * 1000000;
    io_uring_cqe* cqe = nullptr;
    const int r = io_uring_submit_and_wait_timeout(ring_, &cqe, 1, &ts, nullptr);
    if (r == -ETIME || r == -EINTR) needs_poll_ = true;
    if (stopping && r == -ETIME) {
      // Nothing more came within the wait: cancel whatever is left once more (a recv armed by a
      // completion after the first cancel), and give up after that.
      cancel_everything();
      if (++stop_rounds > 20) break;
    }
    unsigned head = 0;
    unsigned seen = 0;
    io_uring_for_each_cqe(ring_, head, cqe) {
      ++seen;
      auto* op = static_cast<uring_op*>(io_uring_cqe_get_data(cqe));
      if (op == nullptr) continue;  // a cancel's own completion
      const unsigned flags = cqe->flags;
      if ((flags & IORING_CQE_F_MORE) == 0) --in_flight_;
      if (op->woken_) {  // a recv re-armed by wake_starved() has taken its buffer, or failed to
        op->woken_ = false;
        op->retry_ = true;
        --woken_;
      }
      op->complete(cqe->res, flags);
    }
    io_uring_cq_advance(ring_, seen);
  }
  // Every connection closed before the io_context stopped, and a closing connection leaves the queue
  // of recvs waiting for buffers (forget), so the queue is empty; anything left lets go of its
  // connection here (a closed connection arms nothing).
  while (starved_head_ != nullptr) {
    uring_op* op = starved_head_;
    forget(*op);
    op->buffers_available();
  }
  // The ring first, then its buffers: while an operation may still run, the kernel may write into
  // any buffer of the ring, so none may go back to the pool before the ring is closed. If the stop's
  // cancels did not end every operation (the loop gave up after 20 rounds: never seen), the ring's
  // teardown in the kernel is asynchronous, so even then the buffers are not given back: they are left
  // out of the pool for good (counted as outstanding), as are the connections those operations hold.
  const std::size_t stuck = in_flight_;
  close_ring();
  if (stuck != 0) {
    spdlog::error("worker {}: io_uring: {} operations still in flight after the stop's cancels; the ring is "
                  "closed, and its {} buffers and those operations' connections are not freed",
                  w_.index(), stuck, buffers_ - empty_slots_.size());
    (void)new std::vector<bufpool::buffer>(std::move(slots_));  // deliberately never freed
  }
  for (const auto& b : slots_)
    if (b) w_.stats().ring_buffers.sub();
  slots_.clear();
  empty_slots_.clear();
}

}  // namespace bufpool::server
