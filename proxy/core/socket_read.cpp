#include "proxy/core/socket_read.h"

#include <event2/buffer.h>
#include <sys/socket.h>

#include <cerrno>

#include "proxy/util/assert.h"

namespace tether {

uint8_t* SocketRead::buffer() {
  static uint8_t buf[kSize];
  return buf;
}

ssize_t read_socket(bufferevent* bev) {
  ssize_t r = recv(bufferevent_getfd(bev), SocketRead::buffer(), SocketRead::kSize, 0);
  if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return -2;
  return r;
}

void add_input(bufferevent* bev, const uint8_t* data, size_t len) {
  evbuffer* in = bufferevent_get_input(bev);
  evbuffer_unfreeze(in, 0);
  int rc = evbuffer_add(in, data, len);
  evbuffer_freeze(in, 0);
  TETHER_RELEASE_ASSERT(rc == 0);
}

}  // namespace tether
