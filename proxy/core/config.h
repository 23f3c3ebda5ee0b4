#pragma once
// The typed configuration: what the parsed tree of conf/ means to the core. One Config is
// immutable once built and shared (shared_ptr<const Config>) by everything that uses it, so a
// reload can build a new one while live connections keep the old.

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "conf/parser.h"
#include "module/module.h"
#include "proxy/util/log.h"
#include "proxy/util/result.h"

namespace tether {

using Millis = std::chrono::milliseconds;

struct ListenConf {
  std::string text;  // as written: "127.0.0.1:8080"
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  conf::SourceLoc loc;
};

struct UpstreamServer {
  std::string host;  // name or address literal (no brackets)
  uint16_t port = 80;
  std::string text;  // "host:port" as written: the server's identity in pools, tables, logs
  int weight = 1;
  int max_fails = 1;
  Millis fail_timeout{10'000};
  bool backup = false;
  bool down = false;
};

enum class BalanceMode { kRoundRobin, kLeastConn, kHash };

// sticky cookie NAME [expire=D] [path=P] | header NAME | ip | query NAME
struct StickyConf {
  enum class Key { kNone, kCookie, kHeader, kIp, kQuery } key = Key::kNone;
  std::string name;
  std::optional<Millis> cookie_expire;  // unset: a session cookie
  std::string cookie_path = "/";
};

struct UpstreamConf {
  std::string name;
  std::vector<UpstreamServer> servers;
  conf::SourceLoc loc;
  bool implicit = false;  // made for `tether_pass ws://host:port`
  BalanceMode balance = BalanceMode::kRoundRobin;
  StickyConf sticky;
  size_t stick_table_size = 100'000;  // stick_table size=N expire=D
  Millis stick_table_expire{30 * 60'000};
  std::optional<Millis> health_interval;  // health_check interval=D path=P
  std::string health_path = "/";
};

// tether_pass ws://NAME[:port][/path]
struct PassTarget {
  const UpstreamConf* upstream = nullptr;
  bool has_path = false;  // nginx proxy_pass semantics: with a path, it replaces the location prefix
  std::string path;
  std::string text;
};

enum Transport : unsigned { kWebsocket = 1u << 0, kSse = 1u << 1, kPoll = 1u << 2 };

// Settings of the sessions of SSE and long-poll clients (DESIGN.md, "The edge protocol").
struct SessionConf {
  size_t max_messages = 1000;  // tether_buffer MESSAGES BYTES: per-session bound
  size_t max_bytes = 1u << 20;
  Millis linger{30'000};            // tether_session_linger
  Millis poll_timeout{25'000};      // tether_poll_timeout
  Millis heartbeat{15'000};         // tether_heartbeat
  bool sse_padding = false;         // tether_sse_padding
  std::optional<Millis> sse_retry;  // tether_sse_retry
  Millis send_timeout{60'000};      // the server's send_timeout: a backend that takes nothing is dropped
};

// allow/deny ADDRESS[/PREFIX] | all, nginx's access module: the first matching rule decides.
struct AccessRule {
  bool allow = true;
  int family = 0;  // 0: all; AF_INET; AF_INET6
  uint8_t addr[16] = {};
  int prefix = 0;
  bool matches(const sockaddr* peer) const;
};

struct LocationConf {
  bool exact = false;
  std::string path;
  conf::SourceLoc loc;
  std::optional<int> return_status;  // `return CODE [TEXT]`
  std::string return_text;
  std::optional<PassTarget> pass;
  unsigned transports = kWebsocket | kSse | kPoll;
  Millis connect_timeout{10'000};    // TCP connect + WebSocket handshake with the upstream
  int next_upstream_tries = 3;       // tether_next_upstream tries=N: servers tried per new session
  uint64_t max_message = 16u << 20;  // tether_max_message: either way, any transport
  Millis idle_timeout{3'600'000};    // tether_idle_timeout: a relayed WebSocket with no frames
  SessionConf session;
  // tether_allow_origin: unset -> no Origin checks and no CORS; "*" -> any origin.
  bool origins_checked = false;
  bool any_origin = false;
  std::vector<std::string> allow_origins;
  bool origin_allowed(std::string_view origin) const;
  std::vector<AccessRule> access;
  bool access_allowed(const sockaddr* peer) const;
  std::vector<std::unique_ptr<ModuleConf>> modules;  // indexed like all_modules()
};

struct ServerConf {
  std::vector<ListenConf> listens;
  Millis client_header_timeout{60'000};
  Millis keepalive_timeout{75'000};
  Millis client_body_timeout{60'000};  // from the end of the head to the end of the body
  Millis send_timeout{60'000};
  uint64_t client_max_body_size = 1u << 20;
  uint64_t client_max_header_size = 16u << 10;  // request line + headers (431 over it)
  std::vector<std::unique_ptr<LocationConf>> locations;
  // `location = /x` first, then the longest matching prefix; nullptr when none matches.
  const LocationConf* match(std::string_view path) const;
};

struct Config {
  std::string file;
  std::string error_log = "stderr";
  log::Level error_log_level = log::Level::kInfo;
  std::string access_log;  // empty: off
  std::string pid_file;    // empty: none
  Millis shutdown_timeout{10'000};
  uint64_t max_connections = 0;  // 0: default_max_connections(), from the fd limit
  uint64_t max_connections_per_client = 1000;
  uint64_t max_sessions_per_client = 1000;
  std::vector<std::unique_ptr<ServerConf>> servers;
  std::map<std::string, std::unique_ptr<UpstreamConf>, std::less<>> upstreams;
  std::list<UpstreamConf> implicit_upstreams;
  std::span<const Module* const> modules;
};

using ConfigPtr = std::shared_ptr<const Config>;

struct ConfigResolver {
  const Config& config;
};

// Parses and checks FILE; errors name the directive and file:line.
Result<ConfigPtr> load_config(const std::string& file, std::span<const Module* const> modules);
// The same from an already parsed tree (tests).
Result<ConfigPtr> build_config(const conf::Tree& tree, const std::string& file,
                               std::span<const Module* const> modules);

}  // namespace tether
