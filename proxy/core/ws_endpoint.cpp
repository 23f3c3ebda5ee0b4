#include "proxy/core/ws_endpoint.h"

#include <event2/buffer.h>
#include <sys/socket.h>

#include <cerrno>

#include "proxy/core/socket_read.h"
#include "proxy/core/stats.h"
#include "proxy/core/write_now.h"
#include "proxy/util/assert.h"
#include "proxy/util/timeval.h"

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
void on_socket_read(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<WsEndpoint*>(ctx)->handle_socket_read();
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
  // The bufferevent only writes; reading is ours (handle_socket_read).
  bufferevent_disable(bev_.get(), EV_READ);
  bufferevent_enable(bev_.get(), EV_WRITE);
  read_ev_.reset(event_new(base_, bufferevent_getfd(bev_.get()), EV_READ | EV_PERSIST, on_socket_read, this));
  event_add(read_ev_.get(), nullptr);
  // Frames that arrived with the handshake are already in the input buffer.
  if (evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) event_active(kick_.get(), EV_TIMEOUT, 0);
}

void WsEndpoint::set_send_timeout(Millis timeout) {
  if (!bev_) return;
  timeval tv = to_timeval(timeout);
  bufferevent_set_timeouts(bev_.get(), nullptr, &tv);
}

size_t WsEndpoint::pending_output() const {
  return bev_ ? evbuffer_get_length(bufferevent_get_output(bev_.get())) : 0;
}

size_t WsEndpoint::feed(const uint8_t* data, size_t len) {
  size_t done = 0;
  // The owner may pause us, or close, from inside a sink callback: check between chunks.
  while (bev_ && !paused_ && !decoder_.stopped() && done < len) {
    size_t want = std::min(len - done, kReadChunk);
    size_t n = decoder_.feed(data + done, want, *this);
    done += n;
    if (n < want) break;
  }
  return done;
}

void WsEndpoint::handle_read() {
  if (!bev_ || reading_) return;
  evbuffer* in = bufferevent_get_input(bev_.get());
  if (shutting_down_) {  // lingering: what the peer still sends is read only to be dropped
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  reading_ = true;
  while (bev_ && !paused_ && !decoder_.stopped() && evbuffer_get_length(in) > 0) {
    size_t want = std::min(evbuffer_get_length(in), kReadChunk);
    const auto* data = evbuffer_pullup(in, static_cast<ev_ssize_t>(want));
    size_t n = feed(data, want);
    if (bev_) evbuffer_drain(in, n);
    if (n < want) break;
  }
  reading_ = false;
  if (bev_ && decoder_.stopped() && !shutting_down_) stop_reading();
}

void WsEndpoint::handle_socket_read() {
  if (!bev_) return;
  ssize_t r = read_socket(bev_.get());
  if (r == -2) return;
  if (r < 0) {
    handle_event(BEV_EVENT_READING | BEV_EVENT_ERROR);
    return;
  }
  const uint8_t* data = SocketRead::buffer();
  if (r == 0) {
    handle_event(BEV_EVENT_READING | BEV_EVENT_EOF);
    return;
  }
  if (shutting_down_) return;  // lingering: read only to be dropped, until the peer's FIN
  evbuffer* in = bufferevent_get_input(bev_.get());
  if (reading_ || evbuffer_get_length(in) > 0) {
    // Bytes before these wait in the input buffer: keep the order.
    add_input(bev_.get(), data, static_cast<size_t>(r));
    handle_read();
    return;
  }
  reading_ = true;
  size_t n = feed(data, static_cast<size_t>(r));
  reading_ = false;
  if (!bev_ || shutting_down_) return;
  if (decoder_.stopped()) {
    stop_reading();
  } else if (n < static_cast<size_t>(r)) {
    add_input(bev_.get(), data + n, static_cast<size_t>(r) - n);
  }
}

void WsEndpoint::stop_reading() {
  if (read_ev_) event_del(read_ev_.get());
}

void WsEndpoint::pause_reading() {
  // Once our close is out, the peer's reply must be read whatever the flow control wants.
  if (paused_ || !bev_ || shutting_down_ || close_sent_) return;
  paused_ = true;
  stop_reading();
}

void WsEndpoint::resume_reading() {
  if (!paused_ || !bev_) return;
  paused_ = false;
  if (decoder_.stopped()) return;
  if (read_ev_) event_add(read_ev_.get(), nullptr);
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
    timeval tv = to_timeval(kCloseTimeout);
    evtimer_add(timer_.get(), &tv);
  }
}

// RFC 6455 section 7.1.1 asks for a clean TCP close: our FIN once everything queued is written,
// then read until the peer's FIN, then close. Closing at once would be a reset whenever the
// peer's next bytes (its close reply, or frames it sent before seeing our close) are unread,
// and a reset can destroy our close frame in the peer's receive buffer before it is read.
// The server closes first, so that TIME_WAIT stays with it: the client role sends no FIN of its
// own but waits for the server's (bounded by the close timer, as the RFC allows).
void WsEndpoint::shutdown() {
  if (!bev_ || shutting_down_) return;
  shutting_down_ = true;
  paused_ = false;
  bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  if (read_ev_) event_add(read_ev_.get(), nullptr);
  // Bounded: a peer that never reads, or never closes, is dropped by the close timer.
  timeval tv = to_timeval(kCloseTimeout);
  evtimer_add(timer_.get(), &tv);
  maybe_half_close();
  // Input already buffered is dropped now; the peer's FIN may be waiting behind it.
  if (bev_ && evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0)
    event_active(kick_.get(), EV_TIMEOUT, 0);
}

void WsEndpoint::maybe_half_close() {
  if (role_ == ws::Role::kServer && pending_output() == 0) half_close();
}

void WsEndpoint::half_close() {
  if (fin_sent_) return;
  fin_sent_ = true;
  if (::shutdown(bufferevent_getfd(bev_.get()), SHUT_WR) != 0) drop();  // already reset: nothing to wait for
}

void WsEndpoint::handle_write() {
  if (!bev_) return;
  if (shutting_down_) {
    maybe_half_close();
    return;
  }
  owner_.on_ws_drained(*this);
}

void WsEndpoint::handle_event(short what) {
  // EOF (while shutting down: the clean end of the linger), error or timeout: the connection
  // is over either way.
  if (what & BEV_EVENT_TIMEOUT) stats().hit(Limit::kSendTimeout);
  drop();
}

void WsEndpoint::handle_timer() {
  drop();
}

void WsEndpoint::drop() {
  if (!bev_) return;
  evtimer_del(timer_.get());
  event_del(kick_.get());
  stop_reading();  // freed with the endpoint: this may be its own callback
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bev_.reset();
  owner_.on_ws_gone(*this);
}

void WsEndpoint::on_message(ws::Opcode opcode, std::string& payload) {
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
  if (code == ws::close_code::kTooBig) stats().hit(Limit::kMessageSize);
  send_close(code, reason);
  close_received_ = true;  // nothing more will be read
  owner_.on_ws_error(*this, code, reason);
  shutdown();
}

}  // namespace tether
