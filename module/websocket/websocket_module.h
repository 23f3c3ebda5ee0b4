#pragma once
#include "module/module.h"

namespace tether::websocket {
extern const Module kModule;
}
