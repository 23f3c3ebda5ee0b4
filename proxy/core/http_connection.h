#pragma once
// One client connection speaking HTTP/1.1: reads requests (pipelined ones queue and are answered
// in order), routes each to a location and lets the modules claim it, writes responses, and
// enforces the server's limits and timeouts. A module that upgrades the connection takes the
// socket with detach(); the connection then retires.

#include <sys/socket.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/core/config.h"
#include "proxy/core/core.h"
#include "proxy/http/request_parser.h"
#include "proxy/util/handles.h"
#include "proxy/util/header_list.h"

namespace tether {

// Builds a complete response head + body. CLOSE adds "Connection: close". HEAD_ONLY (the answer
// to a HEAD request) leaves the body out but keeps its Content-Length (RFC 9110 9.3.2).
std::string format_response(int status, std::string_view content_type, std::string_view body,
                            const HeaderList& extra, bool close, bool head_only = false);
// The body of every error: one line, then "\n".
std::string error_body(std::string_view reason);

// For the access log: the request target with every tether-session value (the parameter's name
// decoded, as the modules read it) cut to its first six characters (a session id is a bearer
// secret), and the time since START_MS as "0.003".
std::string redact_target(std::string_view target);
std::string elapsed_since(int64_t start_ms);
int64_t monotonic_ms();

// A module that answers a request later (a held poll, a POST waiting for its turn) registers
// with HttpConnection::defer(); if the client leaves first, the connection calls
// on_client_gone() once and forgets it.
class DeferredResponse {
 public:
  virtual void on_client_gone() = 0;

 protected:
  ~DeferredResponse() = default;
};

class HttpConnection : public Owned {
 public:
  HttpConnection(Core& core, ConfigPtr config, const ServerConf& server, evutil_socket_t fd,
                 const sockaddr* peer, int peer_len);
  ~HttpConnection() override;

  // Serves requests; SLOT is the connection's place under max_connections_per_client.
  void start(ClientTable::Slot slot = {});
  // Answers STATUS with REASON at once and closes (a connection limit was reached).
  void refuse(int status, const char* reason);
  // Answers what is under way, then closes; an idle connection closes now.
  void shutdown(bool graceful) override;

  // Answers the request being handled. Error statuses (>= 400) should use respond_error.
  void respond(int status, std::string_view content_type, std::string_view body,
               const HeaderList& extra = {});
  // A text/plain one-line reason. The connection stays open unless CLOSE or the request said so.
  void respond_error(int status, std::string_view reason, const HeaderList& extra = {}, bool close = false);
  // Gives up the socket (with any bytes read but not parsed still in its input buffer) and
  // its client slot, and retires. The caller owns the bufferevent, with no callbacks set and
  // reading disabled, and keeps the slot as long as it keeps the socket.
  struct Detached {
    BufferEventPtr bev;
    ClientTable::Slot slot;
  };
  Detached detach();
  // The request being handled will be answered later, through respond*(). Until then the
  // connection reads no further request (pipelined ones wait) and runs no idle timer.
  void defer(DeferredResponse* waiter);

  const std::string& peer_ip() const { return peer_ip_; }
  const ServerConf& server() const { return server_; }
  const std::string& peer() const { return peer_; }
  uint64_t id() const { return id_; }

  // Callbacks (public for the C trampolines).
  void handle_read();
  void handle_socket_read();
  void handle_write();
  void handle_event(short what);
  void handle_timeout();
  void handle_kick();

 private:
  void process();
  void dispatch(http::Request& req);
  void finish_response(bool close);
  void close_now();
  void uncount();
  void linger();
  void arm_timer();
  // Our read event on the socket (SocketRead: one recv() per read, no ioctl) on or off.
  void reading(bool on);

  Core& core_;
  ConfigPtr config_;  // keeps SERVER alive
  const ServerConf& server_;
  BufferEventPtr bev_;
  EventPtr timer_;
  EventPtr kick_;  // runs process() from the loop after a deferred response
  EventPtr read_ev_;
  DeferredResponse* deferred_ = nullptr;
  bool dispatching_ = false;
  http::RequestParser parser_;
  std::string peer_ip_, peer_;
  sockaddr_storage peer_addr_{};
  uint64_t id_;
  bool busy_ = false;       // a request is being answered
  bool closing_ = false;    // close once the output is flushed
  bool keep_alive_ = true;  // of the request being answered
  bool head_ = false;       // the request being answered is a HEAD: no body in the response
  // Which timeout of the current request is running: its head's, then its body's.
  enum class RequestTimer { kNone, kHead, kBody } request_timer_ = RequestTimer::kNone;
  bool refused_ = false;
  ClientTable::Slot slot_;
  bool served_any_ = false;
  bool read_paused_ = false;
  bool lingering_ = false;
  bool counted_ = true;  // in stats().http_connections
  // The request being answered, for the access log.
  std::string access_request_ = "-";
  std::string access_transport_ = "http";
  std::string access_session_ = "-";
  size_t access_in_ = 0;
  int64_t access_start_ = 0;
  void log_access(int status, size_t out_bytes);  // write side shut, discarding input until EOF
};

}  // namespace tether
