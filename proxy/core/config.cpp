#include "proxy/core/config.h"

#include <arpa/inet.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "conf/schema.h"
#include "conf/values.h"

namespace tether {
namespace {

using conf::kLocation;
using conf::kMain;
using conf::kServer;
using conf::kUpstream;

// The core's own directives; modules bring theirs.
constexpr conf::DirectiveSpec kCoreDirectives[] = {
    {.name = "error_log", .scopes = kMain, .min_args = 1, .max_args = 2},
    {.name = "access_log", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "pid", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "tether_shutdown_timeout", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "max_connections", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "max_connections_per_client", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "tether_max_sessions_per_client", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "server", .scopes = kMain, .min_args = 0, .max_args = 0, .opens = kServer, .repeatable = true},
    {.name = "upstream",
     .scopes = kMain,
     .min_args = 1,
     .max_args = 1,
     .opens = kUpstream,
     .repeatable = true},
    {.name = "server", .scopes = kUpstream, .min_args = 1, .max_args = 6, .repeatable = true},
    {.name = "balance", .scopes = kUpstream, .min_args = 1, .max_args = 1},
    {.name = "sticky", .scopes = kUpstream, .min_args = 1, .max_args = 4},
    {.name = "stick_table", .scopes = kUpstream, .min_args = 1, .max_args = 2},
    {.name = "health_check", .scopes = kUpstream, .min_args = 0, .max_args = 2},
    {.name = "tether_next_upstream", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "listen", .scopes = kServer, .min_args = 1, .max_args = 1, .repeatable = true},
    {.name = "location",
     .scopes = kServer,
     .min_args = 1,
     .max_args = 2,
     .opens = kLocation,
     .repeatable = true},
    {.name = "client_header_timeout", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "keepalive_timeout", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "client_body_timeout", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "send_timeout", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "client_max_body_size", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "client_max_header_size", .scopes = kMain | kServer, .min_args = 1, .max_args = 1},
    {.name = "return", .scopes = kLocation, .min_args = 1, .max_args = 2},
    {.name = "allow", .scopes = kLocation, .min_args = 1, .max_args = 1, .repeatable = true},
    {.name = "deny", .scopes = kLocation, .min_args = 1, .max_args = 1, .repeatable = true},
    {.name = "tether_pass", .scopes = kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_transports", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 3},
    {.name = "tether_connect_timeout", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_max_message", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_idle_timeout", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_buffer", .scopes = kMain | kServer | kLocation, .min_args = 2, .max_args = 2},
    {.name = "tether_session_linger", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_poll_timeout", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_heartbeat", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_sse_padding", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_sse_retry", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 1},
    {.name = "tether_allow_origin", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = -1},
};

// Settings that inherit main -> server -> location.
struct Inherited {
  std::optional<Millis> client_header_timeout, client_body_timeout, keepalive_timeout, send_timeout,
      connect_timeout, idle_timeout;
  std::optional<uint64_t> client_max_body_size, client_max_header_size, max_message;
  std::optional<unsigned> transports;
  std::optional<std::pair<uint64_t, uint64_t>> buffer;
  std::optional<Millis> linger, poll_timeout, heartbeat, sse_retry;
  std::optional<int> next_upstream_tries;
  std::optional<bool> sse_padding;
  std::optional<std::vector<std::string>> origins;
  std::vector<std::unique_ptr<ModuleConf>> modules;
};

class Builder {
 public:
  Builder(const std::string& file, std::span<const Module* const> modules) : modules_(modules) {
    cfg_ = std::make_shared<Config>();
    cfg_->file = file;
    cfg_->modules = modules;
  }

  Result<ConfigPtr> build(const conf::Tree& tree) {
    std::vector<conf::DirectiveSpec> specs(std::begin(kCoreDirectives), std::end(kCoreDirectives));
    for (const Module* m : modules_) specs.insert(specs.end(), m->directives.begin(), m->directives.end());
    if (auto st = conf::check(tree, specs); !st.ok()) return st.error();

    Inherited main = fresh();
    // Upstreams first: a location may name one defined later in the file.
    for (const auto& n : tree) {
      if (n.name == "upstream") {
        if (auto st = upstream(n); !st.ok()) return st.error();
      }
    }
    for (const auto& n : tree) {
      if (n.name == "server" || n.name == "upstream") continue;
      if (auto st = common(n, main); !st.ok()) return st.error();
    }
    for (const auto& n : tree) {
      if (n.name != "server") continue;
      if (auto st = server(n, main); !st.ok()) return st.error();
    }
    if (cfg_->servers.empty()) {
      return Error{Errc::kConfig, "no \"server\" block in " + cfg_->file};
    }
    return ConfigPtr(std::move(cfg_));
  }

 private:
  Inherited fresh() {
    Inherited in;
    for (const Module* m : modules_) in.modules.push_back(m->create_conf());
    return in;
  }

  Inherited derive(const Inherited& parent) {
    Inherited child = fresh();
    child.client_header_timeout = parent.client_header_timeout;
    child.client_body_timeout = parent.client_body_timeout;
    child.client_max_header_size = parent.client_max_header_size;
    child.idle_timeout = parent.idle_timeout;
    child.keepalive_timeout = parent.keepalive_timeout;
    child.send_timeout = parent.send_timeout;
    child.connect_timeout = parent.connect_timeout;
    child.client_max_body_size = parent.client_max_body_size;
    child.transports = parent.transports;
    child.max_message = parent.max_message;
    child.buffer = parent.buffer;
    child.linger = parent.linger;
    child.poll_timeout = parent.poll_timeout;
    child.heartbeat = parent.heartbeat;
    child.sse_retry = parent.sse_retry;
    child.sse_padding = parent.sse_padding;
    child.origins = parent.origins;
    child.next_upstream_tries = parent.next_upstream_tries;
    return child;
  }

  // Directives allowed at several levels; returns an error for anything it does not know.
  Status common(const conf::Node& n, Inherited& in) {
    if (n.name == "error_log") {
      cfg_->error_log = n.args[0];
      if (n.args.size() == 2 && !log::parse_level(n.args[1], cfg_->error_log_level)) {
        return conf::invalid_value(n, 1, "expected debug, info, notice, warn, error, crit, alert or emerg");
      }
      return ok_status();
    }
    if (n.name == "access_log") {
      cfg_->access_log = n.args[0] == "off" ? "" : n.args[0];
      return ok_status();
    }
    if (n.name == "pid") {
      cfg_->pid_file = n.args[0];
      return ok_status();
    }
    if (n.name == "tether_shutdown_timeout") {
      std::optional<Millis> d;
      if (auto st = duration(n, d); !st.ok()) return st;
      cfg_->shutdown_timeout = *d;
      return ok_status();
    }
    if (n.name == "max_connections" || n.name == "max_connections_per_client" ||
        n.name == "tether_max_sessions_per_client") {
      auto v = conf::parse_count(n.args[0]);
      if (!v.ok() || *v == 0)
        return conf::invalid_value(n, 0, v.ok() ? "must be more than 0" : v.error().what);
      (n.name == "max_connections"              ? cfg_->max_connections
       : n.name == "max_connections_per_client" ? cfg_->max_connections_per_client
                                                : cfg_->max_sessions_per_client) = *v;
      return ok_status();
    }
    if (n.name == "client_header_timeout") return duration(n, in.client_header_timeout);
    if (n.name == "client_body_timeout") return duration(n, in.client_body_timeout);
    if (n.name == "tether_idle_timeout") {
      if (n.args[0] == "off") {
        in.idle_timeout = Millis{0};
        return ok_status();
      }
      return duration(n, in.idle_timeout);
    }
    if (n.name == "keepalive_timeout") return duration(n, in.keepalive_timeout);
    if (n.name == "send_timeout") return duration(n, in.send_timeout);
    if (n.name == "tether_connect_timeout") return duration(n, in.connect_timeout);
    if (n.name == "tether_session_linger") return duration(n, in.linger);
    if (n.name == "tether_next_upstream") {
      auto kv = conf::split_key_value(n.args[0]);
      int tries = 0;
      if (!kv.ok() || kv->first != "tries" || !parse_int(kv->second, 1, 100, tries)) {
        return conf::invalid_value(n, 0, "expected tries=N (1 to 100)");
      }
      in.next_upstream_tries = tries;
      return ok_status();
    }
    if (n.name == "tether_poll_timeout") return duration(n, in.poll_timeout);
    if (n.name == "tether_heartbeat") return duration(n, in.heartbeat);
    if (n.name == "tether_sse_retry") return duration(n, in.sse_retry);
    if (n.name == "tether_sse_padding") {
      auto v = conf::parse_flag(n.args[0]);
      if (!v.ok()) return conf::invalid_value(n, 0, v.error().what);
      in.sse_padding = *v;
      return ok_status();
    }
    if (n.name == "tether_max_message") {
      auto v = conf::parse_size(n.args[0]);
      if (!v.ok() || *v == 0)
        return conf::invalid_value(n, 0, v.ok() ? "must be more than 0" : v.error().what);
      in.max_message = *v;
      return ok_status();
    }
    if (n.name == "tether_buffer") {
      auto count = conf::parse_count(n.args[0]);
      if (!count.ok() || *count == 0) {
        return conf::invalid_value(n, 0, count.ok() ? "must be more than 0" : count.error().what);
      }
      auto bytes = conf::parse_size(n.args[1]);
      if (!bytes.ok() || *bytes == 0) {
        return conf::invalid_value(n, 1, bytes.ok() ? "must be more than 0" : bytes.error().what);
      }
      in.buffer = {*count, *bytes};
      return ok_status();
    }
    if (n.name == "tether_allow_origin") {
      for (size_t i = 0; i < n.args.size(); ++i) {
        const auto& o = n.args[i];
        bool ok =
            o == "*" || ((o.rfind("http://", 0) == 0 || o.rfind("https://", 0) == 0) && o.back() != '/');
        if (!ok) return conf::invalid_value(n, i, "expected * or scheme://host[:port] with no path");
      }
      in.origins = n.args;
      return ok_status();
    }
    if (n.name == "client_max_body_size") {
      auto v = conf::parse_size(n.args[0]);
      if (!v.ok()) return conf::invalid_value(n, 0, v.error().what);
      in.client_max_body_size = *v;
      return ok_status();
    }
    if (n.name == "client_max_header_size") {
      auto v = conf::parse_size(n.args[0]);
      if (!v.ok() || *v < 1024)
        return conf::invalid_value(n, 0, v.ok() ? "must be at least 1k" : v.error().what);
      in.client_max_header_size = *v;
      return ok_status();
    }
    if (n.name == "tether_transports") {
      unsigned t = 0;
      for (size_t i = 0; i < n.args.size(); ++i) {
        const auto& a = n.args[i];
        unsigned bit = a == "websocket" ? unsigned{kWebsocket}
                       : a == "sse"     ? unsigned{kSse}
                       : a == "poll"    ? unsigned{kPoll}
                                        : 0u;
        if (!bit) return conf::invalid_value(n, i, "expected websocket, sse or poll");
        t |= bit;
      }
      in.transports = t;
      return ok_status();
    }
    for (size_t i = 0; i < modules_.size(); ++i) {
      for (const auto& d : modules_[i]->directives) {
        if (d.name == n.name) return modules_[i]->set(n, *in.modules[i]);
      }
    }
    return conf::error_at(n.loc, "\"" + n.name + "\" directive is not allowed here");
  }

  static Status duration(const conf::Node& n, std::optional<Millis>& out) {
    auto v = conf::parse_duration(n.args[0]);
    if (!v.ok()) return conf::invalid_value(n, 0, v.error().what);
    out = *v;
    return ok_status();
  }

  Status upstream(const conf::Node& n) {
    if (cfg_->upstreams.count(n.args[0])) {
      return conf::error_at(n.loc, "duplicate upstream \"" + n.args[0] + "\"");
    }
    auto up = std::make_unique<UpstreamConf>();
    up->name = n.args[0];
    up->loc = n.loc;
    for (const auto& c : n.children) {
      Status st = c.name == "server"        ? upstream_server(c, *up)
                  : c.name == "balance"     ? balance(c, *up)
                  : c.name == "sticky"      ? sticky(c, *up)
                  : c.name == "stick_table" ? stick_table(c, *up)
                  : c.name == "health_check"
                      ? health_check(c, *up)
                      : conf::error_at(c.loc, "\"" + c.name + "\" directive is not allowed here");
      if (!st.ok()) return st.error();
    }
    if (up->servers.empty())
      return conf::error_at(n.loc, "no servers are inside upstream \"" + up->name + "\"");
    for (size_t i = 0; i < up->servers.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (up->servers[i].text == up->servers[j].text) {
          return conf::error_at(n.loc, "server \"" + up->servers[i].text +
                                           "\" is listed twice in upstream \"" + up->name + "\"");
        }
      }
    }
    cfg_->upstreams.emplace(up->name, std::move(up));
    return ok_status();
  }

  static bool parse_int(std::string_view s, int lo, int hi, int& out) {
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && ptr == s.data() + s.size() && out >= lo && out <= hi;
  }

  // server HOST:PORT [weight=N] [max_fails=N] [fail_timeout=D] [backup] [down]
  static Status upstream_server(const conf::Node& c, UpstreamConf& up) {
    UpstreamServer s;
    if (auto st = host_port(c.args[0], s); !st.ok()) return conf::invalid_value(c, 0, st.error().what);
    for (size_t i = 1; i < c.args.size(); ++i) {
      const std::string& a = c.args[i];
      if (a == "backup") {
        s.backup = true;
        continue;
      }
      if (a == "down") {
        s.down = true;
        continue;
      }
      auto kv = conf::split_key_value(a);
      if (!kv.ok())
        return conf::invalid_value(c, i, "expected weight=, max_fails=, fail_timeout=, backup or down");
      if (kv->first == "weight") {
        if (!parse_int(kv->second, 1, 1000, s.weight))
          return conf::invalid_value(c, i, "weight is 1 to 1000");
      } else if (kv->first == "max_fails") {
        if (!parse_int(kv->second, 0, 1000, s.max_fails))
          return conf::invalid_value(c, i, "max_fails is 0 to 1000");
      } else if (kv->first == "fail_timeout") {
        auto d = conf::parse_duration(kv->second);
        if (!d.ok() || d->count() == 0) return conf::invalid_value(c, i, "fail_timeout is a duration over 0");
        s.fail_timeout = *d;
      } else {
        return conf::invalid_value(c, i, "unknown server parameter");
      }
    }
    up.servers.push_back(std::move(s));
    return ok_status();
  }

  static Status balance(const conf::Node& c, UpstreamConf& up) {
    const std::string& a = c.args[0];
    if (a == "round_robin")
      up.balance = BalanceMode::kRoundRobin;
    else if (a == "least_conn")
      up.balance = BalanceMode::kLeastConn;
    else if (a == "hash")
      up.balance = BalanceMode::kHash;
    else
      return conf::invalid_value(c, 0, "expected round_robin, least_conn or hash");
    return ok_status();
  }

  static Status sticky(const conf::Node& c, UpstreamConf& up) {
    const std::string& kind = c.args[0];
    StickyConf& s = up.sticky;
    if (kind == "ip") {
      if (c.args.size() != 1)
        return conf::error_at(c.loc, "invalid number of arguments in \"sticky\" directive");
      s.key = StickyConf::Key::kIp;
      return ok_status();
    }
    if (c.args.size() < 2)
      return conf::error_at(c.loc, "invalid number of arguments in \"sticky\" directive");
    s.name = c.args[1];
    if (s.name.empty()) return conf::invalid_value(c, 1, "empty name");
    if (kind == "header" || kind == "query") {
      if (c.args.size() != 2)
        return conf::error_at(c.loc, "invalid number of arguments in \"sticky\" directive");
      s.key = kind == "header" ? StickyConf::Key::kHeader : StickyConf::Key::kQuery;
      return ok_status();
    }
    if (kind != "cookie") return conf::invalid_value(c, 0, "expected cookie, header, ip or query");
    s.key = StickyConf::Key::kCookie;
    for (char ch : s.name) {
      if (ch <= ' ' || ch >= 127 ||
          std::string_view("()<>@,;:\\\"/[]?={}").find(ch) != std::string_view::npos) {
        return conf::invalid_value(c, 1, "not a cookie name");
      }
    }
    for (size_t i = 2; i < c.args.size(); ++i) {
      auto kv = conf::split_key_value(c.args[i]);
      if (kv.ok() && kv->first == "expire") {
        auto d = conf::parse_duration(kv->second);
        if (!d.ok() || d->count() < 1000)
          return conf::invalid_value(c, i, "expire is a duration of 1s or more");
        s.cookie_expire = *d;
      } else if (kv.ok() && kv->first == "path" && !kv->second.empty() && kv->second[0] == '/' &&
                 kv->second.find_first_of(";, \t") == std::string_view::npos) {
        s.cookie_path = std::string(kv->second);
      } else {
        return conf::invalid_value(c, i, "expected expire=D or path=/P");
      }
    }
    return ok_status();
  }

  static Status stick_table(const conf::Node& c, UpstreamConf& up) {
    for (size_t i = 0; i < c.args.size(); ++i) {
      auto kv = conf::split_key_value(c.args[i]);
      if (kv.ok() && kv->first == "size") {
        auto v = conf::parse_count(kv->second);
        if (!v.ok() || *v == 0) return conf::invalid_value(c, i, "size is a count over 0");
        up.stick_table_size = *v;
      } else if (kv.ok() && kv->first == "expire") {
        auto d = conf::parse_duration(kv->second);
        if (!d.ok() || d->count() == 0) return conf::invalid_value(c, i, "expire is a duration over 0");
        up.stick_table_expire = *d;
      } else {
        return conf::invalid_value(c, i, "expected size=N or expire=D");
      }
    }
    return ok_status();
  }

  static Status health_check(const conf::Node& c, UpstreamConf& up) {
    up.health_interval = Millis{5000};
    for (size_t i = 0; i < c.args.size(); ++i) {
      auto kv = conf::split_key_value(c.args[i]);
      if (kv.ok() && kv->first == "interval") {
        auto d = conf::parse_duration(kv->second);
        if (!d.ok() || d->count() < 10)
          return conf::invalid_value(c, i, "interval is a duration of 10ms or more");
        up.health_interval = *d;
      } else if (kv.ok() && kv->first == "path" && !kv->second.empty() && kv->second[0] == '/') {
        up.health_path = std::string(kv->second);
      } else {
        return conf::invalid_value(c, i, "expected interval=D or path=/P");
      }
    }
    return ok_status();
  }

  // "host:port", "[v6]:port" or "host" (port 80).
  static Status host_port(std::string_view text, UpstreamServer& out) {
    out.text = std::string(text);
    std::string_view host = text, port;
    if (!text.empty() && text.front() == '[') {
      auto close = text.find(']');
      if (close == std::string_view::npos) return Error{Errc::kInvalid, "unterminated IPv6 address"};
      host = text.substr(1, close - 1);
      auto rest = text.substr(close + 1);
      if (!rest.empty()) {
        if (rest.front() != ':') return Error{Errc::kInvalid, "expected \":port\" after the address"};
        port = rest.substr(1);
      }
    } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
    if (host.empty()) return Error{Errc::kInvalid, "no host"};
    out.host = std::string(host);
    if (!port.empty()) {
      unsigned p = 0;
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
      if (ec != std::errc() || ptr != port.data() + port.size() || p == 0 || p > 65535) {
        return Error{Errc::kInvalid, "invalid port"};
      }
      out.port = static_cast<uint16_t>(p);
    }
    return ok_status();
  }

  Status server(const conf::Node& n, const Inherited& main) {
    auto srv = std::make_unique<ServerConf>();
    Inherited in = derive(main);
    if (auto st = merge_modules(main, in, false); !st.ok()) return st;
    for (const auto& c : n.children) {
      if (c.name == "listen") {
        if (auto st = listen(c, *srv); !st.ok()) return st;
      } else if (c.name != "location") {
        if (auto st = common(c, in); !st.ok()) return st;
      }
    }
    if (srv->listens.empty()) return conf::error_at(n.loc, "no \"listen\" directive in \"server\" block");
    srv->client_header_timeout = in.client_header_timeout.value_or(srv->client_header_timeout);
    srv->keepalive_timeout = in.keepalive_timeout.value_or(srv->keepalive_timeout);
    srv->send_timeout = in.send_timeout.value_or(srv->send_timeout);
    srv->client_max_body_size = in.client_max_body_size.value_or(srv->client_max_body_size);
    srv->client_body_timeout = in.client_body_timeout.value_or(srv->client_body_timeout);
    srv->client_max_header_size = in.client_max_header_size.value_or(srv->client_max_header_size);
    for (const auto& c : n.children) {
      if (c.name != "location") continue;
      if (auto st = location(c, in, *srv); !st.ok()) return st;
    }
    cfg_->servers.push_back(std::move(srv));
    return ok_status();
  }

  // listen PORT | ADDRESS:PORT | *:PORT | [V6]:PORT; port 0 takes a free port (tests).
  Status listen(const conf::Node& n, ServerConf& srv) {
    ListenConf l;
    l.text = n.args[0];
    l.loc = n.loc;
    std::string_view text = n.args[0];
    std::string host = "0.0.0.0";
    std::string_view port = text;
    if (!text.empty() && text.front() == '[') {
      auto close = text.find("]:");
      if (close == std::string_view::npos) return conf::invalid_value(n, 0, "expected [address]:port");
      host = std::string(text.substr(1, close - 1));
      port = text.substr(close + 2);
    } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
      host = std::string(text.substr(0, colon));
      if (host == "*") host = "0.0.0.0";
      port = text.substr(colon + 1);
    }
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || p > 65535) {
      return conf::invalid_value(n, 0, "expected [address:]port");
    }
    if (host.find(':') != std::string::npos) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&l.addr);
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons(static_cast<uint16_t>(p));
      if (evutil_inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) {
        return conf::invalid_value(n, 0, "not an IPv6 address");
      }
      l.addr_len = sizeof(sockaddr_in6);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&l.addr);
      in->sin_family = AF_INET;
      in->sin_port = htons(static_cast<uint16_t>(p));
      if (evutil_inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) {
        return conf::invalid_value(n, 0, "expected an IP address (host names are not resolved here)");
      }
      l.addr_len = sizeof(sockaddr_in);
    }
    srv.listens.push_back(std::move(l));
    return ok_status();
  }

  Status location(const conf::Node& n, const Inherited& server_in, ServerConf& srv) {
    auto loc = std::make_unique<LocationConf>();
    loc->loc = n.loc;
    if (n.args.size() == 2) {
      if (n.args[0] != "=") return conf::invalid_value(n, 0, "expected \"=\" or a path");
      loc->exact = true;
      loc->path = n.args[1];
    } else {
      loc->path = n.args[0];
    }
    if (loc->path.empty() || loc->path[0] != '/') {
      return conf::invalid_value(n, n.args.size() - 1, "a location path starts with \"/\"");
    }
    for (const auto& other : srv.locations) {
      if (other->exact == loc->exact && other->path == loc->path) {
        return conf::error_at(n.loc, "duplicate location \"" + loc->path + "\"");
      }
    }
    Inherited in = derive(server_in);
    for (const auto& c : n.children) {
      if (c.name == "return") {
        if (auto st = ret(c, *loc); !st.ok()) return st;
      } else if (c.name == "tether_pass") {
        if (auto st = pass(c, *loc); !st.ok()) return st;
      } else if (c.name == "allow" || c.name == "deny") {
        if (auto st = access_rule(c, *loc); !st.ok()) return st;
      } else if (auto st = common(c, in); !st.ok()) {
        return st;
      }
    }
    if (auto st = merge_modules(server_in, in, true); !st.ok()) return st;
    loc->connect_timeout = in.connect_timeout.value_or(loc->connect_timeout);
    loc->transports = in.transports.value_or(loc->transports);
    loc->next_upstream_tries = in.next_upstream_tries.value_or(loc->next_upstream_tries);
    loc->max_message = in.max_message.value_or(loc->max_message);
    loc->idle_timeout = in.idle_timeout.value_or(loc->idle_timeout);
    if (in.buffer) {
      loc->session.max_messages = in.buffer->first;
      loc->session.max_bytes = in.buffer->second;
    }
    loc->session.linger = in.linger.value_or(loc->session.linger);
    loc->session.poll_timeout = in.poll_timeout.value_or(loc->session.poll_timeout);
    loc->session.heartbeat = in.heartbeat.value_or(loc->session.heartbeat);
    loc->session.sse_padding = in.sse_padding.value_or(loc->session.sse_padding);
    loc->session.sse_retry = in.sse_retry;
    loc->session.send_timeout = srv.send_timeout;
    if (in.origins) {
      loc->origins_checked = true;
      for (const auto& o : *in.origins) {
        if (o == "*")
          loc->any_origin = true;
        else
          loc->allow_origins.push_back(o);
      }
    }
    loc->modules = std::move(in.modules);
    srv.locations.push_back(std::move(loc));
    return ok_status();
  }

  Status merge_modules(const Inherited& parent, Inherited& child, bool final) {
    ConfigResolver resolver{*cfg_};
    for (size_t i = 0; i < modules_.size(); ++i) {
      if (!modules_[i]->merge) continue;
      auto st = modules_[i]->merge(*parent.modules[i], *child.modules[i], final ? &resolver : nullptr);
      if (!st.ok()) return st;
    }
    return ok_status();
  }

  static Status access_rule(const conf::Node& n, LocationConf& loc) {
    AccessRule r;
    r.allow = n.name == "allow";
    std::string text = n.args[0];
    if (text != "all") {
      std::string addr = text;
      int max = 32;
      auto slash = text.find('/');
      if (slash != std::string::npos) addr = text.substr(0, slash);
      if (evutil_inet_pton(AF_INET, addr.c_str(), r.addr) == 1) {
        r.family = AF_INET;
      } else if (evutil_inet_pton(AF_INET6, addr.c_str(), r.addr) == 1) {
        r.family = AF_INET6;
        max = 128;
      } else {
        return conf::invalid_value(n, 0, "expected an IP address, ADDRESS/PREFIX or all");
      }
      r.prefix = max;
      if (slash != std::string::npos) {
        std::string_view p = std::string_view(text).substr(slash + 1);
        if (!parse_int(p, 0, max, r.prefix)) return conf::invalid_value(n, 0, "prefix length out of range");
      }
    }
    loc.access.push_back(r);
    return ok_status();
  }

  static Status ret(const conf::Node& n, LocationConf& loc) {
    int status = 0;
    auto [ptr, ec] = std::from_chars(n.args[0].data(), n.args[0].data() + n.args[0].size(), status);
    if (ec != std::errc() || ptr != n.args[0].data() + n.args[0].size() || status < 200 || status > 599) {
      return conf::invalid_value(n, 0, "expected a status from 200 to 599");
    }
    loc.return_status = status;
    if (n.args.size() == 2) loc.return_text = n.args[1];
    return ok_status();
  }

  Status pass(const conf::Node& n, LocationConf& loc) {
    std::string_view url = n.args[0];
    if (url.rfind("wss://", 0) == 0)
      return conf::invalid_value(n, 0, "TLS upstreams (wss://) are not supported yet");
    if (url.rfind("ws://", 0) != 0)
      return conf::invalid_value(n, 0, "expected ws://upstream or ws://host:port[/path]");
    url.remove_prefix(5);
    PassTarget t;
    t.text = n.args[0];
    auto slash = url.find('/');
    std::string_view authority = url.substr(0, slash);
    if (slash != std::string_view::npos) {
      t.has_path = true;
      t.path = std::string(url.substr(slash));
    }
    if (auto it = cfg_->upstreams.find(authority); it != cfg_->upstreams.end()) {
      t.upstream = it->second.get();
    } else {
      UpstreamServer s;
      if (auto st = host_port(authority, s); !st.ok()) return conf::invalid_value(n, 0, st.error().what);
      UpstreamConf& up = cfg_->implicit_upstreams.emplace_back();
      up.name = std::string(authority);
      up.loc = n.loc;
      up.implicit = true;
      up.servers.push_back(std::move(s));
      t.upstream = &up;
    }
    loc.pass = std::move(t);
    return ok_status();
  }

  std::span<const Module* const> modules_;
  std::shared_ptr<Config> cfg_;
};

}  // namespace

