// conf/parser.cpp (and conf/lexer.cpp through it): the token rules, the tree, `include`, and every
// error message of parser.h with its file and line.

#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "conf/parser.h"

// Last: cmocka.h defines macros (fail, ...) that break standard headers included after it.
#include "cmocka.hpp"

namespace {

using tether::Errc;
using tether::Result;
using tether::conf::Node;
using tether::conf::parse_file;
using tether::conf::parse_string;
using tether::conf::Tree;

// Each test runs in a fresh temporary directory, its working directory, so include paths stay short.
struct Fixture {
  std::filesystem::path old_cwd;
  std::string dir;
  std::optional<Result<Tree>> tree;
  std::optional<tether::Error> error;
  std::string expected;
};

int setup(void** state) {
  auto* f = new Fixture;
  *state = f;
  char dir[] = "/tmp/tether-conf-test-XXXXXX";
  if (!mkdtemp(dir)) return -1;
  f->dir = dir;
  f->old_cwd = std::filesystem::current_path();
  std::filesystem::current_path(f->dir);
  return 0;
}

int teardown(void** state) {
  auto* f = static_cast<Fixture*>(*state);
  if (!f->old_cwd.empty()) std::filesystem::current_path(f->old_cwd);
  if (!f->dir.empty()) std::filesystem::remove_all(f->dir);
  delete f;
  return 0;
}

Fixture& fixture(void** state) {
  return fixture_of<Fixture>(state);
}

// Writes PATH (relative to the test directory), creating its parent directories.
void write_file(const std::string& path, std::string_view text) {
  const std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

const Tree& ok_tree(Fixture& f) {
  if (!f.tree->ok()) fail_msg("unexpected error: %s", f.tree->error().what.c_str());
  return f.tree->value();
}

const char* error_text(Fixture& f) {
  return f.tree->ok() ? "(no error)" : f.tree->error().what.c_str();
}

// TEXT parsed as "t.conf".
const Tree& parsed(Fixture& f, std::string_view text) {
  f.tree.emplace(parse_string(text, "t.conf"));
  return ok_tree(f);
}

const char* parse_error(Fixture& f, std::string_view text) {
  f.tree.emplace(parse_string(text, "t.conf"));
  return error_text(f);
}

const Tree& parsed_file(Fixture& f, const std::string& path) {
  f.tree.emplace(parse_file(path));
  return ok_tree(f);
}

const char* file_error(Fixture& f, const std::string& path) {
  f.tree.emplace(parse_file(path));
  return error_text(f);
}

void assert_node(const Node& node, const char* name, const char* file, int line) {
  assert_string_equal(node.name.c_str(), name);
  assert_string_equal(node.loc.file.c_str(), file);
  assert_int_equal(node.loc.line, line);
}

// --- the token rules and the tree ---

void simple_directives(void** state) {
  const Tree& t = parsed(fixture(state), "worker_connections 4;\nname a \"b c\" 'd';\n");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "worker_connections", "t.conf", 1);
  assert_int_equal(t[0].args.size(), 1);
  assert_string_equal(t[0].args[0].c_str(), "4");
  assert_false(t[0].is_block);
  assert_node(t[1], "name", "t.conf", 2);
  assert_int_equal(t[1].args.size(), 3);
  assert_string_equal(t[1].args[0].c_str(), "a");
  assert_string_equal(t[1].args[1].c_str(), "b c");
  assert_string_equal(t[1].args[2].c_str(), "d");
}

void nested_blocks(void** state) {
  const Tree& t = parsed(fixture(state),
                         "http {\n"
                         "  server {\n"
                         "    listen 80;\n"
                         "    location / { }\n"
                         "  }\n"
                         "  server { listen 81; }\n"
                         "}\n"
                         "after;\n");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "http", "t.conf", 1);
  assert_true(t[0].is_block);
  assert_int_equal(t[0].args.size(), 0);
  const Tree& http = t[0].children;
  assert_int_equal(http.size(), 2);
  assert_node(http[0], "server", "t.conf", 2);
  assert_true(http[0].is_block);
  assert_int_equal(http[0].children.size(), 2);
  assert_node(http[0].children[0], "listen", "t.conf", 3);
  assert_false(http[0].children[0].is_block);
  const Node& location = http[0].children[1];
  assert_node(location, "location", "t.conf", 4);
  assert_true(location.is_block);
  assert_int_equal(location.args.size(), 1);
  assert_string_equal(location.args[0].c_str(), "/");
  assert_int_equal(location.children.size(), 0);
  assert_node(http[1], "server", "t.conf", 6);
  assert_int_equal(http[1].children.size(), 1);
  assert_node(http[1].children[0], "listen", "t.conf", 6);
  assert_node(t[1], "after", "t.conf", 8);
}

