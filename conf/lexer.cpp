#include "conf/lexer.h"

#include "conf/parser.h"

namespace tether::conf {

namespace {

// nginx's whitespace set: a form feed or vertical tab is part of a word.
bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool ends_word(char c) {
  return is_blank(c) || c == ';' || c == '{' || c == '}' || c == '"' || c == '\'';
}

// The character that `\C` stands for inside quotes.
char unescape(char c) {
  switch (c) {
    case 'n':
      return '\n';
    case 't':
      return '\t';
    case 'r':
      return '\r';
    default:
      return c;  // \" \' \\ and any other \x stand for the character itself
  }
}

}  // namespace

void Lexer::skip_blanks_and_comments() {
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (is_blank(c)) {
      if (c == '\n') ++line_;
      ++pos_;
    } else if (c == '#') {
      // Only where a token may start: inside a word (`a#b`) it is an ordinary character, as in nginx.
      const size_t eol = text_.find('\n', pos_);
      pos_ = eol == std::string_view::npos ? text_.size() : eol;
    } else {
      return;
    }
  }
}

int Lexer::end_line() const {
  // "a;\n" has one line: a final newline ends the last line rather than starting another.
  return !text_.empty() && text_.back() == '\n' ? line_ - 1 : line_;
}

Result<Token> Lexer::quoted(char quote) {
  const int start_line = line_;
  std::string out;
  ++pos_;  // the opening quote
  while (pos_ < text_.size()) {
    char c = text_[pos_++];
    if (c == quote) return Token{TokenKind::kWord, std::move(out), start_line};
    if (c == '\\') {
      if (pos_ == text_.size()) break;
      c = text_[pos_++];
      if (c == '\n') ++line_;  // a backslash-newline is a newline, and still a line
      c = unescape(c);
    } else if (c == '\n') {
      ++line_;
    }
    out.push_back(c);
  }
  return error_at(SourceLoc{file_, start_line}, "unterminated string");
}

Result<Token> Lexer::next() {
  skip_blanks_and_comments();
  if (pos_ == text_.size()) return Token{TokenKind::kEnd, {}, end_line()};
  const char c = text_[pos_];
  switch (c) {
    case ';':
      ++pos_;
      return Token{TokenKind::kSemicolon, ";", line_};
    case '{':
      ++pos_;
      return Token{TokenKind::kOpenBrace, "{", line_};
    case '}':
      ++pos_;
      return Token{TokenKind::kCloseBrace, "}", line_};
    case '"':
    case '\'':
      return quoted(c);
    default:
      break;
  }
  const size_t start = pos_;
  while (pos_ < text_.size() && !ends_word(text_[pos_])) ++pos_;
  return Token{TokenKind::kWord, std::string(text_.substr(start, pos_ - start)), line_};
}

}  // namespace tether::conf
