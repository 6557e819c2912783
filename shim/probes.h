// CPython's own state as the guard reads it: its finalizing flags, its version, the
// interpreter of a thread state, its list of interpreters. Filled when a runtime is taken
// over and cleared when its image is unmapped (runtime.cc); read lock-free, each probe
// loaded once per use, from hot paths and from threads about to park. All knowledge of
// CPython version differences in what is read lives here.
#pragma once

namespace pfg {

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

// Does this CPython end a thread that reaches for the GIL past its point of no return
// (PyThread_exit_thread -> pthread_exit: 3.6-3.13.7), rather than hang it (3.13.8+, with
// gh-87135; 3.14+)? From the version copied at take-over; false when unknown.
bool runtime_ends_late_threads();

// For detection (runtime.cc), under its mutex.
// Looks the probes up in scope (lookup: a dlsym that never returns the guard's own
// definitions) and copies the version (version_fn: its Py_GetVersion, or nullptr);
// present stays false until probes_publish().
void probes_fill(void *(*lookup)(void *scope, const char *name), void *scope, const char *(*version_fn)(void));
// Copies the first word of a Py_GetVersion() string as the runtime's version.
void probes_set_version(const char *v);
void probes_publish();  // the runtime is there: the probes answer from now on
void probes_clear();    // its image is being unmapped: every probe says "gone" from now on
bool probes_present();
const char *probes_name();        // the finalizing probe found ("Py_IsFinalizing", ...)
bool probes_have_initialized();   // Py_IsInitialized found

}  // namespace pfg
