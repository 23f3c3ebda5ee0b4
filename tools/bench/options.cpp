#include "tools/bench/options.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace tether::bench {
namespace {

Error invalid(std::string what) {
  return Error{Errc::kInvalid, std::move(what)};
}

Result<double> parse_number(std::string_view name, const char* text, double min, double max,
                            bool whole = false) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !std::isfinite(v) || v < min || v > max ||
      (whole && std::floor(v) != v)) {
    return invalid("invalid value \"" + std::string(text) + "\" for " + std::string(name));
  }
  return v;
}

// Only loopback targets: 127.0.0.0/8, localhost and [::1]. The load is meant for this machine.
Result<Url> parse_url(const std::string& text) {
  std::string_view rest = text;
  uint16_t port = 80;
  if (rest.starts_with("ws://")) {
    rest.remove_prefix(5);
  } else if (rest.starts_with("http://")) {
    rest.remove_prefix(7);
  } else {
    return invalid("url must start with ws:// or http:// (no TLS): " + text);
  }
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  Url url;
  url.text = text;
  url.authority = std::string(authority);
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (url.target.front() == '?') url.target = std::string("/").append(url.target);
  std::string host;
  std::string_view port_text;
  if (authority.starts_with("[")) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalid("bad url host: " + text);
    host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("bad url host: " + text);
      port_text = after.substr(1);
    }
  } else {
    size_t colon = authority.rfind(':');
    host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (!port_text.empty()) {
    auto p = parse_number("url port", std::string(port_text).c_str(), 1, 65535);
    if (!p.ok() || std::floor(*p) != *p) return invalid("bad url port: " + text);
    port = static_cast<uint16_t>(*p);
  }
  if (host == "localhost") host = "127.0.0.1";
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    if ((ntohl(a4.s_addr) >> 24) != 127) return invalid("only loopback targets are allowed: " + text);
    auto* sin = reinterpret_cast<sockaddr_in*>(&url.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr = a4;
    url.addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    if (!IN6_IS_ADDR_LOOPBACK(&a6)) return invalid("only loopback targets are allowed: " + text);
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&url.addr);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = a6;
    url.addr_len = sizeof(sockaddr_in6);
  } else {
    return invalid("only loopback targets are allowed (127.x.x.x, localhost, [::1]): " + text);
  }
  return url;
}

}  // namespace

const char* mode_name(Mode mode) {
  switch (mode) {
    case Mode::kBackend:
      return "backend";
    case Mode::kWsEcho:
      return "ws-echo";
    case Mode::kWsRate:
      return "ws-rate";
    case Mode::kWsSub:
      return "ws-sub";
    case Mode::kSse:
      return "sse";
    case Mode::kPoll:
      return "poll";
    case Mode::kIdle:
      return "idle";
    case Mode::kPublish:
      return "publish";
  }
  return "?";
}

const char* protocol_name(PollProtocol protocol) {
  switch (protocol) {
    case PollProtocol::kTether:
      return "tether";
    case PollProtocol::kNchan:
      return "nchan";
    case PollProtocol::kPushpin:
      return "pushpin";
  }
  return "?";
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::kWs:
      return "ws";
    case Kind::kSse:
      return "sse";
    case Kind::kPoll:
      return "poll";
  }
  return "?";
}

const char* usage() {
  return "usage: tether-loadgen MODE [options]\n"
         "  backend --port P [--mode echo|push|grip] [--rate R] [--size B] [--duration S]\n"
         "      WebSocket server on 127.0.0.1:P (0: a free port); prints \"PORT n\" first, runs until\n"
         "      SIGTERM/SIGINT (or --duration S when given), then prints its JSON. push: R messages/s\n"
         "      to every connection, each \"<send-ns> <seq> xxx\" of B bytes. grip: a Pushpin origin,\n"
         "      answering a plain GET with Grip-Hold on --channel (stream for Accept: text/event-stream,\n"
         "      else response)\n"
         "  ws-echo --url ws://127.0.0.1:P/path -c N [--size B]     closed loop, round-trip latency\n"
         "  ws-rate --url ws://... -c N --rate R [--size B]          open loop, R messages/s in total\n"
         "  ws-sub  --url ws://... -c N                              receive only (backend push)\n"
         "  sse     --url http://... -c N                            SSE subscribers\n"
         "  poll    --url http://... -c N [--protocol tether|nchan|pushpin]  long-poll loops\n"
         "  publish --url http://.../pub --rate R [--format raw|pushpin-stream|pushpin-response]\n"
         "          [--channel C] [--size B]   R POSTs/s, one message each, on one keep-alive connection\n"
         "  idle    --url ... -c N --kind ws|sse|poll [--hold S]     open and hold connections\n"
         "common: --duration S (10) --warmup S (1, part of the duration) --connect-rate R (500/s)\n"
         "        --connect-timeout S (10) --header 'K: V' (repeatable) --quiet\n";
}