bool LocationConf::origin_allowed(std::string_view origin) const {
  if (!origins_checked || any_origin) return true;
  for (const auto& o : allow_origins) {
    // Scheme and host are case-insensitive (RFC 6454 serialises them in lower case).
    if (o.size() == origin.size() && strncasecmp(o.data(), origin.data(), o.size()) == 0) return true;
  }
  return false;
}

bool AccessRule::matches(const sockaddr* peer) const {
  if (family == 0) return true;
  const uint8_t* a = nullptr;
  if (peer->sa_family == AF_INET && family == AF_INET) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(peer)->sin_addr);
  } else if (peer->sa_family == AF_INET6 && family == AF_INET6) {
    a = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(peer)->sin6_addr);
  } else {
    return false;
  }
  int bits = prefix;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xFF : static_cast<uint8_t>(0xFF << (8 - bits));
    if ((a[i] & mask) != (addr[i] & mask)) return false;
  }
  return true;
}

bool LocationConf::access_allowed(const sockaddr* peer) const {
  for (const auto& r : access) {
    if (r.matches(peer)) return r.allow;
  }
  return true;
}

const LocationConf* ServerConf::match(std::string_view path) const {
  const LocationConf* best = nullptr;
  for (const auto& l : locations) {
    if (l->exact) {
      if (l->path == path) return l.get();
    } else if (path.substr(0, l->path.size()) == l->path && (!best || l->path.size() > best->path.size())) {
      best = l.get();
    }
  }
  return best;
}

Result<ConfigPtr> build_config(const conf::Tree& tree, const std::string& file,
                               std::span<const Module* const> modules) {
  return Builder(file, modules).build(tree);
}

Result<ConfigPtr> load_config(const std::string& file, std::span<const Module* const> modules) {
  auto tree = conf::parse_file(file);
  if (!tree.ok()) return tree.error();
  return build_config(*tree, file, modules);
}

}  // namespace tether
