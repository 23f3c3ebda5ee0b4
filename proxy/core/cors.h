#pragma once
// Origins and CORS for a location (tether_allow_origin): which origins may use it, the headers
// that let a browser read the answers, and preflight requests.

#include "proxy/core/config.h"
#include "proxy/core/http_connection.h"
#include "proxy/http/request_parser.h"

namespace tether {

// False (after answering 403 with the reason) when the request's Origin is not allowed at LOC.
// Otherwise adds to HEADERS what the answer needs for a cross-origin client.
bool check_origin(HttpConnection& conn, const http::Request& req, const LocationConf& loc,
                  HeaderList& headers);
// Answers an OPTIONS request (a CORS preflight, or a plain OPTIONS).
void answer_options(HttpConnection& conn, const http::Request& req, const LocationConf& loc);

}  // namespace tether
