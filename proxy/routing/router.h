#pragma once
// Routing at run time: for each upstream, its pool (balancing, failures, active sessions) and
// its stick table, kept by upstream name across configs; the sticky key of a request; and the
// opener that picks a server, connects, and on failure tries the next one.

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/core/config.h"
#include "proxy/http/request_parser.h"
#include "proxy/routing/pool.h"
#include "proxy/routing/stick_table.h"
#include "proxy/upstream/connector.h"
#include "proxy/util/handles.h"
#include "proxy/util/header_list.h"

namespace tether {
class Core;
}

namespace tether::routing {

// One upstream's state. Shared: leases of live sessions keep it alive past a reload that
// removed the upstream.
class UpstreamRuntime : public std::enable_shared_from_this<UpstreamRuntime> {
 public:
  UpstreamRuntime(Core& core, const UpstreamConf& conf);
  ~UpstreamRuntime();
  // A new config for the same upstream: servers kept by id, the table kept (resized).
  void reconfigure(const UpstreamConf& conf);

  const std::string& name() const { return name_; }
  Pool& pool() { return pool_; }
  StickTable* table() { return table_ ? &*table_ : nullptr; }
  const std::vector<UpstreamServer>& servers() const { return servers_; }
  // Whether one server alone makes the pool: like nginx, its failures never mark it down.
  bool single() const { return servers_.size() == 1; }

  void handle_health_tick();

  // Upstream handshake latency (connect + WebSocket handshake) of successful opens, per
  // server: the last kSamples for percentiles, and a running count and sum.
  struct Latency {
    static constexpr size_t kSamples = 1024;
    std::vector<double> samples_ms;  // a ring once full
    size_t next = 0;
    uint64_t count = 0;
    double sum_ms = 0;
    void add(double ms);
    double percentile(double q) const;  // 0 when empty
  };
  void record_handshake(const std::string& id, double ms) { latency_[id].add(ms); }
  const Latency* latency(const std::string& id) const {
    auto it = latency_.find(id);
    return it == latency_.end() ? nullptr : &it->second;
  }

 private:
  void start_health_checks(const UpstreamConf& conf);
  void on_probe(const std::string& id, Result<UpstreamSocket> result);

  Core& core_;
  std::string name_;
  std::vector<UpstreamServer> servers_;
  Pool pool_;
  std::optional<StickTable> table_;
  std::optional<Millis> health_interval_;
  std::string health_path_;
  EventPtr health_timer_;
  // One probe per server at a time, by server id; a finished one is freed at the next tick.
  std::map<std::string, std::unique_ptr<Connector>> probes_;
  std::vector<std::string> finished_probes_;
  std::map<std::string, Latency> latency_;
  std::map<std::string, bool> probe_ok_;  // last probe result by server id, for logs
};

// The runtimes of every upstream in the config, by name (implicit ones by their address).
class Router {
 public:
  explicit Router(Core& core) : core_(core) {}
  // Creates or reconfigures the runtime of each upstream of CONFIG; runtimes of upstreams the
  // config no longer has are dropped (live sessions keep theirs through their leases).
  void apply(const Config& config);
  std::shared_ptr<UpstreamRuntime> find(const UpstreamConf& up) const;
  const std::map<std::string, std::shared_ptr<UpstreamRuntime>>& runtimes() const { return runtimes_; }

 private:
  Core& core_;
  std::map<std::string, std::shared_ptr<UpstreamRuntime>> runtimes_;
};

// What routes a new session: the user's sticky key, and a Set-Cookie to send when Tether has
// just minted the key (cookie mode, and the client had none).
struct RouteKey {
  std::optional<std::string> key;
  HeaderList set_cookie;
};
RouteKey route_key(const UpstreamConf& up, const http::Request& req, const std::string& peer_ip);

// Opens an upstream WebSocket for a new session or relay: picks a server (the stick table's,
// if the key has a usable one; else by balance), connects, and on a failure counts it against
// that server and tries the next, up to TRIES servers. On success the server is (re)stuck to
// the key, and UpstreamSocket::lease holds its place in the pool's active count.
class UpstreamOpener {
 public:
  // DONE is called once, from the loop (never from start()), as the opener's last act in that
  // callback: it may not destroy the opener.
  using Done = std::function<void(Result<UpstreamSocket>)>;

  UpstreamOpener(Core& core, const UpstreamConf& up, std::optional<std::string> key, UpstreamRequest request,
                 Millis timeout, int tries, Done done);
  ~UpstreamOpener();
  void start();

  void handle_kick();

 private:
  void next();
  void on_result(size_t index, Result<UpstreamSocket> result);

  Core& core_;
  std::shared_ptr<UpstreamRuntime> rt_;
  std::optional<std::string> key_;
  UpstreamRequest request_;
  Millis timeout_;
  int tries_;
  Done done_;
  EventPtr kick_;
  std::vector<std::unique_ptr<Connector>> attempts_;
  std::vector<size_t> tried_;
  std::string last_error_;
  int64_t attempt_start_ms_ = 0;
  bool finished_ = false;
};

}  // namespace tether::routing