void empty_block(void** state) {
  const Tree& t = parsed(fixture(state), "events {}\nstream{}x;");
  assert_int_equal(t.size(), 3);
  assert_node(t[0], "events", "t.conf", 1);
  assert_true(t[0].is_block);
  assert_int_equal(t[0].children.size(), 0);
  assert_node(t[1], "stream", "t.conf", 2);
  assert_true(t[1].is_block);
  assert_node(t[2], "x", "t.conf", 2);
  assert_false(t[2].is_block);
}

void quotes_and_escapes(void** state) {
  const Tree& t =
      parsed(fixture(state), R"(d "a\"b" 'c\'d' "e\\f" "g\nh\ti\rj" "\q\{" 'x"y' "it's" "a;b{c}#d" "";)");
  assert_int_equal(t.size(), 1);
  const auto& a = t[0].args;
  assert_int_equal(a.size(), 9);
  assert_string_equal(a[0].c_str(), "a\"b");
  assert_string_equal(a[1].c_str(), "c'd");
  assert_string_equal(a[2].c_str(), "e\\f");
  assert_string_equal(a[3].c_str(), "g\nh\ti\rj");
  assert_string_equal(a[4].c_str(), "q{");
  assert_string_equal(a[5].c_str(), "x\"y");
  assert_string_equal(a[6].c_str(), "it's");
  assert_string_equal(a[7].c_str(), "a;b{c}#d");
  assert_string_equal(a[8].c_str(), "");
}

void quoted_name(void** state) {
  const Tree& t = parsed(fixture(state), "\"quoted name\" x;\n'' y;\n");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "quoted name", "t.conf", 1);
  assert_node(t[1], "", "t.conf", 2);
}

void unquoted_backslash_is_literal(void** state) {
  const Tree& t = parsed(fixture(state), "location ~ \\.php$ { }\n");
  assert_int_equal(t[0].args.size(), 2);
  assert_string_equal(t[0].args[1].c_str(), "\\.php$");
}

void word_ends_at_quote_and_punctuation(void** state) {
  const Tree& t = parsed(fixture(state), "a b\"c\"d 'e'f;g{h;}");
  assert_int_equal(t.size(), 2);
  const auto& a = t[0].args;
  assert_int_equal(a.size(), 5);
  assert_string_equal(a[0].c_str(), "b");
  assert_string_equal(a[1].c_str(), "c");
  assert_string_equal(a[2].c_str(), "d");
  assert_string_equal(a[3].c_str(), "e");
  assert_string_equal(a[4].c_str(), "f");
  assert_node(t[1], "g", "t.conf", 1);
  assert_true(t[1].is_block);
  assert_int_equal(t[1].children.size(), 1);
  assert_node(t[1].children[0], "h", "t.conf", 1);
}

void comments(void** state) {
  const Tree& t = parsed(fixture(state),
                         "# leading comment\n"
                         "a b; # trailing comment\n"
                         "c \"#not a comment\" d#e;#f\n"
                         "g { # in a block }\n"
                         "}\n"
                         "# at the end without a newline");
  assert_int_equal(t.size(), 3);
  assert_node(t[0], "a", "t.conf", 2);
  assert_int_equal(t[0].args.size(), 1);
  assert_node(t[1], "c", "t.conf", 3);
  assert_int_equal(t[1].args.size(), 2);
  assert_string_equal(t[1].args[0].c_str(), "#not a comment");
  assert_string_equal(t[1].args[1].c_str(), "d#e");
  assert_node(t[2], "g", "t.conf", 4);
  assert_true(t[2].is_block);
  assert_int_equal(t[2].children.size(), 0);
}

void empty_input(void** state) {
  Fixture& f = fixture(state);
  assert_int_equal(parsed(f, "").size(), 0);
  assert_int_equal(parsed(f, "  \n\t\r\n").size(), 0);
  assert_int_equal(parsed(f, "# only a comment\n# and another").size(), 0);
}

