#include "module/sse/stream.h"

#include <event2/buffer.h>
#include <jansson.h>

#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/core/write_now.h"
#include "proxy/session/sse_format.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether::sse {
namespace {

// Output written but not yet taken by the client beyond which no more messages are written:
// they wait in the session's buffer, which pauses the upstream when full (back-pressure).
constexpr size_t kHighWatermark = 256 * 1024;
constexpr size_t kLowWatermark = 64 * 1024;

void on_read(bufferevent*, void* ctx) noexcept {
  static_cast<Stream*>(ctx)->handle_read();
}
void on_write(bufferevent*, void* ctx) noexcept {
  static_cast<Stream*>(ctx)->handle_write();
}
void on_event(bufferevent*, short what, void* ctx) noexcept {
  static_cast<Stream*>(ctx)->handle_event(what);
}
void on_heartbeat(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Stream*>(ctx)->handle_heartbeat();
}

std::string json_dump(json_t* j) {
  char* s = json_dumps(j, JSON_COMPACT);
  std::string out = s ? s : "{}";
  free(s);
  json_decref(j);
  return out;
}

}  // namespace

Stream::Stream(Core& core, HttpConnection::Detached client, std::string peer, HeaderList cors,
               const SessionConf& conf, Millis send_timeout)
    : core_(core),
      bev_(std::move(client.bev)),
      slot_(std::move(client.slot)),
      peer_(std::move(peer)),
      cors_(std::move(cors)),
      conf_(conf) {
  bufferevent_setcb(bev_.get(), on_read, on_write, on_event, this);
  timeval tv = to_timeval(send_timeout);
  bufferevent_set_timeouts(bev_.get(), nullptr, &tv);
  bufferevent_setwatermark(bev_.get(), EV_WRITE, kLowWatermark, 0);
  // Reading only to notice the client leaving; nothing it sends matters.
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
  heartbeat_.reset(event_new(core.base(), -1, EV_PERSIST, on_heartbeat, this));
  ++stats().sse_streams;
  start_ms_ = monotonic_ms();
}

// Detaching happens in close_now(); at shutdown the core frees objects in any order, so the
// destructor touches nothing else.
Stream::~Stream() = default;

void Stream::start_new(session::Session& s) {
  session_ = &s;
  access_session_ = s.log_id();
}

void Stream::on_open(Status status) {
  if (!session_) return;
  if (!status.ok()) {
    // The session is gone already; the client learns why.
    session_ = nullptr;
    TETHER_LOG(kError, "%s, client: %s", status.error().what.c_str(), peer_.c_str());
    access_status_ = 502;
    std::string out =
        format_response(502, "text/plain; charset=utf-8", error_body(status.error().what), cors_, true);
    write_now(bev_.get(), out.data(), out.size());
    finish();
    return;
  }
  session::Session& s = *session_;
  write_head();
  json_t* open = json_pack("{s:s,s:s}", "session", s.id().c_str(), "protocol", s.protocol().c_str());
  out_.clear();
  session::append_sse_event(out_, "tether-open", json_dump(open), s.id() + ".0");
  write_now(bev_.get(), out_.data(), out_.size());
  s.attach(this);
  flush();
}

void Stream::write_head() {
  std::string head =
      "HTTP/1.1 200 OK\r\nServer: tether\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
      "X-Accel-Buffering: no\r\nConnection: close\r\n";
  for (const auto& [n, v] : cors_) head += n + ": " + v + "\r\n";
  head += "\r\n";
  if (conf_.sse_padding) session::append_sse_padding(head);
  if (conf_.sse_retry) session::append_sse_retry(head, static_cast<uint64_t>(conf_.sse_retry->count()));
  write_now(bev_.get(), head.data(), head.size());
  open_ = true;
  timeval tv = to_timeval(conf_.heartbeat);
  event_add(heartbeat_.get(), &tv);
}

void Stream::start_resume(session::Session& s, uint64_t after) {
  session_ = &s;
  access_session_ = s.log_id();
  cursor_ = after;
  write_head();
  s.attach(this);
  flush();
}

// The session drives the close (tether-close 1001); a stream without one just finishes.
void Stream::shutdown(bool) {
  if (!session_) finish();
}

