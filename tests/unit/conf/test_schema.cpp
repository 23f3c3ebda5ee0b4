// conf/schema.cpp: each of check()'s errors with its file and line, the order checks run in, and
// the first problem in file order winning.

#include <optional>
#include <string>

#include "conf/schema.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::Result;
using tether::Status;
using namespace tether::conf;

// A cut of nginx's http layout. `server` is a block in the main scope and a simple directive in `upstream`.
constexpr DirectiveSpec kSpecs[] = {
    {.name = "worker_connections", .scopes = kMain, .min_args = 1, .max_args = 1},
    {.name = "server", .scopes = kMain, .min_args = 0, .max_args = 0, .opens = kServer, .repeatable = true},
    {.name = "upstream",
     .scopes = kMain,
     .min_args = 1,
     .max_args = 1,
     .opens = kUpstream,
     .repeatable = true},
    {.name = "server", .scopes = kUpstream, .min_args = 1, .max_args = -1, .repeatable = true},
    {.name = "listen", .scopes = kServer, .min_args = 1, .max_args = -1, .repeatable = true},
    {.name = "server_name", .scopes = kServer, .min_args = 1, .max_args = -1},
    {.name = "location",
     .scopes = kServer | kLocation,
     .min_args = 1,
     .max_args = 2,
     .opens = kLocation,
     .repeatable = true},
    {.name = "proxy_pass", .scopes = kLocation, .min_args = 1, .max_args = 1},
    {.name = "keepalive_timeout", .scopes = kMain | kServer | kLocation, .min_args = 1, .max_args = 2},
};

struct Fixture {
  std::optional<Result<Tree>> tree;
  std::optional<Status> status;
  std::string expected;
};

constexpr auto setup = fixture_setup<Fixture>;

constexpr auto teardown = fixture_teardown<Fixture>;

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

const char* check_tree(Fixture& f) {
  if (!f.tree->ok()) fail_msg("parse error: %s", f.tree->error().what.c_str());
  f.status.emplace(check(f.tree->value(), kSpecs));
  return f.status->ok() ? "(no error)" : f.status->error().what.c_str();
}

// check()'s message for TEXT parsed as "t.conf", or "(no error)".
const char* check_error(Fixture& f, std::string_view text) {
  f.tree.emplace(parse_string(text, "t.conf"));
  return check_tree(f);
}

void valid_config(void** state) {
  assert_string_equal(check_error(fixture(state),
                                  "worker_connections 1024;\n"
                                  "keepalive_timeout 60s;\n"
                                  "upstream app {\n"
                                  "  server 10.0.0.1:80;\n"
                                  "  server 10.0.0.2:80 weight=2 backup;\n"
                                  "}\n"
                                  "server {\n"
                                  "  listen 80;\n"
                                  "  listen 443 ssl;\n"
                                  "  server_name a.example b.example;\n"
                                  "  keepalive_timeout 30s 20s;\n"
                                  "  location / {\n"
                                  "    proxy_pass app;\n"
                                  "    location /nested { }\n"
                                  "    keepalive_timeout 5s;\n"
                                  "  }\n"
                                  "  location = /exact { proxy_pass app; }\n"
                                  "}\n"
                                  "server {\n"
                                  "}\n"),
                      "(no error)");
}

void empty_tree(void** state) {
  assert_string_equal(check_error(fixture(state), ""), "(no error)");
}

void unknown_directive(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "worker_connections 1;\nbogus on;\n"),
                      "unknown directive \"bogus\" in t.conf:2");
  assert_string_equal(check_error(f, "server {\n  listen 80;\n  lisen 81;\n}\n"),
                      "unknown directive \"lisen\" in t.conf:3");
}

void not_allowed_here(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "listen 80;\n"), "\"listen\" directive is not allowed here in t.conf:1");
  assert_string_equal(check_error(f, "server {\n  location / {\n    server_name x;\n  }\n}\n"),
                      "\"server_name\" directive is not allowed here in t.conf:3");
  assert_string_equal(check_error(f, "upstream app {\n  listen 80;\n}\n"),
                      "\"listen\" directive is not allowed here in t.conf:2");
  assert_string_equal(check_error(f, "server {\n  upstream app {\n  }\n}\n"),
                      "\"upstream\" directive is not allowed here in t.conf:2");
}

void invalid_number_of_arguments(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "worker_connections;\n"),
                      "invalid number of arguments in \"worker_connections\" directive in t.conf:1");
  assert_string_equal(check_error(f, "\nworker_connections 1 2;\n"),
                      "invalid number of arguments in \"worker_connections\" directive in t.conf:2");
  assert_string_equal(check_error(f, "server x {\n}\n"),
                      "invalid number of arguments in \"server\" directive in t.conf:1");
  assert_string_equal(check_error(f, "server {\n  location a b c {\n  }\n}\n"),
                      "invalid number of arguments in \"location\" directive in t.conf:2");
  assert_string_equal(check_error(f, "upstream app {\n  server;\n}\n"),
                      "invalid number of arguments in \"server\" directive in t.conf:2");
}

