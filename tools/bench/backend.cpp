#include "tools/bench/backend.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string_view>

#include "proxy/util/assert.h"
#include "tools/bench/json_out.h"
#include "tools/bench/stats.h"

namespace tether::bench {
namespace {

constexpr size_t kMaxHead = 16 * 1024;
// Over this much unsent output a connection gets no more pushes, and an echo connection stops
// being read until half of it has drained (le-proxy's watermarks).
constexpr size_t kMaxOutput = 1 << 20;
constexpr timeval kHeadTimeout{30, 0};

void on_down_read(bufferevent*, void* ctx) noexcept {
  static_cast<BackendConn*>(ctx)->handle_read();
}
void on_down_write(bufferevent*, void* ctx) noexcept {
  static_cast<BackendConn*>(ctx)->handle_write();
}
void on_down_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<BackendConn*>(ctx)->handle_event(what);
}
void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* ctx) noexcept {
  static_cast<Backend*>(ctx)->handle_accept(fd);
}
void on_accept_error(evconnlistener*, void*) noexcept {
  // EMFILE and the like: libevent retries on the next readiness; say it once.
  static bool said = false;
  if (!said) std::fprintf(stderr, "tether-loadgen backend: accept: %s\n", std::strerror(errno));
  said = true;
}
void on_stop(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Backend*>(ctx)->stop();
}
void on_push_tick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Backend*>(ctx)->handle_push_tick();
}
void on_reap(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Backend*>(ctx)->handle_reap();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// What the backend needs from a request head. Lenient on purpose: proxies (Tether, nginx,
// HAProxy, Pushpin) add and reorder headers, and may send `Connection: keep-alive, Upgrade`.
struct RequestHead {
  std::string_view method;
  std::string_view key;       // Sec-WebSocket-Key
  std::string_view protocol;  // the first offered Sec-WebSocket-Protocol
  bool websocket = false;     // Upgrade: websocket
  bool event_stream = false;  // Accept: text/event-stream
};

bool parse_request_head(std::string_view head, RequestHead& out) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0) return false;
  out.method = line.substr(0, sp);
  while (eol != std::string_view::npos) {
    head.remove_prefix(eol + 2);
    eol = head.find("\r\n");
    line = head.substr(0, eol);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return false;
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Upgrade")) {
      out.websocket = has_token(value, "websocket");
    } else if (iequals(name, "Sec-WebSocket-Key")) {
      out.key = value;
    } else if (iequals(name, "Sec-WebSocket-Protocol") && out.protocol.empty()) {
      out.protocol = trim(value.substr(0, value.find(',')));
    } else if (iequals(name, "Accept")) {
      out.event_stream = value.find("text/event-stream") != std::string_view::npos;
    }
  }
  return true;
}

}  // namespace

BackendConn::BackendConn(Backend& backend, BufferEventPtr bev) : backend_(backend), bev_(std::move(bev)) {}

void BackendConn::start() {
  bufferevent_setcb(bev_.get(), on_down_read, on_down_write, on_down_event, this);
  bufferevent_set_timeouts(bev_.get(), &kHeadTimeout, nullptr);
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
}

size_t BackendConn::output_length() const {
  return evbuffer_get_length(bufferevent_get_output(bev_.get()));
}

void BackendConn::handle_read() {
  if (state_ == State::kHead) read_head();
  if (state_ == State::kOpen) read_frames();
  if (state_ == State::kClosing || state_ == State::kClosed) {
    evbuffer* in = bufferevent_get_input(bev_.get());
    evbuffer_drain(in, evbuffer_get_length(in));
  }
}

