#include "module/websocket/relay.h"

#include <event2/buffer.h>

#include <ctime>

#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether::websocket {
namespace {

void on_client_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<Relay*>(ctx)->handle_client_event(what);
}
void on_client_read(bufferevent*, void*) noexcept {
  // Frames sent before our 101 wait in the input buffer (bounded by the read watermark).
}
void on_close_after_write(bufferevent* bev, void* ctx) noexcept {
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    static_cast<Relay*>(ctx)->handle_client_event(BEV_EVENT_EOF);
}

void on_idle_timer(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Relay*>(ctx)->handle_idle_timer();
}

// Milliseconds of CLOCK_MONOTONIC_COARSE: read per frame for the idle timeout, so it must be
// cheap (vDSO, no syscall); a few ms of coarseness do not matter to a timeout.
int64_t coarse_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// What the client sees when the upstream drops without a close frame (RFC 6455 7.4.1: 1014 is
// a gateway's "bad response from the upstream").
constexpr uint16_t kUpstreamLostCode = ws::close_code::kBadGateway;

}  // namespace

Relay::Relay(Core& core, ConfigPtr config, HttpConnection::Detached client, std::string client_peer,
             std::string client_key, RelayLimits limits)
    : core_(core),
      config_(std::move(config)),
      pending_client_(std::move(client.bev)),
      client_peer_(std::move(client_peer)),
      client_key_(std::move(client_key)),
      slot_(std::move(client.slot)),
      limits_(limits) {}

Relay::~Relay() = default;

void Relay::start(const UpstreamConf& up, std::optional<std::string> key, UpstreamRequest request,
                  Millis timeout, int tries, HeaderList extra) {
  upstream_name_ = up.name;
  extra_ = std::move(extra);
  // Watch the client while the upstream connects: if it leaves, give up the attempt.
  bufferevent_setcb(pending_client_.get(), on_client_read, nullptr, on_client_event, this);
  bufferevent_setwatermark(pending_client_.get(), EV_READ, 0, 64 * 1024);
  bufferevent_enable(pending_client_.get(), EV_READ);
  opener_ = std::make_unique<routing::UpstreamOpener>(
      core_, up, std::move(key), std::move(request), timeout, tries,
      [this](Result<UpstreamSocket> r) { on_upstream(std::move(r)); });
  opener_->start();
}

void Relay::handle_client_event(short what) {
  (void)what;
  // Before the 101 (or after a 502 was flushed): the client is gone, so is the attempt.
  pending_client_.reset();
  if (opener_) opener_.reset();  // safe: not called from within the opener
  finish_if_done();
}

void Relay::shutdown(bool) {
  if (pending_client_) {
    opener_.reset();  // not called from within the opener
    pending_client_.reset();
    finish_if_done();
    return;
  }
  for (WsEndpoint* ep : {down_.get(), up_.get()}) {
    if (ep && !ep->gone()) ep->send_close(ws::close_code::kGoingAway, "server shutting down");
  }
}

void Relay::on_upstream(Result<UpstreamSocket> result) {
  if (!pending_client_) return;
  if (!result.ok()) {
    TETHER_LOG(kError, "%s, client: %s", result.error().what.c_str(), client_peer_.c_str());
    access_status_ = 502;
    std::string out =
        format_response(502, "text/plain; charset=utf-8", error_body(result.error().what), extra_, true);
    bufferevent_setcb(pending_client_.get(), nullptr, on_close_after_write, on_client_event, this);
    bufferevent_disable(pending_client_.get(), EV_READ);
    bufferevent_enable(pending_client_.get(), EV_WRITE);
    bufferevent_write(pending_client_.get(), out.data(), out.size());
    return;
  }
  UpstreamSocket& sock = result.value();
  lease_ = std::move(sock.lease);
  upstream_name_ = sock.server;
  HeaderList extra{{"Upgrade", "websocket"},
                   {"Connection", "Upgrade"},
                   {"Sec-WebSocket-Accept", ws::accept_key(client_key_)}};
  if (!sock.protocol.empty()) extra.emplace_back("Sec-WebSocket-Protocol", sock.protocol);
  for (auto& c : sock.set_cookies) extra.push_back(std::move(c));
  for (auto& h : extra_) extra.push_back(std::move(h));
  std::string head = "HTTP/1.1 101 Switching Protocols\r\nServer: tether\r\n";
  for (const auto& [n, v] : extra) head += n + ": " + v + "\r\n";
  head += "\r\n";
  bufferevent_setwatermark(pending_client_.get(), EV_READ, 0, 0);
  bufferevent_write(pending_client_.get(), head.data(), head.size());
  ws::DecoderLimits limits{.max_message = limits_.max_message};
  down_ = std::make_unique<WsEndpoint>(core_.base(), std::move(pending_client_), ws::Role::kServer, limits,
                                       static_cast<WsEndpointOwner&>(*this), "client " + client_peer_);
  up_ = std::make_unique<WsEndpoint>(core_.base(), std::move(sock.bev), ws::Role::kClient, limits,
                                     static_cast<WsEndpointOwner&>(*this), "upstream " + sock.server);
  TETHER_LOG(kInfo, "websocket relay open, client: %s, upstream: %s", client_peer_.c_str(),
             sock.server.c_str());
  ++stats().websocket_relays;
  counted_ = true;
  access_status_ = 101;
  down_->start();
  up_->start();
  down_->set_send_timeout(limits_.send_timeout);
  up_->set_send_timeout(limits_.send_timeout);
  last_frame_ms_ = coarse_ms();
  arm_idle_timer(limits_.idle_timeout);
}

