#pragma once
// The core owns the event loop, the listeners and every live connection object. Objects are
// never deleted inside their own callbacks: retire() parks them and a zero-delay event frees
// them on the next loop iteration (Redis's freeClientAsync, Envoy's DeferredDeletable).

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/core/config.h"
#include "proxy/core/limits.h"
#include "proxy/util/assert.h"
#include "proxy/util/handles.h"

namespace tether {

namespace session {
class SessionTable;
}
namespace routing {
class Router;
}

// Anything the core keeps alive: HTTP connections, relays, sessions.
class Owned {
 public:
  virtual ~Owned() = default;
  // The process is stopping: close with 1001 (WebSocket close, tether-close, poll close) and
  // retire once done. GRACEFUL: let what is under way finish first (polls, close handshakes).
  virtual void shutdown(bool graceful) { (void)graceful; }
};

class Core {
 public:
  explicit Core(ConfigPtr config);
  ~Core();
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  // Binds every listener of the config and logs "listening on ADDR:PORT" for each.
  Status start();
  // Runs the loop until stop(); returns the process exit code.
  int run();
  // Stops accepting, asks every live object to close (1001), and ends the loop when none is
  // left, or after tether_shutdown_timeout (GRACEFUL) or 1 s (fast).
  void stop(bool graceful);
  // Loads the config file again: a bad one is refused (logged with file:line) and the old one
  // stays; a good one applies to new requests (listeners added and removed, routes and
  // upstreams replaced, stick tables of surviving upstreams kept). Live objects keep theirs.
  void reload();
  // Reopens the error and access logs (rotation).
  void reopen_logs();
  bool stopping() const { return stopping_; }

  event_base* base() const { return base_.get(); }
  evdns_base* dns() const { return dns_.get(); }
  const ConfigPtr& config() const { return config_; }
  session::SessionTable& sessions() { return *sessions_; }
  routing::Router& router() { return *router_; }
  // Who holds how many connections and sessions, for the per-client limits.
  ClientTable& clients() { return clients_; }
  // max_connections as configured, or derived from the fd limit.
  uint64_t max_connections() const;

  template <class T>
  T& adopt(std::unique_ptr<T> obj) {
    T& ref = *obj;
    live_.emplace(obj.get(), std::move(obj));
    return ref;
  }
  // Frees OBJ on the next loop iteration. Safe to call from OBJ's own callbacks, and twice.
  void retire(Owned* obj);
  size_t live_objects() const { return live_.size(); }
  // Frees what was retired; run by the reaper event, never call it from a callback.
  void reap();

  struct Listener;
  void handle_deadline();
  // A new client socket: an HTTP connection, or a refusal when a connection limit is reached.
  void accept_client(const Listener& l, evutil_socket_t fd, const sockaddr* sa, int socklen);
  // accept() ran out of fds: stop accepting for a moment instead of spinning on a ready listener.
  void pause_accepting();
  void resume_accepting();
  // A refused connection (HttpConnection::refuse) is gone.
  void refusal_done() { --refusing_; }

 private:
  Status bind_listeners(const Config& config, std::vector<std::unique_ptr<Listener>>& out);
  void write_pid_file();
  EventBasePtr base_;  // first member: destroyed last
  DnsBasePtr dns_;
  ConfigPtr config_;
  ClientTable clients_;                              // outlives the slots held by objects in live_
  std::unique_ptr<session::SessionTable> sessions_;  // outlives the sessions in live_
  std::unique_ptr<routing::Router> router_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<Owned*, std::unique_ptr<Owned>> live_;
  std::vector<std::unique_ptr<Owned>> graveyard_;
  EventPtr reaper_;
  std::vector<EventPtr> signals_;
  EventPtr deadline_;
  EventPtr accept_pause_;
  size_t refusing_ = 0;  // refused connections still lingering
  bool stopping_ = false;
  std::string pid_file_;
};

// "127.0.0.1:8080" or "[::1]:8080".
std::string format_address(const sockaddr* sa);
// "127.0.0.1" or "::1" (empty for other families).
std::string client_ip(const sockaddr* sa);

}  // namespace tether