void BackendConn::read_head() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
  // grip: keep-alive requests, answered one after the other.
  while (end.pos >= 0 && backend_.options().backend_mode == BackendMode::kGrip) {
    size_t len = static_cast<size_t>(end.pos) + 4;
    RequestHead req;
    std::string_view head(reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(len))),
                          len);
    if (!parse_request_head(head, req) || req.websocket || req.method != "GET") break;
    bool event_stream = req.event_stream;
    evbuffer_drain(in, len);  // req's views die here (a GET has no body)
    answer_grip(event_stream);
    end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
  }
  if (end.pos < 0) {
    if (evbuffer_get_length(in) > kMaxHead) {
      ++backend_.errors;
      evbuffer_add_printf(bufferevent_get_output(bev_.get()),
                          "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n");
      close_after_flush();
    }
    return;
  }
  size_t head_len = static_cast<size_t>(end.pos) + 4;
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(head_len)));
  std::string_view head(data, head_len);
  RequestHead req;
  evbuffer* out = bufferevent_get_output(bev_.get());
  bool parsed = parse_request_head(head, req);
  if (parsed && !req.websocket) {
    // Health checks and other plain requests: a short answer, then close.
    evbuffer_add_printf(out,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                        "Connection: close\r\n\r\nok\n");
    evbuffer_drain(in, head_len);
    close_after_flush();
    return;
  }
  if (!parsed || req.method != "GET" || !ws::is_valid_client_key(req.key)) {
    ++backend_.errors;
    evbuffer_add_printf(out,
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n"
                        "Connection: close\r\n\r\nnot a WebSocket upgrade\n");
    evbuffer_drain(in, head_len);
    close_after_flush();
    return;
  }
  std::string accept = ws::accept_key(req.key);
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      accept + "\r\n";
  if (!req.protocol.empty()) response += "Sec-WebSocket-Protocol: " + std::string(req.protocol) + "\r\n";
  response += "\r\n";
  evbuffer_drain(in, head_len);  // req's views die here
  bufferevent_write(bev_.get(), response.data(), response.size());
  bufferevent_set_timeouts(bev_.get(), nullptr, nullptr);
  state_ = State::kOpen;
  push_start_ns_ = now_ns();
  ++backend_.connections;
}

void BackendConn::answer_grip(bool event_stream) {
  const std::string& channel = backend_.options().channel;
  std::string answer;
  if (event_stream) {
    answer =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Grip-Hold: stream\r\nGrip-Channel: " +
        channel + "\r\nContent-Length: 0\r\n\r\n";
  } else {
    // What the client gets when the hold times out: a 204 it polls again after.
    answer = "HTTP/1.1 204 No Content\r\nGrip-Hold: response\r\nGrip-Channel: " + channel +
             "\r\nGrip-Timeout: 120\r\n\r\n";
  }
  bufferevent_write(bev_.get(), answer.data(), answer.size());
  bufferevent_set_timeouts(bev_.get(), nullptr, nullptr);  // the proxy keeps it for its next request
  ++backend_.holds;
}

void BackendConn::read_frames() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  while (evbuffer_get_length(in) > 0 && !decoder_.stopped()) {
    evbuffer_iovec vec[8];
    int n = evbuffer_peek(in, -1, nullptr, vec, 8);
    size_t used = 0;
    for (int i = 0; i < n && i < 8 && !decoder_.stopped(); ++i) {
      used += decoder_.feed(static_cast<const uint8_t*>(vec[i].iov_base), vec[i].iov_len, *this);
    }
    if (decoder_.stopped()) used = evbuffer_get_length(in);  // nothing after a close or an error
    evbuffer_drain(in, used);
  }
  if (state_ == State::kOpen && !read_paused_ && output_length() > kMaxOutput) {
    read_paused_ = true;
    bufferevent_disable(bev_.get(), EV_READ);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, kMaxOutput / 2, 0);
  }
}

void BackendConn::handle_write() {
  if (state_ == State::kClosing) {
    if (output_length() == 0) close_now();
    return;
  }
  if (read_paused_ && state_ == State::kOpen) {
    read_paused_ = false;
    bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
    bufferevent_enable(bev_.get(), EV_READ);
  }
}

void BackendConn::handle_event(short what) {
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) close_now();
}

