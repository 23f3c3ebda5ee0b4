#include "conf/schema.h"

#include <string>
#include <unordered_set>

namespace tether::conf {

namespace {

std::string quoted(std::string_view s) {
  std::string out = "\"";
  out += s;
  out += '"';
  return out;
}

// The spec for NAME in SCOPE. A name may have several specs, one per scope (nginx's `server` is a block in
// the main scope and a simple directive in `upstream`); KNOWN says whether any spec has the name at all.
const DirectiveSpec* find_spec(std::span<const DirectiveSpec> specs, std::string_view name, unsigned scope,
                               bool& known) {
  known = false;
  for (const DirectiveSpec& spec : specs) {
    if (spec.name != name) continue;
    known = true;
    if (spec.scopes & scope) return &spec;
  }
  return nullptr;
}

// Checks NODES, the body of one block in SCOPE, then each child block right after its directive, so
// the first problem returned is the first in file order. The checks come in ngx_conf_handler's order.
Status check_block(const Tree& nodes, unsigned scope, std::span<const DirectiveSpec> specs) {
  std::unordered_set<std::string_view> seen;  // non-repeatable names in this block so far
  for (const Node& node : nodes) {
    bool known = false;
    const DirectiveSpec* spec = find_spec(specs, node.name, scope, known);
    if (!known) return error_at(node.loc, "unknown directive " + quoted(node.name));
    if (!spec) return error_at(node.loc, quoted(node.name) + " directive is not allowed here");
    if (spec->opens != 0 && !node.is_block) {
      return error_at(node.loc, "directive " + quoted(node.name) + " has no opening \"{\"");
    }
    if (spec->opens == 0 && node.is_block) {
      return error_at(node.loc, quoted(node.name) + " directive does not take a block");
    }
    const auto nargs = static_cast<int>(node.args.size());
    if (nargs < spec->min_args || (spec->max_args >= 0 && nargs > spec->max_args)) {
      return error_at(node.loc, "invalid number of arguments in " + quoted(node.name) + " directive");
    }
    if (!spec->repeatable && !seen.insert(node.name).second) {
      return error_at(node.loc, quoted(node.name) + " directive is duplicate");
    }
    if (node.is_block) {
      Status st = check_block(node.children, spec->opens, specs);
      if (!st) return st;
    }
  }
  return ok_status();
}

}  // namespace

Status check(const Tree& tree, std::span<const DirectiveSpec> specs) {
  return check_block(tree, kMain, specs);
}

}  // namespace tether::conf
