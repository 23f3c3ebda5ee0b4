// The websocket module: relays WebSocket upgrades at locations with `tether_pass`.
//
//   tether_max_message SIZE;   main, server, location; default 16m. Largest message relayed
//                              either way; a larger one closes that side with 1009.

#include <optional>

#include "conf/values.h"
#include "module/websocket/relay.h"
#include "module/websocket/websocket_module.h"
#include "proxy/core/http_connection.h"
#include "proxy/util/log.h"

namespace tether::websocket {
namespace {

using conf::kLocation;
using conf::kMain;
using conf::kServer;

struct Conf : ModuleConf {
  std::optional<uint64_t> max_message;
};

constexpr uint64_t kDefaultMaxMessage = 16u << 20;

constexpr conf::DirectiveSpec kDirectives[] = {
    {.name = "tether_max_message", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
};

std::unique_ptr<ModuleConf> create_conf() { return std::make_unique<Conf>(); }

Status set(const conf::Node& node, ModuleConf& mc) {
  auto& c = as<Conf>(mc);
  auto v = conf::parse_size(node.args[0]);
  if (!v.ok() || *v == 0) return conf::invalid_value(node, 0, v.ok() ? "must be more than 0" : v.error().what);
  c.max_message = *v;
  return ok_status();
}

Status merge(const ModuleConf& parent, ModuleConf& child, const ConfigResolver* resolver) {
  auto& c = as<Conf>(child);
  if (!c.max_message) c.max_message = as<Conf>(parent).max_message;
  if (resolver && !c.max_message) c.max_message = kDefaultMaxMessage;
  return ok_status();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (tolower(static_cast<unsigned char>(a[i])) != tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// The request target at the upstream, nginx proxy_pass style: with a path in tether_pass, the
// part of the client's path past the location prefix is appended to it; without, the client's
// path goes unchanged.
std::string upstream_target(const http::Request& req, const LocationConf& loc) {
  std::string target;
  if (loc.pass->has_path) {
    target = loc.pass->path;
    if (!loc.exact) target += req.path.substr(std::min(req.path.size(), loc.path.size()));
  } else {
    target = req.path;
  }
  if (!req.query.empty()) target += "?" + req.query;
  return target;
}

std::vector<std::string> split_protocols(const http::Request& req) {
  std::vector<std::string> out;
  for (const auto& h : req.headers) {
    if (!iequals(h.name, "Sec-WebSocket-Protocol")) continue;
    std::string_view list = h.value;
    while (!list.empty()) {
      auto comma = list.find(',');
      auto item = list.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) out.emplace_back(item);
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return out;
}

bool handle(RequestContext& ctx, const ModuleConf& mc) {
  const auto& req = ctx.request;
  const auto& loc = ctx.location;
  if (!loc.pass || !(loc.transports & kWebsocket)) return false;
  const std::string* upgrade = req.header("Upgrade");
  if (!upgrade || !iequals(*upgrade, "websocket")) return false;
  auto& conn = ctx.conn;

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
    conn.respond_error(426, "unsupported Sec-WebSocket-Version (13 is supported)", {{"Sec-WebSocket-Version", "13"}});
    return true;
  }
  const std::string* key = req.header("Sec-WebSocket-Key");
  if (!key || !ws::is_valid_client_key(*key)) {
    conn.respond_error(400, "missing or invalid Sec-WebSocket-Key");
    return true;
  }

  UpstreamRequest up;
  up.target = upstream_target(req, loc);
  up.protocols = split_protocols(req);
  std::string xff;
  for (const auto& h : req.headers) {
    for (std::string_view name : {"Cookie", "Authorization", "Origin", "User-Agent"}) {
      if (iequals(h.name, name)) up.headers.emplace_back(std::string(name), h.value);
    }
    if (iequals(h.name, "X-Forwarded-For")) xff += (xff.empty() ? "" : ", ") + h.value;
  }
  up.headers.emplace_back("X-Forwarded-For", xff.empty() ? conn.peer_ip() : xff + ", " + conn.peer_ip());
  up.headers.emplace_back("X-Forwarded-Proto", "http");
  if (const std::string* host = req.header("Host")) up.headers.emplace_back("X-Forwarded-Host", *host);

  const UpstreamServer& server = loc.pass->upstream->pick();
  std::string peer = conn.peer();
  std::string client_key = *key;
  Millis timeout = loc.connect_timeout;
  BufferEventPtr bev = conn.detach();  // conn retires; do not touch it after this
  auto relay = std::make_unique<Relay>(ctx.core, ctx.core.config(), std::move(bev), std::move(peer),
                                       std::move(client_key), *as<Conf>(mc).max_message);
  Relay& r = ctx.core.adopt(std::move(relay));
  r.start(server, std::move(up), timeout);
  return true;
}

}  // namespace

const Module kModule = {
    .name = "websocket",
    .directives = kDirectives,
    .create_conf = create_conf,
    .set = set,
    .merge = merge,
    .handle = handle,
};

}  // namespace tether::websocket
