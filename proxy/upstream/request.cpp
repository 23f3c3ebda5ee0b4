#include "proxy/upstream/request.h"

#include <strings.h>

namespace tether {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// RFC 7230 3.2.6 tchar.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string strip_tether_params(std::string_view query) {
  std::string out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    // By the decoded name, as the modules read it: "tether%2Dtransport" is Tether's too.
    std::string name;
    bool ours = http::url_decode(item.substr(0, item.find('=')), name) && name.rfind("tether-", 0) == 0;
    if (!item.empty() && !ours) {
      if (!out.empty()) out += '&';
      out += item;
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

UpstreamRequest build_upstream_request(const http::Request& req, const LocationConf& loc,
                                       const std::string& peer_ip) {
  UpstreamRequest up;
  if (loc.pass->has_path) {
    up.target = loc.pass->path;
    if (!loc.exact) up.target += req.path.substr(std::min(req.path.size(), loc.path.size()));
  } else {
    up.target = req.path;
  }
  std::string query = strip_tether_params(req.query);
  if (!query.empty()) up.target += "?" + query;

  std::string xff;
  for (const auto& h : req.headers) {
    if (iequals(h.name, "Sec-WebSocket-Protocol")) {
      std::string_view list = h.value;
      while (!list.empty()) {
        auto comma = list.find(',');
        auto item = trim(list.substr(0, comma));
        // A subprotocol name is a token (RFC 6455 4.1); anything else cannot be negotiated. Nor
        // could it be reported: the chosen one goes into tether-open's JSON, which takes UTF-8
        // only, and a name with other bytes left the client an open event without its session id.
        if (is_token(item)) up.protocols.emplace_back(item);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
      continue;
    }
    for (std::string_view name : {"Cookie", "Authorization", "Origin", "User-Agent"}) {
      if (iequals(h.name, name)) up.headers.emplace_back(std::string(name), h.value);
    }
    if (iequals(h.name, "X-Forwarded-For")) xff += (xff.empty() ? "" : ", ") + h.value;
  }
  up.headers.emplace_back("X-Forwarded-For", xff.empty() ? peer_ip : xff + ", " + peer_ip);
  up.headers.emplace_back("X-Forwarded-Proto", "http");
  if (const std::string* host = req.header("Host")) up.headers.emplace_back("X-Forwarded-Host", *host);
  return up;
}

}  // namespace tether
