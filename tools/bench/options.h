#pragma once
// tether-loadgen's command line: `tether-loadgen MODE [options]`.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/util/result.h"

namespace tether::bench {

enum class Mode { kBackend, kWsEcho, kWsRate, kWsSub, kSse, kPoll, kIdle, kPublish };
// grip: a GRIP origin for Pushpin; a plain GET is answered with a hold on --channel (SSE: stream,
// otherwise a long-poll response), and WebSocket upgrades are echoed.
enum class BackendMode { kEcho, kPush, kGrip };
enum class Kind { kWs, kSse, kPoll };  // idle: what each connection is
enum class PollProtocol { kTether, kNchan, kPushpin };
// publish: the body of each POST. raw: the message itself (nchan); pushpin-stream and
// pushpin-response: one GRIP item on --channel in the http-stream (as an SSE event) or the
// http-response format.
enum class PublishFormat { kRaw, kPushpinStream, kPushpinResponse };

// A loopback target: ws://HOST:PORT/PATH or http://... (the scheme only sets the default port).
struct Url {
  std::string text;       // as given
  std::string authority;  // HOST[:PORT] as written, for the Host header
  std::string target;     // path and query, "/" at least
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
};

struct Options {
  Mode mode = Mode::kWsEcho;
  // backend
  uint16_t port = 0;
  BackendMode backend_mode = BackendMode::kEcho;
  // push: messages per second to each connection; ws-rate: messages per second in total.
  double rate = 0;
  size_t size = 64;  // bytes of each message sent (backend push, ws-echo, ws-rate)
  // clients
  Url url;
  int connections = 1;
  double duration_s = 10;            // backend: 0 = until SIGTERM/SIGINT
  double warmup_s = 1;               // the first seconds of --duration, left out of the figures
  double hold_s = 10;                // idle
  double connect_rate = 500;         // connection attempts per second
  double connect_timeout_s = 10;     // TCP connect plus handshake, per connection
  std::vector<std::string> headers;  // "Name: value", added to every request
  PollProtocol protocol = PollProtocol::kTether;
  PublishFormat format = PublishFormat::kRaw;
  std::string channel = "bench";  // grip backend, pushpin publish formats
  Kind kind = Kind::kWs;
  bool quiet = false;  // no progress lines on stderr
};

const char* mode_name(Mode mode);
const char* kind_name(Kind kind);
const char* protocol_name(PollProtocol protocol);
Result<Options> parse_options(int argc, char** argv);
const char* usage();

}  // namespace tether::bench
