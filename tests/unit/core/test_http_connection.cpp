// Tests for proxy/core/http_connection.cpp: a real Core and HttpConnection, the client being the
// other end of a socketpair, the loop run without blocking until the answers are in.

#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <string_view>

#include "cmocka.hpp"
#include "module/modules.h"
#include "proxy/core/config.h"
#include "proxy/core/core.h"
#include "proxy/core/http_connection.h"

namespace {

using namespace tether;

// /p/ passes to a backend that accepts connections (the kernel does) but never answers the
// handshake: a poll opening there is a response held as long as the test wants.
constexpr std::string_view kConfig = R"(
server {
  listen 127.0.0.1:0;
  location = /ret { return 200 "hello"; }
  location /p/ { tether_pass ws://127.0.0.1:PORT; }
}
)";

struct Fixture {
  std::unique_ptr<Core> core;
  HttpConnection* conn = nullptr;
  int client = -1;
  int backend = -1;
  ~Fixture() {
    core.reset();
    if (client >= 0) close(client);
    if (backend >= 0) close(backend);
  }
};

constexpr auto teardown = fixture_teardown<Fixture>;

int setup(void** state) {
  auto* f = new Fixture;
  *state = f;
  f->backend = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(f->backend, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(f->backend, 8) != 0 ||
      getsockname(f->backend, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return -1;
  }
  std::string text(kConfig);
  text.replace(text.find("PORT"), 4, std::to_string(ntohs(sa.sin_port)));
  auto tree = conf::parse_string(text, "t.conf");
  if (!tree.ok()) return -1;
  auto cfg = build_config(*tree, "t.conf", all_modules());
  if (!cfg.ok()) return -1;
  f->core = std::make_unique<Core>(cfg.value());
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return -1;
  f->client = sv[0];
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto conn = std::make_unique<HttpConnection>(*f->core, f->core->config(), *f->core->config()->servers[0],
                                               sv[1], reinterpret_cast<sockaddr*>(&peer), sizeof peer);
  f->conn = &f->core->adopt(std::move(conn));
  f->conn->start();
  return 0;
}

// Sends REQUEST, runs the loop until nothing more comes, and returns what came back.
std::string exchange(Fixture& f, std::string_view request) {
  if (!request.empty()) {
    assert_int_equal(send(f.client, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  }
  std::string out;
  for (int i = 0; i < 50; ++i) {
    event_base_loop(f.core->base(), EVLOOP_NONBLOCK);
    char buf[4096];
    ssize_t n;
    while ((n = recv(f.client, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// RFC 9110 9.3.2: the answer to HEAD is GET's head (Content-Length included) with no body; a
// body would be read as the start of the next response on a keep-alive connection.
void head_gets_no_body(void** state) {
  std::string out = exchange(fixture_of<Fixture>(state),
                             "HEAD /ret HTTP/1.1\r\nHost: t\r\n\r\nGET /ret HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string head =
      "HTTP/1.1 200 OK\r\nServer: tether\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
  assert_string_equal(out.c_str(), (head + head + "hello").c_str());
}

// The same for an error answer, and the request after it is answered in full again.
void head_error_gets_no_body(void** state) {
  std::string out = exchange(fixture_of<Fixture>(state),
                             "HEAD /nowhere HTTP/1.1\r\nHost: t\r\n\r\nGET /ret HTTP/1.1\r\nHost: t\r\n\r\n");
  const std::string error =
      "HTTP/1.1 404 Not Found\r\nServer: tether\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: 29\r\n\r\n";
  const std::string ok =
      "HTTP/1.1 200 OK\r\nServer: tether\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
  assert_string_equal(out.c_str(), (error + ok).c_str());
}

// A graceful stop while a response is held: it is answered with Connection: close, and the
// request queued behind it never will be. The client's EOF then ends the lingering close at
// once: the connection is not kept until its 5 s linger timer (or the stop's deadline).
void eof_ends_lingering_close_with_requests_queued(void** state) {
  auto& f = fixture_of<Fixture>(state);
  exchange(f,
           "GET /p/?tether-transport=poll HTTP/1.1\r\nHost: t\r\n\r\nGET /ret HTTP/1.1\r\nHost: t\r\n\r\n");
  // The connection first (the core asks objects in no set order), then the held response.
  f.conn->shutdown(true);
  f.core->stop(true);
  std::string out = exchange(f, "");
  assert_true(out.rfind("HTTP/1.1 502 Bad Gateway\r\n", 0) == 0);
  assert_true(out.find("Connection: close") != std::string::npos);
  assert_int_equal(f.core->live_objects(), 1);  // lingering
  shutdown(f.client, SHUT_WR);
  exchange(f, "");
  assert_int_equal(f.core->live_objects(), 0);
}

// A session id is a bearer secret: the access log keeps six characters of it, whichever way the
// client spelt the parameter's name (the modules decode it).
void session_id_redacted_however_its_name_is_spelt(void** state) {
  (void)state;
  assert_string_equal(redact_target("/c?a=1&tether-session=AbCdEfGhIj&b=2").c_str(),
                      "/c?a=1&tether-session=AbCdEf\u2026&b=2");
  assert_string_equal(redact_target("/c?tether%2Dsession=AbCdEfGhIj").c_str(),
                      "/c?tether%2Dsession=AbCdEf\u2026");
  assert_string_equal(redact_target("/c?tether-sessio%6e=AbCdEfGhIj&x").c_str(),
                      "/c?tether-sessio%6e=AbCdEf\u2026&x");
  assert_string_equal(redact_target("/c?tether-session=short&other=AbCdEfGhIj").c_str(),
                      "/c?tether-session=short&other=AbCdEfGhIj");
  assert_string_equal(redact_target("/tether-session=AbCdEfGhIj").c_str(), "/tether-session=AbCdEfGhIj");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(head_gets_no_body, setup, teardown),
      cmocka_unit_test_setup_teardown(head_error_gets_no_body, setup, teardown),
      cmocka_unit_test_setup_teardown(eof_ends_lingering_close_with_requests_queued, setup, teardown),
      cmocka_unit_test(session_id_redacted_however_its_name_is_spelt),
  };
  return cmocka_run_group_tests_name("core/http_connection.cpp", tests, nullptr, nullptr);
}
