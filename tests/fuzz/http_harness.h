#pragma once
// Drives the real HTTP path in-process for fuzz_http and fuzz_edge: a Core built from a config
// string, and client connections that are HttpConnections over a socketpair (the core accepts
// nothing: the harness hands it the server end, as on_accept would, with a peer address of its
// choosing). The loop runs non-blocking until nothing moves; timers never fire (every timeout
// is seconds away), so what runs is exactly what the input's bytes cause.
//
// What comes back is checked as HTTP/1.1 responses (check_responses): status lines, header
// lines, framing, at most one answer per request and in order, no body for HEAD, nothing after
// "Connection: close", JSON bodies that parse.

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/parser.h"
#include "fuzz_check.h"
#include "module/modules.h"
#include "proxy/core/config.h"
#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/http/request_parser.h"
#include "proxy/util/log.h"

namespace tether::fuzz {

// What main() sets up before it builds a Core: SIGPIPE ignored (a peer that closes first must
// not kill the process), and the logs. Every log line is formatted (their arguments are
// evaluated only when enabled), to /dev/null.
inline void init_process() {
  static bool done = false;
  if (done) return;
  done = true;
  std::signal(SIGPIPE, SIG_IGN);
  FUZZ_CHECK(log::open("/dev/null", log::Level::kDebug).ok());
  FUZZ_CHECK(log::open_access("/dev/null").ok());
}

// Ports on 127.0.0.1 that refuse every connection at once: bound, never listening, held for the
// life of the process (so no one else gets them). INDEX 0 or 1.
inline uint16_t refusing_port(int index) {
  static const auto ports = [] {
    std::array<uint16_t, 2> out{};
    for (auto& port : out) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      FUZZ_CHECK(fd >= 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      FUZZ_CHECK(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
      socklen_t len = sizeof sa;
      FUZZ_CHECK(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
      port = ntohs(sa.sin_port);
    }
    return out;
  }();
  return ports[index];
}

// Replaces every "{NAME}" in TEXT by VALUE.
inline std::string substitute(std::string text, std::string_view name, std::string_view value) {
  std::string key = "{" + std::string(name) + "}";
  for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + value.size())) {
    text.replace(at, key.size(), value);
  }
  return text;
}

inline ConfigPtr make_config(const std::string& text) {
  auto tree = conf::parse_string(text, "fuzz.conf", "/nonexistent");
  if (!tree.ok()) std::fprintf(stderr, "%s\n", tree.error().what.c_str());
  FUZZ_CHECK(tree.ok());
  auto cfg = build_config(*tree, "fuzz.conf", all_modules());
  if (!cfg.ok()) std::fprintf(stderr, "%s\n", cfg.error().what.c_str());
  FUZZ_CHECK(cfg.ok());
  return cfg.value();
}

// Client addresses the configs' allow/deny rules tell apart.
inline sockaddr_storage peer_address(unsigned which) {
  sockaddr_storage ss{};
  static const char* const kV4[] = {"127.0.0.1", "10.1.2.3"};
  static const char* const kV6[] = {"::1", "2001:db8::5"};
  if (which % 4 < 2) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(40000);
    FUZZ_CHECK(inet_pton(AF_INET, kV4[which % 2], &in->sin_addr) == 1);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(40000);
    FUZZ_CHECK(inet_pton(AF_INET6, kV6[which % 2], &in6->sin6_addr) == 1);
  }
  return ss;
}

// The client's end of one connection. Bytes are written and read without blocking; what is
// not taken yet waits in `pending`.
class Client {
 public:
  Client(Core& core, const ServerConf& server, unsigned peer) {
    int sv[2];
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    fd_ = sv[0];
    sockaddr_storage addr = peer_address(peer);
    int len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    auto conn = std::make_unique<HttpConnection>(core, core.config(), server, sv[1],
                                                 reinterpret_cast<sockaddr*>(&addr), len);
    core.adopt(std::move(conn)).start();
  }
  ~Client() { close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  void send(std::string_view bytes) { pending_.append(bytes); }
  // After what is pending, the client sends its FIN.
  void half_close() { half_close_ = true; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool idle() const { return pending_.empty() && (!half_close_ || shut_); }
  bool closed_by_server() const { return eof_; }
  const std::string& received() const { return received_; }

  // Writes what it can and reads what there is; true if any byte moved.
  bool pump() {
    if (fd_ < 0) return false;
    bool moved = false;
    if (!pending_.empty()) {
      ssize_t n = ::send(fd_, pending_.data(), pending_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        pending_.erase(0, static_cast<size_t>(n));
        moved = true;
      } else if (n < 0 && errno != EAGAIN) {
        pending_.clear();  // the server closed: what is left will never be read
      }
    }
    if (pending_.empty() && half_close_ && !shut_) {
      ::shutdown(fd_, SHUT_WR);
      shut_ = moved = true;
    }
    char buf[16 * 1024];
    while (!eof_) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
        moved = true;
      } else if (n == 0 || errno != EAGAIN) {
        eof_ = moved = true;
      } else {
        break;
      }
    }
    return moved;
  }

 private:
  int fd_ = -1;
  std::string pending_, received_;
  bool half_close_ = false, shut_ = false, eof_ = false;
};