void multiline_string_counts_lines(void** state) {
  const Tree& t = parsed(fixture(state), "a \"x\ny\" 'p\\\nq' z;\nb;\n");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "a", "t.conf", 1);
  assert_string_equal(t[0].args[0].c_str(), "x\ny");
  assert_string_equal(t[0].args[1].c_str(), "p\nq");
  assert_string_equal(t[0].args[2].c_str(), "z");
  assert_node(t[1], "b", "t.conf", 4);  // two newlines in strings, one of them escaped
}

void directive_over_lines_is_at_its_name(void** state) {
  const Tree& t = parsed(fixture(state), "\n\nname\n  one\n  two\n;\nnext;");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "name", "t.conf", 3);
  assert_int_equal(t[0].args.size(), 2);
  assert_node(t[1], "next", "t.conf", 7);
}

void crlf_line_endings(void** state) {
  const Tree& t = parsed(fixture(state), "a 1;\r\nb {\r\n  c;\r\n}\r\n");
  assert_int_equal(t.size(), 2);
  assert_string_equal(t[0].args[0].c_str(), "1");
  assert_node(t[1], "b", "t.conf", 2);
  assert_node(t[1].children[0], "c", "t.conf", 3);
}

// --- syntax errors ---

void error_is_config_error(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "}"), "unexpected \"}\" in t.conf:1");
  assert_int_equal(static_cast<int>(f.tree->error().code), static_cast<int>(Errc::kConfig));
}

void eof_expecting_semicolon(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "a b"), "unexpected end of file, expecting \";\" or \"}\" in t.conf:1");
  assert_string_equal(parse_error(f, "a;\nb c\n"),
                      "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
  assert_string_equal(parse_error(f, "a;\nb c # comment"),
                      "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
}

void eof_in_block(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "server {\n  listen 80;\n"),
                      "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
  assert_string_equal(parse_error(f, "server {\n  listen 80;"),
                      "unexpected end of file, expecting \";\" or \"}\" in t.conf:2");
  assert_string_equal(parse_error(f, "a {\n  b {\n  }\n\n\n"),
                      "unexpected end of file, expecting \";\" or \"}\" in t.conf:5");
}

void unexpected_close_brace(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "a;\n}\n"), "unexpected \"}\" in t.conf:2");
  assert_string_equal(parse_error(f, "a {\n}\n}\n"), "unexpected \"}\" in t.conf:3");
  // A directive cut short by the end of its block.
  assert_string_equal(parse_error(f, "server {\n  listen 80\n}\n"), "unexpected \"}\" in t.conf:3");
}

void unexpected_open_brace(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "{ a; }"), "unexpected \"{\" in t.conf:1");
  assert_string_equal(parse_error(f, "server {\n  {\n  }\n}\n"), "unexpected \"{\" in t.conf:2");
}

void unexpected_semicolon(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "a;\n;\n"), "unexpected \";\" in t.conf:2");
  assert_string_equal(parse_error(f, "a;;"), "unexpected \";\" in t.conf:1");
  assert_string_equal(parse_error(f, "server {\n}\n;"), "unexpected \";\" in t.conf:3");
}

void unterminated_string(void** state) {
  Fixture& f = fixture(state);
  // The line where the string starts, not where the file ends.
  assert_string_equal(parse_error(f, "a;\nb \"foo\nbar;\n\n"), "unterminated string in t.conf:2");
  assert_string_equal(parse_error(f, "'x"), "unterminated string in t.conf:1");
  assert_string_equal(parse_error(f, "a \"x\\\""), "unterminated string in t.conf:1");
  assert_string_equal(parse_error(f, "a \"x\\"), "unterminated string in t.conf:1");
}

void first_error_wins(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "a;\n}\n{\n\"x"), "unexpected \"}\" in t.conf:2");
}

// --- include ---

void include_splices_in_place(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "a;\ninclude inc.conf;\nb;\n");
  write_file("inc.conf", "x 1;\ny {\n  z;\n}\n");
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 4);
  assert_node(t[0], "a", "t.conf", 1);
  assert_node(t[1], "x", "inc.conf", 1);
  assert_node(t[2], "y", "inc.conf", 2);
  assert_node(t[2].children[0], "z", "inc.conf", 3);
  assert_node(t[3], "b", "t.conf", 3);
}

