#include "tools/bench/clients.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include <algorithm>

#include "tools/bench/json_out.h"

namespace tether::bench {
namespace {

constexpr size_t kMaxHandshake = 64 * 1024;  // a 101 head bigger than this is not one
constexpr size_t kMaxRateOutput = 4 << 20;   // ws-rate: unsent bytes a connection may hold
constexpr size_t kMaxSseLine = 16 << 20;
constexpr size_t kMaxPollBody = 64 << 20;
constexpr size_t kMaxPublishQueue = 10'000;  // publish: due messages waiting for an answer
constexpr size_t kMaxPublishBatch = 1000;    // publish: items in one Pushpin POST

std::string request_head(const Options& o, std::string_view target, std::string_view extra) {
  std::string req;
  req.reserve(256);
  req.append("GET ").append(target).append(" HTTP/1.1\r\nHost: ").append(o.url.authority).append("\r\n");
  req.append(extra);
  for (const std::string& h : o.headers) req.append(h).append("\r\n");
  req.append("\r\n");
  return req;
}

std::string first_line(std::string_view body) {
  body = body.substr(0, std::min(body.find_first_of("\r\n"), size_t{200}));
  return std::string(body);
}

}  // namespace

// ---- WebSocket ----------------------------------------------------------------------------

WsClient::WsClient(Run& run, size_t id, Behaviour behaviour) : Client(run, id), behaviour_(behaviour) {}

void WsClient::start() {
  if (!open_connection()) return;
  std::string key = ws::make_client_key();
  expected_accept_ = ws::accept_key(key);
  std::string extra = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                      "\r\nSec-WebSocket-Version: 13\r\n";
  write(request_head(run_.options(), run_.options().url.target, extra));
}

void WsClient::handle_read() {
  if (!upgraded_) read_handshake();
  if (upgraded_ && !dead_) read_frames();
}

void WsClient::on_response_head(const ResponseHead& head) {
  status_ = head.status;
  const std::string* accept = head.get("Sec-WebSocket-Accept");
  accept_ok_ = accept && *accept == expected_accept_;
}

void WsClient::read_handshake() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  size_t len = evbuffer_get_length(in);
  if (len == 0) return;  // feeding http-parser nothing would mean EOF
  const char* data = reinterpret_cast<const char*>(evbuffer_pullup(in, -1));
  size_t used = 0;
  ResponseParser::State st = parser_.feed(data, len, used);
  evbuffer_drain(in, used);
  if (st == ResponseParser::State::kError) {
    fail(ErrorKind::kProtocol, "WebSocket handshake: " + parser_.error());
    return;
  }
  if (status_ != 0 && status_ != 101) {
    fail(ErrorKind::kHandshake, "WebSocket handshake: HTTP " + std::to_string(status_) + " instead of 101");
    return;
  }
  if (st == ResponseParser::State::kComplete) {
    fail(ErrorKind::kHandshake, "WebSocket handshake: 101 without Upgrade/Connection headers");
    return;
  }
  if (st == ResponseParser::State::kMore) {
    if (len > kMaxHandshake) fail(ErrorKind::kProtocol, "WebSocket handshake: answer head too large");
    return;
  }
  if (!accept_ok_) {
    fail(ErrorKind::kHandshake, "WebSocket handshake: wrong Sec-WebSocket-Accept");
    return;
  }
  upgraded_ = true;
  mark_open();
  if (behaviour_ == Behaviour::kEcho) send_message(now_ns());
}

void WsClient::read_frames() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  while (!dead_ && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec[8];
    int n = std::min(evbuffer_peek(in, -1, nullptr, vec, 8), 8);
    size_t used = 0;
    for (int i = 0; i < n && !dead_ && !decoder_.stopped(); ++i) {
      used += decoder_.feed(static_cast<const uint8_t*>(vec[i].iov_base), vec[i].iov_len, *this);
    }
    // After a close or an error the decoder takes nothing more; the rest is dropped.
    if (dead_ || decoder_.stopped()) used = evbuffer_get_length(in);
    evbuffer_drain(in, used);
  }
}

