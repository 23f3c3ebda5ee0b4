// Fuzz target: the RFC 6455 frame decoder in the client role (frames from a server),
// and encode/decode round trips. See ws_fuzz.h for the input layout and what is checked.

#include "ws_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether::fuzz::fuzz_ws(tether::ws::Role::kClient, data, size);
}