Result<Options> parse_options(int argc, char** argv) {
  if (argc < 2) return invalid("no mode given");
  Options o;
  std::string_view mode = argv[1];
  if (mode == "backend")
    o.mode = Mode::kBackend;
  else if (mode == "ws-echo")
    o.mode = Mode::kWsEcho;
  else if (mode == "ws-rate")
    o.mode = Mode::kWsRate;
  else if (mode == "ws-sub")
    o.mode = Mode::kWsSub;
  else if (mode == "sse")
    o.mode = Mode::kSse;
  else if (mode == "poll")
    o.mode = Mode::kPoll;
  else if (mode == "idle")
    o.mode = Mode::kIdle;
  else if (mode == "publish")
    o.mode = Mode::kPublish;
  else
    return invalid("unknown mode \"" + std::string(mode) + "\"");
  if (o.mode == Mode::kBackend) o.duration_s = 0;

  bool have_url = false, have_rate = false, have_port = false, have_duration = false;
  for (int i = 2; i < argc; ++i) {
    std::string_view name = argv[i];
    if (name == "--quiet" || name == "-q") {
      o.quiet = true;
      continue;
    }
    if (i + 1 >= argc) return invalid("option " + std::string(name) + " needs a value");
    const char* value = argv[++i];
    std::string_view v = value;
    auto number = [&](double min, double max) { return parse_number(name, value, min, max); };
    if (name == "--url") {
      auto u = parse_url(value);
      if (!u.ok()) return u.error();
      o.url = std::move(*u);
      have_url = true;
    } else if (name == "-c" || name == "--connections") {
      auto n = parse_number(name, value, 1, 20000, true);
      if (!n.ok()) return n.error();
      o.connections = static_cast<int>(*n);
    } else if (name == "--port") {
      auto n = parse_number(name, value, 0, 65535, true);
      if (!n.ok()) return n.error();
      o.port = static_cast<uint16_t>(*n);
      have_port = true;
    } else if (name == "--mode") {
      if (v == "echo")
        o.backend_mode = BackendMode::kEcho;
      else if (v == "push")
        o.backend_mode = BackendMode::kPush;
      else if (v == "grip")
        o.backend_mode = BackendMode::kGrip;
      else
        return invalid("--mode must be echo, push or grip");
    } else if (name == "--rate") {
      auto n = number(0.001, 10'000'000);
      if (!n.ok()) return n.error();
      o.rate = *n;
      have_rate = true;
    } else if (name == "--size") {
      auto n = parse_number(name, value, 0, 16 << 20, true);
      if (!n.ok()) return n.error();
      o.size = static_cast<size_t>(*n);
    } else if (name == "--duration") {
      auto n = number(0, 86400);
      if (!n.ok()) return n.error();
      o.duration_s = *n;
      have_duration = true;
    } else if (name == "--warmup") {
      auto n = number(0, 86400);
      if (!n.ok()) return n.error();
      o.warmup_s = *n;
    } else if (name == "--hold") {
      auto n = number(0, 86400);
      if (!n.ok()) return n.error();
      o.hold_s = *n;
    } else if (name == "--connect-rate") {
      auto n = number(1, 1'000'000);
      if (!n.ok()) return n.error();
      o.connect_rate = *n;
    } else if (name == "--connect-timeout") {
      auto n = number(0.1, 600);
      if (!n.ok()) return n.error();
      o.connect_timeout_s = *n;
    } else if (name == "--header" || name == "-H") {
      if (v.find(':') == std::string_view::npos || v.find_first_of("\r\n") != std::string_view::npos) {
        return invalid("--header must be 'Name: value' on one line");
      }
      o.headers.emplace_back(v);
    } else if (name == "--protocol") {
      if (v == "tether")
        o.protocol = PollProtocol::kTether;
      else if (v == "nchan")
        o.protocol = PollProtocol::kNchan;
      else if (v == "pushpin")
        o.protocol = PollProtocol::kPushpin;
      else
        return invalid("--protocol must be tether, nchan or pushpin");
    } else if (name == "--format") {
      if (v == "raw")
        o.format = PublishFormat::kRaw;
      else if (v == "pushpin-stream")
        o.format = PublishFormat::kPushpinStream;
      else if (v == "pushpin-response")
        o.format = PublishFormat::kPushpinResponse;
      else
        return invalid("--format must be raw, pushpin-stream or pushpin-response");
    } else if (name == "--channel") {
      // It goes into a JSON string and a header unescaped.
      if (v.empty() || v.find_first_of("\"\\\r\n,; ") != std::string_view::npos)
        return invalid("--channel must be a plain word");
      o.channel = std::string(v);
    } else if (name == "--kind") {
      if (v == "ws")
        o.kind = Kind::kWs;
      else if (v == "sse")
        o.kind = Kind::kSse;
      else if (v == "poll")
        o.kind = Kind::kPoll;
      else
        return invalid("--kind must be ws, sse or poll");
    } else {
      return invalid("unknown option " + std::string(name));
    }
  }

  if (o.mode == Mode::kBackend) {
    if (!have_port) return invalid("backend needs --port (0 for a free one)");
    if (o.backend_mode == BackendMode::kPush && !have_rate) o.rate = 10;
    if (!have_duration) o.duration_s = 0;
    return o;
  }
  if (!have_url) return invalid(std::string(mode_name(o.mode)) + " needs --url");
  if ((o.mode == Mode::kWsRate || o.mode == Mode::kPublish) && !have_rate)
    return invalid(std::string(mode_name(o.mode)) + " needs --rate");
  if (o.mode == Mode::kIdle) o.warmup_s = 0;
  if (o.warmup_s >= o.duration_s && o.mode != Mode::kIdle) {
    return invalid("--warmup must be shorter than --duration (the warm-up is part of the duration)");
  }
  return o;
}

}  // namespace tether::bench