void WsClient::send_message(uint64_t stamp_ns) {
  std::string& payload = run_.payload_scratch();
  make_payload(payload, stamp_ns, run_.options().size);
  std::string& frame = run_.frame_scratch();
  frame.clear();
  ws::append_frame(frame, ws::Role::kClient, ws::Opcode::kText, payload);
  write(frame);
  run_.count_sent();
}

void WsClient::send_control(ws::Opcode opcode, std::string_view payload) {
  std::string& frame = run_.frame_scratch();
  frame.clear();
  ws::append_frame(frame, ws::Role::kClient, opcode, payload);
  write(frame);
}

bool WsClient::send_at(uint64_t scheduled_ns) {
  if (!is_open() || dead_ || output_length() > kMaxRateOutput) return false;
  send_message(scheduled_ns);
  return true;
}

void WsClient::on_message(ws::Opcode, std::string& payload) {
  uint64_t now = now_ns();
  run_.record_message(now, payload, last_seq_);
  if (behaviour_ == Behaviour::kEcho && !run_.over()) send_message(now_ns());
}

void WsClient::on_ping(std::string_view payload) {
  send_control(ws::Opcode::kPong, payload);
}

void WsClient::on_close(uint16_t code, std::string_view reason) {
  send_control(ws::Opcode::kClose, ws::close_payload(code, ""));
  std::string what = "server closed the WebSocket: ";
  what.append(std::to_string(code));
  if (!reason.empty()) what.append(" ").append(reason);
  fail(ErrorKind::kClosed, std::move(what));
}

void WsClient::on_error(uint16_t code, std::string_view reason) {
  send_control(ws::Opcode::kClose, ws::close_payload(code, reason));
  fail(ErrorKind::kProtocol, "bad frame from the server: " + std::string(reason));
}

// ---- SSE ----------------------------------------------------------------------------------

SseClient::SseClient(Run& run, size_t id) : Client(run, id) {}

void SseClient::start() {
  if (!open_connection()) return;
  write(request_head(run_.options(), run_.options().url.target,
                     "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"));
}

void SseClient::on_response_head(const ResponseHead& head) {
  status_ = head.status;
  const std::string* type = head.get("Content-Type");
  event_stream_ = type && type->find("text/event-stream") != std::string::npos;
  content_type_ = type ? *type : "no Content-Type";
}

std::string SseClient::bad_answer() const {
  if (status_ != 200) return "HTTP " + std::to_string(status_) + " instead of 200 text/event-stream";
  return "HTTP 200 with " + content_type_ + " instead of text/event-stream";
}

void SseClient::handle_read() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  while (!dead_ && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec;
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    size_t used = 0;
    ResponseParser::State st = parser_.feed(static_cast<const char*>(vec.iov_base), vec.iov_len, used);
    evbuffer_drain(in, used);
    if (st == ResponseParser::State::kError) {
      fail(ErrorKind::kProtocol, parser_.error());
      return;
    }
    if (status_ != 0 && !is_open() && !dead_) {
      if (status_ != 200 || !event_stream_) {
        fail(ErrorKind::kHandshake, bad_answer());
        return;
      }
      mark_open();
    }
    if (!close_reason_.empty()) {
      fail(ErrorKind::kClosed, "tether-close " + close_reason_);
      return;
    }
    if (st != ResponseParser::State::kMore) {
      fail(ErrorKind::kClosed, "the event stream ended");
      return;
    }
  }
}

void SseClient::handle_eof() {
  (void)parser_.finish();  // a close-delimited stream ends here; its events were already read
  if (status_ != 0 && (status_ != 200 || !event_stream_)) {
    fail(ErrorKind::kHandshake, bad_answer());
    return;
  }
  if (!close_reason_.empty()) {
    fail(ErrorKind::kClosed, "tether-close " + close_reason_);
    return;
  }
  fail(ErrorKind::kClosed, "server closed the event stream");
}

