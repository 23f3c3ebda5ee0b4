#include "proxy/routing/router.h"

#include <event2/bufferevent.h>
#include <strings.h>
#include <sys/socket.h>

#include <algorithm>

#include "proxy/core/core.h"
#include "proxy/session/session_id.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"
#include "proxy/ws/codec.h"

namespace tether::routing {
namespace {

void on_health_tick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<UpstreamRuntime*>(ctx)->handle_health_tick();
}
void on_opener_kick(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<UpstreamOpener*>(ctx)->handle_kick();
}

Balance to_balance(BalanceMode m) {
  switch (m) {
    case BalanceMode::kLeastConn:
      return Balance::kLeastConn;
    case BalanceMode::kHash:
      return Balance::kHash;
    case BalanceMode::kRoundRobin:
      break;
  }
  return Balance::kRoundRobin;
}

std::vector<ServerSpec> specs(const UpstreamConf& conf) {
  std::vector<ServerSpec> out;
  for (const auto& s : conf.servers) {
    out.push_back(ServerSpec{.id = s.text,
                             .weight = s.weight,
                             .max_fails = s.max_fails,
                             .fail_timeout_ms = s.fail_timeout.count(),
                             .backup = s.backup,
                             .down = s.down});
  }
  return out;
}

std::string runtime_key(const UpstreamConf& up) {
  return up.implicit ? "ws://" + up.name : up.name;
}

// The value of cookie NAME in the request's Cookie headers.
std::optional<std::string> cookie_value(const http::Request& req, std::string_view name) {
  for (const auto& h : req.headers) {
    if (h.name.size() != 6 || strncasecmp(h.name.data(), "Cookie", 6) != 0) continue;
    std::string_view list = h.value;
    while (!list.empty()) {
      auto semi = list.find(';');
      std::string_view item = list.substr(0, semi);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      auto eq = item.find('=');
      if (eq != std::string_view::npos && item.substr(0, eq) == name) {
        std::string_view v = item.substr(eq + 1);
        while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        if (!v.empty()) return std::string(v);
      }
      if (semi == std::string_view::npos) break;
      list.remove_prefix(semi + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

UpstreamRuntime::UpstreamRuntime(Core& core, const UpstreamConf& conf)
    : core_(core),
      name_(conf.name),
      servers_(conf.servers),
      pool_(conf.name, specs(conf), to_balance(conf.balance)) {
  if (conf.sticky.key != StickyConf::Key::kNone)
    table_.emplace(conf.stick_table_size, conf.stick_table_expire.count());
  start_health_checks(conf);
}

UpstreamRuntime::~UpstreamRuntime() = default;

void UpstreamRuntime::reconfigure(const UpstreamConf& conf) {
  servers_ = conf.servers;
  pool_.reconfigure(specs(conf), to_balance(conf.balance));
  if (conf.sticky.key == StickyConf::Key::kNone) {
    table_.reset();
  } else if (table_) {
    table_->resize(conf.stick_table_size, conf.stick_table_expire.count());
  } else {
    table_.emplace(conf.stick_table_size, conf.stick_table_expire.count());
  }
  start_health_checks(conf);
}

void UpstreamRuntime::start_health_checks(const UpstreamConf& conf) {
  health_interval_ = conf.health_interval;
  health_path_ = conf.health_path;
  // Results are kept by server id: a reload may reorder the servers under a running probe.
  if (!health_interval_) {
    health_timer_.reset();
    return;
  }
  if (!health_timer_) health_timer_.reset(event_new(core_.base(), -1, EV_PERSIST, on_health_tick, this));
  timeval tv = to_timeval(*health_interval_);
  event_add(health_timer_.get(), &tv);
  // First round at once, so a server that is down at start is known early.
  event_active(health_timer_.get(), EV_TIMEOUT, 0);
}

// A probe is a WebSocket handshake at health_path: success brings a server back, failure
// takes it out until a later probe succeeds.
void UpstreamRuntime::handle_health_tick() {
  for (const auto& id : finished_probes_) probes_.erase(id);  // not from inside their callbacks
  finished_probes_.clear();
  for (size_t i = 0; i < servers_.size(); ++i) {
    std::string id = servers_[i].text;
    if (probes_.count(id)) continue;  // still waiting for its answer: no second probe
    UpstreamRequest req;
    req.target = health_path_;
    req.headers.emplace_back("User-Agent", "tether-health-check");
    // A probe may take longer than a short interval on a busy host without being a failure.
    Millis timeout = std::clamp(*health_interval_, Millis{1000}, Millis{10'000});
    auto probe =
        std::make_unique<Connector>(core_.base(), core_.dns(), servers_[i], std::move(req), timeout,
                                    [this, id](Result<UpstreamSocket> r) { on_probe(id, std::move(r)); });
    Connector& p = *probe;
    probes_.emplace(id, std::move(probe));
    p.start();
  }
}

void UpstreamRuntime::on_probe(const std::string& id, Result<UpstreamSocket> result) {
  finished_probes_.push_back(id);
  std::optional<size_t> found = pool_.find(id);
  if (!found) return;  // removed by a reload meanwhile
  size_t index = *found;
  bool ok = result.ok();
  if (ok) {
    // Close politely: a close frame, then the socket (the frame fits the socket buffer).
    std::string frame;
    ws::append_frame(frame, ws::Role::kClient, ws::Opcode::kClose,
                     ws::close_payload(ws::close_code::kGoingAway, "health check"));
    ::send(bufferevent_getfd(result.value().bev.get()), frame.data(), frame.size(), MSG_NOSIGNAL);
  }
  auto [it, first] = probe_ok_.emplace(id, ok);
  if (first || it->second != ok) {
    it->second = ok;
    if (ok) {
      TETHER_LOG(kNotice, "upstream server %s of \"%s\" is up (health check)", id.c_str(), name_.c_str());
    } else {
      TETHER_LOG(kWarn, "upstream server %s of \"%s\" is down (health check: %s)", id.c_str(), name_.c_str(),
                 result.error().what.c_str());
    }
  }
  pool_.set_probe_result(index, ok);
}

void UpstreamRuntime::Latency::add(double ms) {
  if (samples_ms.size() < kSamples) {
    samples_ms.push_back(ms);
  } else {
    samples_ms[next] = ms;
    next = (next + 1) % kSamples;
  }
  ++count;
  sum_ms += ms;
}

double UpstreamRuntime::Latency::percentile(double q) const {
  if (samples_ms.empty()) return 0;
  std::vector<double> sorted = samples_ms;
  size_t k = std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
  return sorted[k];
}

void Router::apply(const Config& config) {
  std::map<std::string, std::shared_ptr<UpstreamRuntime>> next;
  auto add = [&](const UpstreamConf& up) {
    std::string key = runtime_key(up);
    if (next.count(key)) return;
    auto it = runtimes_.find(key);
    if (it != runtimes_.end()) {
      it->second->reconfigure(up);
      next.emplace(key, it->second);
    } else {
      next.emplace(key, std::make_shared<UpstreamRuntime>(core_, up));
    }
  };
  for (const auto& [name, up] : config.upstreams) add(*up);
  for (const auto& up : config.implicit_upstreams) add(up);
  runtimes_ = std::move(next);
}

std::shared_ptr<UpstreamRuntime> Router::find(const UpstreamConf& up) const {
  auto it = runtimes_.find(runtime_key(up));
  return it == runtimes_.end() ? nullptr : it->second;
}

RouteKey route_key(const UpstreamConf& up, const http::Request& req, const std::string& peer_ip) {
  RouteKey out;
  const StickyConf& s = up.sticky;
  switch (s.key) {
    case StickyConf::Key::kNone:
      break;
    case StickyConf::Key::kIp:
      out.key = peer_ip;
      break;
    case StickyConf::Key::kHeader:
      if (const std::string* v = req.header(s.name); v && !v->empty()) out.key = *v;
      break;
    case StickyConf::Key::kQuery: {
      std::string v;
      if (http::query_param(req.query, s.name, v) && !v.empty()) out.key = v;
      break;
    }
    case StickyConf::Key::kCookie:
      out.key = cookie_value(req, s.name);
      if (!out.key) {
        // The client has no route yet: Tether gives it one, kept by the browser from now on.
        out.key = session::new_session_id();
        std::string c = s.name + "=" + *out.key + "; Path=" + s.cookie_path + "; HttpOnly; SameSite=Lax";
        if (s.cookie_expire) c += "; Max-Age=" + std::to_string(s.cookie_expire->count() / 1000);
        out.set_cookie.emplace_back("Set-Cookie", std::move(c));
      }
      break;
  }
  return out;
}

UpstreamOpener::UpstreamOpener(Core& core, const UpstreamConf& up, std::optional<std::string> key,
                               UpstreamRequest request, Millis timeout, int tries, Done done)
    : core_(core),
      rt_(core.router().find(up)),
      key_(std::move(key)),
      request_(std::move(request)),
      timeout_(timeout),
      tries_(tries),
      done_(std::move(done)) {
  kick_.reset(event_new(core.base(), -1, 0, on_opener_kick, this));
}

UpstreamOpener::~UpstreamOpener() = default;

void UpstreamOpener::start() {
  event_active(kick_.get(), EV_TIMEOUT, 0);
}

void UpstreamOpener::handle_kick() {
  if (!finished_) next();
}

void UpstreamOpener::next() {
  auto finish_with = [this](std::string why) {
    finished_ = true;
    auto done = std::move(done_);
    done(Error{Errc::kUpstream, std::move(why)});
  };
  if (!rt_) return finish_with("no upstream runtime (internal error)");
  Pool& pool = rt_->pool();
  if (static_cast<int>(tried_.size()) >= tries_) {
    return finish_with(tried_.size() == 1
                           ? last_error_
                           : last_error_ + " (" + std::to_string(tried_.size()) + " servers tried)");
  }
  std::optional<size_t> index;
  StickTable* table = rt_->table();
  if (key_ && table) {
    if (auto server = table->get(*key_)) {
      auto i = pool.find(*server);
      bool tried = i && std::find(tried_.begin(), tried_.end(), *i) != tried_.end();
      if (i && !tried && pool.usable(*i)) index = i;
    }
  }
  if (!index) index = pool.pick(key_ ? std::optional<std::string_view>(*key_) : std::nullopt, tried_);
  if (!index) {
    if (!last_error_.empty()) {
      return finish_with(last_error_ + " (" + std::to_string(tried_.size()) + " servers tried, none left)");
    }
    std::string why = "no live servers in upstream \"" + rt_->name() + "\":";
    for (size_t i = 0; i < pool.size(); ++i) {
      why += (i ? "; " : " ") + pool.servers()[i].spec.id + " " + pool.why_unusable(i);
    }
    return finish_with(why);
  }
  tried_.push_back(*index);
  size_t i = *index;
  attempt_start_ms_ = steady_clock().now();
  attempts_.push_back(
      std::make_unique<Connector>(core_.base(), core_.dns(), rt_->servers()[i], request_, timeout_,
                                  [this, i](Result<UpstreamSocket> r) { on_result(i, std::move(r)); }));
  attempts_.back()->start();
}

namespace {
// Holds one place in a server's active count for as long as a session uses the server.
struct Lease {
  std::shared_ptr<UpstreamRuntime> rt;
  std::string id;
  ~Lease() { rt->pool().release(id); }
};
}  // namespace

void UpstreamOpener::on_result(size_t index, Result<UpstreamSocket> result) {
  Pool& pool = rt_->pool();
  const std::string& id = pool.servers()[index].spec.id;
  if (!result.ok()) {
    // A lone server is never marked down (nginx): there is nowhere else to go anyway.
    if (!rt_->single()) pool.report_failure(index);
    last_error_ = result.error().what;
    if (rt_->single() || static_cast<int>(tried_.size()) >= tries_) {
      next();  // finishes with the error
      return;
    }
    TETHER_LOG(kWarn, "%s, trying the next server of \"%s\"", last_error_.c_str(), rt_->name().c_str());
    event_active(kick_.get(), EV_TIMEOUT, 0);  // not from inside the connector's callback
    return;
  }
  pool.report_success(index);
  pool.acquire(index);
  rt_->record_handshake(id, static_cast<double>(steady_clock().now() - attempt_start_ms_));
  if (key_ && rt_->table()) rt_->table()->put(*key_, id);
  UpstreamSocket sock = std::move(result.value());
  sock.lease = std::shared_ptr<void>(new Lease{rt_, id}, [](void* p) { delete static_cast<Lease*>(p); });
  finished_ = true;
  auto done = std::move(done_);
  done(std::move(sock));
}

}  // namespace tether::routing
