#include "module/poll/poll_module.h"

#include <jansson.h>

#include <charconv>

#include "proxy/core/cors.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/routing/router.h"
#include "proxy/session/session.h"
#include "proxy/session/sse_format.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether::poll {
namespace {

// Payload bytes per poll response beyond which further messages wait for the next poll (one
// message is always sent, whatever its size).
constexpr size_t kResponseCap = 256 * 1024;

const HeaderList kNoStore{{"Cache-Control", "no-store"}};

std::string dump(json_t* j) {
  char* s = json_dumps(j, JSON_COMPACT);
  std::string out = s ? s : "{}";
  free(s);
  json_decref(j);
  return out;
}

// {"messages":[...]} with what the session holds after ACK, and its close once all is sent.
std::string poll_body(const session::Session& s, uint64_t ack) {
  json_t* messages = json_array();
  size_t bytes = 0;
  uint64_t last = ack;
  const session::Outbox& box = s.outbox();
  for (auto it = box.after(ack); it != box.end(); ++it) {
    if (bytes > 0 && bytes + it->payload.size() > kResponseCap) break;
    bytes += it->payload.size();
    json_t* m = json_object();
    json_object_set_new(m, "seq", json_integer(static_cast<json_int_t>(it->seq)));
    if (it->binary) {
      json_object_set_new(m, "binary", json_string(session::base64_encode(it->payload).c_str()));
    } else {
      json_object_set_new(m, "text", json_stringn(it->payload.data(), it->payload.size()));
    }
    json_array_append_new(messages, m);
    last = it->seq;
  }
  json_t* body = json_object();
  json_object_set_new(body, "messages", messages);
  if (s.close_info() && last == box.last_seq()) {
    json_object_set_new(body, "close",
                        json_pack("{s:i,s:s%}", "code", static_cast<int>(s.close_info()->code), "reason",
                                  s.close_info()->reason.data(), s.close_info()->reason.size()));
  }
  return dump(body);
}

bool has_news(const session::Session& s, uint64_t ack) {
  return s.outbox().last_seq() > ack || s.close_info().has_value();
}

// A poll held until the session has something after its ack, a newer poll replaces it, or
// tether_poll_timeout passes.
class HeldPoll : public Owned, public session::Subscriber, public DeferredResponse {
 public:
  HeldPoll(Core& core, HttpConnection& conn, session::Session& s, uint64_t ack, HeaderList headers)
      : core_(core), conn_(&conn), session_(&s), ack_(ack), headers_(std::move(headers)) {
    timer_.reset(evtimer_new(core.base(), on_timeout, this));
    Millis t = s.conf().poll_timeout;
    timeval tv = to_timeval(t);
    evtimer_add(timer_.get(), &tv);
    conn.defer(this);
    ++stats().polls_waiting;
    s.attach(this);
  }

  void on_session_ready(session::Session& s) override {
    if (has_news(s, ack_)) answer(poll_body(s, ack_));
  }
  void on_session_gone(session::Session&) override {
    session_ = nullptr;  // replaced by a newer poll, or the session ended
    answer(R"({"messages":[]})");
  }
  void on_client_gone() override {
    conn_ = nullptr;
    done();
  }
  static void on_timeout(evutil_socket_t, short, void* ctx) noexcept {
    static_cast<HeldPoll*>(ctx)->answer(R"({"messages":[]})");
  }

 private:
  void answer(const std::string& body) {
    if (conn_) {
      HttpConnection* c = std::exchange(conn_, nullptr);
      c->respond(200, "application/json", body, headers_);
    }
    done();
  }
  void done() {
    if (finished_) return;
    finished_ = true;
    --stats().polls_waiting;
    evtimer_del(timer_.get());
    if (session_) std::exchange(session_, nullptr)->detach(this);
    core_.retire(this);
  }

  Core& core_;
  HttpConnection* conn_;
  session::Session* session_;
  uint64_t ack_;
  HeaderList headers_;
  EventPtr timer_;
  bool finished_ = false;
};

// The opening request, answered once the session's upstream is up.
class Opening : public Owned, public DeferredResponse {
 public:
  Opening(Core& core, HttpConnection& conn, HeaderList headers)
      : core_(core), conn_(&conn), headers_(std::move(headers)) {
    conn.defer(this);
  }
  void set_session(session::Session& s) { session_ = &s; }

