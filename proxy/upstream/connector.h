#pragma once
// Opens a WebSocket to one upstream server: evdns resolves the name (hosts file included), each
// address is tried in turn until one accepts, then the
// RFC 6455 client handshake, the Sec-WebSocket-Accept check and subprotocol negotiation, all
// within one deadline. On success it hands over the socket, ready for frames.

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "event2/dns.h"
#include "proxy/core/config.h"
#include "proxy/util/handles.h"
#include "proxy/util/header_list.h"
#include "proxy/util/result.h"

namespace tether {

struct UpstreamRequest {
  std::string target;                                        // "/chat?room=1"
  std::vector<std::pair<std::string, std::string>> headers;  // forwarded and added headers
  std::vector<std::string> protocols;                        // offered subprotocols, in order
};

struct UpstreamSocket {
  BufferEventPtr bev;      // no callbacks set; its input may already hold frames
  std::string protocol;    // chosen subprotocol, or empty
  HeaderList set_cookies;  // Set-Cookie values from the 101, to pass on to the client
  std::string server;      // "host:port"
  // Kept by whoever uses the socket: releasing it tells the pool the server has one session
  // fewer (least_conn, stats). Empty for probes.
  std::shared_ptr<void> lease;
};

class Connector {
 public:
  // DONE is called exactly once, from a libevent callback (never from start()), and is the
  // last thing the connector does in that callback: DONE may not destroy the connector, but
  // may do anything else.
  using Done = std::function<void(Result<UpstreamSocket>)>;

  Connector(event_base* base, evdns_base* dns, const UpstreamServer& server, UpstreamRequest request,
            Millis timeout, Done done);
  ~Connector();
  void start();

  // Callbacks (public for the C trampolines).
  void handle_event(short what);
  void handle_read();
  void handle_timeout();
  void handle_resolved(int err, evutil_addrinfo* res);
  void handle_kick();

 private:
  void try_next();
  void fail(std::string why);
  void send_request();

  event_base* base_;
  evdns_base* dns_;
  UpstreamServer server_;
  UpstreamRequest request_;
  Millis timeout_;
  Done done_;
  BufferEventPtr bev_;
  EventPtr timer_;
  EventPtr kick_;  // runs try_next from the loop when the name resolved inside start()
  evdns_getaddrinfo_request* dns_request_ = nullptr;
  std::vector<sockaddr_storage> addresses_;
  size_t next_address_ = 0;
  std::string last_error_;
  bool starting_ = false;
  bool resolved_in_start_ = false;
  std::string key_;
  bool finished_ = false;
  bool connected_ = false;  // TCP is up; the handshake is under way
};

}  // namespace tether