void SseClient::on_response_body(std::string_view chunk) {
  if (dead_ || status_ != 200 || !event_stream_) return;
  size_t i = 0;
  while (i < chunk.size()) {
    if (after_cr_) {  // CRLF: the LF of a line the CR already ended
      after_cr_ = false;
      if (chunk[i] == '\n') {
        ++i;
        continue;
      }
    }
    size_t eol = chunk.find_first_of("\r\n", i);
    if (eol == std::string_view::npos) {
      line_.append(chunk.substr(i));
      if (line_.size() > kMaxSseLine) fail(ErrorKind::kProtocol, "an SSE line over 16 MiB");
      return;
    }
    if (line_.empty()) {
      line(chunk.substr(i, eol - i));
    } else {
      line_.append(chunk.substr(i, eol - i));
      line(line_);
      line_.clear();
    }
    after_cr_ = chunk[eol] == '\r';
    i = eol + 1;
  }
}

void SseClient::line(std::string_view l) {
  if (l.empty()) {
    dispatch();
    return;
  }
  if (l.front() == ':') return;  // a comment (heartbeat, padding)
  size_t colon = l.find(':');
  std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) data_.push_back('\n');
    data_.append(value);
    has_data_ = true;
  } else if (field == "event") {
    event_.assign(value);
  }
}

void SseClient::dispatch() {
  if (has_data_) {
    uint64_t now = now_ns();
    if (event_.empty() || event_ == "message") {
      run_.record_message(now, data_, last_seq_);
    } else if (event_ == "binary") {
      run_.record(now, 0);
    } else if (event_ == "tether-close") {
      close_reason_ = data_.empty() ? "{}" : data_;
    } else if (event_ == "tether-gap") {
      // data: {"lost":N}
      size_t at = data_.find("\"lost\":");
      if (at != std::string::npos) {
        run_.count_gap_reported(std::strtoull(data_.c_str() + at + 7, nullptr, 10));
      }
    }
  }
  data_.clear();
  event_.clear();
  has_data_ = false;
}

// ---- long polling -------------------------------------------------------------------------

PollClient::PollClient(Run& run, size_t id, PollProtocol protocol) : Client(run, id), protocol_(protocol) {}

void PollClient::start() {
  if (!open_connection()) return;
  answered_ = false;
  send_request();
}

void PollClient::handle_connected() {
  // nchan and Pushpin have no session to open: a connection that takes the request counts as
  // connected.
  if (protocol_ != PollProtocol::kTether) mark_open();
}

void PollClient::send_request() {
  if (!bev_) {
    if (!open_connection()) return;
    answered_ = false;
    run_.count_reconnect();
  }
  const Url& url = run_.options().url;
  std::string target = url.target;
  char sep = target.find('?') == std::string::npos ? '?' : '&';
  std::string extra;
  if (protocol_ == PollProtocol::kTether) {
    target.push_back(sep);
    if (session_.empty()) {
      target += "tether-transport=poll";
    } else {
      target += "tether-session=" + session_ + "&tether-ack=" + std::to_string(ack_);
    }
  } else if (protocol_ == PollProtocol::kNchan) {
    if (!last_modified_.empty()) extra += "If-Modified-Since: " + last_modified_ + "\r\n";
    if (!etag_.empty()) extra += "If-None-Match: " + etag_ + "\r\n";
  }
  status_ = 0;
  body_.clear();
  in_flight_ = true;
  write(request_head(run_.options(), target, extra));
}

void PollClient::on_response_head(const ResponseHead& head) {
  status_ = head.status;
  body_.clear();
}

void PollClient::on_response_body(std::string_view chunk) {
  if (dead_) return;
  if (body_.size() + chunk.size() > kMaxPollBody) {
    fail(ErrorKind::kProtocol, "a poll answer over 64 MiB");
    return;
  }
  body_.append(chunk);
}

void PollClient::handle_read() {
  bufferevent* bev = bev_.get();
  evbuffer* in = bufferevent_get_input(bev);
  // A reconnect inside handle_response() replaces bev_: the old connection has nothing more to say.
  while (!dead_ && bev_.get() == bev && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec;
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    size_t used = 0;
    ResponseParser::State st = parser_.feed(static_cast<const char*>(vec.iov_base), vec.iov_len, used);
    evbuffer_drain(in, used);
    switch (st) {
      case ResponseParser::State::kMore:
        break;
      case ResponseParser::State::kError:
        fail(ErrorKind::kProtocol, parser_.error());
        return;
      case ResponseParser::State::kUpgraded:
        fail(ErrorKind::kProtocol, "a 101 answer to a poll");
        return;
      case ResponseParser::State::kComplete:
        if (!in_flight_) {
          fail(ErrorKind::kProtocol, "an answer to no request");
          return;
        }
        handle_response();
        break;
    }
  }
}