  void on_open(Status status) {
    session::Session* s = std::exchange(session_, nullptr);
    if (conn_) {
      HttpConnection* c = std::exchange(conn_, nullptr);
      if (status.ok()) {
        json_t* body = json_pack("{s:s,s:s}", "session", s->id().c_str(), "protocol", s->protocol().c_str());
        c->respond(200, "application/json", dump(body), headers_);
      } else {
        TETHER_LOG(kError, "%s, client: %s", status.error().what.c_str(), c->peer().c_str());
        c->respond_error(502, status.error().what, headers_);
      }
    }
    core_.retire(this);
  }
  void on_client_gone() override {
    conn_ = nullptr;
    // Nobody learns the id: the session is of no use.
    if (session_) std::exchange(session_, nullptr)->abandon();
    core_.retire(this);
  }

 private:
  Core& core_;
  HttpConnection* conn_;
  session::Session* session_ = nullptr;
  HeaderList headers_;
};

bool handle(RequestContext& ctx, const ModuleConf&) {
  const http::Request& req = ctx.request;
  const LocationConf& loc = ctx.location;
  HttpConnection& conn = ctx.conn;
  if (!loc.pass || req.method != "GET" || req.upgrade) return false;
  std::string transport, sid, ack_text;
  bool has_session = http::query_param(req.query, "tether-session", sid);
  bool opening =
      !has_session && http::query_param(req.query, "tether-transport", transport) && transport == "poll";
  if (!has_session && !opening) return false;
  if (!(loc.transports & kPoll)) {
    conn.respond_error(404, "long polling is not enabled at " + loc.path);
    return true;
  }
  HeaderList headers = kNoStore;
  if (!check_origin(conn, req, loc, headers)) return true;

  if (opening) {
    ClientTable::Slot slot = session::take_session_slot(ctx.core, conn, headers);
    if (!slot) return true;
    routing::RouteKey route = routing::route_key(*loc.pass->upstream, req, conn.peer_ip());
    for (auto& h : route.set_cookie) headers.push_back(std::move(h));
    auto opening_req = std::make_unique<Opening>(ctx.core, conn, headers);
    Opening& o = ctx.core.adopt(std::move(opening_req));
    session::Session& s = session::open_session(ctx.core, req, loc, conn.peer_ip(), conn.peer(),
                                                session::Kind::kPoll, std::move(route.key), std::move(slot),
                                                [&o](Status st) { o.on_open(std::move(st)); });
    o.set_session(s);
    return true;
  }

  uint64_t ack = 0;
  if (!http::query_param(req.query, "tether-ack", ack_text)) {
    conn.respond_error(400, "missing tether-ack", headers);
    return true;
  }
  if (!session::parse_decimal(ack_text, ack)) {
    conn.respond_error(400, "invalid tether-ack (expected the last seq received, 0 at first)", headers);
    return true;
  }
  session::Session* s = session::find_or_answer(ctx.core, conn, sid, headers);
  if (!s) return true;
  if (s->kind() != session::Kind::kPoll) {
    conn.respond_error(400, "session " + s->log_id() + " is an SSE session", headers);
    return true;
  }
  if (ack > s->outbox().last_seq()) {
    conn.respond_error(400, "tether-ack is ahead of the session", headers);
    return true;
  }
  s->release_through(ack);
  if (has_news(*s, ack)) {
    // Answering is not attaching: a previous held poll stays until replaced or answered.
    if (s->subscriber()) s->attach(nullptr);  // a newer poll answers the older at once
    s->touch();
    conn.respond(200, "application/json", poll_body(*s, ack), headers);
    return true;
  }
  ctx.core.adopt(std::make_unique<HeldPoll>(ctx.core, conn, *s, ack, std::move(headers)));
  return true;
}

}  // namespace

const Module kModule = {
    .name = "poll",
    .directives = {},
    .create_conf = [] { return std::make_unique<ModuleConf>(); },
    .set = nullptr,
    .merge = nullptr,
    .handle = handle,
};

}  // namespace tether::poll
