#pragma once
#include "module/module.h"

namespace tether::send {
// POST ?tether-session=S&tether-seq=N: one message to the backend, in seq order, at most once.
// DELETE ?tether-session=S: closes the session. See DESIGN.md "Send" and "Close".
extern const Module kModule;
}  // namespace tether::send
