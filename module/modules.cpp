#include "module/modules.h"

#include "module/websocket/websocket_module.h"

namespace tether {

namespace {
const Module* const kModules[] = {&websocket::kModule};
}

std::span<const Module* const> all_modules() { return kModules; }

}  // namespace tether
