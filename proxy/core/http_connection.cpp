#include "proxy/core/http_connection.h"

#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "module/module.h"
#include "proxy/core/cors.h"
#include "proxy/core/socket_read.h"
#include "proxy/core/stats.h"
#include "proxy/core/write_now.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether {
namespace {

// Pipelined requests waiting beyond this many stop reading: a client cannot queue without bound.
constexpr size_t kMaxQueued = 32;
// After the last response of a connection closed by us, unread input is discarded this long
// before the close: closing with unread bytes sends a reset, which can destroy the response
// before the client reads it (nginx's lingering close).
constexpr Millis kLingerTime{5000};
// Responses the client has not read beyond this stop reading new requests.
constexpr size_t kMaxPendingOutput = 1 << 20;

uint64_t g_next_id = 1;

void on_read(bufferevent*, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_read();
}
void on_write(bufferevent*, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_write();
}
void on_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_event(what);
}
void on_timer(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_timeout();
}
void on_kick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_kick();
}
void on_socket_read(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<HttpConnection*>(ctx)->handle_socket_read();
}

}  // namespace

std::string error_body(std::string_view reason) {
  std::string body(reason);
  body += '\n';
  return body;
}

std::string format_response(int status, std::string_view content_type, std::string_view body,
                            const HeaderList& extra, bool close, bool head_only) {
  std::string out;
  out.reserve(160 + body.size());
  out += "HTTP/1.1 ";
  out += std::to_string(status);
  out += ' ';
  out += http::reason_phrase(status);
  out += "\r\nServer: tether\r\n";
  if (!content_type.empty()) {
    out += "Content-Type: ";
    out += content_type;
    out += "\r\n";
  }
  if (status != 204 && status != 304) {
    out += "Content-Length: ";
    out += std::to_string(body.size());
    out += "\r\n";
  }
  for (const auto& [name, value] : extra) {
    out += name;
    out += ": ";
    out += value;
    out += "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (status != 204 && status != 304 && !head_only) out += body;
  return out;
}

int64_t monotonic_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string elapsed_since(int64_t start_ms) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f", static_cast<double>(monotonic_ms() - start_ms) / 1000.0);
  return buf;
}

std::string redact_target(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return std::string(target);
  std::string out(target.substr(0, q + 1));
  std::string_view query = target.substr(q + 1);
  // Parameters are named as the modules read them (query_param decodes names): an encoded name
  // such as "tether%2Dsession" must not carry the whole id into the log.
  std::string name;
  for (;;) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    size_t eq = item.find('=');
    if (eq != std::string_view::npos && item.size() - eq - 1 > 6 &&
        http::url_decode(item.substr(0, eq), name) && name == "tether-session") {
      out += item.substr(0, eq + 1 + 6);
      out += "\u2026";
    } else {
      out += item;
    }
    if (amp == std::string_view::npos) break;
    out += '&';
    query.remove_prefix(amp + 1);
  }
  return out;
}

