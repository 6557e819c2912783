// Stopping a late thread for good: ending it as this CPython ends late threads, or
// parking it (docs/design.md, "Ending or parking"); join completion.
#pragma once
#include <cstdint>
#include <pthread.h>

#include "interpose.h"
#include "parkrecord.h"
#include "policy.h"

namespace pfg {

// Stops a thread the policy stopped (v.stops()); never returns. How is the policy's too
// (policy::settle: end_or_park, routine):
//   PYFINGUARD_MODE=auto (default): ends the thread with pthread_exit where this CPython
//     ends late threads itself (<= 3.13.7) and the reason is one CPython ends it for
//     (finalization, not a freed thread state or interpreter); parks it otherwise. An
//     ending thread whose unwind reaches a frame that may not throw (std::terminate)
//     parks there instead of aborting the process.
//   park: always parks (blocks for ever, every signal blocked); exit: always ends, with
//   the same std::terminate net; abort: abort().
[[noreturn]] void park(const policy::Call &c, policy::Verdict v);

// pthread_join on a thread that has parked (or parks while we wait) completes at once:
// it will never run again. Only used when something is parked or Python is finalizing.
int join_completing(pthread_t t, void **retval);

// Ordinary context before any park (the finalizer entering Py_FinalizeEx, the python
// executable's return): finds std::set_terminate if a C++ runtime is loaded, so that
// ending a thread later needs no dynamic loader call (park.cc), and loads libunwind for
// the reports' backtraces (backtrace.h: in the python executable's own runtime only when
// another thread exists).
void park_prepare();

// fork(): the child has none of the parent's parked threads (preload.cc calls it).
void park_atfork_child();

}  // namespace pfg
