#include "module/stats/stats_module.h"

#include <jansson.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"
#include "proxy/core/stats.h"
#include "proxy/routing/router.h"
#include "proxy/session/session.h"

namespace tether::stats_module {
namespace {

struct Conf : ModuleConf {
  std::optional<bool> on;
};

constexpr conf::DirectiveSpec kDirectives[] = {
    {.name = "tether_stats", .scopes = conf::kLocation, .min_args = 0, .max_args = 0},
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char* balance_name(routing::Balance b) {
  switch (b) {
    case routing::Balance::kLeastConn:
      return "least_conn";
    case routing::Balance::kHash:
      return "hash";
    case routing::Balance::kRoundRobin:
      break;
  }
  return "round_robin";
}

// "up", "failed" (marked by failures or the health check) or "down" (in the config).
const char* server_state(routing::UpstreamRuntime& rt, size_t i) {
  const auto& s = rt.pool().servers()[i];
  if (s.spec.down) return "down";
  return rt.pool().usable(i) ? "up" : "failed";
}

json_t* counters_json(const MessageCounters& c) {
  return json_pack("{s:I,s:I,s:I,s:I}", "in", static_cast<json_int_t>(c.in), "out",
                   static_cast<json_int_t>(c.out), "in_bytes", static_cast<json_int_t>(c.in_bytes),
                   "out_bytes", static_cast<json_int_t>(c.out_bytes));
}

std::string json_report(Core& core) {
  const Stats& st = stats();
  int64_t now = now_ms();
  json_t* root = json_object();
  json_object_set_new(root, "version", json_string(TETHER_VERSION_STRING));
  json_object_set_new(root, "pid", json_integer(getpid()));
  json_object_set_new(root, "uptime_seconds", json_real(static_cast<double>(now - st.start_ms) / 1000.0));
  json_object_set_new(
      root, "connections",
      json_pack("{s:I,s:I,s:I,s:I,s:I}", "websocket", static_cast<json_int_t>(st.websocket_relays), "sse",
                static_cast<json_int_t>(st.sse_streams), "poll_waiting",
                static_cast<json_int_t>(st.polls_waiting), "other",
                static_cast<json_int_t>(st.http_connections - st.polls_waiting), "accepted_total",
                static_cast<json_int_t>(st.accepted_total)));
  json_t* closed = json_object();
  for (size_t i = 0; i < static_cast<size_t>(SessionEnd::kCount); ++i) {
    json_object_set_new(closed, std::string(session_end_name(static_cast<SessionEnd>(i))).c_str(),
                        json_integer(static_cast<json_int_t>(st.sessions_closed[i])));
  }
  json_object_set_new(
      root, "sessions",
      json_pack("{s:I,s:I,s:I,s:I,s:o}", "active", static_cast<json_int_t>(core.sessions().size()),
                "opened_total", static_cast<json_int_t>(st.sessions_opened), "resumed_total",
                static_cast<json_int_t>(st.sessions_resumed), "expired_total",
                static_cast<json_int_t>(st.sessions_expired), "closed_total", closed));
  json_object_set_new(root, "messages",
                      json_pack("{s:o,s:o,s:o}", "websocket", counters_json(st.websocket), "sse",
                                counters_json(st.sse), "poll", counters_json(st.poll)));
  json_object_set_new(root, "buffer_full_pauses_total",
                      json_integer(static_cast<json_int_t>(st.buffer_full_pauses)));
  json_t* hits = json_object();
  for (size_t i = 0; i < static_cast<size_t>(Limit::kCount); ++i) {
    json_object_set_new(hits, std::string(limit_name(static_cast<Limit>(i))).c_str(),
                        json_integer(static_cast<json_int_t>(st.limit_hits[i])));
  }
  json_object_set_new(
      root, "limits",
      json_pack("{s:I,s:I,s:I,s:I,s:o}", "client_connections",
                static_cast<json_int_t>(core.clients().total(ClientTable::kConnection)), "max_connections",
                static_cast<json_int_t>(core.max_connections()), "client_sessions",
                static_cast<json_int_t>(core.clients().total(ClientTable::kSession)), "client_addresses",
                static_cast<json_int_t>(core.clients().clients()), "hits_total", hits));
  json_object_set_new(root, "rates",
                      json_pack("{s:f,s:f}", "messages_per_second_10s", st.rate.per_second(now, 10),
                                "messages_per_second_1m", st.rate.per_second(now, 60)));
  json_t* ups = json_object();
  for (const auto& [key, rt] : core.router().runtimes()) {
    json_t* up = json_object();
    json_object_set_new(up, "balance", json_string(balance_name(rt->pool().balance())));
    json_t* servers = json_array();
    for (size_t i = 0; i < rt->pool().size(); ++i) {
      const auto& s = rt->pool().servers()[i];
      const auto* lat = rt->latency(s.spec.id);
      json_t* hs = json_pack("{s:I,s:f,s:f,s:f}", "count", static_cast<json_int_t>(lat ? lat->count : 0),
                             "p50", lat ? lat->percentile(0.5) : 0.0, "p90", lat ? lat->percentile(0.9) : 0.0,
                             "p99", lat ? lat->percentile(0.99) : 0.0);
      json_array_append_new(
          servers,
          json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "server", s.spec.id.c_str(), "state",
                    server_state(*rt, i), "reason", rt->pool().why_unusable(i).c_str(), "active",
                    static_cast<json_int_t>(s.active), "picks_total", static_cast<json_int_t>(s.total_picks),
                    "connect_failures_total", static_cast<json_int_t>(s.total_failures), "handshake_ms", hs));
    }
    json_object_set_new(up, "servers", servers);
    if (routing::StickTable* t = rt->table()) {
      const auto& ts = t->stats();
      json_object_set_new(
          up, "sticky",
          json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "entries", static_cast<json_int_t>(t->size()), "capacity",
                    static_cast<json_int_t>(t->capacity()), "hits_total", static_cast<json_int_t>(ts.hits),
                    "misses_total", static_cast<json_int_t>(ts.misses), "evictions_total",
                    static_cast<json_int_t>(ts.evictions), "expired_total",
                    static_cast<json_int_t>(ts.expired)));
    }
    json_object_set_new(ups, rt->name().c_str(), up);
  }
  json_object_set_new(root, "upstreams", ups);
  char* text = json_dumps(root, JSON_INDENT(2));
  std::string out = text ? text : "{}";
  out += '\n';
  free(text);
  json_decref(root);
  return out;
}

// Prometheus text exposition format 0.0.4: HELP and TYPE once per family, then its samples.
class Prom {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // LABELS: already formatted `a="b",c="d"` (values escaped), or empty.
  void sample(const std::string& name, const std::string& labels, double value) {
    out_ += name;
    if (!labels.empty()) out_ += "{" + labels + "}";
    char buf[64];
    if (std::isnan(value)) {
      snprintf(buf, sizeof buf, " NaN\n");
    } else if (value == std::floor(value) && std::fabs(value) < 1e15) {
      snprintf(buf, sizeof buf, " %.0f\n", value);
    } else {
      snprintf(buf, sizeof buf, " %.6g\n", value);
    }
    out_ += buf;
  }
  static std::string label(const char* k, std::string_view v) {
    std::string out = k;
    out += "=\"";
    for (char c : v) {
      if (c == '\\' || c == '"') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
    return out;
  }
  std::string& text() { return out_; }

 private:
  std::string out_;
};

std::string prometheus_report(Core& core) {
  const Stats& st = stats();
  int64_t now = now_ms();
  Prom p;
  p.family("tether_info", "gauge", "Tether's version.");
  p.sample("tether_info", Prom::label("version", TETHER_VERSION_STRING), 1);
  p.family("tether_uptime_seconds", "gauge", "Seconds since Tether started.");
  p.sample("tether_uptime_seconds", "", static_cast<double>(now - st.start_ms) / 1000.0);
  p.family("tether_connections", "gauge", "Client connections open now, by transport.");
  p.sample("tether_connections", Prom::label("transport", "websocket"),
           static_cast<double>(st.websocket_relays));
  p.sample("tether_connections", Prom::label("transport", "sse"), static_cast<double>(st.sse_streams));
  p.sample("tether_connections", Prom::label("transport", "poll_waiting"),
           static_cast<double>(st.polls_waiting));
  p.sample("tether_connections", Prom::label("transport", "other"),
           static_cast<double>(st.http_connections - st.polls_waiting));
  p.family("tether_connections_accepted_total", "counter", "Client connections accepted.");
  p.sample("tether_connections_accepted_total", "", static_cast<double>(st.accepted_total));
  p.family("tether_client_connections", "gauge",
           "Client connections counted against max_connections (requests, relays, streams).");
  p.sample("tether_client_connections", "",
           static_cast<double>(core.clients().total(ClientTable::kConnection)));
  p.family("tether_max_connections", "gauge", "The max_connections limit in force.");
  p.sample("tether_max_connections", "", static_cast<double>(core.max_connections()));
  p.family("tether_client_addresses", "gauge", "Client addresses holding a connection or a session.");
  p.sample("tether_client_addresses", "", static_cast<double>(core.clients().clients()));
  p.family("tether_limit_hits_total", "counter",
           "Connections, requests, messages and sessions refused or closed by a limit, by limit.");
  for (size_t i = 0; i < static_cast<size_t>(Limit::kCount); ++i) {
    p.sample("tether_limit_hits_total", Prom::label("limit", limit_name(static_cast<Limit>(i))),
             static_cast<double>(st.limit_hits[i]));
  }
  p.family("tether_sessions_active", "gauge", "SSE and long-poll sessions open now.");
  p.sample("tether_sessions_active", "", static_cast<double>(core.sessions().size()));
  p.family("tether_sessions_opened_total", "counter", "Sessions whose upstream opened.");
  p.sample("tether_sessions_opened_total", "", static_cast<double>(st.sessions_opened));
  p.family("tether_sessions_resumed_total", "counter", "SSE sessions resumed with Last-Event-ID.");
  p.sample("tether_sessions_resumed_total", "", static_cast<double>(st.sessions_resumed));
  p.family("tether_sessions_expired_total", "counter",
           "Sessions ended by tether_session_linger with no client.");
  p.sample("tether_sessions_expired_total", "", static_cast<double>(st.sessions_expired));
  p.family("tether_sessions_closed_total", "counter", "Sessions ended, by reason.");
  for (size_t i = 0; i < static_cast<size_t>(SessionEnd::kCount); ++i) {
    p.sample("tether_sessions_closed_total",
             Prom::label("reason", session_end_name(static_cast<SessionEnd>(i))),
             static_cast<double>(st.sessions_closed[i]));
  }
  struct T {
    const char* name;
    const MessageCounters& c;
  };
  const T transports[] = {{"websocket", st.websocket}, {"sse", st.sse}, {"poll", st.poll}};
  p.family("tether_messages_total", "counter", "Data messages relayed (in: client to backend).");
  for (const auto& t : transports) {
    p.sample("tether_messages_total", Prom::label("transport", t.name) + "," + Prom::label("direction", "in"),
             static_cast<double>(t.c.in));
    p.sample("tether_messages_total",
             Prom::label("transport", t.name) + "," + Prom::label("direction", "out"),
             static_cast<double>(t.c.out));
  }
  p.family("tether_message_bytes_total", "counter", "Payload bytes of the data messages relayed.");
  for (const auto& t : transports) {
    p.sample("tether_message_bytes_total",
             Prom::label("transport", t.name) + "," + Prom::label("direction", "in"),
             static_cast<double>(t.c.in_bytes));
    p.sample("tether_message_bytes_total",
             Prom::label("transport", t.name) + "," + Prom::label("direction", "out"),
             static_cast<double>(t.c.out_bytes));
  }
  p.family("tether_buffer_full_pauses_total", "counter",
           "Times a full session buffer paused reading its upstream.");
  p.sample("tether_buffer_full_pauses_total", "", static_cast<double>(st.buffer_full_pauses));
  p.family("tether_message_rate", "gauge", "Messages per second over a window.");
  p.sample("tether_message_rate", Prom::label("window", "10s"), st.rate.per_second(now, 10));
  p.sample("tether_message_rate", Prom::label("window", "1m"), st.rate.per_second(now, 60));

  struct Row {
    std::string labels;
    routing::UpstreamRuntime* rt;
    size_t i;
  };
  std::vector<Row> rows;
  std::vector<std::pair<std::string, routing::UpstreamRuntime*>> tables;
  for (const auto& [key, rt] : core.router().runtimes()) {
    for (size_t i = 0; i < rt->pool().size(); ++i) {
      rows.push_back(
          {Prom::label("upstream", rt->name()) + "," + Prom::label("server", rt->pool().servers()[i].spec.id),
           rt.get(), i});
    }
    if (rt->table()) tables.emplace_back(Prom::label("upstream", rt->name()), rt.get());
  }
  p.family("tether_upstream_server_up", "gauge", "1 if the server is usable for new sessions.");
  for (const auto& r : rows)
    p.sample("tether_upstream_server_up", r.labels, r.rt->pool().usable(r.i) ? 1 : 0);
  p.family("tether_upstream_server_active", "gauge", "Sessions and relays open on the server now.");
  for (const auto& r : rows) {
    p.sample("tether_upstream_server_active", r.labels,
             static_cast<double>(r.rt->pool().servers()[r.i].active));
  }
  p.family("tether_upstream_server_picks_total", "counter", "Times the server was picked for a new session.");
  for (const auto& r : rows) {
    p.sample("tether_upstream_server_picks_total", r.labels,
             static_cast<double>(r.rt->pool().servers()[r.i].total_picks));
  }
  p.family("tether_upstream_connect_failures_total", "counter",
           "Failed connects or handshakes to the server.");
  for (const auto& r : rows) {
    p.sample("tether_upstream_connect_failures_total", r.labels,
             static_cast<double>(r.rt->pool().servers()[r.i].total_failures));
  }
  p.family("tether_upstream_handshake_seconds", "summary", "Connect plus WebSocket handshake time.");
  for (const auto& r : rows) {
    const auto* lat = r.rt->latency(r.rt->pool().servers()[r.i].spec.id);
    for (const char* q : {"0.5", "0.9", "0.99"}) {
      p.sample("tether_upstream_handshake_seconds", r.labels + "," + Prom::label("quantile", q),
               lat ? lat->percentile(std::stod(q)) / 1000.0 : NAN);
    }
    p.sample("tether_upstream_handshake_seconds_sum", r.labels, lat ? lat->sum_ms / 1000.0 : 0);
    p.sample("tether_upstream_handshake_seconds_count", r.labels, lat ? static_cast<double>(lat->count) : 0);
  }
  if (!tables.empty()) {
    p.family("tether_stick_table_entries", "gauge", "Entries in the upstream's stick table.");
    for (const auto& [l, rt] : tables)
      p.sample("tether_stick_table_entries", l, static_cast<double>(rt->table()->size()));
    p.family("tether_stick_table_capacity", "gauge", "Capacity of the upstream's stick table.");
    for (const auto& [l, rt] : tables) {
      p.sample("tether_stick_table_capacity", l, static_cast<double>(rt->table()->capacity()));
    }
    p.family("tether_stick_table_hits_total", "counter", "Sticky lookups that found a server.");
    for (const auto& [l, rt] : tables) {
      p.sample("tether_stick_table_hits_total", l, static_cast<double>(rt->table()->stats().hits));
    }
    p.family("tether_stick_table_misses_total", "counter", "Sticky lookups that found nothing.");
    for (const auto& [l, rt] : tables) {
      p.sample("tether_stick_table_misses_total", l, static_cast<double>(rt->table()->stats().misses));
    }
    p.family("tether_stick_table_evictions_total", "counter", "Entries evicted to stay within capacity.");
    for (const auto& [l, rt] : tables) {
      p.sample("tether_stick_table_evictions_total", l, static_cast<double>(rt->table()->stats().evictions));
    }
  }
  return std::move(p.text());
}

bool handle(RequestContext& ctx, const ModuleConf& mc) {
  if (!as<Conf>(mc).on.value_or(false)) return false;
  const http::Request& req = ctx.request;
  if (req.method != "GET" && req.method != "HEAD") {
    ctx.conn.respond_error(405, "stats answer GET only", {{"Allow", "GET, HEAD"}});
    return true;
  }
  std::string format;
  http::query_param(req.query, "format", format);
  const HeaderList no_store{{"Cache-Control", "no-store"}};
  if (format == "prometheus") {
    ctx.conn.respond(200, "text/plain; version=0.0.4; charset=utf-8", prometheus_report(ctx.core), no_store);
  } else if (format.empty() || format == "json") {
    ctx.conn.respond(200, "application/json", json_report(ctx.core), no_store);
  } else {
    ctx.conn.respond_error(400, "unknown format \"" + format + "\" (json or prometheus)");
  }
  return true;
}

}  // namespace

const Module kModule = {
    .name = "stats",
    .directives = kDirectives,
    .create_conf = [] { return std::unique_ptr<ModuleConf>(std::make_unique<Conf>()); },
    .set = [](const conf::Node&, ModuleConf& mc) -> Status {
      as<Conf>(mc).on = true;
      return ok_status();
    },
    .merge = nullptr,  // not inherited: only the locations that say tether_stats serve them
    .handle = handle,
};

}  // namespace tether::stats_module