void PollClient::handle_eof() {
  ResponseParser::State st = parser_.finish();
  if (st == ResponseParser::State::kError) {
    fail(ErrorKind::kClosed, "server closed the connection in the middle of a poll answer");
    return;
  }
  if (st == ResponseParser::State::kComplete && in_flight_) {  // a close-delimited body
    eof_ = true;
    handle_response();
    return;
  }
  // Closed between answers (a keep-alive connection timed out): poll again on a new one, unless
  // this connection never answered at all.
  if (!answered_) {
    fail(ErrorKind::kClosed, "server closed the connection without answering");
    return;
  }
  drop_connection();
  parser_.reset();
  if (in_flight_ && !run_.over()) {
    in_flight_ = false;
    send_request();
  }
}

void PollClient::handle_response() {
  in_flight_ = false;
  answered_ = true;
  keep_alive_ = parser_.head().keep_alive;
  uint64_t now = now_ns();
  run_.count_answer(now);
  if (protocol_ == PollProtocol::kTether) {
    handle_tether_response(now);
  } else {
    handle_plain_response(now);
  }
  if (dead_) return;
  if (!keep_alive_ || eof_) {
    eof_ = false;
    drop_connection();
    parser_.reset();
  }
  if (!run_.over()) send_request();
}

void PollClient::handle_tether_response(uint64_t now) {
  if (status_ != 200) {
    fail(is_open() ? ErrorKind::kClosed : ErrorKind::kHandshake,
         "HTTP " + std::to_string(status_) + (body_.empty() ? "" : ": " + first_line(body_)));
    return;
  }
  json_error_t err;
  JsonPtr root(json_loadb(body_.data(), body_.size(), 0, &err));
  if (!root || !json_is_object(root.get())) {
    fail(ErrorKind::kProtocol, "a poll answer that is not a JSON object");
    return;
  }
  if (session_.empty()) {
    json_t* sid = json_object_get(root.get(), "session");
    if (!json_is_string(sid) || json_string_length(sid) == 0) {
      fail(ErrorKind::kProtocol, "no session in the answer to ?tether-transport=poll");
      return;
    }
    session_ = json_string_value(sid);
    mark_open();
    return;
  }
  json_t* messages = json_object_get(root.get(), "messages");
  size_t i;
  json_t* m;
  json_array_foreach(messages, i, m) {
    json_int_t seq = json_integer_value(json_object_get(m, "seq"));
    ack_ = std::max<int64_t>(ack_, seq);
    json_t* text = json_object_get(m, "text");
    if (json_is_string(text)) {
      run_.record_message(now, std::string_view(json_string_value(text), json_string_length(text)),
                          last_seq_);
    } else {
      run_.record(now, 0);
    }
  }
  if (json_t* close = json_object_get(root.get(), "close")) {
    char* text = json_dumps(close, JSON_COMPACT);
    fail(ErrorKind::kClosed, std::string("the session closed: ") + (text ? text : "{}"));
    std::free(text);
  }
}

void PollClient::handle_plain_response(uint64_t now) {
  if (status_ == 200) {
    run_.record_message(now, body_, last_seq_);
    if (protocol_ == PollProtocol::kNchan) {
      if (const std::string* lm = parser_.head().get("Last-Modified")) last_modified_ = *lm;
      if (const std::string* etag = parser_.head().get("Etag")) etag_ = *etag;
    }
    return;
  }
  if (status_ == 304 || status_ == 408 || status_ == 204) return;  // the poll timed out: poll again
  fail(ErrorKind::kHandshake,
       "HTTP " + std::to_string(status_) + (body_.empty() ? "" : ": " + first_line(body_)));
}

// ---- publisher ----------------------------------------------------------------------------

PublishClient::PublishClient(Run& run, size_t id) : Client(run, id) {}

void PublishClient::start() {
  open_connection();
}

void PublishClient::handle_connected() {
  mark_open();
}

