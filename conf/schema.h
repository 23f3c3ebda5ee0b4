#pragma once
// Which directives exist, where they may stand and how many arguments they take: the checks nginx's
// ngx_conf_handler makes, run over a parsed Tree before anything interprets it.

#include <span>
#include <string_view>

#include "conf/parser.h"

namespace tether::conf {

// Where a directive may appear. A block directive opens a new scope: see DirectiveSpec::opens.
enum Scope : unsigned {
  kMain = 1u << 0,
  kServer = 1u << 1,    // inside server { }
  kLocation = 1u << 2,  // inside location { }
  kUpstream = 1u << 3,  // inside upstream { }
};

struct DirectiveSpec {
  std::string_view name;
  unsigned scopes;  // bitwise OR of Scope
  int min_args;
  int max_args;             // -1: no upper bound
  Scope opens = Scope{0};   // non-zero: a block directive whose body is checked in this scope
  bool repeatable = false;  // may appear more than once in the same block
};

// Several specs may share a name when their scopes do not overlap (`server { }` in main,
// `server host:port;` in upstream): the spec whose scopes include the current one applies, and
// "not allowed here" is reported only when none does.
// Checks TREE (the main scope) against SPECS. The first problem, in file order, is returned as:
//   unknown directive "X" in F:L
//   "X" directive is not allowed here in F:L
//   invalid number of arguments in "X" directive in F:L
//   "X" directive is duplicate in F:L
//   directive "X" has no opening "{" in F:L            (a block directive written without a body)
//   "X" directive does not take a block in F:L          (a simple directive followed by { })
Status check(const Tree& tree, std::span<const DirectiveSpec> specs);

}  // namespace tether::conf
