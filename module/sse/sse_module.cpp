#include "module/sse/sse_module.h"

#include "module/sse/stream.h"
#include "proxy/core/cors.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/routing/router.h"
#include "proxy/session/sse_format.h"
#include "proxy/util/log.h"

namespace tether::sse {
namespace {

bool wants_event_stream(const http::Request& req) {
  std::string transport;
  if (http::query_param(req.query, "tether-transport", transport)) return transport == "sse";
  const std::string* accept = req.header("Accept");
  return accept && accept->find("text/event-stream") != std::string::npos;
}

std::string access_line(const http::Request& req) {
  return req.method + " " + redact_target(req.target) + " HTTP/" + std::to_string(req.http_major) + "." +
         std::to_string(req.http_minor);
}

bool handle(RequestContext& ctx, const ModuleConf&) {
  const http::Request& req = ctx.request;
  const LocationConf& loc = ctx.location;
  HttpConnection& conn = ctx.conn;
  if (!loc.pass || req.method != "GET" || req.upgrade || !wants_event_stream(req)) return false;
  std::string ignored;
  if (http::query_param(req.query, "tether-session", ignored)) return false;  // a poll
  if (!(loc.transports & kSse)) {
    conn.respond_error(404, "SSE is not enabled at " + loc.path);
    return true;
  }
  HeaderList cors;
  if (!check_origin(conn, req, loc, cors)) return true;
  Millis send_timeout = conn.server().send_timeout;

  session::SessionTable& table = ctx.core.sessions();
  const std::string* last_id = req.header("Last-Event-ID");
  if (last_id && !last_id->empty()) {
    std::string sid;
    uint64_t seq = 0;
    if (!session::parse_last_event_id(*last_id, sid, seq)) {
      conn.respond_error(400, "invalid Last-Event-ID (expected <session>.<seq>)", cors);
      return true;
    }
    session::Session* s = table.find(sid);
    if (!s) {
      // Ended or never known: 204 tells EventSource to stop reconnecting, where a fresh
      // session would silently lose what the old one had.
      conn.respond(204, "", "", cors);
      return true;
    }
    if (s->kind() != session::Kind::kSse) {
      conn.respond_error(400, "session " + s->log_id() + " is a long-poll session", cors);
      return true;
    }
    if (s->close_info() && seq == s->outbox().last_seq() + 1) {
      // The id of tether-close: the client has everything, the session has ended.
      s->close_delivered();
      conn.respond(204, "", "", cors);
      return true;
    }
    if (seq > s->outbox().last_seq()) {
      conn.respond_error(400, "Last-Event-ID is ahead of the session", cors);
      return true;
    }
    std::string peer = conn.peer(), resume_ip = conn.peer_ip();
    auto stream = std::make_unique<Stream>(ctx.core, conn.detach(), std::move(peer), std::move(cors),
                                           s->conf(), send_timeout);
    ++stats().sessions_resumed;
    Stream& st = ctx.core.adopt(std::move(stream));
    if (log::access_enabled()) st.set_access(resume_ip, access_line(req));
    st.start_resume(*s, seq);
    return true;
  }

  ClientTable::Slot slot = session::take_session_slot(ctx.core, conn, cors);
  if (!slot) return true;
  std::string peer = conn.peer(), peer_ip = conn.peer_ip();
  routing::RouteKey route = routing::route_key(*loc.pass->upstream, req, peer_ip);
  for (auto& h : route.set_cookie) cors.push_back(std::move(h));  // the stream's head carries it
  auto stream =
      std::make_unique<Stream>(ctx.core, conn.detach(), peer, std::move(cors), loc.session, send_timeout);
  Stream& st = ctx.core.adopt(std::move(stream));
  if (log::access_enabled()) st.set_access(peer_ip, access_line(req));
  session::Session& s =
      session::open_session(ctx.core, req, loc, peer_ip, peer, session::Kind::kSse, std::move(route.key),
                            std::move(slot), [&st](Status status) { st.on_open(std::move(status)); });
  st.start_new(s);
  return true;
}

}  // namespace

const Module kModule = {
    .name = "sse",
    .directives = {},
    .create_conf = [] { return std::make_unique<ModuleConf>(); },
    .set = nullptr,
    .merge = nullptr,
    .handle = handle,
};

}  // namespace tether::sse
