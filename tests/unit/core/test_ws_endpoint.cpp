// Tests for proxy/core/ws_endpoint.cpp: one endpoint in the client role over a socketpair whose
// other end plays the server with raw frames, on a real event_base run without blocking.

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "cmocka.hpp"
#include "proxy/core/ws_endpoint.h"

namespace {

using namespace tether;

struct Fixture : WsEndpointOwner {
  EventBasePtr base{event_base_new()};
  std::unique_ptr<WsEndpoint> ep;
  int server = -1;  // the peer's end
  std::vector<std::string> messages;
  int closes = 0;
  bool gone = false;

  Fixture() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0) return;
    server = sv[0];
    BufferEventPtr bev(bufferevent_socket_new(base.get(), sv[1], BEV_OPT_CLOSE_ON_FREE));
    ep = std::make_unique<WsEndpoint>(base.get(), std::move(bev), ws::Role::kClient, ws::DecoderLimits{},
                                      *this, "upstream test");
    ep->start();
  }
  ~Fixture() override {
    ep.reset();
    if (server >= 0) close(server);
  }

  void on_ws_message(WsEndpoint&, ws::Opcode, std::string& payload) override { messages.push_back(payload); }
  void on_ws_ping(WsEndpoint&, std::string_view) override {}
  void on_ws_pong(WsEndpoint&, std::string_view) override {}
  void on_ws_close(WsEndpoint&, uint16_t, std::string_view) override { ++closes; }
  void on_ws_error(WsEndpoint&, uint16_t, std::string_view) override {}
  void on_ws_gone(WsEndpoint&) override { gone = true; }
  void on_ws_drained(WsEndpoint&) override {}

  void peer_sends(ws::Opcode op, std::string_view payload) {
    std::string frame;
    ws::append_frame(frame, ws::Role::kServer, op, payload);
    ssize_t n = send(server, frame.data(), frame.size(), 0);
    assert_int_equal(n, static_cast<ssize_t>(frame.size()));
  }
  void peer_closes() { ::shutdown(server, SHUT_WR); }
  void run() {
    for (int i = 0; i < 20; ++i) event_base_loop(base.get(), EVLOOP_NONBLOCK);
  }
};

constexpr auto setup = fixture_setup<Fixture>;
constexpr auto teardown = fixture_teardown<Fixture>;

// A session whose buffer is full pauses its upstream, then ends and sends its close: the
// backend's reply must still be read, so the connection closes at once rather than after the
// close timer (and a shutdown no longer waits for its deadline).
void close_reply_is_read_while_paused(void** state) {
  auto& f = fixture_of<Fixture>(state);
  f.ep->pause_reading();
  f.peer_sends(ws::Opcode::kText, "late");
  f.ep->send_close(ws::close_code::kGoingAway, "bye");
  f.peer_sends(ws::Opcode::kClose, ws::close_payload(ws::close_code::kGoingAway, "bye"));
  f.peer_closes();  // the server closes the TCP connection first (RFC 6455 7.1.1)
  f.run();
  assert_int_equal(f.closes, 1);
  assert_true(f.gone);
  // What came before the reply is delivered; the owner decides what to do with it.
  assert_int_equal(f.messages.size(), 1);
  assert_string_equal(f.messages[0].c_str(), "late");
}

// Pausing after the close was sent has no effect, for the same reason.
void no_pause_after_close(void** state) {
  auto& f = fixture_of<Fixture>(state);
  f.ep->send_close(ws::close_code::kNormal, "");
  f.ep->pause_reading();
  f.peer_sends(ws::Opcode::kClose, ws::close_payload(ws::close_code::kNormal, ""));
  f.peer_closes();
  f.run();
  assert_true(f.gone);
}

// Before any close, a paused endpoint reads nothing, and resuming delivers what waited.
void pause_holds_messages_until_resumed(void** state) {
  auto& f = fixture_of<Fixture>(state);
  f.ep->pause_reading();
  f.peer_sends(ws::Opcode::kText, "one");
  f.run();
  assert_true(f.messages.empty());
  f.ep->resume_reading();
  f.run();
  assert_int_equal(f.messages.size(), 1);
  assert_string_equal(f.messages[0].c_str(), "one");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(close_reply_is_read_while_paused, setup, teardown),
      cmocka_unit_test_setup_teardown(no_pause_after_close, setup, teardown),
      cmocka_unit_test_setup_teardown(pause_holds_messages_until_resumed, setup, teardown),
  };
  return cmocka_run_group_tests_name("core/ws_endpoint.cpp", tests, nullptr, nullptr);
}