bool PublishClient::send_at(uint64_t scheduled_ns) {
  if (!is_open() || dead_ || due_.size() >= kMaxPublishQueue) return false;
  due_.push_back(scheduled_ns);
  if (in_flight_.empty()) send_next();
  return true;
}

void PublishClient::append_item(const std::string& payload) {
  const Options& o = run_.options();
  // The payload is digits, spaces and x: nothing to escape in JSON.
  if (!in_flight_.empty()) body_.push_back(',');
  body_.append("{\"channel\":\"").append(o.channel).append("\",\"formats\":{");
  if (o.format == PublishFormat::kPushpinStream) {
    body_.append("\"http-stream\":{\"content\":\"data: ").append(payload).append("\\n\\n\"}}}");
  } else {
    body_.append("\"http-response\":{\"body\":\"").append(payload).append("\"}}}");
  }
}

void PublishClient::send_next() {
  if (due_.empty() || !in_flight_.empty() || dead_ || run_.over()) return;
  if (!bev_) {
    if (!open_connection()) return;
    run_.count_reconnect();
  }
  const Options& o = run_.options();
  std::string& payload = run_.payload_scratch();
  const char* type = "application/json";
  if (o.format == PublishFormat::kRaw) {
    make_payload(payload, due_.front(), o.size, ++seq_);
    body_ = payload;
    type = "text/plain";
    in_flight_.push_back(due_.front());
    due_.pop_front();
  } else {
    body_ = "{\"items\":[";
    for (size_t n = 0; n < kMaxPublishBatch && !due_.empty(); ++n) {
      make_payload(payload, due_.front(), o.size, ++seq_);
      append_item(payload);
      in_flight_.push_back(due_.front());
      due_.pop_front();
    }
    body_.append("]}");
  }
  request_.clear();
  request_.append("POST ").append(o.url.target).append(" HTTP/1.1\r\nHost: ").append(o.url.authority);
  request_.append("\r\nContent-Type: ").append(type);
  request_.append("\r\nContent-Length: ").append(std::to_string(body_.size())).append("\r\n");
  for (const std::string& h : o.headers) request_.append(h).append("\r\n");
  request_.append("\r\n").append(body_);
  status_ = 0;
  write(request_);
  for (size_t i = 0; i < in_flight_.size(); ++i) run_.count_sent();
}

void PublishClient::on_response_head(const ResponseHead& head) {
  status_ = head.status;
}

void PublishClient::handle_read() {
  bufferevent* bev = bev_.get();
  evbuffer* in = bufferevent_get_input(bev);
  while (!dead_ && bev_.get() == bev && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec;
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    size_t used = 0;
    ResponseParser::State st = parser_.feed(static_cast<const char*>(vec.iov_base), vec.iov_len, used);
    evbuffer_drain(in, used);
    if (st == ResponseParser::State::kError || st == ResponseParser::State::kUpgraded) {
      fail(ErrorKind::kProtocol,
           st == ResponseParser::State::kError ? parser_.error() : "a 101 answer to a POST");
      return;
    }
    if (st == ResponseParser::State::kComplete) {
      if (in_flight_.empty()) {
        fail(ErrorKind::kProtocol, "an answer to no request");
        return;
      }
      handle_response();
    }
  }
}

void PublishClient::handle_eof() {
  ResponseParser::State st = parser_.finish();
  if (st == ResponseParser::State::kComplete && !in_flight_.empty()) {  // a close-delimited answer
    drop_connection();
    handle_response();
    return;
  }
  if (!in_flight_.empty()) {
    fail(ErrorKind::kClosed, "server closed the connection without answering a publish");
    return;
  }
  drop_connection();  // a keep-alive connection timed out: the next POST reconnects
  parser_.reset();
}

void PublishClient::handle_response() {
  uint64_t now = now_ns();
  if (status_ < 200 || status_ > 299) {
    in_flight_.clear();
    fail(ErrorKind::kHandshake, "publish answered HTTP " + std::to_string(status_));
    return;
  }
  for (uint64_t due : in_flight_) run_.record(now, due);
  in_flight_.clear();
  if (bev_ && !parser_.head().keep_alive) drop_connection();
  if (!bev_) parser_.reset();
  send_next();
}

}  // namespace tether::bench