void include_in_block(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "server {\n  include loc.conf;\n  listen 80;\n}\n");
  write_file("loc.conf", "location / {\n  proxy_pass app;\n}\n");
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 1);
  const Tree& server = t[0].children;
  assert_int_equal(server.size(), 2);
  assert_node(server[0], "location", "loc.conf", 1);
  assert_node(server[0].children[0], "proxy_pass", "loc.conf", 2);
  assert_node(server[1], "listen", "t.conf", 3);
}

void include_glob_in_sorted_order(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "include conf.d/*.conf;\nlast;\n");
  write_file("conf.d/b.conf", "b;\n");
  write_file("conf.d/a.conf", "a;\n");
  write_file("conf.d/B.conf", "upper_b;\n");
  write_file("conf.d/c.txt", "not_included;\n");
  std::filesystem::create_directories("conf.d/dir.conf");  // a directory is not a file to include
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 4);
  assert_node(t[0], "upper_b", "conf.d/B.conf", 1);
  assert_node(t[1], "a", "conf.d/a.conf", 1);
  assert_node(t[2], "b", "conf.d/b.conf", 1);
  assert_node(t[3], "last", "t.conf", 2);
}

void include_glob_matching_nothing(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "include none/*.conf;\ninclude ?.inc;\nx;\n");
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 1);
  assert_node(t[0], "x", "t.conf", 3);
}

void include_relative_to_including_file(void** state) {
  Fixture& f = fixture(state);
  write_file("sub/main.conf", "include inc.conf;\n");
  write_file("sub/inc.conf", "\ninclude deeper/leaf.conf;\n");
  write_file("sub/deeper/leaf.conf", "include ../sibling.conf;\nleaf;\n");
  write_file("sub/sibling.conf", "sibling;\n");
  write_file("inc.conf", "decoy;\n");  // beside the working directory, not beside sub/main.conf
  const Tree& t = parsed_file(f, "sub/main.conf");
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "sibling", "sub/deeper/../sibling.conf", 1);
  assert_node(t[1], "leaf", "sub/deeper/leaf.conf", 2);
}

void include_absolute_path(void** state) {
  Fixture& f = fixture(state);
  f.expected = f.dir + "/abs.conf";
  write_file("t.conf", "include " + f.expected + ";\n");
  write_file("abs.conf", "abs;\n");
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 1);
  assert_node(t[0], "abs", f.expected.c_str(), 1);
}

void include_glob_under_directory_with_glob_chars(void** state) {
  Fixture& f = fixture(state);
  write_file("we[ir]d?/t.conf", "include *.inc;\n");
  write_file("we[ir]d?/one.inc", "one;\n");
  const Tree& t = parsed_file(f, "we[ir]d?/t.conf");
  assert_int_equal(t.size(), 1);
  assert_node(t[0], "one", "we[ir]d?/one.inc", 1);
}

void parse_string_includes_from_base_dir(void** state) {
  Fixture& f = fixture(state);
  write_file("sub/x.conf", "x;\n");
  f.tree.emplace(parse_string("include x.conf;", "s.conf", "sub"));
  const Tree& t = ok_tree(f);
  assert_int_equal(t.size(), 1);
  assert_node(t[0], "x", "sub/x.conf", 1);
  // The default base is the working directory.
  f.tree.emplace(parse_string("include sub/x.conf;", "s.conf"));
  assert_node(ok_tree(f)[0], "x", "./sub/x.conf", 1);
}

void include_nesting_16_levels_is_fine(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "include l1.conf;\n");
  for (int i = 1; i < 16; ++i) {
    write_file("l" + std::to_string(i) + ".conf", "include l" + std::to_string(i + 1) + ".conf;\n");
  }
  write_file("l16.conf", "leaf;\n");
  const Tree& t = parsed_file(f, "t.conf");
  assert_int_equal(t.size(), 1);
  assert_node(t[0], "leaf", "l16.conf", 1);
  write_file("l16.conf", "\ninclude l17.conf;\n");
  write_file("l17.conf", "leaf;\n");
  assert_string_equal(file_error(f, "t.conf"), "include nesting is too deep in l16.conf:2");
}

void include_self_is_too_deep(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "a;\ninclude t.conf;\n");
  assert_string_equal(file_error(f, "t.conf"), "include nesting is too deep in t.conf:2");
  write_file("loop/t.conf", "include *.conf;\n");
  assert_string_equal(file_error(f, "loop/t.conf"), "include nesting is too deep in loop/t.conf:1");
}