void BackendConn::send_frame(ws::Opcode opcode, std::string_view payload) {
  std::string& frame = backend_.scratch();
  frame.clear();
  ws::append_frame(frame, ws::Role::kServer, opcode, payload);
  bufferevent_write(bev_.get(), frame.data(), frame.size());
}

void BackendConn::on_message(ws::Opcode opcode, std::string& payload) {
  ++backend_.messages_in;
  if (backend_.options().backend_mode == BackendMode::kEcho && state_ == State::kOpen) {
    send_frame(opcode, payload);
    ++backend_.messages_out;
  }
}

void BackendConn::on_ping(std::string_view payload) {
  if (state_ == State::kOpen) send_frame(ws::Opcode::kPong, payload);
}

void BackendConn::on_close(uint16_t code, std::string_view) {
  // Echo the code back (RFC 6455 5.5.1), then close once it is written.
  if (state_ == State::kOpen) send_frame(ws::Opcode::kClose, ws::close_payload(code, ""));
  close_after_flush();
}

void BackendConn::on_error(uint16_t code, std::string_view reason) {
  ++backend_.errors;
  if (state_ == State::kOpen) send_frame(ws::Opcode::kClose, ws::close_payload(code, reason));
  close_after_flush();
}

void BackendConn::push(uint64_t now) {
  if (state_ != State::kOpen || now <= push_start_ns_) return;
  double rate = backend_.options().rate;
  uint64_t due_total = static_cast<uint64_t>(static_cast<double>(now - push_start_ns_) * 1e-9 * rate);
  if (due_total <= pushed_) return;
  uint64_t due = due_total - pushed_;
  pushed_ = due_total;
  // A loop that fell far behind (over 100 ms of messages) drops the backlog instead of bursting it.
  uint64_t max_burst = std::max<uint64_t>(1, static_cast<uint64_t>(rate * 0.1));
  if (due > max_burst) {
    backend_.behind += due - max_burst;
    due = max_burst;
  }
  if (output_length() > kMaxOutput) {
    backend_.skipped += due;
    return;
  }
  std::string& payload = backend_.payload_scratch();
  for (uint64_t i = 0; i < due; ++i) {
    make_payload(payload, now_ns(), backend_.options().size, ++seq_);
    send_frame(ws::Opcode::kText, payload);
    ++backend_.messages_out;
  }
}

void BackendConn::close_after_flush() {
  if (state_ == State::kClosing || state_ == State::kClosed) return;
  state_ = State::kClosing;
  bufferevent_disable(bev_.get(), EV_READ);
  if (output_length() == 0) {
    close_now();
    return;
  }
  bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  bufferevent_set_timeouts(bev_.get(), nullptr, &kHeadTimeout);  // a peer that reads nothing
}

void BackendConn::close_now() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  backend_.remove(this);
}

Backend::Backend(const Options& options) : base_(make_precise_base()), options_(options) {}

Backend::~Backend() = default;

