// Fuzz target: the edge protocol with live sessions. The values a client controls (tether-*
// query parameters: transport, session, ack, seq; Last-Event-ID; POST bodies and their
// Content-Type; DELETE) reach the sse, poll and send modules, the session table, the outbox and
// the send sequencer through the real HTTP path (http_harness.h), against an in-process
// WebSocket backend on the same loop, so sessions really open.
//
// Each input: the harness opens one long-poll session and one SSE session (their ids are
// substituted for "{P}" and "{S}" in the input; "{X}" is a well-formed id that names no
// session), the backend sends them a few messages, then every part of the input (parts are
// separated by "\n~~\n", at most 8) is sent on a connection of its own; connections stay open
// (a held poll stays held) until the end, which is a server shutdown.
//
// Byte 0 scripts the backend: bits 0-2 how many messages it sends each session after the
// handshake, bit 3 binary ones among them, bit 4 it echoes what it receives, bit 5 it closes
// (1000) after its messages, bit 6 it picks the first subprotocol offered, bit 7 it sends a
// message over tether_max_message after the others. Byte 1: bit 0 the
// SSE stream that opened the session stays attached (else it leaves at once), bit 1 every part
// half-closes after its bytes.
//
// Checked, besides the sanitizers: the HTTP answers (check_responses); every event stream is
// well-formed text/event-stream whose message ids count up by one from where it started (or
// jump exactly by a tether-gap's "lost"); every poll answer holds messages after its
// tether-ack, in order with no gap (no loss, no duplicates), as JSON that parses. And the
// parsers behind the protocol hold their promises on every request sent (check_parsers).

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>

#include <algorithm>
#include <climits>
#include <list>
#include <optional>

#include "http_harness.h"
#include "proxy/session/session.h"
#include "proxy/session/session_id.h"
#include "proxy/session/sse_format.h"
#include "proxy/upstream/request.h"
#include "proxy/ws/codec.h"

namespace {

using namespace tether;
using namespace tether::fuzz;

constexpr const char* kConfig = R"(
server {
  listen 127.0.0.1:0;
  client_max_body_size 4k;
  location /e/ {
    tether_pass ws://127.0.0.1:{PORT}/back;
    tether_buffer 6 2k;
    tether_max_message 1k;
    tether_sse_retry 1s;
    tether_allow_origin https://a.example;
  }
  location /p/ {
    tether_pass ws://127.0.0.1:{PORT};
    tether_transports poll sse;
    tether_sse_padding on;
  }
}
)";

constexpr std::string_view kPartSeparator = "\n~~\n";
constexpr size_t kMaxParts = 8;
// Well-formed, and no session has it (ids come from RAND_bytes).
constexpr std::string_view kUnknownId = "AAAAAAAAAAAAAAAAAAAAAA";

// What the backend sends: text with every kind of line ending, empty, non-ASCII, and binary.
const std::string kMessages[] = {"hello", "two\nlines\r\nand\rmore", "", "\xe2\x82\xac uro",
                                 std::string(600, 'x')};
const std::string kBinary("\x00\x01\x02\xff", 4);
// Over the locations' tether_max_message: the session fails with a protocol error (1009).
const std::string kOversized(1500, 'o');