void include_missing_file(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "a;\ninclude missing.conf;\n");
  assert_string_equal(file_error(f, "t.conf"),
                      "open() \"missing.conf\" failed (2: No such file or directory) in t.conf:2");
  assert_int_equal(static_cast<int>(f.tree->error().code), static_cast<int>(Errc::kConfig));
}

void include_missing_absolute_path(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "server {\n  include " + f.dir + "/nope.conf;\n}\n");
  f.expected = "open() \"" + f.dir + "/nope.conf\" failed (2: No such file or directory) in t.conf:2";
  assert_string_equal(file_error(f, "t.conf"), f.expected.c_str());
}

void include_directory_fails_to_read(void** state) {
  Fixture& f = fixture(state);
  std::filesystem::create_directories("sub");
  write_file("t.conf", "include sub;\n");
  assert_string_equal(file_error(f, "t.conf"), "read() \"sub\" failed (21: Is a directory) in t.conf:1");
}

void include_argument_count(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "include;"),
                      "invalid number of arguments in \"include\" directive in t.conf:1");
  assert_string_equal(parse_error(f, "a;\ninclude a.conf b.conf;"),
                      "invalid number of arguments in \"include\" directive in t.conf:2");
}

void include_with_block(void** state) {
  Fixture& f = fixture(state);
  assert_string_equal(parse_error(f, "a;\ninclude a.conf {\n}\n"),
                      "\"include\" directive does not take a block in t.conf:2");
}

void error_in_included_file_names_it(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "x;\ninclude inc.conf;\n");
  write_file("inc.conf", "a;\n\nb {\n");
  assert_string_equal(file_error(f, "t.conf"),
                      "unexpected end of file, expecting \";\" or \"}\" in inc.conf:3");
  write_file("inc.conf", "a \"b\nc;\n");
  assert_string_equal(file_error(f, "t.conf"), "unterminated string in inc.conf:1");
  write_file("t.conf", "include conf.d/*.conf;\n");
  write_file("conf.d/a.conf", "fine;\n");
  write_file("conf.d/b.conf", "fine;\n\nbad\n");
  assert_string_equal(file_error(f, "t.conf"),
                      "unexpected end of file, expecting \";\" or \"}\" in conf.d/b.conf:3");
}

void included_file_cannot_close_outer_block(void** state) {
  Fixture& f = fixture(state);
  write_file("t.conf", "server {\n  include inc.conf;\n");
  write_file("inc.conf", "listen 80;\n}\n");
  assert_string_equal(file_error(f, "t.conf"), "unexpected \"}\" in inc.conf:2");
}

void parse_file_missing(void** state) {
  Fixture& f = fixture(state);
  // Nothing included it, so there is no " in FILE:LINE"; it is a failed system call.
  assert_string_equal(file_error(f, "nope.conf"),
                      "open() \"nope.conf\" failed (2: No such file or directory)");
  assert_int_equal(static_cast<int>(f.tree->error().code), static_cast<int>(Errc::kIo));
}

void checked_in_fixture(void** state) {
  Fixture& f = fixture(state);
  f.expected = TETHER_CONF_TEST_DATA "/main.conf";
  const Tree& t = parsed_file(f, f.expected);
  assert_int_equal(t.size(), 2);
  assert_node(t[0], "worker_connections", f.expected.c_str(), 2);
  assert_node(t[1], "http", f.expected.c_str(), 4);
  const Tree& http = t[1].children;
  assert_int_equal(http.size(), 2);
  f.expected = TETHER_CONF_TEST_DATA "/conf.d/10-upstream.conf";
  assert_node(http[0], "upstream", f.expected.c_str(), 1);
  assert_node(http[0].children[0], "server", f.expected.c_str(), 2);
  f.expected = TETHER_CONF_TEST_DATA "/conf.d/20-server.conf";
  assert_node(http[1], "server", f.expected.c_str(), 1);
  assert_node(http[1].children[1].children[0], "proxy_pass", f.expected.c_str(), 4);
}

// --- error_at, invalid_value ---

void error_at_formats_location(void** state) {
  Fixture& f = fixture(state);
  f.error = tether::conf::error_at({"/etc/tether/tether.conf", 12}, "something is wrong");
  assert_string_equal(f.error->what.c_str(), "something is wrong in /etc/tether/tether.conf:12");
  assert_int_equal(static_cast<int>(f.error->code), static_cast<int>(Errc::kConfig));
}