void Relay::arm_idle_timer(Millis after) {
  if (limits_.idle_timeout.count() == 0) return;
  if (!idle_timer_) idle_timer_.reset(evtimer_new(core_.base(), on_idle_timer, this));
  timeval tv = to_timeval(after);
  evtimer_add(idle_timer_.get(), &tv);
}

void Relay::handle_idle_timer() {
  // The timer is not moved per frame (that would cost a heap update per message): it fires
  // once per period and re-arms for what is left since the last frame.
  int64_t idle = coarse_ms() - last_frame_ms_;
  if (idle < limits_.idle_timeout.count()) {
    arm_idle_timer(Millis{limits_.idle_timeout.count() - idle});
    return;
  }
  if (!down_ || !up_ || down_->close_sent() || up_->close_sent()) return;  // already closing
  TETHER_LOG(kInfo, "websocket relay idle for %lld ms (tether_idle_timeout), closing, client: %s",
             static_cast<long long>(idle), client_peer_.c_str());
  stats().hit(Limit::kIdleTimeout);
  down_->send_close(ws::close_code::kGoingAway, "idle timeout");
  up_->send_close(ws::close_code::kGoingAway, "idle timeout");
}

void Relay::on_ws_message(WsEndpoint& ep, ws::Opcode opcode, std::string& payload) {
  last_frame_ms_ = coarse_ms();
  stats().message(stats().websocket, &ep == down_.get(), payload.size());
  (&ep == down_.get() ? bytes_in_ : bytes_out_) += payload.size();
  WsEndpoint& to = other(ep);
  to.send(opcode, payload);
  // le-proxy's pump: the far side is full, so stop reading this one until it drains. Not once
  // the far side is closing (it takes no more data): this side's close reply must be read.
  if (!to.close_sent() && to.over_high_watermark()) ep.pause_reading();
}

void Relay::on_ws_ping(WsEndpoint& ep, std::string_view payload) {
  last_frame_ms_ = coarse_ms();
  other(ep).send(ws::Opcode::kPing, payload);
}
void Relay::on_ws_pong(WsEndpoint& ep, std::string_view payload) {
  last_frame_ms_ = coarse_ms();
  other(ep).send(ws::Opcode::kPong, payload);
}

void Relay::on_ws_close(WsEndpoint& ep, uint16_t code, std::string_view reason) {
  // Pass the close on with its code and reason; the far side's reply comes back the same way.
  WsEndpoint& to = other(ep);
  if (to.gone()) {
    if (!ep.close_sent()) ep.send_close(code, reason);
    return;
  }
  to.send_close(code, reason);
}

void Relay::on_ws_error(WsEndpoint& ep, uint16_t code, std::string_view reason) {
  TETHER_LOG(kInfo, "%s broke the WebSocket protocol (%u: %.*s), client: %s", ep.name().c_str(), code,
             static_cast<int>(reason.size()), reason.data(), client_peer_.c_str());
  if (&ep == down_.get()) {
    up_->send_close(ws::close_code::kGoingAway, "client protocol error");
  } else {
    down_->send_close(kUpstreamLostCode, "upstream protocol error");
  }
}

void Relay::on_ws_gone(WsEndpoint& ep) {
  WsEndpoint& to = other(ep);
  if (!ep.close_received() && !to.gone()) {
    // Dropped without a close frame: tell the other side, which still expects one.
    if (&ep == down_.get()) {
      to.send_close(ws::close_code::kGoingAway, "client went away");
    } else {
      TETHER_LOG(kInfo, "upstream %s closed the connection without a close frame, client: %s",
                 upstream_name_.c_str(), client_peer_.c_str());
      to.send_close(kUpstreamLostCode, "upstream went away");
    }
  } else if (!to.gone() && to.close_received() && !to.close_sent()) {
    to.send_close(ws::close_code::kNoStatus, "");
  }
  finish_if_done();
}

void Relay::on_ws_drained(WsEndpoint& ep) {
  other(ep).resume_reading();
}

void Relay::finish_if_done() {
  if (retired_) return;
  bool down_done = !down_ || down_->gone();
  bool up_done = !up_ || up_->gone();
  if (pending_client_ || !down_done || !up_done) return;
  retired_ = true;
  if (idle_timer_) evtimer_del(idle_timer_.get());
  slot_.release();
  if (!access_request_.empty()) {
    log::access(access_ip_, access_request_, access_status_ ? access_status_ : 499,
                "transport=websocket session=- upstream=" + upstream_name_ +
                    " in=" + std::to_string(bytes_in_) + " out=" + std::to_string(bytes_out_) +
                    " time=" + elapsed_since(start_ms_));
  }
  if (counted_) --stats().websocket_relays;
  counted_ = false;
  core_.retire(this);
}

}  // namespace tether::websocket
