#pragma once
// CMocka 1.1.5's header has no extern "C" guard and needs these included first.
// A failing assert longjmps past destructors: keep owned objects in fixtures.
#include <csetjmp>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
extern "C" {
#include <cmocka.h>
}