HttpConnection::HttpConnection(Core& core, ConfigPtr config, const ServerConf& server, evutil_socket_t fd,
                               const sockaddr* peer, int)
    : core_(core),
      config_(std::move(config)),
      server_(server),
      parser_(http::ParserLimits{.max_header_bytes = server.client_max_header_size,
                                 .max_body_bytes = server.client_max_body_size}),
      id_(g_next_id++) {
  // Messages are written whole as they come: Nagle would hold small ones back for an ACK
  // (milliseconds of latency on an open-loop stream), as nginx's tcp_nodelay avoids.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  bev_.reset(bufferevent_socket_new(core.base(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
  if (!bev_) evutil_closesocket(fd);  // on failure the fd is still ours
  peer_ = format_address(peer);
  memcpy(&peer_addr_, peer, peer->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  peer_ip_ = client_ip(peer);
  timer_.reset(evtimer_new(core.base(), on_timer, this));
  kick_.reset(event_new(core.base(), -1, 0, on_kick, this));
  ++stats().http_connections;
  ++stats().accepted_total;
}

HttpConnection::~HttpConnection() {
  if (refused_) core_.refusal_done();
}

void HttpConnection::start(ClientTable::Slot slot) {
  slot_ = std::move(slot);
  if (!bev_) {
    TETHER_LOG(kError, "bufferevent_socket_new() failed, client: %s", peer_.c_str());
    core_.retire(this);
    return;
  }
  bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
  timeval send = to_timeval(server_.send_timeout);
  bufferevent_set_timeouts(bev_.get(), nullptr, &send);
  // The bufferevent only writes; reading is ours (handle_socket_read).
  bufferevent_enable(bev_.get(), EV_WRITE);
  read_ev_.reset(
      event_new(core_.base(), bufferevent_getfd(bev_.get()), EV_READ | EV_PERSIST, on_socket_read, this));
  reading(true);
  arm_timer();
}

void HttpConnection::refuse(int status, const char* reason) {
  refused_ = true;
  start();
  if (!bev_) return;
  busy_ = true;
  respond_error(status, reason, {}, true);
}

void HttpConnection::reading(bool on) {
  if (!read_ev_) return;
  on ? event_add(read_ev_.get(), nullptr) : event_del(read_ev_.get());
}

void HttpConnection::handle_socket_read() {
  if (!bev_) return;
  ssize_t r = read_socket(bev_.get());
  if (r == -2) return;
  if (r <= 0) {
    handle_event(BEV_EVENT_READING | (r == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR));
    return;
  }
  if (lingering_) return;  // discarding until the client's FIN
  add_input(bev_.get(), SocketRead::buffer(), static_cast<size_t>(r));
  handle_read();
}

void HttpConnection::handle_read() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  if (lingering_) {
    evbuffer_drain(in, evbuffer_get_length(in));
    return;
  }
  while (!closing_ && !parser_.failed() && !parser_.upgraded() && evbuffer_get_length(in) > 0 &&
         parser_.queued() < kMaxQueued) {
    evbuffer_iovec vec;
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    size_t n = parser_.feed(static_cast<const char*>(vec.iov_base), vec.iov_len);
    evbuffer_drain(in, n);
    if (n < vec.iov_len) break;
  }
  process();
}

void HttpConnection::process() {
  while (!busy_ && !closing_ && bev_) {
    if (parser_.has_request()) {
      http::Request req = parser_.take_request();
      dispatch(req);
      continue;
    }
    if (parser_.failed()) {
      TETHER_LOG(kInfo, "client sent invalid request (%s), client: %s", parser_.error_reason().c_str(),
                 peer_.c_str());
      if (parser_.error_status() == 431) stats().hit(Limit::kHeaderSize);
      if (parser_.error_status() == 413) stats().hit(Limit::kBodySize);
      respond_error(parser_.error_status(), parser_.error_reason(), {}, true);
    }
    break;
  }
  if (!bev_ || closing_) return;
  // Flow control: stop reading while requests pile up or responses go unread.
  bool pause = parser_.queued() >= kMaxQueued ||
               evbuffer_get_length(bufferevent_get_output(bev_.get())) > kMaxPendingOutput;
  if (pause != read_paused_) {
    read_paused_ = pause;
    reading(!pause);
  }
  arm_timer();
}

