#include "proxy/upstream/connector.h"

#include <event2/buffer.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <cstring>

#include "proxy/core/core.h"
#include "proxy/util/timeval.h"
#include "proxy/ws/codec.h"

namespace tether {
namespace {

constexpr size_t kMaxResponseHead = 16 * 1024;

void on_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<Connector*>(ctx)->handle_event(what);
}
void on_read(bufferevent*, void* ctx) noexcept {
  static_cast<Connector*>(ctx)->handle_read();
}
void on_timer(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Connector*>(ctx)->handle_timeout();
}
void on_kick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Connector*>(ctx)->handle_kick();
}
void on_resolved(int err, evutil_addrinfo* res, void* ctx) noexcept {
  static_cast<Connector*>(ctx)->handle_resolved(err, res);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return tolower(x) == tolower(y); });
}

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The response head, parsed with http-parser.
struct ResponseHead {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  bool in_value = false;
  bool complete = false;

  const std::string* get(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (iequals(n, name)) return &v;
    }
    return nullptr;
  }

  static int on_status(http_parser* p, const char* at, size_t len) {
    static_cast<ResponseHead*>(p->data)->reason.append(at, len);
    return 0;
  }
  static int on_field(http_parser* p, const char* at, size_t len) {
    auto* h = static_cast<ResponseHead*>(p->data);
    if (h->in_value || h->headers.empty()) h->headers.emplace_back();
    h->in_value = false;
    h->headers.back().first.append(at, len);
    return 0;
  }
  static int on_value(http_parser* p, const char* at, size_t len) {
    auto* h = static_cast<ResponseHead*>(p->data);
    h->in_value = true;
    h->headers.back().second.append(at, len);
    return 0;
  }
  static int on_headers_complete(http_parser* p) {
    auto* h = static_cast<ResponseHead*>(p->data);
    h->status = static_cast<int>(p->status_code);
    h->complete = true;
    return 1;  // no body is read here
  }
};

}  // namespace

Connector::Connector(event_base* base, evdns_base* dns, const UpstreamServer& server, UpstreamRequest request,
                     Millis timeout, Done done)
    : base_(base),
      dns_(dns),
      server_(server),
      request_(std::move(request)),
      timeout_(timeout),
      done_(std::move(done)) {}

Connector::~Connector() {
  // Cancelling calls handle_resolved with EVUTIL_EAI_CANCEL, which touches nothing else.
  if (dns_request_) evdns_getaddrinfo_cancel(dns_request_);
}

void Connector::start() {
  timer_.reset(evtimer_new(base_, on_timer, this));
  kick_.reset(event_new(base_, -1, 0, on_kick, this));
  timeval tv = to_timeval(timeout_);
  evtimer_add(timer_.get(), &tv);
  evutil_addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  std::string port = std::to_string(server_.port);
  starting_ = true;
  // May answer at once (an address literal, the hosts file): then handle_resolved runs inside.
  dns_request_ = evdns_getaddrinfo(dns_, server_.host.c_str(), port.c_str(), &hints, on_resolved, this);
  starting_ = false;
  if (resolved_in_start_) event_active(kick_.get(), EV_TIMEOUT, 0);
}

void Connector::handle_resolved(int err, evutil_addrinfo* res) {
  dns_request_ = nullptr;
  if (err == EVUTIL_EAI_CANCEL) return;
  if (err) {
    last_error_ = "could not resolve " + server_.host + " (" + evutil_gai_strerror(err) + ")";
  }
  for (evutil_addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    sockaddr_storage ss{};
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    addresses_.push_back(ss);
  }
  if (res) evutil_freeaddrinfo(res);
  if (addresses_.empty() && last_error_.empty()) last_error_ = "no address for " + server_.host;
  if (starting_) {
    resolved_in_start_ = true;
    return;
  }
  try_next();
}

void Connector::handle_kick() {
  if (!finished_) try_next();
}

// Connects to the next address; when none is left, fails with the last address's error.
void Connector::try_next() {
  while (next_address_ < addresses_.size()) {
    const sockaddr_storage& ss = addresses_[next_address_++];
    bev_.reset(bufferevent_socket_new(base_, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS));
    if (!bev_) {
      fail("bufferevent_socket_new() failed");
      return;
    }
    bufferevent_setcb(bev_.get(), on_read, nullptr, on_event, this);
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    if (bufferevent_socket_connect(bev_.get(), reinterpret_cast<const sockaddr*>(&ss),
                                   static_cast<int>(len)) == 0) {
      return;  // the outcome arrives through handle_event
    }
    int e = EVUTIL_SOCKET_ERROR();
    last_error_ = "connect() to " + format_address(reinterpret_cast<const sockaddr*>(&ss)) + " failed (" +
                  std::to_string(e) + ": " + evutil_socket_error_to_string(e) + ")";
    bev_.reset();
  }
  fail(last_error_);
}

