#pragma once
// Internal to tether_conf: splits config text into the tokens parser.cpp assembles into directives.
// The token rules are those of parser.h (words, quoted strings with escapes, `;`, `{`, `}`, `#` comments).

#include <string>
#include <string_view>
#include <utility>

#include "proxy/util/result.h"

namespace tether::conf {

enum class TokenKind { kWord, kSemicolon, kOpenBrace, kCloseBrace, kEnd };

struct Token {
  TokenKind kind = TokenKind::kEnd;
  std::string text;  // kWord: quotes removed, escapes applied
  int line = 0;      // 1-based line where the token starts
};

class Lexer {
 public:
  // TEXT must outlive the lexer; FILE names it in errors.
  Lexer(std::string_view text, std::string file) : text_(text), file_(std::move(file)) {}

  // The next token, or kEnd (again and again) at the end of the text. kEnd carries the file's last line,
  // not counting a final newline. The only error is "unterminated string", at the line where it starts.
  Result<Token> next();

 private:
  void skip_blanks_and_comments();
  Result<Token> quoted(char quote);
  int end_line() const;

  std::string_view text_;
  std::string file_;
  size_t pos_ = 0;
  int line_ = 1;
};

}  // namespace tether::conf
