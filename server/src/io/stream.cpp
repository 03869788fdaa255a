#include "io/stream.hpp"

#include <cerrno>

#include <sys/socket.h>

namespace bufpool::server::io {

pending_input peek(int fd) noexcept {
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return pending_input::bytes;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return pending_input::nothing;
  return pending_input::end;  // EOF, or an error
}

}  // namespace bufpool::server::io
