#include "tools/bench/response_parser.h"

#include "tools/bench/stats.h"

namespace tether::bench {

const std::string* ResponseHead::get(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return &v;
  }
  return nullptr;
}

ResponseParser::ResponseParser(ResponseSink& sink) : sink_(sink) {
  http_parser_settings_init(&settings_);
  settings_.on_message_begin = [](http_parser* p) {
    auto* self = static_cast<ResponseParser*>(p->data);
    self->in_message_ = true;
    self->head_ = ResponseHead{};
    self->in_value_ = false;
    return 0;
  };
  settings_.on_header_field = on_field;
  settings_.on_header_value = on_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
  reset();
}

void ResponseParser::reset() {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  head_ = ResponseHead{};
  in_value_ = false;
  in_message_ = false;
  complete_ = false;
  error_.clear();
}

int ResponseParser::on_field(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<ResponseParser*>(p->data);
  if (self->in_value_ || self->head_.headers.empty()) self->head_.headers.emplace_back();
  self->in_value_ = false;
  self->head_.headers.back().first.append(at, len);
  return 0;
}

int ResponseParser::on_value(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<ResponseParser*>(p->data);
  if (self->head_.headers.empty()) self->head_.headers.emplace_back();
  self->in_value_ = true;
  self->head_.headers.back().second.append(at, len);
  return 0;
}

int ResponseParser::on_headers_complete(http_parser* p) {
  auto* self = static_cast<ResponseParser*>(p->data);
  self->head_.status = static_cast<int>(p->status_code);
  self->head_.keep_alive = http_should_keep_alive(p) != 0;
  self->sink_.on_response_head(self->head_);
  return 0;
}

int ResponseParser::on_body(http_parser* p, const char* at, size_t len) {
  static_cast<ResponseParser*>(p->data)->sink_.on_response_body(std::string_view(at, len));
  return 0;
}

int ResponseParser::on_message_complete(http_parser* p) {
  auto* self = static_cast<ResponseParser*>(p->data);
  self->in_message_ = false;
  self->complete_ = true;
  // keep_alive is only final here (a close-delimited body is known at its end).
  self->head_.keep_alive = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);  // one response per feed(): the caller acts before the next one
  return 0;
}

ResponseParser::State ResponseParser::feed(const char* data, size_t len, size_t& consumed) {
  complete_ = false;
  consumed = http_parser_execute(&parser_, &settings_, data, len);
  auto err = HTTP_PARSER_ERRNO(&parser_);
  if (complete_) {
    http_parser_pause(&parser_, 0);
    return parser_.upgrade ? State::kUpgraded : State::kComplete;
  }
  if (err != HPE_OK) {
    error_ = std::string("malformed HTTP response: ") + http_errno_description(err);
    return State::kError;
  }
  if (parser_.upgrade) return State::kUpgraded;
  return State::kMore;
}

ResponseParser::State ResponseParser::finish() {
  if (!in_message_) return State::kMore;
  complete_ = false;
  http_parser_execute(&parser_, &settings_, nullptr, 0);
  if (complete_) {
    http_parser_pause(&parser_, 0);
    return State::kComplete;
  }
  error_ = "connection closed in the middle of a response";
  return State::kError;
}

}  // namespace tether::bench
