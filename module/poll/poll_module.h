#pragma once
#include "module/module.h"

namespace tether::poll {
// GET ?tether-transport=poll opens a session; GET ?tether-session=S&tether-ack=N long-polls
// it. See DESIGN.md "Long polling".
extern const Module kModule;
}  // namespace tether::poll
