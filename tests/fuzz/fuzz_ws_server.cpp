// Fuzz target: the RFC 6455 frame decoder in the server role (frames from a client),
// and encode/decode round trips. See ws_fuzz.h for the input layout and what is checked.

#include "ws_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return tether::fuzz::fuzz_ws(tether::ws::Role::kServer, data, size);
}