// Runs the loop and the clients until nothing moves: no byte either way, no event active, no
// object born or retired, for a few rounds in a row.
inline void run_until_idle(Core& core, const std::vector<Client*>& clients, int max_rounds = 100000) {
  int quiet = 0;
  for (int round = 0; round < max_rounds && quiet < 3; ++round) {
    size_t live = core.live_objects();
    bool moved = false;
    for (Client* c : clients) moved |= c->pump();
    event_base_loop(core.base(), EVLOOP_NONBLOCK);
    for (Client* c : clients) moved |= c->pump();
    moved |= core.live_objects() != live;
    moved |= event_base_get_num_events(core.base(), EVENT_BASE_COUNT_ACTIVE) > 0;
    quiet = moved ? 0 : quiet + 1;
  }
}

// After a shutdown and every client gone: nothing is left alive, and the gauges of
// /tether/stats, which count what is open now, are back to zero.
inline void check_all_closed(const Core& core) {
  FUZZ_CHECK(core.live_objects() == 0);
  const Stats& st = stats();
  FUZZ_CHECK(st.http_connections == 0 && st.sse_streams == 0 && st.polls_waiting == 0 &&
             st.websocket_relays == 0);
}

// The requests of BYTES as the server's parser reads them, in order, and whether the parser
// failed after them (then one more answer, an error, is due).
struct RequestLog {
  std::vector<http::Request> requests;
  bool failed = false;
  size_t answers_due() const { return requests.size() + (failed ? 1 : 0); }
};

inline RequestLog parse_requests(std::string_view bytes, const http::ParserLimits& limits) {
  http::RequestParser parser(limits);
  parser.feed(bytes.data(), bytes.size());
  RequestLog log;
  while (parser.has_request()) log.requests.push_back(parser.take_request());
  log.failed = parser.failed();
  return log;
}

struct Response {
  int status = 0;
  std::string content_type;
  std::optional<size_t> content_length;
  bool close = false;
  std::string body;
};

inline bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Parses one response head at the start of OUT; returns its length including the blank line.
inline size_t parse_head(std::string_view out, Response& r) {
  size_t end = out.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string_view::npos);
  std::string_view head = out.substr(0, end + 2);
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  FUZZ_CHECK(status_line.size() > 13 && status_line.substr(0, 9) == "HTTP/1.1 " && status_line[12] == ' ');
  auto [p, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status);
  FUZZ_CHECK(ec == std::errc() && p == status_line.data() + 12 && r.status >= 100 && r.status <= 599);
  head.remove_prefix(eol + 2);
  int lengths = 0;
  while (!head.empty()) {
    eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    size_t colon = line.find(": ");
    FUZZ_CHECK(colon != std::string_view::npos && colon > 0);
    std::string_view name = line.substr(0, colon), value = line.substr(colon + 2);
    for (char c : name) FUZZ_CHECK(is_token_char(c));
    // No header splitting: a value holds no line break (the CRLF search already cut at one).
    FUZZ_CHECK(value.find_first_of("\r\n") == std::string_view::npos);
    if (name == "Content-Length") {
      ++lengths;
      size_t n = 0;
      auto [q, ec2] = std::from_chars(value.data(), value.data() + value.size(), n);
      FUZZ_CHECK(ec2 == std::errc() && q == value.data() + value.size());
      r.content_length = n;
    } else if (name == "Content-Type") {
      r.content_type = value;
    } else if (name == "Connection" && value == "close") {
      r.close = true;
    }
  }
  FUZZ_CHECK(lengths <= 1);
  return end + 4;
}

// Checks OUT, what the server sent on a connection whose input was REQUESTS, and returns the
// responses. A 101 or an event stream ends the HTTP part (*REST then holds what follows).
inline std::vector<Response> check_responses(std::string_view out, const RequestLog& requests,
                                             std::string_view* rest = nullptr) {
  std::vector<Response> responses;
  if (rest) *rest = {};
  while (!out.empty()) {
    size_t index = responses.size();
    // At most one answer per request, plus one for a request the parser refused.
    FUZZ_CHECK(index < requests.answers_due());
    bool head_request = index < requests.requests.size() && requests.requests[index].method == "HEAD";
    Response r;
    out.remove_prefix(parse_head(out, r));
    if (r.status == 101 || (r.status == 200 && r.content_type == "text/event-stream")) {
      FUZZ_CHECK(!r.content_length);
      if (rest) *rest = out;
      responses.push_back(std::move(r));
      return responses;
    }
    if (r.status == 204 || r.status == 304) {
      FUZZ_CHECK(!r.content_length);
    } else {
      FUZZ_CHECK(r.content_length.has_value());
      if (!head_request) {
        FUZZ_CHECK(out.size() >= *r.content_length);
        r.body = out.substr(0, *r.content_length);
        out.remove_prefix(*r.content_length);
      }
    }
    if (r.content_type == "application/json" && !head_request) {
      json_error_t err;
      json_t* j = json_loadb(r.body.data(), r.body.size(), JSON_ALLOW_NUL, &err);
      FUZZ_CHECK(j != nullptr);
      json_decref(j);
    }
    responses.push_back(std::move(r));
    if (responses.back().close) FUZZ_CHECK(out.empty());
  }
  return responses;
}

}  // namespace tether::fuzz
