#include "proxy/core/core.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/routing/router.h"
#include "proxy/session/session.h"
#include "proxy/util/log.h"
#include "proxy/util/timeval.h"

namespace tether {

struct Core::Listener {
  Core* core;
  const ServerConf* server;
  ListenerPtr listener;
  std::string text;         // as configured, with the address: the key a reload matches on
  sockaddr_storage addr{};  // as configured (port 0 possible)
  socklen_t addr_len = 0;
  sockaddr_storage bound{};  // as bound (the real port)
};

namespace {

// How long accepting pauses after accept() found no free fd (nginx waits 500 ms).
constexpr timeval kAcceptPause{0, 100'000};
// Refused connections answer and linger like any other; beyond this many at once, more are
// closed without an answer, so refusing cannot itself use up the fds.
constexpr size_t kMaxRefusing = 64;

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int socklen, void* ctx) noexcept {
  auto* l = static_cast<Core::Listener*>(ctx);
  l->core->accept_client(*l, fd, sa, socklen);
}

void on_accept_error(evconnlistener*, void* ctx) noexcept {
  int err = EVUTIL_SOCKET_ERROR();
  TETHER_LOG(kError, "accept() failed (%d: %s)", err, evutil_socket_error_to_string(err));
  // Out of fds: the pending connection stays in the backlog and the listener stays readable;
  // retrying at once would spin. Wait until something has closed.
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
    static_cast<Core::Listener*>(ctx)->core->pause_accepting();
}

void on_accept_resume(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Core*>(ctx)->resume_accepting();
}

void on_reap(evutil_socket_t, short, void* ctx) noexcept;

void on_signal(evutil_socket_t sig, short, void* ctx) noexcept {
  auto* core = static_cast<Core*>(ctx);
  switch (sig) {
    case SIGHUP:
      TETHER_LOG(kNotice, "signal %d (SIGHUP) received, reloading", static_cast<int>(sig));
      core->reload();
      break;
    case SIGUSR1:
      core->reopen_logs();
      break;
    case SIGQUIT:
      TETHER_LOG(kNotice, "signal %d (SIGQUIT) received, shutting down gracefully", static_cast<int>(sig));
      core->stop(true);
      break;
    default:
      TETHER_LOG(kNotice, "signal %d (%s) received, exiting", static_cast<int>(sig),
                 strsignal(static_cast<int>(sig)));
      core->stop(false);
      break;
  }
}

void on_deadline(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Core*>(ctx)->handle_deadline();
}

}  // namespace

std::string client_ip(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    evutil_inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, ip, sizeof ip);
  } else if (sa->sa_family == AF_INET6) {
    evutil_inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, ip, sizeof ip);
  }
  return ip;
}

std::string format_address(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "unix";
}

Core::Core(ConfigPtr config)
    : base_(event_base_new()),
      config_(std::move(config)),
      sessions_(std::make_unique<session::SessionTable>()) {
  TETHER_RELEASE_ASSERT(base_);
  // No /etc/resolv.conf is no reason not to start: IP-literal upstreams need no resolver.
  dns_.reset(evdns_base_new(base_.get(), EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE |
                                             EVDNS_BASE_NAMESERVERS_NO_DEFAULT));
  if (!dns_) {
    dns_.reset(evdns_base_new(base_.get(), 0));
    if (dns_) evdns_base_load_hosts(dns_.get(), nullptr);
  }
  reaper_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  router_ = std::make_unique<routing::Router>(*this);
  router_->apply(*config_);
}

Core::~Core() {
  if (!pid_file_.empty()) unlink(pid_file_.c_str());
  listeners_.clear();
  graveyard_.clear();
  // Objects may retire others while being destroyed; keep going until nothing is left.
  while (!live_.empty()) {
    auto live = std::move(live_);
    live_.clear();
    live.clear();
    graveyard_.clear();
  }
}

