#pragma once
// Writes to a bufferevent's socket at once when nothing is queued before the data, and queues
// only what the socket does not take. Through the bufferevent alone, every write costs an
// epoll_ctl to watch for writability, a wake-up, the write, and an epoll_ctl to stop watching
// (the profile of a relay was mostly those system calls). Order is kept: the direct write
// happens only on an empty queue. Callers that wait for the output to drain must check for an
// empty output themselves: no write callback follows data that went out at once.

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <sys/socket.h>

#include <cstddef>

namespace tether {

inline void write_now(bufferevent* bev, const void* data, size_t len) {
  size_t done = 0;
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
    ssize_t n = ::send(bufferevent_getfd(bev), data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    // An error other than EAGAIN is left for the bufferevent to meet and report.
    if (n > 0) done = static_cast<size_t>(n);
  }
  if (done < len) bufferevent_write(bev, static_cast<const char*>(data) + done, len - done);
}

}  // namespace tether
