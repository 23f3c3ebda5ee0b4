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

// The fixture every test file keeps its owned objects in (an assert longjmps past destructors;
// teardown still runs): `cmocka_unit_test_setup_teardown(t, fixture_setup<F>, fixture_teardown<F>)`.
template <class F>
int fixture_setup(void** state) {
  *state = new F;
  return 0;
}
template <class F>
int fixture_teardown(void** state) {
  delete static_cast<F*>(*state);
  return 0;
}
template <class F>
F& fixture_of(void** state) {
  return *static_cast<F*>(*state);
}