int listening_socket() {
  static int fd = [] {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    FUZZ_CHECK(s >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_CHECK(bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    FUZZ_CHECK(listen(s, 64) == 0);
    return s;
  }();
  return fd;
}

uint16_t backend_port() {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  FUZZ_CHECK(getsockname(listening_socket(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  return ntohs(sa.sin_port);
}

const ConfigPtr& config() {
  static const ConfigPtr cfg = make_config(substitute(kConfig, "PORT", std::to_string(backend_port())));
  return cfg;
}

std::string header_value(std::string_view head, std::string_view name) {
  std::string lower_head(head), lower_name(name);
  for (char& c : lower_head) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  for (char& c : lower_name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  size_t at = lower_head.find("\r\n" + lower_name + ":");
  if (at == std::string::npos) return {};
  at += name.size() + 3;
  size_t end = head.find("\r\n", at);
  std::string_view v = head.substr(at, end - at);
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  return std::string(v);
}

// The WebSocket backend: answers every handshake with 101, sends its script, then echoes (if
// told to) and answers pings and closes, as an ordinary backend would.
class Backend {
 public:
  Backend(event_base* base, uint8_t script) : base_(base), script_(script) {
    listener_.reset(evconnlistener_new(base, on_accept, this, LEV_OPT_CLOSE_ON_EXEC, 0, listening_socket()));
    FUZZ_CHECK(listener_ != nullptr);
  }
  ~Backend() {
    listener_.reset();
    conns_.clear();
    // Connections the listener never took would reach the next input's backend.
    for (int fd; (fd = accept4(listening_socket(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) close(fd);
  }

 private:
  class Conn : public ws::DecoderSink {
   public:
    Conn(Backend& b, evutil_socket_t fd) : backend_(b) {
      bev_.reset(bufferevent_socket_new(b.base_, fd, BEV_OPT_CLOSE_ON_FREE));
      FUZZ_CHECK(bev_ != nullptr);
      bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
      bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
    }

   private:
    static void on_read(bufferevent*, void* ctx) { static_cast<Conn*>(ctx)->handle_read(); }
    static void on_write(bufferevent*, void* ctx) {
      auto* c = static_cast<Conn*>(ctx);
      if (c->closing_ && evbuffer_get_length(bufferevent_get_output(c->bev_.get())) == 0) c->bev_.reset();
    }
    static void on_event(bufferevent*, short, void* ctx) { static_cast<Conn*>(ctx)->bev_.reset(); }

    void send(ws::Opcode op, std::string_view payload) {
      if (closing_ || !bev_) return;
      std::string frame;
      ws::append_frame(frame, ws::Role::kServer, op, payload);
      bufferevent_write(bev_.get(), frame.data(), frame.size());
    }
    void close_with(uint16_t code, std::string_view reason) {
      send(ws::Opcode::kClose, ws::close_payload(code, reason));
      closing_ = true;
    }

    void handle_read() {
      evbuffer* in = bufferevent_get_input(bev_.get());
      if (!upgraded_) {
        evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, nullptr);
        if (end.pos < 0) return;
        std::string head(static_cast<size_t>(end.pos) + 4, '\0');
        evbuffer_remove(in, head.data(), head.size());
        std::string out = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        out += "Sec-WebSocket-Accept: " + ws::accept_key(header_value(head, "Sec-WebSocket-Key")) + "\r\n";
        std::string protocols = header_value(head, "Sec-WebSocket-Protocol");
        if ((backend_.script_ & 0x40) && !protocols.empty()) {
          out += "Sec-WebSocket-Protocol: " + protocols.substr(0, protocols.find(',')) + "\r\n";
        }
        out += "\r\n";
        bufferevent_write(bev_.get(), out.data(), out.size());
        upgraded_ = true;
        for (unsigned i = 0; i < (backend_.script_ & 7u); ++i) {
          bool binary = (backend_.script_ & 8) && i % 2 == 1;
          send(binary ? ws::Opcode::kBinary : ws::Opcode::kText,
               binary ? kBinary : kMessages[i % std::size(kMessages)]);
        }
        if (backend_.script_ & 0x80) send(ws::Opcode::kText, kOversized);
        if (backend_.script_ & 0x20) close_with(ws::close_code::kNormal, "bye");
      }
      while (bev_ && !decoder_.stopped() && evbuffer_get_length(in) > 0) {
        size_t n = evbuffer_get_length(in);
        const uint8_t* p = evbuffer_pullup(in, static_cast<ssize_t>(n));
        size_t used = decoder_.feed(p, n, *this);
        if (!bev_) return;
        evbuffer_drain(in, used);
        if (used < n) break;
      }
    }

    void on_message(ws::Opcode op, std::string& payload) override {
      if (backend_.script_ & 0x10) send(op, payload);
    }
    void on_ping(std::string_view payload) override { send(ws::Opcode::kPong, payload); }
    void on_pong(std::string_view) override {}
    void on_close(uint16_t code, std::string_view reason) override {
      if (!closing_) close_with(code == ws::close_code::kNoStatus ? ws::close_code::kNormal : code, reason);
    }
    void on_error(uint16_t code, std::string_view reason) override { close_with(code, reason); }

    Backend& backend_;
    BufferEventPtr bev_;
    ws::Decoder decoder_{ws::Role::kServer};
    bool upgraded_ = false;
    bool closing_ = false;
  };

  static void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* ctx) {
    auto* b = static_cast<Backend*>(ctx);
    b->conns_.emplace_back(*b, fd);
  }

  event_base* base_;
  uint8_t script_;
  ListenerPtr listener_;
  std::list<Conn> conns_;
};

// Checks a text/event-stream body (what follows the head) that began after message AFTER of
// session SID; returns the ids' seqs seen.
void check_event_stream(std::string_view stream, std::string_view sid, uint64_t after) {
  uint64_t expected = after + 1;
  std::string event, id, data;
  bool have_fields = false;
  while (!stream.empty()) {
    size_t eol = stream.find('\n');
    if (eol == std::string_view::npos) return;  // the last event may still be on its way
    std::string_view line = stream.substr(0, eol);
    stream.remove_prefix(eol + 1);
    FUZZ_CHECK(line.find('\r') == std::string_view::npos);
    if (!line.empty() && line[0] == ':') continue;  // a comment: padding, heartbeat
    if (line.substr(0, 7) == "retry: ") continue;
    if (!line.empty()) {
      have_fields = true;
      if (line.substr(0, 4) == "id: ") {
        id = line.substr(4);
      } else if (line.substr(0, 7) == "event: ") {
        event = line.substr(7);
      } else {
        FUZZ_CHECK(line.substr(0, 6) == "data: ");
        data += line.substr(6);
      }
      continue;
    }
    if (!have_fields) continue;
    // An event ends.
    if (event == "tether-gap") {
      json_error_t err;
      json_t* j = json_loadb(data.data(), data.size(), JSON_ALLOW_NUL, &err);
      FUZZ_CHECK(j && json_is_integer(json_object_get(j, "lost")));
      json_int_t lost = json_integer_value(json_object_get(j, "lost"));
      FUZZ_CHECK(lost > 0);
      expected += static_cast<uint64_t>(lost);
      json_decref(j);
    } else if (event == "tether-open") {
      FUZZ_CHECK(id == std::string(sid) + ".0");
    } else {
      FUZZ_CHECK(event.empty() || event == "binary" || event == "tether-close");
      FUZZ_CHECK(id == std::string(sid) + "." + std::to_string(expected));
      ++expected;
      if (event != "binary") FUZZ_CHECK(ws::is_valid_utf8(data));
      if (event == "tether-close") {
        json_error_t err;
        json_t* j = json_loadb(data.data(), data.size(), JSON_ALLOW_NUL, &err);
        FUZZ_CHECK(j && json_is_integer(json_object_get(j, "code")));
        json_decref(j);
      }
    }
    event.clear(), id.clear(), data.clear();
    have_fields = false;
  }
}

// A poll answer to a request with tether-ack=ACK: messages after ACK, in order, with no gap
// between them. (The first may be past ACK + 1 when the client had acknowledged more before:
// what it acknowledged is released, and a poll that goes back gets what is left.)
void check_poll_body(const std::string& body, uint64_t ack) {
  json_error_t err;
  json_t* j = json_loadb(body.data(), body.size(), JSON_ALLOW_NUL, &err);
  FUZZ_CHECK(j != nullptr);
  json_t* messages = json_object_get(j, "messages");
  FUZZ_CHECK(json_is_array(messages));
  uint64_t prev = ack;
  for (size_t i = 0; i < json_array_size(messages); ++i) {
    json_t* m = json_array_get(messages, i);
    json_t* seq = json_object_get(m, "seq");
    FUZZ_CHECK(json_is_integer(seq));
    uint64_t n = static_cast<uint64_t>(json_integer_value(seq));
    FUZZ_CHECK(i == 0 ? n > ack : n == prev + 1);
    prev = n;
    FUZZ_CHECK(json_is_string(json_object_get(m, "text")) != json_is_string(json_object_get(m, "binary")));
  }
  json_decref(j);
}

bool is_base64url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// A decimal of 1 to 19 digits (what parse_decimal promises), by hand.
std::optional<uint64_t> reference_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// The decoded name of each item of QUERY, with its raw value.
std::vector<std::pair<std::string, std::string_view>> query_items(std::string_view query) {
  std::vector<std::pair<std::string, std::string_view>> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    size_t eq = item.find('=');
    std::string name;
    if (!item.empty() && http::url_decode(item.substr(0, eq), name)) {
      out.emplace_back(std::move(name),
                       eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1));
    }
  }
  return out;
}

// The parsers behind the edge protocol, on what the client sent, against their promises: the
// tether-ack/-seq decimals, Last-Event-ID, session ids; the access log's redaction of the
// session id (a bearer secret, never logged whole) and the upstream query's stripping of
// tether-* parameters, both for names as the modules read them (query_param decodes names).
void check_parsers(const http::Request& req) {
  for (std::string_view name : {"tether-ack", "tether-seq"}) {
    std::string value;
    if (!http::query_param(req.query, name, value)) continue;
    uint64_t n = 0;
    bool ok = session::parse_decimal(value, n);
    std::optional<uint64_t> want = reference_decimal(value);
    FUZZ_CHECK(ok == want.has_value() && (!ok || n == *want));
  }
  std::string sid;
  if (http::query_param(req.query, "tether-session", sid)) {
    bool form = sid.size() == session::kSessionIdLength && std::all_of(sid.begin(), sid.end(), is_base64url);
    FUZZ_CHECK(session::is_session_id(sid) == form);
  }
  if (const std::string* last = req.header("Last-Event-ID")) {
    std::string id;
    uint64_t seq = 0;
    bool ok = session::parse_last_event_id(*last, id, seq);
    size_t dot = last->find('.');
    std::string_view want_id = std::string_view(*last).substr(0, dot);
    bool seq_ok = false;
    uint64_t want_seq = 0;
    if (dot != std::string::npos) {
      std::string_view digits = std::string_view(*last).substr(dot + 1);
      // Up to 2^63 - 1: 19 digits, or fewer with leading zeros.
      size_t zeros = digits.find_first_not_of('0');
      std::string_view significant = zeros == std::string_view::npos ? "0" : digits.substr(zeros);
      if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string_view::npos) {
        std::optional<uint64_t> v = reference_decimal(significant);
        seq_ok = v && *v <= static_cast<uint64_t>(INT64_MAX);
        want_seq = v.value_or(0);
      }
    }
    bool want = dot != std::string::npos && !want_id.empty() && want_id.size() <= 64 &&
                std::all_of(want_id.begin(), want_id.end(), is_base64url) && seq_ok;
    FUZZ_CHECK(ok == want && (!ok || (id == want_id && seq == want_seq)));
  }
  std::string redacted = redact_target(req.target);
  size_t q = redacted.find('?');
  if (q != std::string::npos) {
    for (const auto& [name, value] : query_items(std::string_view(redacted).substr(q + 1))) {
      if (name == "tether-session") FUZZ_CHECK(value.size() <= 6 || value.substr(6) == "\u2026");
    }
  }
  for (const auto& [name, value] : query_items(strip_tether_params(req.query))) {
    FUZZ_CHECK(name.rfind("tether-", 0) != 0);
  }
}

// Checks what came back on CLIENT for the requests in SENT.
void check_exchange(const Client& client, std::string_view sent, const ServerConf& server) {
  RequestLog log = parse_requests(
      sent, http::ParserLimits{.max_header_bytes = 16 * 1024, .max_body_bytes = server.client_max_body_size});
  if (std::getenv("TETHER_FUZZ_DUMP")) {
    std::fprintf(stderr, "--- sent:\n%.*s\n--- received:\n%s\n", static_cast<int>(sent.size()), sent.data(),
                 client.received().c_str());
  }
  std::string_view rest;
  std::vector<Response> responses = check_responses(client.received(), log, &rest);
  for (const http::Request& req : log.requests) check_parsers(req);
  for (size_t i = 0; i < responses.size() && i < log.requests.size(); ++i) {
    const Response& r = responses[i];
    const http::Request& req = log.requests[i];
    std::string sid, ack;
    if (r.status == 200 && r.content_type == "text/event-stream") {
      uint64_t after = 0;
      std::string last;
      if (const std::string* h = req.header("Last-Event-ID")) last = *h;
      if (!last.empty()) FUZZ_CHECK(session::parse_last_event_id(last, sid, after));
      // A new stream's first event, tether-open, names the session.
      if (sid.empty()) {
        size_t at = rest.find("\"session\":\"");
        if (at != std::string_view::npos) sid = rest.substr(at + 11, session::kSessionIdLength);
      }
      check_event_stream(rest, sid, after);
    } else if (r.status == 200 && req.method == "GET" &&
               http::query_param(req.query, "tether-session", sid) &&
               http::query_param(req.query, "tether-ack", ack)) {
      uint64_t n = 0;
      FUZZ_CHECK(session::parse_decimal(ack, n));
      check_poll_body(r.body, n);
    }
  }
}

// The id in the answer to a poll opening, or "" if it failed.
std::string poll_session_id(const Client& c) {
  std::string_view out = c.received();
  size_t at = out.find("{\"session\":\"");
  if (at == std::string_view::npos) return {};
  return std::string(out.substr(at + 12, session::kSessionIdLength));
}

std::string sse_session_id(const Client& c) {
  std::string_view out = c.received();
  size_t at = out.find("data: {\"session\":\"");
  if (at == std::string_view::npos) return {};
  return std::string(out.substr(at + 18, session::kSessionIdLength));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  init_process();
  const uint8_t script = data[0], flags = data[1];
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  const ServerConf& server = *config()->servers[0];

  Core core(config());
  Backend backend(core.base(), script);
  std::list<Client> clients;
  std::vector<Client*> all;
  auto connect = [&]() -> Client& {
    Client& c = clients.emplace_back(core, server, 0);
    all.push_back(&c);
    return c;
  };
  const std::string poll_open = "GET /e/room?tether-transport=poll HTTP/1.1\r\nHost: t\r\n\r\n";
  const std::string sse_open = "GET /e/room HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n";
  Client& poller = connect();
  poller.send(poll_open);
  Client& streamer = connect();
  streamer.send(sse_open);
  run_until_idle(core, all);
  const std::string poll_sid = poll_session_id(poller), sse_sid = sse_session_id(streamer);
  FUZZ_CHECK(session::is_session_id(poll_sid) && session::is_session_id(sse_sid));
  if (!(flags & 1)) {
    streamer.close();
    run_until_idle(core, all);
  }

  std::vector<std::pair<Client*, std::string>> parts;
  for (size_t n = 0; n < kMaxParts && !input.empty(); ++n) {
    size_t end = input.find(kPartSeparator);
    std::string part(input.substr(0, end));
    input = end == std::string_view::npos ? std::string_view{} : input.substr(end + kPartSeparator.size());
    part = substitute(substitute(substitute(std::move(part), "P", poll_sid), "S", sse_sid), "X", kUnknownId);
    Client& c = connect();
    c.send(part);
    if (flags & 2) c.half_close();
    run_until_idle(core, all);
    parts.emplace_back(&c, std::move(part));
  }

  check_exchange(poller, poll_open, server);
  check_exchange(streamer, sse_open, server);
  for (const auto& [client, sent] : parts) check_exchange(*client, sent, server);

  core.stop(false);
  run_until_idle(core, all);
  for (Client& c : clients) c.close();
  run_until_idle(core, all);
  check_all_closed(core);
  return 0;
}
