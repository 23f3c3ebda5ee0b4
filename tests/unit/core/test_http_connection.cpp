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

constexpr std::string_view kConfig = R"(
server {
  listen 127.0.0.1:0;
  location = /ret { return 200 "hello"; }
}
)";

struct Fixture {
  std::unique_ptr<Core> core;
  int client = -1;
  ~Fixture() {
    if (client >= 0) close(client);
  }
};

constexpr auto teardown = fixture_teardown<Fixture>;

int setup(void** state) {
  auto* f = new Fixture;
  *state = f;
  auto tree = conf::parse_string(kConfig, "t.conf");
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
  f->core->adopt(std::move(conn)).start();
  return 0;
}

// Sends REQUEST, runs the loop until nothing more comes, and returns what came back.
std::string exchange(Fixture& f, std::string_view request) {
  assert_int_equal(send(f.client, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
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

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(head_gets_no_body, setup, teardown),
      cmocka_unit_test_setup_teardown(head_error_gets_no_body, setup, teardown),
  };
  return cmocka_run_group_tests_name("core/http_connection.cpp", tests, nullptr, nullptr);
}
