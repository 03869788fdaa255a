#include "io/stream.hpp"

#include <cerrno>
#include <new>

#include <sys/socket.h>

#include "worker.hpp"

namespace bufpool::server::io {

pending_input peek(int fd) noexcept {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return pending_input::bytes;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return pending_input::nothing;
  return pending_input::end;  // EOF, or an error
}

take_status take_read_buffer(worker& w, bufpool::buffer& b, std::size_t size) {
  if (b && b.capacity() < size) b.reset();  // the spare is too small for a streaming body
  if (b) return take_status::ok;
  if (w.over_budget()) return take_status::over_budget;  // wait, holding nothing
  try {
    b = w.pool().get(size);
  } catch (const std::bad_alloc&) {
    return take_status::no_memory;
  }
  return take_status::ok;
}

}  // namespace bufpool::server::io
