#pragma once
#include <span>

#include "module/module.h"

namespace tether {
// Explicit list, like ngx_modules[]: self-registering statics vanish from static libraries.
std::span<const Module* const> all_modules();
}  // namespace tether
