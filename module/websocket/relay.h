#pragma once
// A relayed WebSocket: the client's connection (server role) and the upstream's (client role),
// messages, pings and the close handshake passed through both ways with back-pressure.

#include <memory>
#include <string>

#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/ws_endpoint.h"
#include "proxy/http/request_parser.h"
#include "proxy/routing/router.h"
#include "proxy/upstream/connector.h"

namespace tether::websocket {

struct RelayLimits {
  size_t max_message;   // tether_max_message, either way
  Millis send_timeout;  // either side taking none of its pending output
  Millis idle_timeout;  // tether_idle_timeout: no frame either way (0: off)
};

class Relay : public Owned, private WsEndpointOwner {
 public:
  // Takes the client's socket (and its client slot) right after its upgrade request was
  // accepted (not yet answered).
  Relay(Core& core, ConfigPtr config, HttpConnection::Detached client, std::string client_peer,
        std::string client_key, RelayLimits limits);
  ~Relay() override;

  // Opens the upstream (a server of UP, by KEY and balance, up to TRIES servers); the client
  // gets 101 (with EXTRA headers, e.g. a sticky cookie) once it is up, or 502 with the reason.
  void start(const UpstreamConf& up, std::optional<std::string> key, UpstreamRequest request, Millis timeout,
             int tries, HeaderList extra);

  void handle_client_event(short what);
  void handle_idle_timer();
  // For the access log line written when the relay ends.
  void set_access(std::string client_ip, std::string request_line) {
    access_ip_ = std::move(client_ip);
    access_request_ = std::move(request_line);
  }
  void shutdown(bool graceful) override;

 private:
  void on_upstream(Result<UpstreamSocket> result);
  void finish_if_done();
  void arm_idle_timer(Millis after);
  WsEndpoint& other(WsEndpoint& ep) { return &ep == down_.get() ? *up_ : *down_; }

  void on_ws_message(WsEndpoint& ep, ws::Opcode opcode, std::string& payload) override;
  void on_ws_ping(WsEndpoint& ep, std::string_view payload) override;
  void on_ws_pong(WsEndpoint& ep, std::string_view payload) override;
  void on_ws_close(WsEndpoint& ep, uint16_t code, std::string_view reason) override;
  void on_ws_error(WsEndpoint& ep, uint16_t code, std::string_view reason) override;
  void on_ws_gone(WsEndpoint& ep) override;
  void on_ws_drained(WsEndpoint& ep) override;

  Core& core_;
  ConfigPtr config_;
  BufferEventPtr pending_client_;  // until the upstream answers
  std::string client_peer_;
  std::string client_key_;
  ClientTable::Slot slot_;
  RelayLimits limits_;
  EventPtr idle_timer_;
  int64_t last_frame_ms_ = 0;  // coarse monotonic time of the last frame either way
  std::unique_ptr<routing::UpstreamOpener> opener_;
  std::shared_ptr<void> lease_;  // the server's place in its pool's active count
  HeaderList extra_;
  std::unique_ptr<WsEndpoint> down_;  // client side
  std::unique_ptr<WsEndpoint> up_;    // upstream side
  std::string upstream_name_;
  bool retired_ = false;
  bool counted_ = false;  // in stats().websocket_relays
  std::string access_ip_, access_request_;
  int64_t start_ms_ = monotonic_ms();
  int access_status_ = 0;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
};

}  // namespace tether::websocket