Status Core::bind_listeners(const Config& config, std::vector<std::unique_ptr<Listener>>& out) {
  for (const auto& srv : config.servers) {
    for (const auto& l : srv->listens) {
      // A listener the running config already has keeps its socket (a reload drops nothing
      // in its accept queue); it only serves the new server block from now on.
      // Matched as configured, or as bound: `listen 127.0.0.1:0` rewritten with the port it got
      // is the same socket.
      auto same = std::find_if(listeners_.begin(), listeners_.end(), [&](const std::unique_ptr<Listener>& x) {
        return x && x->addr_len == l.addr_len &&
               (memcmp(&x->addr, &l.addr, l.addr_len) == 0 || memcmp(&x->bound, &l.addr, l.addr_len) == 0);
      });
      if (same != listeners_.end()) {
        (*same)->server = srv.get();
        out.push_back(std::move(*same));
        continue;
      }
      auto lst = std::make_unique<Listener>();
      lst->core = this;
      lst->server = srv.get();
      lst->text = l.text;
      lst->addr = l.addr;
      lst->addr_len = l.addr_len;
      lst->listener.reset(evconnlistener_new_bind(
          base_.get(), on_accept, lst.get(), LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511,
          reinterpret_cast<const sockaddr*>(&l.addr), static_cast<int>(l.addr_len)));
      if (!lst->listener) {
        int err = errno;
        return Error{Errc::kIo, "bind() to " + l.text + " failed (" + std::to_string(err) + ": " +
                                    std::strerror(err) + ") in " + l.loc.file + ":" +
                                    std::to_string(l.loc.line)};
      }
      evconnlistener_set_error_cb(lst->listener.get(), on_accept_error);
      if (accept_pause_ && evtimer_pending(accept_pause_.get(), nullptr))
        evconnlistener_disable(lst->listener.get());
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      getsockname(evconnlistener_get_fd(lst->listener.get()), reinterpret_cast<sockaddr*>(&bound), &len);
      lst->bound = bound;
      TETHER_LOG(kNotice, "listening on %s", format_address(reinterpret_cast<sockaddr*>(&bound)).c_str());
      out.push_back(std::move(lst));
    }
  }
  return ok_status();
}

Status Core::start() {
  // Signals first: whoever sees "listening on" may signal us at once.
  for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1}) {
    EventPtr ev(evsignal_new(base_.get(), sig, on_signal, this));
    event_add(ev.get(), nullptr);
    signals_.push_back(std::move(ev));
  }
  if (auto st = log::open_access(config_->access_log); !st.ok()) return st;
  std::vector<std::unique_ptr<Listener>> bound;
  if (auto st = bind_listeners(*config_, bound); !st.ok()) return st;
  listeners_ = std::move(bound);
  write_pid_file();
  return ok_status();
}

void Core::write_pid_file() {
  if (config_->pid_file == pid_file_) return;
  if (!pid_file_.empty()) unlink(pid_file_.c_str());
  pid_file_ = config_->pid_file;
  if (pid_file_.empty()) return;
  FILE* f = fopen(pid_file_.c_str(), "w");
  if (!f) {
    TETHER_LOG(kError, "open() \"%s\" failed (%d: %s)", pid_file_.c_str(), errno, strerror(errno));
    pid_file_.clear();
    return;
  }
  fprintf(f, "%d\n", static_cast<int>(getpid()));
  fclose(f);
}

void Core::reload() {
  if (stopping_) return;
  auto next = load_config(config_->file, config_->modules);
  if (!next.ok()) {
    TETHER_LOG(kError, "reload failed, keeping the old configuration: %s", next.error().what.c_str());
    return;
  }
  ConfigPtr cfg = next.value();
  std::vector<std::unique_ptr<Listener>> bound;
  Status st = bind_listeners(*cfg, bound);
  if (!st.ok()) {
    // Put back what was taken from the running set, untouched.
    // Listeners of the running config go back, serving their old server blocks; the ones
    // just opened for the new config close.
    for (auto& l : bound) {
      for (const auto& srv : config_->servers) {
        for (const auto& lc : srv->listens) {
          if (l && lc.addr_len == l->addr_len &&
              (memcmp(&lc.addr, &l->addr, l->addr_len) == 0 ||
               memcmp(&lc.addr, &l->bound, l->addr_len) == 0)) {
            l->server = srv.get();
            listeners_.push_back(std::move(l));
          }
        }
      }
    }
    std::erase(listeners_, nullptr);
    TETHER_LOG(kError, "reload failed, keeping the old configuration: %s", st.error().what.c_str());
    return;
  }
  // What the new config no longer lists closes now; live connections are not affected.
  listeners_ = std::move(bound);
  if (cfg->error_log != config_->error_log || cfg->error_log_level != config_->error_log_level) {
    if (auto s = log::open(cfg->error_log, cfg->error_log_level); !s.ok())
      TETHER_LOG(kError, "%s", s.error().what.c_str());
  }
  if (cfg->access_log != config_->access_log) {
    if (auto s = log::open_access(cfg->access_log); !s.ok()) TETHER_LOG(kError, "%s", s.error().what.c_str());
  }
  config_ = std::move(cfg);
  router_->apply(*config_);
  write_pid_file();
  TETHER_LOG(kNotice, "configuration reloaded from %s", config_->file.c_str());
}

