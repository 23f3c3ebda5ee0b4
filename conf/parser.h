#pragma once
// The nginx-style config language: a tree of directives, with `include` spliced in place.
//
//   name arg "quoted arg" 'single';        # a simple directive
//   name arg { child ...; }                # a block directive
//
// Tokens are separated by whitespace; `#` starts a comment to the end of the line (outside quotes);
// quoted strings take the escapes \" \' \\ \n \t \r and \<other> = <other>; an unquoted word ends at
// whitespace, `;`, `{`, `}` or a quote. `include PATTERN;` is handled here: PATTERN is relative to the
// directory of the including file, may hold glob characters (a glob matching nothing is not an error,
// a plain path that does not exist is), and the included files' directives take its place.
//
// Errors are Error{Errc::kConfig, what} where `what` follows nginx's wording and ends with
// " in FILE:LINE" (FILE as given to parse_file, or as the name given to parse_string):
//   unexpected end of file, expecting ";" or "}" in t.conf:3
//   unexpected "}" in t.conf:3
//   unexpected "{" in t.conf:3              (a block with no directive name before it)
//   unexpected ";" in t.conf:3              (a ";" with no directive name before it)
//   directive "server" has no opening "{" in t.conf:3   (not used: any directive may take a block;
//                                                         the schema check says which must)
//   unterminated string in t.conf:3         (line where the string starts)
//   open() "/abs/path/x.conf" failed (2: No such file or directory) in t.conf:3   (include)
//   include nesting is too deep in t.conf:3 (more than 16 levels, e.g. a file including itself)
//   invalid number of arguments in "include" directive in t.conf:3

#include <string>
#include <string_view>
#include <vector>

#include "proxy/util/result.h"

namespace tether::conf {

struct SourceLoc {
  std::string file;  // path as opened (relative paths stay relative)
  int line = 0;      // 1-based
};

struct Node {
  std::string name;
  std::vector<std::string> args;  // quotes removed, escapes applied
  SourceLoc loc;                  // where the name token is
  bool is_block = false;          // had a { ... } body (possibly empty)
  std::vector<Node> children;
};

using Tree = std::vector<Node>;

// Reads and parses PATH (and what it includes).
Result<Tree> parse_file(const std::string& path);
// Parses TEXT as if it were the file NAME; includes are relative to BASE_DIR.
Result<Tree> parse_string(std::string_view text, const std::string& name, const std::string& base_dir = ".");

// "MESSAGE in FILE:LINE"
Error error_at(const SourceLoc& loc, std::string_view message);
// invalid value "ARG" in "NAME" directive in FILE:LINE   (ARG = node.args[index])
Error invalid_value(const Node& node, size_t index, std::string_view why = {});

}  // namespace tether::conf
