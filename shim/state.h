// The guard's shared state: the generation/phase word and the per-thread handle.
// docs/design.md ("State") is the reference; shim/model/ models exactly this.
#pragma once
#include <atomic>
#include <cstdint>

namespace pfg {

// Layout of CPython's PyStatus (3.8+), returned by value from Py_InitializeFromConfig.
struct PyStatusABI {
  int type;
  const char *func;
  const char *err_msg;
  int exitcode;
};

enum Phase : uint64_t { kRunning = 0, kFinalizing = 1, kFinalized = 2 };

inline uint64_t phase_of(uint64_t e) { return e & 3; }
inline uint64_t gen_of(uint64_t e) { return e >> 2; }
inline uint64_t make_epoch(uint64_t gen, uint64_t phase) { return gen << 2 | phase; }

// g_epoch = generation << 2 | phase. Stored only by a thread that finalizes or
// initializes; loaded on every hot path. All accesses are seq_cst: a thread whose load
// still sees RUNNING is ordered before the finalizer's store (docs/model.md argues why
// this is enough). On x86-64 the load is a plain mov.
extern std::atomic<uint64_t> g_epoch;

// CLOCK_MONOTONIC ns when the current finalization began (0: never). For reports.
extern std::atomic<int64_t> g_finalize_start_ns;

// The wrapper handle of the seed (bpo-33608), kept per thread instead of per thread
// state: the thread state this thread last saved and g_epoch at that moment (0: no
// outstanding save). Finalization invalidates every handle at once by moving g_epoch;
// a stale thread state is recognized by comparing integers, never by dereferencing it.
struct Handle {
  void *ts;
  uint64_t epoch;
};

// __thread (not thread_local): trivially initialized, no TLS wrapper calls, and
// initial-exec (-ftls-model) so each access is one %fs-relative instruction.
extern __thread Handle t_handle;
// The generation this thread finalized (0: none). Set by the Py_FinalizeEx/Py_Finalize/
// Py_Exit hooks before FINALIZING is stored. A generation, not a flag: the thread stays
// the finalizer after Py_FinalizeEx returns, and stops being special when a new runtime
// starts, without anyone having to clear another thread's TLS.
extern __thread uint64_t t_finalizer_gen;
// > 0 while this thread is inside the PyGILState_Ensure/Release hooks: the thread-state
// switches CPython makes there are not the caller's save/restore pairs.
extern __thread unsigned t_in_gilstate;

// Transitions. Called by the finalizing / initializing thread only.
void begin_finalizing();  // RUNNING -> FINALIZING (same generation)
void end_finalizing();    // -> FINALIZED
void begin_generation();  // FINALIZING/FINALIZED -> (gen + 1) | RUNNING

int64_t monotonic_ns();  // async-signal-safe

}  // namespace pfg
