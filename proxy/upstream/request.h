#pragma once
// What Tether sends a backend when it opens an upstream WebSocket for a client, whatever the
// client's transport: the mapped path, the query without Tether's own `tether-*` parameters,
// the client's subprotocols, and the forwarded and added headers.

#include "proxy/core/config.h"
#include "proxy/http/request_parser.h"
#include "proxy/upstream/connector.h"

namespace tether {

// nginx proxy_pass semantics for the path; see LocationConf::pass.
UpstreamRequest build_upstream_request(const http::Request& req, const LocationConf& loc,
                                       const std::string& peer_ip);
// QUERY without parameters whose names, decoded, start with "tether-"; order and encoding kept.
std::string strip_tether_params(std::string_view query);

}  // namespace tether
