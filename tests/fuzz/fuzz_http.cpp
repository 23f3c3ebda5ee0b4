// Fuzz target: the HTTP request path, bytes in -> responses out, with pipelining. One client
// connection per input to the real HttpConnection of a real Core (http_harness.h), whose
// locations cover `return`, the stats module, allow/deny, CORS and OPTIONS, and WebSocket, SSE
// and long-poll locations whose upstreams refuse connections at once (so sessions and relays
// open, fail with 502 and go, with no network wait).
//
// Input: byte 0: bits 0-1 the client's address (127.0.0.1, 10.1.2.3, ::1, 2001:db8::5), bit 2
// the client half-closes after its last byte, bit 3 the end is a server shutdown (else the
// client closes), bits 4-7 how the bytes are cut into writes (0: one write; n: pieces of up to
// 2^(n-1) bytes); byte 1 seeds the cuts. The rest is what the client sends.
//
// Checked, besides ASan/UBSan/LSan: the output is well-formed HTTP/1.1 responses, at most one
// per request and none for HEAD with a body (check_responses); and unless the server closed
// the connection, every request the parser read got its answer.

#include "http_harness.h"

namespace {

using namespace tether;
using namespace tether::fuzz;

constexpr const char* kConfig = R"(
server {
  listen 127.0.0.1:0;
  client_max_body_size 2k;
  location = /ret { return 200 "hello"; }
  location /redirect { return 302 "/elsewhere"; }
  location = /tether/stats { tether_stats; allow 127.0.0.1; allow ::1; deny all; }
  location /private/ { allow 127.0.0.0/8; allow ::1; deny all; return 200 "private"; }
  location /ws/ {
    tether_pass ws://127.0.0.1:{PORT0};
    tether_transports websocket;
    tether_allow_origin https://a.example;
  }
  location /sse/ {
    tether_pass ws://127.0.0.1:{PORT0}/back;
    tether_transports sse;
    tether_sse_padding on;
    tether_sse_retry 1s;
  }
  location /poll/ { tether_pass ws://sticky; tether_transports poll; tether_allow_origin *; }
  location / {
    tether_pass ws://pool;
    tether_allow_origin https://a.example http://b.example:8080;
    deny 10.0.0.0/8;
  }
}
upstream pool {
  server 127.0.0.1:{PORT0};
  server 127.0.0.1:{PORT1};
  balance hash;
  sticky cookie route;
}
upstream sticky { server 127.0.0.1:{PORT0}; sticky header X-User; stick_table size=4; }
)";

const ConfigPtr& config() {
  static const ConfigPtr cfg = [] {
    std::string text = substitute(kConfig, "PORT0", std::to_string(refusing_port(0)));
    return make_config(substitute(std::move(text), "PORT1", std::to_string(refusing_port(1))));
  }();
  return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  init_process();
  const uint8_t flags = data[0];
  Splitter split(data[1]);
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  const ServerConf& server = *config()->servers[0];

  Core core(config());
  Client client(core, server, flags & 3);
  const unsigned cut = flags >> 4;
  for (size_t pos = 0; pos < input.size();) {
    size_t n = cut == 0 ? input.size() : std::min(split.chunk(size_t{1} << (cut - 1)), input.size() - pos);
    client.send(input.substr(pos, n));
    pos += n;
    run_until_idle(core, {&client});
  }
  if (flags & 4) client.half_close();
  run_until_idle(core, {&client});

  RequestLog requests = parse_requests(
      input,
      http::ParserLimits{.max_header_bytes = 16 * 1024, .max_body_bytes = server.client_max_body_size});
  if (std::getenv("TETHER_FUZZ_DUMP"))
    std::fprintf(stderr, "--- received:\n%s\n---\n", client.received().c_str());
  std::vector<Response> responses = check_responses(client.received(), requests);
  if (!client.closed_by_server()) {
    FUZZ_CHECK(responses.size() == requests.answers_due());
  }

  if (flags & 8) {
    core.stop(false);
    run_until_idle(core, {&client});
  }
  client.close();
  run_until_idle(core, {&client});
  check_all_closed(core);
  return 0;
}