void HttpConnection::dispatch(http::Request& req) {
  busy_ = true;
  if (log::access_enabled()) {
    access_request_ = req.method + " " + redact_target(req.target) + " HTTP/" +
                      std::to_string(req.http_major) + "." + std::to_string(req.http_minor);
    std::string sid, transport;
    bool has_sid = http::query_param(req.query, "tether-session", sid);
    access_session_ = has_sid ? sid.substr(0, 6) + "\u2026" : "-";
    access_transport_ =
        req.method == "GET" && (has_sid || (http::query_param(req.query, "tether-transport", transport) &&
                                            transport == "poll"))
            ? "poll"
        : has_sid ? "send"
                  : "http";
    access_in_ = req.body.size();
    access_start_ = monotonic_ms();
  }
  keep_alive_ = req.keep_alive;
  head_ = req.method == "HEAD";
  request_timer_ = RequestTimer::kNone;
  const LocationConf* loc = server_.match(req.path);
  if (!loc) {
    respond_error(404, "no location matches " + req.path);
    return;
  }
  if (!loc->access_allowed(reinterpret_cast<const sockaddr*>(&peer_addr_))) {
    TETHER_LOG(kInfo, "access forbidden by rule, client: %s, path: %s", peer_.c_str(), req.path.c_str());
    respond_error(403, "access forbidden by rule");
    return;
  }
  if (loc->return_status) {
    respond(*loc->return_status, "text/plain", loc->return_text);
    return;
  }
  if (req.method == "OPTIONS" && loc->pass) {
    answer_options(*this, req, *loc);
    return;
  }
  RequestContext ctx{core_, *this, req, *loc};
  const auto& modules = config_->modules;
  dispatching_ = true;
  for (size_t i = 0; i < modules.size(); ++i) {
    if (modules[i]->handle && modules[i]->handle(ctx, *loc->modules[i])) {
      dispatching_ = false;
      return;
    }
  }
  dispatching_ = false;
  if (loc->pass && req.upgrade) {
    respond_error(404, "WebSocket is not enabled at " + loc->path);
  } else if (loc->pass && loc->transports == kWebsocket) {
    respond_error(426, "this location takes WebSocket upgrades only", {{"Upgrade", "websocket"}});
  } else if (loc->pass) {
    respond_error(400, "expected a WebSocket upgrade, Accept: text/event-stream, or tether-transport=poll");
  } else {
    respond_error(404, "nothing is configured to answer " + req.path);
  }
}

void HttpConnection::log_access(int status, size_t out_bytes) {
  if (!log::access_enabled()) return;
  std::string rest = "transport=" + access_transport_ + " session=" + access_session_ +
                     " upstream=- in=" + std::to_string(access_in_) + " out=" + std::to_string(out_bytes) +
                     " time=" + elapsed_since(access_start_ ? access_start_ : monotonic_ms());
  log::access(peer_ip_, access_request_, status, rest);
  access_request_ = "-";
  access_start_ = 0;
}

void HttpConnection::respond(int status, std::string_view content_type, std::string_view body,
                             const HeaderList& extra) {
  bool close = !keep_alive_;
  std::string out = format_response(status, content_type, body, extra, close, head_);
  log_access(status, out.size());
  write_now(bev_.get(), out.data(), out.size());
  finish_response(close);
}

void HttpConnection::respond_error(int status, std::string_view reason, const HeaderList& extra, bool close) {
  close = close || !keep_alive_;
  std::string out =
      format_response(status, "text/plain; charset=utf-8", error_body(reason), extra, close, head_);
  log_access(status, out.size());
  write_now(bev_.get(), out.data(), out.size());
  finish_response(close);
}

void HttpConnection::defer(DeferredResponse* waiter) {
  TETHER_ASSERT(busy_ && !deferred_);
  deferred_ = waiter;
}

void HttpConnection::handle_kick() {
  process();
}

void HttpConnection::shutdown(bool) {
  keep_alive_ = false;
  if (!busy_ && !closing_) close_now();
}

void HttpConnection::finish_response(bool close) {
  busy_ = false;
  head_ = false;
  served_any_ = true;
  deferred_ = nullptr;
  // Answered later than its dispatch: go on with pipelined requests from the loop, not from
  // inside whoever answered.
  if (!dispatching_ && !close) event_active(kick_.get(), EV_TIMEOUT, 0);
  if (close) {
    closing_ = true;
    reading(false);
    evtimer_del(timer_.get());
    // handle_write closes once the output is flushed; if it all went out at once, no write
    // callback follows: close now.
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) linger();
  }
}

void HttpConnection::uncount() {
  if (counted_) --stats().http_connections;
  counted_ = false;
}

