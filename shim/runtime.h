// Which Python runtime is loaded, and CPython's own "is finalizing" probe. All knowledge
// of CPython version differences lives here.
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

// Is CPython past its own point of no return (its finalizing flag set)? Reads the
// runtime's static data only, lock-free: safe in a thread about to park.
//   3.13+:    Py_IsFinalizing()
//   3.7-3.12: _Py_IsFinalizing()
//   3.6:      _Py_Finalizing (a PyThreadState *, non-NULL while finalizing)
// True when the runtime's image was unmapped.
bool runtime_is_finalizing();

// Has CPython's finalization run to its end (not initialized, and its finalizing flag
// reset again on the way out)? False while it runs, and where CPython never resets the
// flag (3.6). Lock-free, like runtime_is_finalizing().
bool runtime_finalization_over();

// Is the calling thread at its normal end? CPython <= 3.9 ends every thread with
// PyThread_exit_thread() after deleting its thread state (t_bootstrap; bpo-44434 removed
// that call in 3.10). False on 3.10+, where only finalization calls it.
bool runtime_thread_ending_normally();

// The interpreter of a thread state that is still valid (Py_EndInterpreter's argument
// at entry): PyThreadState_GetInterpreter (3.9+), else the field every version from 3.6
// has third in PyThreadState (prev, next, interp). nullptr if unknown.
void *runtime_interp_of(void *ts);

// Is interp one of the runtime's interpreters now (PyInterpreterState_Head/_Next)? Walks
// the runtime's list without its lock: only called for an address recorded as ended
// (lifecycle.h), to tell a new interpreter at that address from the freed one.
bool runtime_interp_listed(void *interp);

// The first word of Py_GetVersion() of the runtime taken over ("3.11.2"), copied at
// take-over; "unknown" before. A static buffer: reports read it without a call.
const char *runtime_version();

// pyfinguard_describe(): "key: value" lines and one "cover <fn> <mech> <why>" per function.
int runtime_describe(char *buf, size_t size);

}  // namespace pfg
