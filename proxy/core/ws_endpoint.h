#pragma once
// One side of a WebSocket connection after its handshake: a bufferevent, the codec in one role,
// and the close handshake's state. It reports whole messages and control frames to its owner
// and takes messages to send. Flow control is the owner's: it watches pending_output() and
// pauses the other side's reading (le-proxy's watermarks), resuming on on_ws_drained.

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/core/config.h"
#include "proxy/util/handles.h"
#include "proxy/ws/codec.h"

namespace tether {

class WsEndpoint;

class WsEndpointOwner {
 public:
  virtual ~WsEndpointOwner() = default;
  virtual void on_ws_message(WsEndpoint& ep, ws::Opcode opcode, std::string& payload) = 0;
  virtual void on_ws_ping(WsEndpoint& ep, std::string_view payload) = 0;
  virtual void on_ws_pong(WsEndpoint& ep, std::string_view payload) = 0;
  // The peer sent a close frame (code kNoStatus if it had none).
  virtual void on_ws_close(WsEndpoint& ep, uint16_t code, std::string_view reason) = 0;
  // The peer broke the protocol; the endpoint has already sent a close with CODE and REASON.
  virtual void on_ws_error(WsEndpoint& ep, uint16_t code, std::string_view reason) = 0;
  // The TCP connection is gone (closed after the handshake, dropped, or timed out).
  virtual void on_ws_gone(WsEndpoint& ep) = 0;
  // pending_output() fell below the low watermark.
  virtual void on_ws_drained(WsEndpoint& ep) = 0;
};

class WsEndpoint : private ws::DecoderSink {
 public:
  static constexpr size_t kLowWatermark = 64 * 1024;
  static constexpr size_t kHighWatermark = 256 * 1024;
  static constexpr Millis kCloseTimeout{5000};  // waiting for the peer's close reply

  WsEndpoint(event_base* base, BufferEventPtr bev, ws::Role role, ws::DecoderLimits limits,
             WsEndpointOwner& owner, std::string name);
  ~WsEndpoint() override;

  // Starts reading (and decodes what is already buffered, from the loop, not from here).
  void start();
  // A peer that takes none of our pending output for this long is dropped (send_timeout).
  void set_send_timeout(Millis timeout);

  // Sends a data or control frame; ignored after a close was sent.
  void send(ws::Opcode opcode, std::string_view payload);
  // Sends a close frame (code kNoStatus: none) once; the TCP connection closes when the peer's
  // reply arrives, or after kCloseTimeout. From then on the endpoint reads even if paused (to
  // see the reply); data the peer sent before its reply is still delivered, and the owner
  // decides (a relay passes it on, as RFC 6455 lets the peer send until its close; a closing
  // session drops it).
  void send_close(uint16_t code, std::string_view reason);
  // Closes the TCP connection: a FIN once everything queued is written (server role; the client
  // role leaves the first FIN to the server), then what the peer still sends is read and
  // dropped until its FIN (or kCloseTimeout); on_ws_gone comes then.
  void shutdown();

  void pause_reading();
  void resume_reading();
  bool over_high_watermark() const { return pending_output() > kHighWatermark; }
  size_t pending_output() const;

  bool close_sent() const { return close_sent_; }
  bool close_received() const { return close_received_; }
  bool gone() const { return !bev_; }
  const std::string& name() const { return name_; }

  // Callbacks (public for the C trampolines).
  void handle_read();
  void handle_socket_read();
  void handle_write();
  void handle_event(short what);
  void handle_timer();

 private:
  void on_message(ws::Opcode opcode, std::string& payload) override;
  void on_ping(std::string_view payload) override;
  void on_pong(std::string_view payload) override;
  void on_close(uint16_t code, std::string_view reason) override;
  void on_error(uint16_t code, std::string_view reason) override;
  void drop();
  void maybe_half_close();
  void half_close();
  void write_frame();
  // Feeds DATA to the decoder in chunks, stopping when paused, stopped or gone; returns how
  // many bytes were consumed.
  size_t feed(const uint8_t* data, size_t len);
  void stop_reading();

  event_base* base_;
  BufferEventPtr bev_;
  ws::Role role_;
  ws::Decoder decoder_;
  WsEndpointOwner& owner_;
  std::string name_;
  std::string frame_;  // scratch for encoding
  EventPtr timer_;
  EventPtr kick_;
  // Our own read event on the socket: recv() straight into a scratch buffer, where the
  // bufferevent's read path costs an ioctl(FIONREAD) before every readv.
  EventPtr read_ev_;
  bool paused_ = false;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool shutting_down_ = false;
  bool fin_sent_ = false;
  bool reading_ = false;  // inside handle_read
};

}  // namespace tether
