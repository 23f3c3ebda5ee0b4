#include "proxy/core/ws_endpoint.h"

#include <event2/buffer.h>

#include "proxy/core/write_now.h"

namespace tether {
namespace {

void on_read(bufferevent*, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_read();
}
void on_write(bufferevent*, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_write();
}
void on_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_event(what);
}
void on_timer(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_timer();
}
void on_kick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_read();
}

// Bytes fed to the decoder between checks for a pause.
constexpr size_t kReadChunk = 16 * 1024;

}  // namespace

WsEndpoint::WsEndpoint(event_base* base, BufferEventPtr bev, ws::Role role, ws::DecoderLimits limits,
                       WsEndpointOwner& owner, std::string name)
    : base_(base),
      bev_(std::move(bev)),
      role_(role),
      decoder_(role, limits),
      owner_(owner),
      name_(std::move(name)) {
  timer_.reset(evtimer_new(base_, on_timer, this));
  kick_.reset(event_new(base_, -1, 0, on_kick, this));
}

WsEndpoint::~WsEndpoint() = default;

void WsEndpoint::start() {
  bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
  bufferevent_setwatermark(bev_.get(), EV_WRITE, kLowWatermark, 0);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  // Frames that arrived with the handshake are already in the input buffer.
  if (evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) event_active(kick_.get(), EV_TIMEOUT, 0);
}

size_t WsEndpoint::pending_output() const {
  return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_.get())) : 0;
}

void WsEndpoint::handle_read() {
  if (!bev_ || reading_) return;
  reading_ = true;
  evbuffer* in = bufferevent_get_input(bev_.get());
  // The owner may pause us, or close, from inside a sink callback: check between chunks.
  while (bev_ && !paused_ && !decoder_.stopped() && evbuffer_get_length(in) > 0) {
    size_t want = std::min(evbuffer_get_length(in), kReadChunk);
    const auto* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(want));
    size_t n = decoder_.feed(data, want, *this);
    if (bev_) evbuffer_drain(in, n);
    if (n < want) break;
  }
  reading_ = false;
  if (bev_ && decoder_.stopped()) bufferevent_disable(bev_.get(), EV_READ);
}

void WsEndpoint::pause_reading() {
  // Once our close is out, the peer's reply must be read whatever the flow control wants.
  if (paused_ || !bev_ || close_sent_) return;
  paused_ = true;
  bufferevent_disable(bev_.get(), EV_READ);
}

void WsEndpoint::resume_reading() {
  if (!paused_ || !bev_) return;
  paused_ = false;
  if (decoder_.stopped()) return;
  bufferevent_enable(bev_.get(), EV_READ);
  if (evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) event_active(kick_.get(), EV_TIMEOUT, 0);
}

void WsEndpoint::write_frame() {
  write_now(bev_.get(), frame_.data(), frame_.size());
}

void WsEndpoint::send(ws::Opcode opcode, std::string_view payload) {
  if (!bev_ || close_sent_) return;
  frame_.clear();
  ws::append_frame(frame_, role_, opcode, payload);
  write_frame();
}

void WsEndpoint::send_close(uint16_t code, std::string_view reason) {
  if (!bev_ || close_sent_) return;
  frame_.clear();
  ws::append_frame(frame_, role_, ws::Opcode::kClose, ws::close_payload(code, reason));
  write_frame();
  close_sent_ = true;
  if (close_received_) {
    shutdown();
  } else {
    // The owner may have paused reading (a full session buffer, a slow relay partner); the
    // reply, or the peer closing the connection, would then go unseen until the close timer
    // dropped the connection: read on (what comes before the reply is not delivered).
    resume_reading();
    timeval tv{kCloseTimeout.count() / 1000, 0};
    evtimer_add(timer_.get(), &tv);
  }
}

void WsEndpoint::shutdown() {
  if (!bev_) return;
  shutting_down_ = true;
  bufferevent_disable(bev_.get(), EV_READ);
  bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  if (pending_output() == 0) {
    drop();
  } else {
    // Bounded: a peer that never reads is dropped by the close timer.
    timeval tv{kCloseTimeout.count() / 1000, 0};
    evtimer_add(timer_.get(), &tv);
  }
}

void WsEndpoint::handle_write() {
  if (!bev_) return;
  if (shutting_down_) {
    if (pending_output() == 0) drop();
    return;
  }
  owner_.on_ws_drained(*this);
}

void WsEndpoint::handle_event(short) {
  // EOF, error or timeout: the connection is over either way.
  drop();
}

void WsEndpoint::handle_timer() {
  drop();
}

void WsEndpoint::drop() {
  if (!bev_) return;
  evtimer_del(timer_.get());
  event_del(kick_.get());
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bev_.reset();
  owner_.on_ws_gone(*this);
}

void WsEndpoint::on_message(ws::Opcode opcode, std::string& payload) {
  // After our close the owner has moved on (a session's close is the last thing its client
  // sees; browsers drop messages that arrive while closing): read to the reply, deliver nothing.
  if (close_sent_) return;
  owner_.on_ws_message(*this, opcode, payload);
}
void WsEndpoint::on_ping(std::string_view payload) {
  owner_.on_ws_ping(*this, payload);
}
void WsEndpoint::on_pong(std::string_view payload) {
  owner_.on_ws_pong(*this, payload);
}

void WsEndpoint::on_close(uint16_t code, std::string_view reason) {
  close_received_ = true;
  owner_.on_ws_close(*this, code, reason);
  // The handshake is complete once both frames crossed.
  if (close_sent_) shutdown();
}

void WsEndpoint::on_error(uint16_t code, std::string_view reason) {
  send_close(code, reason);
  close_received_ = true;  // nothing more will be read
  owner_.on_ws_error(*this, code, reason);
  shutdown();
}

}  // namespace tether
