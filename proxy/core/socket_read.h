#pragma once
// Reading a socket beside its bufferevent: libevent 2.1's bufferevent read path asks
// ioctl(FIONREAD) before every readv, two system calls per read where one recv() does. Owners
// (WebSocket endpoints, HTTP connections) keep their own read event, recv() into one buffer the
// whole loop shares (one thread), and append what they do not consume at once to the
// bufferevent's input, where the rest of the code (and whoever takes the socket next) finds it.

#include <event2/bufferevent.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace tether {

struct SocketRead {
  static constexpr size_t kSize = 64 * 1024;
  // The shared buffer: valid until the next read_socket() of anyone.
  static uint8_t* buffer();
};

// One recv() of BEV's socket into SocketRead::buffer(): > 0 bytes read, 0 at EOF, -1 on an
// error (errno set), -2 when there was nothing to read after all (EAGAIN, EINTR).
ssize_t read_socket(bufferevent* bev);

// Appends to BEV's input. libevent keeps the end of a socket bufferevent's input frozen (only its
// own read path may add there); a plain evbuffer_add fails and drops the bytes.
void add_input(bufferevent* bev, const uint8_t* data, size_t len);

}  // namespace tether
