#pragma once
// The kinds of load connection: WebSocket, SSE subscriber, long-poll loop, publisher.

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/ws/codec.h"
#include "tools/bench/response_parser.h"
#include "tools/bench/run.h"

namespace tether::bench {

// A WebSocket client. kEcho: closed loop, one message in flight, the next sent on its echo.
// kRate: sends when Run's open-loop timer says so. kReceive: only receives (push, idle).
class WsClient final : public Client, private ResponseSink, private ws::DecoderSink {
 public:
  enum class Behaviour { kEcho, kRate, kReceive };
  WsClient(Run& run, size_t id, Behaviour behaviour);

  void start() override;
  // ws-rate: sends a message stamped with its SCHEDULED time. False when this connection cannot
  // take it (not open, or over 4 MiB of output waiting).
  bool send_at(uint64_t scheduled_ns);

 private:
  void handle_read() override;
  void read_handshake();
  void read_frames();
  void send_message(uint64_t stamp_ns);
  void send_control(ws::Opcode opcode, std::string_view payload);

  void on_response_head(const ResponseHead& head) override;
  void on_response_body(std::string_view) override {}

  void on_message(ws::Opcode opcode, std::string& payload) override;
  void on_ping(std::string_view payload) override;
  void on_pong(std::string_view) override {}
  void on_close(uint16_t code, std::string_view reason) override;
  void on_error(uint16_t code, std::string_view reason) override;

  Behaviour behaviour_;
  ResponseParser parser_{*this};
  ws::Decoder decoder_{ws::Role::kClient};
  std::string expected_accept_;
  int status_ = 0;          // of the handshake answer, 0 before it
  bool accept_ok_ = false;  // its Sec-WebSocket-Accept matched our key
  bool upgraded_ = false;
};

// An SSE subscriber: GET with Accept: text/event-stream, any body framing; one message per
// event (data lines joined), its latency from the send time the data starts with.
class SseClient final : public Client, private ResponseSink {
 public:
  SseClient(Run& run, size_t id);
  void start() override;

 private:
  void handle_read() override;
  void handle_eof() override;
  void on_response_head(const ResponseHead& head) override;
  void on_response_body(std::string_view chunk) override;
  void line(std::string_view line);
  void dispatch();
  std::string bad_answer() const;

  ResponseParser parser_{*this};
  int status_ = 0;  // of the response head, 0 before it
  bool event_stream_ = false;
  std::string content_type_;
  bool ended_ = false;  // the response ended (a stream should not)
  std::string line_;    // an incomplete line
  bool after_cr_ = false;
  std::string data_, event_;
  bool has_data_ = false;
  std::string close_reason_;  // set by a tether-close event
};

// A long-poll loop. tether: opens a session (?tether-transport=poll), then polls with
// ?tether-session=SID&tether-ack=HIGHEST. nchan: polls the URL with If-Modified-Since and
// If-None-Match from the previous answer (one message per answer). pushpin: polls the URL as it
// is (one message per 200 answer; 204, 304 and 408 are a poll that timed out). Reconnects when
// the server closes between answers.
class PollClient final : public Client, private ResponseSink {
 public:
  PollClient(Run& run, size_t id, PollProtocol protocol);
  void start() override;

 private:
  void handle_read() override;
  void handle_connected() override;
  void handle_eof() override;
  void on_response_head(const ResponseHead& head) override;
  void on_response_body(std::string_view chunk) override;
  void send_request();
  void handle_response();
  void handle_tether_response(uint64_t now);
  void handle_plain_response(uint64_t now);

  PollProtocol protocol_;
  ResponseParser parser_{*this};
  bool in_flight_ = false;  // a request is out, its answer not complete
  bool answered_ = false;   // the current connection answered at least once
  bool eof_ = false;        // the answer being handled ended with the connection
  int status_ = 0;
  std::string body_;
  bool keep_alive_ = true;
  // tether
  std::string session_;
  int64_t ack_ = 0;
  // nchan
  std::string last_modified_, etag_;
};

// A publisher: one keep-alive connection, one POST in flight at a time. Each message is
// "<scheduled-ns> <seq> xxx", seq counting from 1 and the time the one it was due at (open loop:
// a message that waits for the answer to the POST before it carries that wait into its delivery
// latency). raw: one message per POST, the body is the message (nchan). pushpin-*: the messages
// due by the time a POST goes out are its items, in order (Pushpin's publish endpoint takes a
// list). A message's latency in this run's figures is from its due time to the POST's answer.
class PublishClient final : public Client, private ResponseSink {
 public:
  PublishClient(Run& run, size_t id);
  void start() override;
  bool send_at(uint64_t scheduled_ns) override;

 private:
  void handle_read() override;
  void handle_connected() override;
  void handle_eof() override;
  void on_response_head(const ResponseHead& head) override;
  void on_response_body(std::string_view) override {}
  void send_next();
  void append_item(const std::string& payload);
  void handle_response();

  ResponseParser parser_{*this};
  int status_ = 0;
  std::deque<uint64_t> due_;         // due times of the messages not sent yet
  std::vector<uint64_t> in_flight_;  // due times of the messages in the POST in flight
  uint64_t seq_ = 0;
  std::string request_, body_;
};

}  // namespace tether::bench