void invalid_value_names_argument(void** state) {
  Fixture& f = fixture(state);
  const Tree& t = parsed(f, "\nproxy_buffering maybe \"x y\";\n");
  f.error = tether::conf::invalid_value(t[0], 1);
  assert_string_equal(f.error->what.c_str(),
                      "invalid value \"x y\" in \"proxy_buffering\" directive in t.conf:2");
  f.error = tether::conf::invalid_value(t[0], 0, "it must be \"on\" or \"off\"");
  assert_string_equal(
      f.error->what.c_str(),
      "invalid value \"maybe\" in \"proxy_buffering\" directive, it must be \"on\" or \"off\" in "
      "t.conf:2");
  assert_int_equal(static_cast<int>(f.error->code), static_cast<int>(Errc::kConfig));
}

}  // namespace

int main() {
  const CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(simple_directives, setup, teardown),
      cmocka_unit_test_setup_teardown(nested_blocks, setup, teardown),
      cmocka_unit_test_setup_teardown(empty_block, setup, teardown),
      cmocka_unit_test_setup_teardown(quotes_and_escapes, setup, teardown),
      cmocka_unit_test_setup_teardown(quoted_name, setup, teardown),
      cmocka_unit_test_setup_teardown(unquoted_backslash_is_literal, setup, teardown),
      cmocka_unit_test_setup_teardown(word_ends_at_quote_and_punctuation, setup, teardown),
      cmocka_unit_test_setup_teardown(comments, setup, teardown),
      cmocka_unit_test_setup_teardown(empty_input, setup, teardown),
      cmocka_unit_test_setup_teardown(multiline_string_counts_lines, setup, teardown),
      cmocka_unit_test_setup_teardown(directive_over_lines_is_at_its_name, setup, teardown),
      cmocka_unit_test_setup_teardown(crlf_line_endings, setup, teardown),
      cmocka_unit_test_setup_teardown(error_is_config_error, setup, teardown),
      cmocka_unit_test_setup_teardown(eof_expecting_semicolon, setup, teardown),
      cmocka_unit_test_setup_teardown(eof_in_block, setup, teardown),
      cmocka_unit_test_setup_teardown(unexpected_close_brace, setup, teardown),
      cmocka_unit_test_setup_teardown(unexpected_open_brace, setup, teardown),
      cmocka_unit_test_setup_teardown(unexpected_semicolon, setup, teardown),
      cmocka_unit_test_setup_teardown(unterminated_string, setup, teardown),
      cmocka_unit_test_setup_teardown(first_error_wins, setup, teardown),
      cmocka_unit_test_setup_teardown(include_splices_in_place, setup, teardown),
      cmocka_unit_test_setup_teardown(include_in_block, setup, teardown),
      cmocka_unit_test_setup_teardown(include_glob_in_sorted_order, setup, teardown),
      cmocka_unit_test_setup_teardown(include_glob_matching_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(include_relative_to_including_file, setup, teardown),
      cmocka_unit_test_setup_teardown(include_absolute_path, setup, teardown),
      cmocka_unit_test_setup_teardown(include_glob_under_directory_with_glob_chars, setup, teardown),
      cmocka_unit_test_setup_teardown(parse_string_includes_from_base_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(include_nesting_16_levels_is_fine, setup, teardown),
      cmocka_unit_test_setup_teardown(include_self_is_too_deep, setup, teardown),
      cmocka_unit_test_setup_teardown(include_missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(include_missing_absolute_path, setup, teardown),
      cmocka_unit_test_setup_teardown(include_directory_fails_to_read, setup, teardown),
      cmocka_unit_test_setup_teardown(include_argument_count, setup, teardown),
      cmocka_unit_test_setup_teardown(include_with_block, setup, teardown),
      cmocka_unit_test_setup_teardown(error_in_included_file_names_it, setup, teardown),
      cmocka_unit_test_setup_teardown(included_file_cannot_close_outer_block, setup, teardown),
      cmocka_unit_test_setup_teardown(parse_file_missing, setup, teardown),
      cmocka_unit_test_setup_teardown(checked_in_fixture, setup, teardown),
      cmocka_unit_test_setup_teardown(error_at_formats_location, setup, teardown),
      cmocka_unit_test_setup_teardown(invalid_value_names_argument, setup, teardown),
  };
  return cmocka_run_group_tests_name("conf/parser.cpp", tests, nullptr, nullptr);
}
