// The guard's shared state: the generation/phase word and the per-thread handle.
// docs/design.md ("State") is the reference; shim/model/ models exactly this.
#pragma once
#include <atomic>
#include <cstdint>
#include <ctime>

namespace pfg {

// Layout of CPython's PyStatus (3.8+), returned by value from Py_InitializeFromConfig.
struct PyStatusABI {
  int type;
  const char *func;
  const char *err_msg;
  int exitcode;
};

enum Phase : uint64_t { kRunning = 0, kFinalizing = 1, kFinalized = 2 };

// g_epoch = generation << 32 | lifecycle events << 2 | phase.
//   phase       RUNNING, FINALIZING, FINALIZED (3 only in a handle: save_slow)
//   events      a counter of thread-state lifecycle events within the generation
//               (lifecycle.h: PyThreadState_Delete of a thread state, 30 bits, wraps).
//               Part of the word so that the restore fast path stays one compare: a
//               thread that saved its state before such an event takes the slow path
//               once, where lifecycle.h tells whether its own state was deleted.
//   generation  one per runtime (Py_Initialize* after a finalization starts the next)
constexpr uint32_t kEventsMask = (1u << 30) - 1;
inline uint64_t phase_of(uint64_t e) { return e & 3; }
inline uint64_t gen_of(uint64_t e) { return e >> 32; }
inline uint32_t events_of(uint64_t e) { return uint32_t(e >> 2) & kEventsMask; }
inline uint64_t make_epoch(uint64_t gen, uint64_t phase) { return gen << 32 | phase; }
// Generation and phase only: what the transitions and the plain join path compare.
inline uint64_t runtime_of(uint64_t e) { return e & ~(uint64_t(kEventsMask) << 2); }

// Stored by a thread that finalizes or initializes (the transitions below) and, for the
// events counter, by PyThreadState_Delete (lifecycle.cc); every store is a CAS that
// keeps what it does not own. Loaded on every hot path. All accesses are seq_cst: a
// thread whose load still sees RUNNING is ordered before the finalizer's store
// (docs/model.md argues why this is enough). On x86-64 the load is a plain mov.
extern std::atomic<uint64_t> g_epoch __attribute__((visibility("hidden")));

// The generation whose runtime Py_Main/Py_BytesMain run (0: none): the python
// executable's own, which ends with the process. For reports (policy.h, routine).
extern std::atomic<uint64_t> g_main_generation;

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

// Everything the guard keeps per thread, in one initial-exec TLS block: each hook finds
// it with a single GOT load and %fs-relative accesses (no TLS wrapper calls: __thread,
// constant-initialized, an aggregate).
struct PerThread {
  Handle h;
  // 0 once this thread is registered for the finalizer's drain (window.h); kUnregistered
  // until then, from the TLS image every new thread starts with (state.cc). The save fast
  // path ORs it into the handle's epoch: an unregistered thread's handle then has phase
  // bits 3, which no g_epoch value has, so its restore takes the slow path, which
  // registers it -- no separate test on the hot pair (docs/design.md, "Decisions").
  uint64_t save_mark;
  // Nesting depth of the PyGILState_Ensure/Release hooks: the thread states CPython
  // switches inside those calls are not the caller's own save/restore pairs.
  uint32_t gilstate_depth;
  int window;              // real acquiring calls this thread is inside (window.h)
  // The generation this thread finalized (0: none). Set by the Py_FinalizeEx/
  // Py_Finalize/Py_Exit hooks before FINALIZING is stored. A generation, not a flag:
  // the thread stays the finalizer after Py_FinalizeEx returns, and stops being special
  // when a new runtime starts, without anyone having to clear another thread's TLS.
  uint64_t finalizer_gen;
  // g_epoch when this thread last took the GIL through a hook (0: never). A thread that
  // took the GIL of one generation and is found waiting inside CPython's take_gil in a
  // later one is a thread of the earlier runtime with a freed thread state (gilwait.cc).
  uint64_t acquired_epoch;
};
extern __thread PerThread t_pt __attribute__((visibility("hidden")));

constexpr uint64_t kUnregistered = 3;  // phase bits 3: see PerThread::save_mark
inline bool is_registered() { return t_pt.save_mark == 0; }
inline bool in_gilstate() { return t_pt.gilstate_depth != 0; }
// A thread that will not come out of its calls (parked, ended, hung by CPython) closes
// every window at once, possibly after the drain's barrier: a release store, so that the
// drain's acquire load that reads 0 also sees every write the thread made inside CPython
// before (arm64 may make two plain stores visible in either order; docs/patching.md, "The
// window/drain protocol on arm64"). On x86-64 it is the same mov as a plain store.
inline void windows_close_all() { __atomic_store_n(&t_pt.window, 0, __ATOMIC_RELEASE); }

// Transitions. Called by the finalizing / initializing thread only.
bool begin_finalizing();  // RUNNING -> FINALIZING (same generation); false if not RUNNING
void end_finalizing();    // -> FINALIZED
void begin_generation();  // FINALIZING/FINALIZED -> (gen + 1) | RUNNING, events 0
// One more lifecycle event in this generation; returns g_epoch as it now is.
uint64_t count_event();
// An unsupported runtime (free-threaded): the phase stays RUNNING for good.
void state_step_aside();

int64_t monotonic_ns();  // async-signal-safe
struct timespec clock_in_ms(clockid_t clk, int ms);  // clk's now + ms, for a timed wait

}  // namespace pfg