void duplicate(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "worker_connections 1;\nworker_connections 2;\n"),
                      "\"worker_connections\" directive is duplicate in t.conf:2");
  assert_string_equal(check_error(f, "server {\n  server_name a;\n  listen 80;\n  server_name b;\n}\n"),
                      "\"server_name\" directive is duplicate in t.conf:4");
}

void duplicate_is_per_block(void** state) {
  Fixture& f = fixture(state);
  // The same directive in different blocks, and repeatable ones, are fine.
  assert_string_equal(check_error(f,
                                  "keepalive_timeout 5s;\n"
                                  "server {\n  keepalive_timeout 6s;\n  server_name a;\n}\n"
                                  "server {\n  server_name a;\n  listen 1;\n  listen 2;\n}\n"),
                      "(no error)");
}

void duplicate_in_included_file(void** state) {
  Fixture& f = fixture(state);
  f.tree.emplace(parse_file(TETHER_CONF_TEST_DATA "/schema/main.conf"));
  f.expected = "\"worker_connections\" directive is duplicate in " TETHER_CONF_TEST_DATA "/schema/dup.conf:2";
  assert_string_equal(check_tree(f), f.expected.c_str());
}

void no_opening_brace(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "worker_connections 1;\nserver;\n"),
                      "directive \"server\" has no opening \"{\" in t.conf:2");
  assert_string_equal(check_error(f, "server {\n  location /;\n}\n"),
                      "directive \"location\" has no opening \"{\" in t.conf:2");
}

void does_not_take_block(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "worker_connections 1 {\n}\n"),
                      "\"worker_connections\" directive does not take a block in t.conf:1");
  assert_string_equal(check_error(f, "upstream app {\n  server 10.0.0.1 {\n  }\n}\n"),
                      "\"server\" directive does not take a block in t.conf:2");
}

void same_name_in_different_scopes(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(
      check_error(f, "upstream app {\n  server a:1;\n  server b:1;\n}\nserver {\n  listen 80;\n}\n"),
      "(no error)");
  // A spec for another scope does not make a directive unknown, only out of place.
  assert_string_equal(check_error(f, "server {\n  server {\n  }\n}\n"),
                      "\"server\" directive is not allowed here in t.conf:2");
}

// nginx's order for one directive: known, allowed here, block or not, argument count; then duplicate.
void checks_in_order(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(check_error(f, "listen {\n}\n"),
                      "\"listen\" directive is not allowed here in t.conf:1");
  assert_string_equal(check_error(f, "worker_connections {\n}\n"),
                      "\"worker_connections\" directive does not take a block in t.conf:1");
  assert_string_equal(check_error(f, "server a b;\n"),
                      "directive \"server\" has no opening \"{\" in t.conf:1");
  assert_string_equal(check_error(f, "worker_connections 1;\nworker_connections;\n"),
                      "invalid number of arguments in \"worker_connections\" directive in t.conf:2");
}

void first_problem_in_file_order(void** state) {
  Fixture& f = fixture(state);
  // Depth first: a problem inside an earlier block comes before one in a later directive.
  assert_string_equal(check_error(f, "server {\n  location / {\n    bogus1;\n  }\n}\nbogus2;\n"),
                      "unknown directive \"bogus1\" in t.conf:3");
  // A block directive's own problem comes before its body's.
  assert_string_equal(check_error(f, "server x {\n  bogus;\n}\n"),
                      "invalid number of arguments in \"server\" directive in t.conf:1");
  // An earlier directive's problem comes before a later block's.
  assert_string_equal(check_error(f, "worker_connections 1 2;\nserver {\n  bogus;\n}\n"),
                      "invalid number of arguments in \"worker_connections\" directive in t.conf:1");
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(valid_config, setup, teardown),
      cmocka_unit_test_setup_teardown(empty_tree, setup, teardown),
      cmocka_unit_test_setup_teardown(unknown_directive, setup, teardown),
      cmocka_unit_test_setup_teardown(not_allowed_here, setup, teardown),
      cmocka_unit_test_setup_teardown(invalid_number_of_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicate, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicate_is_per_block, setup, teardown),
      cmocka_unit_test_setup_teardown(duplicate_in_included_file, setup, teardown),
      cmocka_unit_test_setup_teardown(no_opening_brace, setup, teardown),
      cmocka_unit_test_setup_teardown(does_not_take_block, setup, teardown),
      cmocka_unit_test_setup_teardown(same_name_in_different_scopes, setup, teardown),
      cmocka_unit_test_setup_teardown(checks_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(first_problem_in_file_order, setup, teardown),
  };
  return cmocka_run_group_tests_name("conf/schema.cpp", tests, nullptr, nullptr);
}
