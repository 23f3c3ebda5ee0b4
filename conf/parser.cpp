#include "conf/parser.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <system_error>

#include "conf/lexer.h"

namespace tether::conf {

namespace {

// Deep enough for any real layout; a file that includes itself stops here, not at a stack overflow.
constexpr int kMaxIncludeDepth = 16;

std::string errno_text(int err) {
  return "(" + std::to_string(err) + ": " + std::generic_category().message(err) + ")";
}

// "dir/file" -> "dir", "/file" -> "/", "file" -> "" (the current directory).
std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {};
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// PATH relative to DIR; an absolute PATH or an empty DIR leaves PATH as it is.
std::string join_path(const std::string& dir, const std::string& path) {
  if (dir.empty() || (!path.empty() && path[0] == '/')) return path;
  return dir.back() == '/' ? dir + path : dir + "/" + path;
}

bool has_glob_chars(std::string_view s) {
  return s.find_first_of("*?[") != std::string_view::npos;
}

// A directory name used as a literal prefix of a glob pattern.
std::string escape_glob(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// The whole file, or an error without a location (the caller knows who asked for the file).
Result<std::string> read_file(const std::string& path) {
  struct Fd {
    int fd;
    ~Fd() {
      if (fd >= 0) ::close(fd);
    }
  } file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (file.fd < 0) return Error{Errc::kIo, "open() \"" + path + "\" failed " + errno_text(errno)};
  std::string text;
  char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(file.fd, buf, sizeof buf);
    if (n == 0) return text;
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error{Errc::kIo, "read() \"" + path + "\" failed " + errno_text(errno)};
    }
    text.append(buf, static_cast<size_t>(n));
  }
}

// Files matching PATTERN in byte order; directories (marked by GLOB_MARK) are left out.
Result<std::vector<std::string>> glob_files(const std::string& pattern) {
  struct Glob {
    glob_t g{};
    ~Glob() { globfree(&g); }
  } matches;
  const int rc = ::glob(pattern.c_str(), GLOB_MARK, nullptr, &matches.g);
  std::vector<std::string> files;
  if (rc == GLOB_NOMATCH) return files;
  if (rc != 0) return Error{Errc::kIo, "glob() \"" + pattern + "\" failed"};
  for (size_t i = 0; i < matches.g.gl_pathc; ++i) {
    std::string path = matches.g.gl_pathv[i];
    if (!path.empty() && path.back() != '/') files.push_back(std::move(path));
  }
  std::sort(files.begin(), files.end());  // glob's own order follows the locale's collation
  return files;
}

Status parse_text(std::string_view text, const std::string& name, const std::string& dir, int depth,
                  Tree& out);

// Parses the file PATH, included by the directive at FROM, appending its directives to OUT.
Status parse_included(const std::string& path, const SourceLoc& from, int depth, Tree& out) {
  if (depth > kMaxIncludeDepth) return error_at(from, "include nesting is too deep");
  auto text = read_file(path);
  if (!text) return error_at(from, text.error().what);
  return parse_text(*text, path, dir_of(path), depth, out);
}

// `include PATTERN;` found at depth DEPTH in a file whose directory is DIR.
Status include(const Node& directive, const std::string& dir, int depth, Tree& out) {
  if (directive.args.size() != 1) {
    return error_at(directive.loc, "invalid number of arguments in \"include\" directive");
  }
  const std::string& arg = directive.args[0];
  if (!has_glob_chars(arg)) return parse_included(join_path(dir, arg), directive.loc, depth + 1, out);
  auto files = glob_files(join_path(escape_glob(dir), arg));
  if (!files) return error_at(directive.loc, files.error().what);
  for (const std::string& path : *files) {
    Status st = parse_included(path, directive.loc, depth + 1, out);
    if (!st) return st;
  }
  return ok_status();
}

// Parses TEXT (the file NAME in directory DIR, at include depth DEPTH), appending its directives to OUT.
// Blocks are tracked with an explicit stack, so deep nesting costs heap rather than C++ stack.
Status parse_text(std::string_view text, const std::string& name, const std::string& dir, int depth,
                  Tree& out) {
  Lexer lexer(text, name);
  std::vector<Tree*> open{&out};  // innermost block's children last; a Node's children never move while
                                  // it is open, since only the innermost list grows
  std::optional<Node> pending;    // the directive whose words are being read
  for (;;) {
    auto token = lexer.next();
    if (!token) return token.error();
    const SourceLoc here{name, token->line};
    switch (token->kind) {
      case TokenKind::kWord:
        if (!pending) {
          pending.emplace();
          pending->name = std::move(token->text);
          pending->loc = here;
        } else {
          pending->args.push_back(std::move(token->text));
        }
        break;
      case TokenKind::kSemicolon:
        if (!pending) return error_at(here, "unexpected \";\"");
        if (pending->name == "include") {
          Status st = include(*pending, dir, depth, *open.back());
          if (!st) return st;
        } else {
          open.back()->push_back(std::move(*pending));
        }
        pending.reset();
        break;
      case TokenKind::kOpenBrace:
        if (!pending) return error_at(here, "unexpected \"{\"");
        if (pending->name == "include")
          return error_at(pending->loc, "\"include\" directive does not take a block");
        pending->is_block = true;
        open.back()->push_back(std::move(*pending));
        pending.reset();
        open.push_back(&open.back()->back().children);
        break;
      case TokenKind::kCloseBrace:
        if (pending || open.size() == 1) return error_at(here, "unexpected \"}\"");
        open.pop_back();
        break;
      case TokenKind::kEnd:
        if (pending || open.size() > 1) {
          return error_at(here, "unexpected end of file, expecting \";\" or \"}\"");
        }
        return ok_status();
    }
  }
}

}  // namespace

Result<Tree> parse_file(const std::string& path) {
  auto text = read_file(path);
  if (!text) return text.error();
  Tree tree;
  Status st = parse_text(*text, path, dir_of(path), 0, tree);
  if (!st) return st.error();
  return tree;
}

Result<Tree> parse_string(std::string_view text, const std::string& name, const std::string& base_dir) {
  Tree tree;
  Status st = parse_text(text, name, base_dir, 0, tree);
  if (!st) return st.error();
  return tree;
}

Error error_at(const SourceLoc& loc, std::string_view message) {
  std::string what(message);
  what += " in ";
  what += loc.file;
  what += ':';
  what += std::to_string(loc.line);
  return Error{Errc::kConfig, std::move(what)};
}

Error invalid_value(const Node& node, size_t index, std::string_view why) {
  std::string message = "invalid value \"";
  if (index < node.args.size()) message += node.args[index];
  message += "\" in \"" + node.name + "\" directive";
  if (!why.empty()) {
    message += ", ";
    message += why;  // nginx's shape: `..., it must be "on" or "off" in t.conf:3`
  }
  return error_at(node.loc, message);
}

}  // namespace tether::conf