void Connector::handle_event(short what) {
  if (finished_) return;
  if (what & BEV_EVENT_CONNECTED) {
    int one = 1;  // no Nagle delay on relayed messages (see HttpConnection)
    setsockopt(bufferevent_getfd(bev_.get()), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send_request();
    return;
  }
  if (!connected_) {
    // This address refused or failed: try the next one within the same deadline.
    int e = EVUTIL_SOCKET_ERROR();
    const sockaddr_storage& ss = addresses_[next_address_ - 1];
    last_error_ = "connect() to " + format_address(reinterpret_cast<const sockaddr*>(&ss)) + " failed (" +
                  std::to_string(e) + ": " + evutil_socket_error_to_string(e) + ")";
    bev_.reset();
    try_next();
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    int e = EVUTIL_SOCKET_ERROR();
    fail("upstream " + server_.text + " failed during the WebSocket handshake (" + std::to_string(e) + ": " +
         evutil_socket_error_to_string(e) + ")");
    return;
  }
  fail("upstream " + server_.text + " closed the connection during the WebSocket handshake");
}

void Connector::send_request() {
  connected_ = true;
  key_ = ws::make_client_key();
  std::string out;
  out.reserve(512);
  out += "GET " + request_.target + " HTTP/1.1\r\n";
  bool default_port = server_.port == 80;
  bool v6 = server_.host.find(':') != std::string::npos;
  out += "Host: " + (v6 ? "[" + server_.host + "]" : server_.host) +
         (default_port ? "" : ":" + std::to_string(server_.port)) + "\r\n";
  out += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
  out += "Sec-WebSocket-Key: " + key_ + "\r\n";
  if (!request_.protocols.empty()) {
    out += "Sec-WebSocket-Protocol: ";
    for (size_t i = 0; i < request_.protocols.size(); ++i) out += (i ? ", " : "") + request_.protocols[i];
    out += "\r\n";
  }
  for (const auto& [name, value] : request_.headers) out += name + ": " + value + "\r\n";
  out += "\r\n";
  bufferevent_write(bev_.get(), out.data(), out.size());
  bufferevent_enable(bev_.get(), EV_READ);
}

void Connector::handle_read() {
  if (finished_) return;
  evbuffer* in = bufferevent_get_input(bev_.get());
  evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
  if (end.pos < 0) {
    if (evbuffer_get_length(in) > kMaxResponseHead)
      fail("upstream " + server_.text + " sent a too large response head");
    return;
  }
  size_t head_len = static_cast<size_t>(end.pos) + 4;
  if (head_len > kMaxResponseHead) {
    fail("upstream " + server_.text + " sent a too large response head");
    return;
  }
  std::string head(head_len, '\0');
  evbuffer_remove(in, head.data(), head_len);

  ResponseHead rh;
  http_parser parser;
  http_parser_init(&parser, HTTP_RESPONSE);
  parser.data = &rh;
  http_parser_settings settings{};
  settings.on_status = ResponseHead::on_status;
  settings.on_header_field = ResponseHead::on_field;
  settings.on_header_value = ResponseHead::on_value;
  settings.on_headers_complete = ResponseHead::on_headers_complete;
  http_parser_execute(&parser, &settings, head.data(), head.size());
  if (!rh.complete) {
    fail("upstream " + server_.text + " sent an invalid response (" +
         http_errno_description(HTTP_PARSER_ERRNO(&parser)) + ")");
    return;
  }
  if (rh.status != 101) {
    fail("upstream " + server_.text + " refused the WebSocket handshake with " + std::to_string(rh.status) +
         " " + rh.reason);
    return;
  }
  const std::string* upgrade = rh.get("Upgrade");
  const std::string* connection = rh.get("Connection");
  if (!upgrade || !iequals(*upgrade, "websocket") || !connection || !has_token(*connection, "upgrade")) {
    fail("upstream " + server_.text + " answered 101 without Upgrade: websocket");
    return;
  }
  const std::string* accept = rh.get("Sec-WebSocket-Accept");
  if (!accept || *accept != ws::accept_key(key_)) {
    fail("upstream " + server_.text + " sent a wrong Sec-WebSocket-Accept");
    return;
  }
  if (rh.get("Sec-WebSocket-Extensions")) {
    fail("upstream " + server_.text + " chose an extension that was not offered");
    return;
  }
  UpstreamSocket sock;
  if (const std::string* proto = rh.get("Sec-WebSocket-Protocol")) {
    if (std::find(request_.protocols.begin(), request_.protocols.end(), *proto) == request_.protocols.end()) {
      fail("upstream " + server_.text + " chose subprotocol \"" + *proto + "\", which was not offered");
      return;
    }
    sock.protocol = *proto;
  }
  for (const auto& [n, v] : rh.headers) {
    if (iequals(n, "Set-Cookie")) sock.set_cookies.emplace_back("Set-Cookie", v);
  }
  finished_ = true;
  evtimer_del(timer_.get());
  bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
  bufferevent_disable(bev_.get(), EV_READ);
  sock.bev = std::move(bev_);
  sock.server = server_.text;
  auto done = std::move(done_);
  done(std::move(sock));
}

void Connector::handle_timeout() {
  if (finished_) return;
  fail("upstream " + server_.text +
       (connected_ ? " did not complete the WebSocket handshake in time"
                   : " did not accept the connection in time"));
}

void Connector::fail(std::string why) {
  finished_ = true;
  if (timer_) evtimer_del(timer_.get());
  bev_.reset();
  auto done = std::move(done_);
  done(Error{Errc::kUpstream, std::move(why)});
}

}  // namespace tether