void Stream::on_session_ready(session::Session&) {
  flush();
}

void Stream::on_session_gone(session::Session&) {
  // Replaced by a newer stream of the same session, or the session ended.
  session_ = nullptr;
  finish();
}

// Writes what the session has after cursor_, then the close once everything before it is out.
void Stream::flush() {
  if (!session_ || !open_ || finishing_) return;
  session::Session& s = *session_;
  const session::Outbox& box = s.outbox();
  evbuffer* out = bufferevent_get_output(bev_.get());
  out_.clear();
  uint64_t first = box.first_seq();
  if (cursor_ + 1 < first && cursor_ < box.last_seq()) {
    // The window no longer holds what the client missed: say so, never skip silently.
    json_t* gap = json_pack("{s:I}", "lost", static_cast<json_int_t>(first - 1 - cursor_));
    session::append_sse_event(out_, "tether-gap", json_dump(gap));
    cursor_ = first - 1;
  }
  // Batches of up to kHighWatermark. When the socket takes a whole batch at once nothing is
  // queued, so no write callback would come to continue: go on while that is so (the socket
  // buffer bounds it), and stop once something waits in the output.
  for (auto it = box.after(cursor_); it != box.end(); ++it) {
    if (evbuffer_get_length(out) + out_.size() > kHighWatermark) {
      write_now(bev_.get(), out_.data(), out_.size());
      bytes_out_ += out_.size();
      out_.clear();
      if (evbuffer_get_length(out) > 0) break;
    }
    session::append_sse_message(out_, s.id(), it->seq, it->binary, it->payload);
    cursor_ = it->seq;
  }
  bool close_now = cursor_ == box.last_seq() && s.close_info();
  if (close_now) {
    json_t* c = json_pack("{s:i,s:s%}", "code", static_cast<int>(s.close_info()->code), "reason",
                          s.close_info()->reason.data(), s.close_info()->reason.size());
    // The close has an id one past the last message: a reconnect naming it proves the client
    // got the close; one naming an earlier seq gets the rest and the close again.
    session::append_sse_event(out_, "tether-close", json_dump(c),
                              s.id() + "." + std::to_string(box.last_seq() + 1));
  }
  if (!out_.empty()) write_now(bev_.get(), out_.data(), out_.size());
  bytes_out_ += out_.size();
  if (cursor_ > box.delivered_through()) s.delivered_through(cursor_);
  if (close_now) {
    // Written is not delivered (the connection may drop before the client reads it): the
    // session stays, closed, until the client proves receipt or its linger runs out.
    session_ = nullptr;
    s.detach(this);
    finish();
  }
}

void Stream::handle_read() {
  evbuffer* in = bufferevent_get_input(bev_.get());
  evbuffer_drain(in, evbuffer_get_length(in));
}

void Stream::handle_write() {
  if (finishing_) {
    if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) close_now();
    return;
  }
  flush();
}

void Stream::handle_event(short what) {
  if (what & BEV_EVENT_TIMEOUT) {
    TETHER_LOG(kInfo, "SSE client took nothing for send_timeout, closing, client: %s", peer_.c_str());
    stats().hit(Limit::kSendTimeout);
  }
  close_now();
}

void Stream::handle_heartbeat() {
  std::string hb;
  session::append_sse_comment(hb, "heartbeat");
  write_now(bev_.get(), hb.data(), hb.size());
}

void Stream::finish() {
  if (finishing_ || !bev_) return;
  finishing_ = true;
  event_del(heartbeat_.get());
  bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
  if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) close_now();
}

void Stream::close_now() {
  if (retired_) return;
  retired_ = true;
  slot_.release();
  --stats().sse_streams;
  if (!access_request_.empty()) {
    log::access(access_ip_, access_request_, access_status_,
                "transport=sse session=" + access_session_ + " upstream=- in=0 out=" +
                    std::to_string(bytes_out_) + " time=" + elapsed_since(start_ms_));
  }
  event_del(heartbeat_.get());
  if (session_) {
    session::Session* s = std::exchange(session_, nullptr);
    if (open_)
      s->detach(this);
    else
      s->abandon();
  }
  if (bev_) {
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    bev_.reset();
  }
  core_.retire(this);
}

}  // namespace tether::sse
