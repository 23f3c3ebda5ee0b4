// The websocket module: relays WebSocket upgrades at locations with `tether_pass`. Its limits
// (tether_max_message, tether_connect_timeout, tether_allow_origin) are the location's.

#include "module/websocket/websocket_module.h"

#include "module/websocket/relay.h"
#include "proxy/core/http_connection.h"
#include "proxy/upstream/request.h"
#include "proxy/util/log.h"

namespace tether::websocket {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

bool handle(RequestContext& ctx, const ModuleConf&) {
  const auto& req = ctx.request;
  const auto& loc = ctx.location;
  if (!loc.pass || !(loc.transports & kWebsocket)) return false;
  const std::string* upgrade = req.header("Upgrade");
  if (!upgrade || !iequals(*upgrade, "websocket")) return false;
  auto& conn = ctx.conn;

  if (const std::string* origin = req.header("Origin"); origin && !loc.origin_allowed(*origin)) {
    conn.respond_error(403, "origin " + *origin + " is not allowed");
    return true;
  }
  // RFC 6455 section 4.2.1: what a server requires of an opening handshake.
  if (req.method != "GET") {
    conn.respond_error(405, "a WebSocket handshake uses GET", {{"Allow", "GET"}});
    return true;
  }
  if (req.http_major != 1 || req.http_minor < 1) {
    conn.respond_error(400, "a WebSocket handshake needs HTTP/1.1");
    return true;
  }
  if (!req.has_token("Connection", "upgrade")) {
    conn.respond_error(400, "a WebSocket handshake needs \"Connection: Upgrade\"");
    return true;
  }
  const std::string* version = req.header("Sec-WebSocket-Version");
  if (!version || *version != "13") {
    conn.respond_error(426, "unsupported Sec-WebSocket-Version (13 is supported)",
                       {{"Sec-WebSocket-Version", "13"}});
    return true;
  }
  const std::string* key = req.header("Sec-WebSocket-Key");
  if (!key || !ws::is_valid_client_key(*key)) {
    conn.respond_error(400, "missing or invalid Sec-WebSocket-Key");
    return true;
  }

  UpstreamRequest up = build_upstream_request(req, loc, conn.peer_ip());
  routing::RouteKey route = routing::route_key(*loc.pass->upstream, req, conn.peer_ip());
  std::string peer = conn.peer();
  std::string client_key = *key;
  Millis timeout = loc.connect_timeout;
  std::string peer_ip = conn.peer_ip();
  RelayLimits limits{.max_message = loc.max_message,
                     .send_timeout = conn.server().send_timeout,
                     .idle_timeout = loc.idle_timeout};
  HttpConnection::Detached client = conn.detach();  // conn retires; do not touch it after this
  auto relay = std::make_unique<Relay>(ctx.core, ctx.core.config(), std::move(client), std::move(peer),
                                       std::move(client_key), limits);
  Relay& r = ctx.core.adopt(std::move(relay));
  if (log::access_enabled())
    r.set_access(peer_ip, req.method + " " + redact_target(req.target) + " HTTP/1.1");
  r.start(*loc.pass->upstream, std::move(route.key), std::move(up), timeout, loc.next_upstream_tries,
          std::move(route.set_cookie));
  return true;
}

}  // namespace

const Module kModule = {
    .name = "websocket",
    .directives = {},
    .create_conf = [] { return std::make_unique<ModuleConf>(); },
    .set = nullptr,
    .merge = nullptr,
    .handle = handle,
};

}  // namespace tether::websocket
