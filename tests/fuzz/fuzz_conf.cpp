// Fuzz target: the config language and its checks, as `tether -t` runs them: conf::parse_string
// (lexer, blocks, include), then build_config with the real module list (conf::check's schema,
// every directive's value parser, inheritance, the modules' merges).
//
// Any input must give either a Config or an error naming the file and a line of it; the one
// whole-file error ("no "server" block in FILE") names the file only. A Config must hold what
// the core relies on without checking again.
//
// `include` is real here, but must not read arbitrary files: the base directory is an empty
// directory of our own, and an input whose include names a path with a '/' (absolute, or
// climbing out with "..") is skipped before parsing, so an include can only name an entry of
// that empty directory, "." or "..": a missing file or a directory, both errors.

#include <netinet/in.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <string>
#include <string_view>

#include "conf/lexer.h"
#include "conf/parser.h"
#include "fuzz_check.h"
#include "module/modules.h"
#include "proxy/core/config.h"

namespace {

using namespace tether;

constexpr const char* kName = "fuzz.conf";

std::string empty_dir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/tether-fuzz-conf.XXXXXX";
  FUZZ_CHECK(mkdtemp(pattern.data()) != nullptr);
  static std::string made = pattern;
  std::atexit([] { rmdir(made.c_str()); });
  return pattern;
}

// Tokenizes TEXT the way the parser will (up to the first lexer error, where the parser stops
// too) and tells whether some `include` directive names a path with a '/'.
bool includes_a_path(std::string_view text) {
  conf::Lexer lexer(text, kName);
  bool at_start = true, in_include = false;
  for (;;) {
    auto token = lexer.next();
    if (!token.ok() || token->kind == conf::TokenKind::kEnd) return false;
    if (token->kind != conf::TokenKind::kWord) {
      at_start = true;
      in_include = false;
      continue;
    }
    if (at_start) {
      in_include = token->text == "include";
      at_start = false;
    } else if (in_include && token->text.find('/') != std::string::npos) {
      return true;
    }
  }
}

size_t count_lines(std::string_view text) {
  size_t n = 1;
  for (char c : text) n += c == '\n';
  return n;
}

// "... in fuzz.conf:LINE" with LINE within the text.
void check_error(const Error& e, std::string_view text) {
  const std::string& what = e.what;
  if (what == std::string("no \"server\" block in ") + kName) return;
  FUZZ_CHECK(e.code == Errc::kConfig);
  const std::string marker = std::string(" in ") + kName + ":";
  size_t at = what.rfind(marker);
  FUZZ_CHECK(at != std::string::npos);
  std::string_view digits = std::string_view(what).substr(at + marker.size());
  size_t line = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), line);
  FUZZ_CHECK(ec == std::errc() && end == digits.data() + digits.size());
  FUZZ_CHECK(line >= 1 && line <= count_lines(text));
}

void check_config(const Config& cfg) {
  FUZZ_CHECK(!cfg.servers.empty());
  FUZZ_CHECK(cfg.modules.size() == all_modules().size());
  for (const auto& srv : cfg.servers) {
    FUZZ_CHECK(!srv->listens.empty());
    for (const auto& l : srv->listens) {
      FUZZ_CHECK(l.addr_len == sizeof(sockaddr_in) || l.addr_len == sizeof(sockaddr_in6));
    }
    for (const auto& loc : srv->locations) {
      FUZZ_CHECK(!loc->path.empty() && loc->path[0] == '/');
      FUZZ_CHECK(loc->modules.size() == cfg.modules.size());
      for (const auto& m : loc->modules) FUZZ_CHECK(m != nullptr);
      if (loc->return_status) FUZZ_CHECK(*loc->return_status >= 200 && *loc->return_status <= 599);
      if (loc->pass) {
        FUZZ_CHECK(loc->pass->upstream != nullptr);
        FUZZ_CHECK(!loc->pass->upstream->servers.empty());
      }
      FUZZ_CHECK(loc->session.max_messages > 0 && loc->session.max_bytes > 0 && loc->max_message > 0);
      FUZZ_CHECK(loc->next_upstream_tries >= 1);
      // Lookups the core makes per request.
      FUZZ_CHECK(srv->match(loc->path) != nullptr);
    }
  }
  for (const auto& [name, up] : cfg.upstreams) {
    FUZZ_CHECK(name == up->name && !up->servers.empty());
    for (const auto& s : up->servers) FUZZ_CHECK(!s.host.empty() && s.port != 0 && s.weight >= 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string base = empty_dir();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (includes_a_path(text)) return 0;
  auto tree = conf::parse_string(text, kName, base);
  if (!tree.ok()) {
    check_error(tree.error(), text);
    return 0;
  }
  auto cfg = build_config(*tree, kName, all_modules());
  if (!cfg.ok()) {
    check_error(cfg.error(), text);
    return 0;
  }
  check_config(*cfg.value());
  return 0;
}
