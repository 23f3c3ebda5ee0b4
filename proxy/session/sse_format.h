#pragma once
// The text/event-stream wire format of the edge protocol (no I/O). See DESIGN.md "SSE".

#include <cstdint>
#include <string>
#include <string_view>

namespace tether::session {

// id: <sid>.<seq>
// data: <line>            one per line of a text message; CR, LF and CRLF all end a line
//                         (an empty message is one empty data: line)
// <blank line>
// For binary: "event: binary" after the id, and one data: line of standard base64.
void append_sse_message(std::string& out, std::string_view sid, uint64_t seq, bool binary,
                        std::string_view payload);
// [id: ID\n] event: NAME\n data: DATA\n\n   (DATA is one line: JSON from the caller); no id if ID empty
void append_sse_event(std::string& out, std::string_view name, std::string_view data,
                      std::string_view id = {});
// : TEXT\n\n
void append_sse_comment(std::string& out, std::string_view text);
// retry: MS\n\n
void append_sse_retry(std::string& out, uint64_t ms);
// A comment of 2 KiB, for middleboxes that buffer the start of a response.
void append_sse_padding(std::string& out);

// "<sid>.<seq>" -> sid, seq. False unless sid is a base64url token of 1 to 64 characters (ids
// are opaque: a well-formed token that names no session is the caller's "unknown", not
// "malformed") and seq a decimal number (no sign, fits in 63 bits).
bool parse_last_event_id(std::string_view value, std::string& sid, uint64_t& seq);

// Standard base64 (with padding) of DATA, via OpenSSL's EVP_EncodeBlock.
std::string base64_encode(std::string_view data);

}  // namespace tether::session
