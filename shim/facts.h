// The facts policy.h's rules read, from this process: what a hook saw (call_here: the
// call and a copy of the calling thread's block) and what CPython and the process say
// (kLive: CPython's probes, the lifecycle records, the exit, the configuration). Kept
// apart from policy.h so that the rules stay pure and testable on a fake runtime
// (tests/unit/test_policy.cc).
#pragma once
#include <cstdint>

#include "config.h"
#include "exitwatch.h"
#include "interpose.h"
#include "lifecycle.h"
#include "policy.h"
#include "probes.h"
#include "state.h"

namespace pfg {

// A constant, so that the rules' calls through it are direct calls once inlined. Each is
// lock-free and allocation-free (their headers say so): safe in a thread about to stop.
inline constexpr policy::Runtime kLive = {
    runtime_is_finalizing, runtime_finalization_over, runtime_thread_ending_normally,
    runtime_ends_late_threads, ts_deleted_since, interp_ended, exit_begun,
    [] { return g_config.mode; }, [] { return g_main_generation.load(); }};

inline policy::Call call_here(Fn api, uint64_t e, void *ts = nullptr, bool from_cpython = false) {
  const PerThread &pt = t_pt;
  return {api, e, ts, from_cpython, pt.h, pt.finalizer_gen, pt.acquired_epoch, pt.window != 0};
}

}  // namespace pfg