Status Backend::listen() {
  if (!base_) return Error{Errc::kResource, "event_base_new failed"};
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(options_.port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  listener_.reset(evconnlistener_new_bind(base_.get(), on_accept, this,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                          4096, reinterpret_cast<sockaddr*>(&sin), sizeof sin));
  if (!listener_) {
    return Error{Errc::kIo,
                 "cannot listen on 127.0.0.1:" + std::to_string(options_.port) + ": " + std::strerror(errno)};
  }
  evconnlistener_set_error_cb(listener_.get(), on_accept_error);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  getsockname(evconnlistener_get_fd(listener_.get()), reinterpret_cast<sockaddr*>(&bound), &len);
  port_ = ntohs(bound.sin_port);
  std::printf("PORT %u\n", static_cast<unsigned>(port_));
  std::fflush(stdout);
  return ok_status();
}

void Backend::handle_accept(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  BufferEventPtr bev(
      bufferevent_socket_new(base_.get(), fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
  if (!bev) {
    evutil_closesocket(fd);  // on failure the fd is still ours
    ++errors;
    return;
  }
  auto conn = std::make_unique<BackendConn>(*this, std::move(bev));
  conn->index = conns_.size();
  BackendConn* raw = conn.get();
  conns_.push_back(std::move(conn));
  raw->start();
}

void Backend::remove(BackendConn* conn) {
  size_t i = conn->index;
  TETHER_RELEASE_ASSERT(i < conns_.size() && conns_[i].get() == conn);
  graveyard_.push_back(std::move(conns_[i]));
  if (i + 1 != conns_.size()) {
    conns_[i] = std::move(conns_.back());
    conns_[i]->index = i;
  }
  conns_.pop_back();
  event_active(reaper_.get(), EV_TIMEOUT, 0);
}

void Backend::handle_reap() {
  graveyard_.clear();
}

void Backend::handle_push_tick() {
  uint64_t now = now_ns();
  // push() only buffers output (callbacks are deferred) and never closes, so no connection moves
  // in conns_ during this loop.
  for (size_t i = 0; i < conns_.size(); ++i) conns_[i]->push(now);
}

Status Backend::run() {
  reaper_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  sigterm_.reset(evsignal_new(base_.get(), SIGTERM, on_stop, this));
  sigint_.reset(evsignal_new(base_.get(), SIGINT, on_stop, this));
  if (!reaper_ || !sigterm_ || !sigint_) return Error{Errc::kResource, "event_new failed"};
  event_add(sigterm_.get(), nullptr);
  event_add(sigint_.get(), nullptr);
  if (options_.duration_s > 0) {
    stop_timer_.reset(evtimer_new(base_.get(), on_stop, this));
    double whole = std::floor(options_.duration_s);
    timeval tv{static_cast<time_t>(whole), static_cast<suseconds_t>((options_.duration_s - whole) * 1e6)};
    evtimer_add(stop_timer_.get(), &tv);
  }
  if (options_.backend_mode == BackendMode::kPush) {
    // One tick per message interval, between 1 ms and 100 ms; each connection keeps its own
    // schedule from its handshake, so pushes to many connections spread over the interval.
    double interval_s = std::clamp(1.0 / options_.rate, 0.001, 0.1);
    push_timer_.reset(event_new(base_.get(), -1, EV_PERSIST, on_push_tick, this));
    timeval tv{0, static_cast<suseconds_t>(interval_s * 1e6)};
    event_add(push_timer_.get(), &tv);
  }
  const char* mode = options_.backend_mode == BackendMode::kEcho   ? "echo"
                     : options_.backend_mode == BackendMode::kPush ? "push"
                                                                   : "grip";
  std::fprintf(stderr, "tether-loadgen backend: %s on 127.0.0.1:%u\n", mode, static_cast<unsigned>(port_));
  event_base_dispatch(base_.get());

  JsonPtr out(json_object());
  json_object_set_new(out.get(), "mode", json_string("backend"));
  json_object_set_new(out.get(), "backend_mode", json_string(mode));
  json_object_set_new(out.get(), "connections", json_integer(static_cast<json_int_t>(connections)));
  json_object_set_new(out.get(), "open", json_integer(static_cast<json_int_t>(conns_.size())));
  json_object_set_new(out.get(), "messages_in", json_integer(static_cast<json_int_t>(messages_in)));
  json_object_set_new(out.get(), "messages_out", json_integer(static_cast<json_int_t>(messages_out)));
  json_object_set_new(out.get(), "skipped", json_integer(static_cast<json_int_t>(skipped)));
  json_object_set_new(out.get(), "behind", json_integer(static_cast<json_int_t>(behind)));
  json_object_set_new(out.get(), "errors", json_integer(static_cast<json_int_t>(errors)));
  if (options_.backend_mode == BackendMode::kGrip)
    json_object_set_new(out.get(), "holds", json_integer(static_cast<json_int_t>(holds)));
  print_json(out.get());
  return ok_status();
}

}  // namespace tether::bench
