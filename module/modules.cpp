#include "module/modules.h"

#include "module/poll/poll_module.h"
#include "module/send/send_module.h"
#include "module/sse/sse_module.h"
#include "module/stats/stats_module.h"
#include "module/websocket/websocket_module.h"

namespace tether {

namespace {
// Tried in this order for each request routed to a location; the first to claim it answers.
const Module* const kModules[] = {&stats_module::kModule, &websocket::kModule, &sse::kModule, &poll::kModule,
                                  &send::kModule};
}  // namespace

std::span<const Module* const> all_modules() {
  return kModules;
}

}  // namespace tether
