#include "module/send/send_module.h"

#include <strings.h>

#include <charconv>

#include "proxy/core/cors.h"
#include "proxy/core/http_connection.h"
#include "proxy/session/session.h"
#include "proxy/ws/codec.h"

namespace tether::send {
namespace {

// A POST whose seq came early: answered once the gap before it fills and it goes upstream
// (204), or when the session ends first (410).
class HeldSend : public Owned, public session::SendWaiter, public DeferredResponse {
 public:
  HeldSend(Core& core, HttpConnection& conn, session::Session& s, uint64_t seq, HeaderList headers)
      : core_(core), conn_(&conn), session_(&s), seq_(seq), headers_(std::move(headers)) {}
  void on_send_done(bool forwarded) override {
    session_ = nullptr;  // the session has let go of us
    if (HttpConnection* c = std::exchange(conn_, nullptr)) {
      forwarded ? c->respond(204, "", "", headers_) : c->respond_error(410, "session closed", headers_);
    }
    core_.retire(this);
  }
  void on_client_gone() override {
    conn_ = nullptr;
    if (session_) std::exchange(session_, nullptr)->cancel_send(seq_, this);
    core_.retire(this);
  }

 private:
  Core& core_;
  HttpConnection* conn_;
  session::Session* session_;
  uint64_t seq_;
  HeaderList headers_;
};

bool is_binary(const http::Request& req) {
  const std::string* type = req.header("Content-Type");
  if (!type) return false;
  std::string_view t = *type;
  t = t.substr(0, t.find(';'));
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t.size() == 24 && strncasecmp(t.data(), "application/octet-stream", 24) == 0;
}

bool handle(RequestContext& ctx, const ModuleConf&) {
  const http::Request& req = ctx.request;
  const LocationConf& loc = ctx.location;
  HttpConnection& conn = ctx.conn;
  bool post = req.method == "POST", del = req.method == "DELETE";
  if (!loc.pass || !(post || del) || !(loc.transports & (kSse | kPoll))) return false;
  HeaderList headers;
  if (!check_origin(conn, req, loc, headers)) return true;
  std::string sid, seq_text;
  if (!http::query_param(req.query, "tether-session", sid) || sid.empty()) {
    conn.respond_error(400, "missing tether-session", headers);
    return true;
  }
  uint64_t seq = 0;
  if (post) {
    if (!http::query_param(req.query, "tether-seq", seq_text)) {
      conn.respond_error(400, "missing tether-seq", headers);
      return true;
    }
    if (!session::parse_decimal(seq_text, seq) || seq == 0) {
      conn.respond_error(400, "invalid tether-seq (expected 1, 2, 3 ...)", headers);
      return true;
    }
  }
  session::Session* s = session::find_or_answer(ctx.core, conn, sid, headers);
  if (!s) return true;
  if (del) {
    s->close_by_client();
    conn.respond(204, "", "", headers);
    return true;
  }
  if (req.body.size() > loc.max_message) {
    stats().hit(Limit::kMessageSize);
    conn.respond_error(413, "message larger than tether_max_message", headers);
    return true;
  }
  bool binary = is_binary(req);
  if (!binary && !ws::is_valid_utf8(req.body)) {
    conn.respond_error(400, "message is not valid UTF-8 (send binary as application/octet-stream)", headers);
    return true;
  }
  auto held = std::make_unique<HeldSend>(ctx.core, conn, *s, seq, headers);
  HeldSend* waiter = held.get();
  switch (s->send(seq, binary ? ws::Opcode::kBinary : ws::Opcode::kText, req.body, waiter)) {
    case session::Session::SendResult::kHeld:
      conn.defer(waiter);
      ctx.core.adopt(std::move(held));  // answers when its turn comes
      return true;
    case session::Session::SendResult::kForwarded:
    case session::Session::SendResult::kDuplicate:
      held.reset();
      break;
    case session::Session::SendResult::kTooFarAhead:
      held.reset();
      conn.respond_error(409, "tether-seq " + seq_text + " is too far ahead of the next expected", headers);
      return true;
    case session::Session::SendResult::kEnded:
      held.reset();
      conn.respond_error(410, "session closed", headers);
      return true;
    case session::Session::SendResult::kBusy: {
      held.reset();
      HeaderList busy = headers;
      busy.emplace_back("Retry-After", "1");
      conn.respond_error(503, "the backend is not taking messages as fast as they come; retry", busy);
      return true;
    }
  }
  conn.respond(204, "", "", headers);
  return true;
}

}  // namespace

const Module kModule = {
    .name = "send",
    .directives = {},
    .create_conf = [] { return std::make_unique<ModuleConf>(); },
    .set = nullptr,
    .merge = nullptr,
    .handle = handle,
};

}  // namespace tether::send
