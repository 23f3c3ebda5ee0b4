// Tests for proxy/upstream/request.cpp: what Tether asks of a backend for a client's request.

#include <string>
#include <vector>

// clang-format off
// Before cmocka.hpp: CMocka's fail() macro would rewrite Connector::fail in connector.h.
#include "proxy/upstream/request.h"
#include "cmocka.hpp"
// clang-format on

namespace {

using namespace tether;

struct Fixture {
  http::Request req;
  LocationConf loc;
  UpstreamRequest up;
};

constexpr auto setup = fixture_setup<Fixture>;
constexpr auto teardown = fixture_teardown<Fixture>;

// RFC 6455 4.1: subprotocol names are tokens. Others are not offered: a backend choosing one
// would have Tether report a name that its JSON (tether-open) cannot carry.
void only_token_subprotocols_are_offered(void** state) {
  auto& f = fixture_of<Fixture>(state);
  f.req.path = "/chat";
  f.req.headers = {{"Sec-WebSocket-Protocol", "chat, \xff\xfe,super chat,, v2.json ,"},
                   {"Sec-WebSocket-Protocol", "x\"y, mqtt"}};
  f.loc.path = "/";
  f.loc.pass = PassTarget{};
  f.up = build_upstream_request(f.req, f.loc, "127.0.0.1");
  const std::vector<std::string> want = {"chat", "v2.json", "mqtt"};
  assert_true(f.up.protocols == want);
}

void tether_params_are_stripped(void** state) {
  (void)state;
  assert_string_equal(strip_tether_params("a=1&tether-session=x&&b=2&tether-seq=3").c_str(), "a=1&b=2");
  assert_string_equal(strip_tether_params("tether-ack=1").c_str(), "");
  // Named as the modules read them: an encoded name is Tether's too.
  assert_string_equal(strip_tether_params("tether%2Dtransport=poll&a=%74ether-x&tether-x%3D1").c_str(),
                      "a=%74ether-x");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(only_token_subprotocols_are_offered, setup, teardown),
      cmocka_unit_test(tether_params_are_stripped),
  };
  return cmocka_run_group_tests_name("upstream/request.cpp", tests, nullptr, nullptr);
}
