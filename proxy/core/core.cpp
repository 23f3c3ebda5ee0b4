#include "proxy/core/core.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <netinet/in.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "proxy/core/http_connection.h"
#include "proxy/routing/router.h"
#include "proxy/session/session.h"
#include "proxy/util/log.h"

namespace tether {

struct Core::Listener {
  Core* core;
  const ServerConf* server;
  ListenerPtr listener;
};

namespace {

void on_accept(evconnlistener*, evutil_socket_t fd, sockaddr* sa, int socklen, void* ctx) noexcept {
  auto* l = static_cast<Core::Listener*>(ctx);
  auto conn = std::make_unique<HttpConnection>(*l->core, l->core->config(), *l->server, fd, sa, socklen);
  HttpConnection& c = l->core->adopt(std::move(conn));
  c.start();
}

void on_accept_error(evconnlistener*, void*) noexcept {
  int err = EVUTIL_SOCKET_ERROR();
  // EMFILE and friends: keep going, the listener retries on the next readiness.
  TETHER_LOG(kError, "accept() failed (%d: %s)", err, evutil_socket_error_to_string(err));
}

void on_reap(evutil_socket_t, short, void* ctx) noexcept;

void on_signal(evutil_socket_t sig, short, void* ctx) noexcept {
  auto* core = static_cast<Core*>(ctx);
  TETHER_LOG(kNotice, "signal %d (%s) received, exiting", static_cast<int>(sig), strsignal(static_cast<int>(sig)));
  core->stop();
}

}  // namespace

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
    : base_(event_base_new()), config_(std::move(config)), sessions_(std::make_unique<session::SessionTable>()) {
  TETHER_RELEASE_ASSERT(base_);
  // No /etc/resolv.conf is no reason not to start: IP-literal upstreams need no resolver.
  dns_.reset(evdns_base_new(base_.get(), EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE | EVDNS_BASE_NAMESERVERS_NO_DEFAULT));
  if (!dns_) {
    dns_.reset(evdns_base_new(base_.get(), 0));
    if (dns_) evdns_base_load_hosts(dns_.get(), nullptr);
  }
  reaper_.reset(event_new(base_.get(), -1, 0, on_reap, this));
  router_ = std::make_unique<routing::Router>(*this);
  router_->apply(*config_);
}

Core::~Core() {
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

Status Core::start() {
  for (const auto& srv : config_->servers) {
    for (const auto& l : srv->listens) {
      auto lst = std::make_unique<Listener>();
      lst->core = this;
      lst->server = srv.get();
      lst->listener.reset(evconnlistener_new_bind(base_.get(), on_accept, lst.get(),
                                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 511,
                                                  reinterpret_cast<const sockaddr*>(&l.addr),
                                                  static_cast<int>(l.addr_len)));
      if (!lst->listener) {
        int err = errno;
        return Error{Errc::kIo, "bind() to " + l.text + " failed (" + std::to_string(err) + ": " +
                                    std::strerror(err) + ") in " + l.loc.file + ":" + std::to_string(l.loc.line)};
      }
      evconnlistener_set_error_cb(lst->listener.get(), on_accept_error);
      sockaddr_storage bound{};
      socklen_t len = sizeof bound;
      getsockname(evconnlistener_get_fd(lst->listener.get()), reinterpret_cast<sockaddr*>(&bound), &len);
      TETHER_LOG(kNotice, "listening on %s", format_address(reinterpret_cast<sockaddr*>(&bound)).c_str());
      listeners_.push_back(std::move(lst));
    }
  }
  for (int sig : {SIGTERM, SIGINT}) {
    EventPtr ev(evsignal_new(base_.get(), sig, on_signal, this));
    event_add(ev.get(), nullptr);
    signals_.push_back(std::move(ev));
  }
  return ok_status();
}

int Core::run() {
  event_base_dispatch(base_.get());
  return 0;
}

void Core::stop() {
  listeners_.clear();
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
}

namespace {
void on_reap(evutil_socket_t, short, void* ctx) noexcept { static_cast<Core*>(ctx)->reap(); }
}  // namespace

}  // namespace tether
