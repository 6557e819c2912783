// Which Python runtime is loaded: detection at load and after dlopen, take-over (every
// function covered, the probes filled: probes.h), forgetting it when its image is
// unmapped, and pyfinguard_describe().
#pragma once
#include <cstddef>

namespace pfg {

// Finds the runtime at load time (executable or a library loaded with it). Does nothing
// visible in a process without Python.
void runtime_detect_at_load();

// After a dlopen: the handle may have brought a Python runtime (embedders such as
// PostgreSQL's plpython3u or uWSGI load libpython late).
void runtime_detect_in(void *handle);

// After the real dlclose returned: if it unmapped the runtime's image, forget everything
// that pointed there (real-function slots, probes, entry patches and their trampolines,
// coverage, text ranges, GIL condition variables); the next dlopen that maps a runtime
// takes it over afresh (docs/design.md, "Images come and go").
void runtime_after_dlclose();

// pyfinguard_describe(): "key: value" lines and one "cover <fn> <mech> <why>" per function.
int runtime_describe(char *buf, size_t size);

}  // namespace pfg