HttpConnection::Detached HttpConnection::detach() {
  uncount();
  evtimer_del(timer_.get());
  event_del(kick_.get());
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  reading(false);
  bufferevent_set_timeouts(bev_.get(), nullptr, nullptr);
  busy_ = false;
  closing_ = true;
  core_.retire(this);
  return Detached{std::move(bev_), std::move(slot_)};
}

void HttpConnection::handle_write() {
  if (closing_) {
    // libevent 2.1 also calls this on the first writable event with nothing written (its
    // bufferevent_writecb triggers when `!connected`): linger only once all is really out.
    if (!lingering_ && evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) linger();
    return;
  }
  if (read_paused_) process();  // responses drained: maybe read again
}

void HttpConnection::handle_event(short what) {
  if (what & BEV_EVENT_TIMEOUT) {
    TETHER_LOG(kInfo, "client timed out reading the response, client: %s", peer_.c_str());
    stats().hit(Limit::kSendTimeout);
  } else if (what & BEV_EVENT_ERROR) {
    int err = EVUTIL_SOCKET_ERROR();
    TETHER_LOG(kInfo, "client connection failed (%d: %s), client: %s", err,
               evutil_socket_error_to_string(err), peer_.c_str());
  }
  // EOF: a client may half-close after its last request; answer what is queued first, and
  // finish writing a last response (once it is out, linger() reads again and meets the EOF
  // again). But a held response (a long poll) whose client closed is abandoned: nobody would
  // read it. And while lingering the EOF is what we wait for: requests still queued then will
  // never be answered, and must not keep the connection open until the linger timer.
  if ((what & BEV_EVENT_EOF) && !(what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) && !deferred_ &&
      !lingering_ && (busy_ || closing_ || parser_.has_request())) {
    keep_alive_ = false;
    return;
  }
  close_now();
}

void HttpConnection::handle_timeout() {
  if (lingering_) {
    close_now();
  } else if (parser_.in_request()) {
    bool body = request_timer_ == RequestTimer::kBody;
    TETHER_LOG(kInfo, "client timed out sending the request %s, client: %s", body ? "body" : "head",
               peer_.c_str());
    stats().hit(body ? Limit::kBodyTimeout : Limit::kHeaderTimeout);
    keep_alive_ = false;
    busy_ = true;
    respond_error(408, body ? "request body not received in time" : "request not received in time", {}, true);
  } else {
    close_now();
  }
}

void HttpConnection::arm_timer() {
  if (!bev_ || closing_) return;
  if (busy_) {
    evtimer_del(timer_.get());
    request_timer_ = RequestTimer::kNone;
    return;
  }
  if (parser_.in_request()) {
    // From the first byte of a head, then from its end for the body: trickling bytes extends
    // neither (slowloris).
    RequestTimer want = parser_.in_body() ? RequestTimer::kBody : RequestTimer::kHead;
    if (request_timer_ != want) {
      request_timer_ = want;
      timeval tv = to_timeval(want == RequestTimer::kBody ? server_.client_body_timeout
                                                          : server_.client_header_timeout);
      evtimer_add(timer_.get(), &tv);
    }
    return;
  }
  request_timer_ = RequestTimer::kNone;
  timeval tv = to_timeval(served_any_ ? server_.keepalive_timeout : server_.client_header_timeout);
  evtimer_add(timer_.get(), &tv);
}

void HttpConnection::linger() {
  lingering_ = true;
  uncount();  // it serves nothing more: only waiting for the client's FIN
  if (::shutdown(bufferevent_getfd(bev_.get()), SHUT_WR) != 0) {
    close_now();
    return;
  }
  evbuffer* in = bufferevent_get_input(bev_.get());
  evbuffer_drain(in, evbuffer_get_length(in));
  reading(true);
  timeval tv = to_timeval(kLingerTime);
  evtimer_add(timer_.get(), &tv);
}

void HttpConnection::close_now() {
  if (!bev_) return;
  reading(false);
  uncount();
  if (DeferredResponse* d = std::exchange(deferred_, nullptr)) d->on_client_gone();
  evtimer_del(timer_.get());
  event_del(kick_.get());
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bev_.reset();
  core_.retire(this);
}

}  // namespace tether