void Core::reopen_logs() {
  if (auto st = log::reopen(); !st.ok()) {
    TETHER_LOG(kError, "reopening the logs failed: %s", st.error().what.c_str());
    return;
  }
  TETHER_LOG(kNotice, "log files reopened");
}

int Core::run() {
  event_base_dispatch(base_.get());
  return 0;
}

void Core::stop(bool graceful) {
  if (stopping_ && graceful) return;
  bool first = !stopping_;
  stopping_ = true;
  listeners_.clear();
  Millis limit = graceful ? config_->shutdown_timeout : std::min(config_->shutdown_timeout, Millis{1000});
  if (!deadline_) deadline_.reset(evtimer_new(base_.get(), on_deadline, this));
  timeval tv = to_timeval(limit);
  event_add(deadline_.get(), &tv);
  if (first || !graceful) {
    std::vector<Owned*> live;
    for (auto& [p, obj] : live_) live.push_back(p);
    TETHER_LOG(kNotice, "%s shutdown: closing %zu connections and sessions", graceful ? "graceful" : "fast",
               live.size());
    for (Owned* p : live) {
      if (live_.count(p)) p->shutdown(graceful);
    }
  }
  if (live_.empty()) event_base_loopbreak(base_.get());
}

uint64_t Core::max_connections() const {
  return config_->max_connections ? config_->max_connections : default_max_connections();
}

void Core::accept_client(const Listener& l, evutil_socket_t fd, const sockaddr* sa, int socklen) {
  const Config& cfg = *config_;
  ClientTable::Slot slot;
  int status = 0;
  const char* reason = nullptr;
  std::string ip = client_ip(sa);
  if (clients_.total(ClientTable::kConnection) >= max_connections()) {
    stats().hit(Limit::kConnections);
    status = 503;
    reason = "too many connections";
  } else if (!(slot = clients_.take(ClientTable::kConnection, ip, cfg.max_connections_per_client))) {
    stats().hit(Limit::kConnectionsPerClient);
    status = 429;
    reason = "too many connections from this client address";
  }
  if (status) {
    TETHER_LOG(kWarn, "%s (%s), client: %s", reason,
               status == 503 ? "max_connections" : "max_connections_per_client", format_address(sa).c_str());
    if (refusing_ >= kMaxRefusing) {
      evutil_closesocket(fd);
      return;
    }
  }
  auto conn = std::make_unique<HttpConnection>(*this, config_, *l.server, fd, sa, socklen);
  HttpConnection& c = adopt(std::move(conn));
  if (status) {
    ++refusing_;
    c.refuse(status, reason);
  } else {
    c.start(std::move(slot));
  }
}

void Core::pause_accepting() {
  if (!accept_pause_) accept_pause_.reset(evtimer_new(base_.get(), on_accept_resume, this));
  if (evtimer_pending(accept_pause_.get(), nullptr)) return;
  for (auto& l : listeners_) evconnlistener_disable(l->listener.get());
  evtimer_add(accept_pause_.get(), &kAcceptPause);
}

void Core::resume_accepting() {
  for (auto& l : listeners_) evconnlistener_enable(l->listener.get());
}

void Core::handle_deadline() {
  TETHER_LOG(kNotice, "shutdown deadline reached with %zu connections still open", live_.size());
  event_base_loopbreak(base_.get());
}

void Core::retire(Owned* obj) {
  auto it = live_.find(obj);
  if (it == live_.end()) return;
  graveyard_.push_back(std::move(it->second));
  live_.erase(it);
  event_active(reaper_.get(), EV_TIMEOUT, 0);
}

void Core::reap() {
  // Destructors may retire more objects; those wait for the next round.
  auto dead = std::move(graveyard_);
  graveyard_.clear();
  dead.clear();
  if (stopping_ && live_.empty()) event_base_loopbreak(base_.get());
}

namespace {
void on_reap(evutil_socket_t, short, void* ctx) noexcept {
  static_cast<Core*>(ctx)->reap();
}
}  // namespace

}  // namespace tether
