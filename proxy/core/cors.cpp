#include "proxy/core/cors.h"

namespace tether {

bool check_origin(HttpConnection& conn, const http::Request& req, const LocationConf& loc,
                  HeaderList& headers) {
  const std::string* origin = req.header("Origin");
  if (!origin || !loc.origins_checked) return true;
  if (!loc.origin_allowed(*origin)) {
    conn.respond_error(403, "origin " + *origin + " is not allowed");
    return false;
  }
  headers.emplace_back("Access-Control-Allow-Origin", *origin);
  headers.emplace_back("Access-Control-Allow-Credentials", "true");
  headers.emplace_back("Vary", "Origin");
  return true;
}

void answer_options(HttpConnection& conn, const http::Request& req, const LocationConf& loc) {
  HeaderList headers{{"Allow", "GET, POST, DELETE, OPTIONS"}};
  if (!check_origin(conn, req, loc, headers)) return;
  if (req.header("Origin") && loc.origins_checked) {
    headers.emplace_back("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS");
    if (const std::string* h = req.header("Access-Control-Request-Headers")) {
      headers.emplace_back("Access-Control-Allow-Headers", *h);
    }
    headers.emplace_back("Access-Control-Max-Age", "600");
  }
  conn.respond(204, "", "", headers);
}

}  // namespace tether
