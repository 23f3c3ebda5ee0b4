#pragma once
// One text/event-stream response carrying a session's messages to an SSE client. It owns the
// client's socket (taken from its HttpConnection) and is the session's subscriber while open.

#include <string>

#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"
#include "proxy/session/session.h"
#include "proxy/util/header_list.h"

namespace tether::sse {

class Stream : public Owned, public session::Subscriber {
 public:
  // SEND_TIMEOUT: a client that takes none of the pending output for this long is dropped.
  Stream(Core& core, HttpConnection::Detached client, std::string peer, HeaderList cors,
         const SessionConf& conf, Millis send_timeout);
  ~Stream() override;

  // A new session: waits for its upstream. The session's DONE must call on_open; if the
  // client leaves first, the stream abandons the session, which then never calls back.
  void start_new(session::Session& s);
  // Sends the head and tether-open, or 502 with the reason.
  void on_open(Status status);
  // An existing session, resumed after seq AFTER (Last-Event-ID).
  void start_resume(session::Session& s, uint64_t after);

  void shutdown(bool graceful) override;
  void set_access(std::string client_ip, std::string request_line) {
    access_ip_ = std::move(client_ip);
    access_request_ = std::move(request_line);
  }
  void on_session_ready(session::Session& s) override;
  void on_session_gone(session::Session& s) override;

  // Callbacks (public for the C trampolines).
  void handle_read();
  void handle_write();
  void handle_event(short what);
  void handle_heartbeat();

 private:
  void write_head();
  void flush();
  void finish();  // close the connection once the output is written
  void close_now();

  Core& core_;
  BufferEventPtr bev_;
  ClientTable::Slot slot_;
  std::string peer_;
  HeaderList cors_;
  SessionConf conf_;
  session::Session* session_ = nullptr;
  EventPtr heartbeat_;
  std::string out_;
  uint64_t cursor_ = 0;  // last seq written
  bool open_ = false;    // head written, streaming
  bool finishing_ = false;
  bool retired_ = false;
  std::string access_ip_, access_request_, access_session_ = "-";
  int access_status_ = 200;
  uint64_t bytes_out_ = 0;
  int64_t start_ms_ = 0;
};

}  // namespace tether::sse
