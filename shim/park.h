// Stopping a late thread for good: ending it as this CPython ends late threads, or
// parking it (docs/design.md, "Ending or parking"); join completion.
#pragma once
#include <cstdint>
#include <pthread.h>

#include "config.h"
#include "exitwatch.h"
#include "interpose.h"
#include "lifecycle.h"
#include "parkrecord.h"
#include "policy.h"
#include "probes.h"
#include "state.h"

namespace pfg {

// The facts policy.h's rules read, from this process: CPython's probes, the lifecycle
// records, the exit, the configuration. A constant, so that the hooks' calls are direct.
inline constexpr policy::Runtime kLive = {
    runtime_is_finalizing, runtime_finalization_over, runtime_thread_ending_normally,
    runtime_ends_late_threads, ts_deleted_since, interp_ended, exit_begun,
    [] { return g_config.mode; }, [] { return g_main_generation.load(); }};

// What a hook saw, for the policy: the call and a copy of this thread's block (state.h).
inline policy::Call call_here(Fn api, uint64_t e, void *ts = nullptr, bool from_cpython = false) {
  const PerThread &pt = t_pt;
  return {api, e, ts, from_cpython, pt.h, pt.finalizer_gen, pt.acquired_epoch, pt.window != 0};
}

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

// Ordinary context before any park (the finalizer entering Py_FinalizeEx): finds
// std::set_terminate if a C++ runtime is loaded, so that ending a thread later needs no
// dynamic loader call (park.cc).
void park_prepare();

// fork(): the child has none of the parent's parked threads (preload.cc calls it).
void park_atfork_child();

}  // namespace pfg
