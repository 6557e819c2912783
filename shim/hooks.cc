// The wrappers of CPython's C API (PFG_PY in intercepted.def): the protocol's fast paths,
// and, off them, what the call sees handed to policy.h, whose verdict they act on.
// docs/design.md ("Decisions") is the reference, shim/model/ checks the protocol and
// tests/unit/test_policy.cc the rules; keep them in step. The libc hooks are in
// libc_hooks.cc; hooks.h says how both are defined.
#include <atomic>

#include "backtrace.h"
#include "exitwatch.h"
#include "facts.h"
#include "hooks.h"
#include "images.h"
#include "interpose.h"
#include "lifecycle.h"
#include "park.h"
#include "pep788.h"
#include "probes.h"
#include "state.h"
#include "window.h"

using namespace pfg;

namespace {

// The slow path: only reached when the phase is not RUNNING or the thread's handle
// does not match the current epoch. Returns to let the call through, at once; stops the
// thread otherwise (park.h: ends or parks it). Which, and why, is rules 1-6 of
// docs/design.md, policy::decide() in policy.h. Up to CPython's own point of no return it
// never waits (docs/design.md, "The principle"): a thread CPython would let run runs, and
// one that holds the GIL -- a nested PyGILState_Ensure from a ctypes.PyDLL callback or
// tracemalloc's allocator hook -- is never held up.
__attribute__((noinline, cold)) void decide(Fn api, void *ts, uint64_t e, bool from_cpython = false) {
  const policy::Call c = call_here(api, e, ts, from_cpython);
  const policy::Verdict v = policy::decide(c, kLive);
  if (v.stops()) park(c, v);
}

// Restore/Acquire fast path: the handle was saved in this epoch and it is RUNNING.
inline bool handle_current(uint64_t e) { return ((t_pt.h.epoch ^ e) | phase_of(e)) == 0; }

// PyEval_SaveThread when not RUNNING, or by a thread not yet registered for the drain.
// m is the epoch read before the release with save_mark ORed in, so its phase bits are
// not 0. Registers the thread, and gives the handle phase bits 3, which no g_epoch value
// has: the matching restore can never take the fast path (a single compare because of
// this), and rule 2 of decide() still sees the generation. (A thread's first save
// thus costs its first restore the slow path too: once per thread.)
__attribute__((noinline, cold)) void *save_slow(void *ts, uint64_t m) {
  window_register();
  t_pt.h.epoch = m | 3;
  return ts;
}

// Everything PyEval_RestoreThread does off its fast path.
__attribute__((noinline, cold)) void restore_slow(void *ts, uint64_t e) {
  PerThread &pt = t_pt;
  if (!in_gilstate()) {
    // Inside PyGILState_Ensure this is CPython's own call: the Ensure hook has decided
    // and opened the window.
    window_register();
    e = g_epoch.load();  // re-read after opening the window (the drain's Dekker pairing)
    decide(fn_PyEval_RestoreThread, ts, e);
    if (pt.h.ts == ts) pt.h.epoch = 0;
  }
  pt.acquired_epoch = e;
  PFG_REAL(PyEval_RestoreThread)(ts);
  window_close();
}

// Entering Py_FinalizeEx/Py_Finalize/Py_Exit (they nest: Py_Exit -> Py_FinalizeEx).
// Mark this thread as the finalizer of the current generation before announcing
// FINALIZING, so that it can never see itself as a late thread. Nothing else happens
// here: CPython is far from its point of no return (docs/design.md).
void finalizer_enter() {
  // Ends come after this: std::set_terminate is found now, in this ordinary context (no
  // dynamic-loader call in a stopping thread), and the exit is watched.
  park_prepare();
  exitwatch_arm();
  t_pt.finalizer_gen = gen_of(g_epoch.load());
  begin_finalizing();
  pep788_finalize_wait();  // only when an extension holds a PEP 788 guard (pep788.h)
}

// CPython calls PyThreadState_Clear on every other thread's state before it frees it,
// and PyInterpreterState_Clear before it frees the rest (<= 3.8 frees thread states
// there, under a lock it takes inside): the last moment before anything an acquiring
// thread uses goes away. If this is the finalizer and CPython is past its point of no
// return, let every open window close first (window.h; policy.h, drain). Two loads and a
// compare otherwise.
inline void before_cpython_frees() {
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(policy::drain_due(call_here(fn_PyThreadState_Clear, e), kLive))) drain_windows_once(gen_of(e));
}

// What every acquiring hook (PyEval_AcquireThread, PyEval_AcquireLock, PyGILState_Ensure,
// PyThreadState_New) does around its real call: register for the drain, open the window,
// read g_epoch -- after the window opens: the drain's Dekker pairing (window.h) -- and
// decide() off the fast path, then call (real, with that epoch) and close the window
// once it returns. The fast path is a current handle for a hook given the caller's own
// thread state (ts, kOwnTs), RUNNING for the others. caller: the hook's return address,
// tells CPython's own call from an extension's for a report (decide()'s from_cpython).
template <Fn api, bool kOwnTs = false, typename Real>
inline auto acquiring(Real &&real, void *ts = nullptr, uintptr_t caller = 0) {
  window_register();
  window_open();
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(kOwnTs ? !handle_current(e) : phase_of(e) != kRunning))
    decide(api, ts, e, caller && in_python_text(caller));
  struct Window {
    ~Window() { window_close(); }  // once the real call has returned (its result copied)
  } open;
  return real(e);
}

// CPython switches thread states inside PyGILState_Ensure/Release (calling RestoreThread
// and SaveThread itself, through the PLT or through our entry patches): one level deeper
// in gilstate_depth for the call, so that those switches are not taken for the caller's own,
// and the caller's outstanding save put back afterwards.
template <typename Real>
inline auto inside_gilstate(Real &&real) {
  struct Level {
    const Handle outer = t_pt.h;  // CPython's own switches inside may overwrite it
    Level() { ++t_pt.gilstate_depth; }
    ~Level() {
      --t_pt.gilstate_depth;
      t_pt.h = outer;
    }
  } level;
  return real();
}

// Py_Main/Py_BytesMain/_Py_UnixMain: the python executable's own runtime, whose whole
// program runs inside the real call. Announce its generation first and remember it
// (policy.h, routine: what happens to its threads at exit is routine).
void main_starts() {
  begin_generation();
  t_pt.acquired_epoch = g_epoch.load();
  g_main_generation.store(gen_of(t_pt.acquired_epoch));
}

// The python executable's program has run, and finalized its runtime: main() returns its
// status to exit() next. Where no hook saw the finalization begin (a static,
// link-time-optimized python finalizes through internal calls), this is the last ordinary
// context before the exit: arm the exit watch here (registered now, its handler runs first
// at exit) and find std::set_terminate for threads ended from here on.
int main_returns(int status) {
  park_prepare();
  exitwatch_arm();
  return status;
}

// (Re-)initialization. Py_Initialize* start the new generation only once the runtime
// exists: until then the thread that initializes passes as the previous runtime's
// finalizer, and every other thread still sees FINALIZED and parks -- announcing the
// new generation first let a PyGILState_Ensure into a half-built runtime (found by the
// model: docs/model.md, mutant mut-init-early). Py_Main/Py_BytesMain run the whole program inside the real
// call, so they announce it first.
template <typename F>
inline auto initializing(F &&real) {
  const uint64_t e = g_epoch.load();
  if (phase_of(e) == kRunning) return real();
  t_pt.finalizer_gen = gen_of(e);
  struct Done {
    ~Done() {
      begin_generation();
      t_pt.acquired_epoch = g_epoch.load();  // holds the new runtime's GIL
    }
  } done;
  return real();
}

}  // namespace

extern "C" {

// The hot pair. Fast paths: one GOT load for this thread's block, one load of g_epoch,
// a handful of compares and stores; everything else is in save_slow()/restore_slow().
// Their disassembly, instruction by instruction: docs/performance.md ("The pair").
__attribute__((visibility("hidden"))) void *pfg_hook_PyEval_SaveThread(void) {
  const uint64_t e = g_epoch.load();  // before the release: see docs/design.md
  void *ts = PFG_REAL_HOT(PyEval_SaveThread)();
  PerThread &pt = t_pt;
  // inside a GILState hook too: that hook restores the caller's handle. save_mark is 3
  // until the thread is registered for the drain, 0 after: a thread's first save gets
  // phase bits 3, so its restore cannot take the fast path before its window is visible
  // to a finalizer. One test then covers both "not RUNNING" and "not registered".
  const uint64_t m = e | pt.save_mark;
  pt.h = {ts, m};
  if (PFG_UNLIKELY(phase_of(m) != kRunning)) return save_slow(ts, m);
  return ts;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_RestoreThread(void *ts) {
  PerThread &pt = t_pt;
  // The window is open on the fast path too: without it a restore that read RUNNING just
  // before finalization began is invisible to the drain, and on 3.9+ take_gil's own check
  // can pass before the point of no return and then read the thread state's interpreter
  // after the frees (docs/model.md, N3 and mutant mut-restore-nowindow: P1). That costs
  // the tail call.
  window_open();
  const uint64_t e = g_epoch.load();
  // Saved in this very epoch, which was RUNNING (a save in any other phase stores phase
  // bits 3: save_slow), by a registered thread, so one compare. Inside a GILState hook
  // the same test holds: that hook restores the caller's handle afterwards.
  if (PFG_UNLIKELY(pt.h.epoch != e)) return restore_slow(ts, e);
  pt.h.epoch = 0;
  pt.acquired_epoch = e;
  PFG_REAL_HOT(PyEval_RestoreThread)(ts);
  window_close();
}

// A thread CPython starts (3.14's thread_run) takes its first GIL here: the caller tells
// a program's own late thread from an extension's (docs/diagnostics.md).
__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireThread(void *ts) {
  // A thread that could park one day exists now: load libunwind here, once, while the
  // runtime runs (an ordinary context; a thread that is being stopped never gets here in
  // RUNNING), so that a program's exit with its threads does not pay for it
  // (backtrace.h). One load afterwards.
  if (phase_of(g_epoch.load(std::memory_order_relaxed)) == kRunning) backtrace_prepare();
  acquiring<fn_PyEval_AcquireThread, true>([ts](uint64_t e) {
    if (t_pt.h.ts == ts) t_pt.h.epoch = 0;
    t_pt.acquired_epoch = e;
    PFG_REAL(PyEval_AcquireThread)(ts);
  }, ts, reinterpret_cast<uintptr_t>(__builtin_return_address(0)));
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireLock(void) {
  acquiring<fn_PyEval_AcquireLock>([](uint64_t e) {
    t_pt.acquired_epoch = e;
    PFG_REAL(PyEval_AcquireLock)();
  });
}

__attribute__((visibility("hidden"))) int pfg_hook_PyGILState_Ensure(void) {
  return acquiring<fn_PyGILState_Ensure>([](uint64_t e) {
    t_pt.acquired_epoch = e;
    return inside_gilstate([] { return PFG_REAL(PyGILState_Ensure)(); });
  });
}

__attribute__((visibility("hidden"))) void pfg_hook_PyGILState_Release(int st) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Release, nullptr, e);
  inside_gilstate([st] { PFG_REAL(PyGILState_Release)(st); });
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_FinalizeEx(void) {
  finalizer_enter();
  int rc = PFG_REAL(Py_FinalizeEx)();
  end_finalizing();
  return rc;
}

__attribute__((visibility("hidden"))) void pfg_hook_Py_Finalize(void) {
  finalizer_enter();
  PFG_REAL(Py_Finalize)();
  end_finalizing();
}

// 3.13's Py_Exit finalizes through an internal function, not Py_FinalizeEx.
__attribute__((visibility("hidden"))) void pfg_hook_Py_Exit(int status) {
  finalizer_enter();
  PFG_REAL(Py_Exit)(status);
  __builtin_unreachable();
}

__attribute__((visibility("hidden"))) void pfg_hook_PyThreadState_Clear(void *ts) {
  before_cpython_frees();
  PFG_REAL(PyThreadState_Clear)(ts);
}

__attribute__((visibility("hidden"))) void pfg_hook_PyInterpreterState_Clear(void *interp) {
  before_cpython_frees();
  PFG_REAL(PyInterpreterState_Clear)(interp);
}

// A thread state for an interpreter: an embedder's native thread attaching (G2 of
// tests/subinterp/README.md). Past the runtime's point of no return, or for an
// interpreter ended with Py_EndInterpreter, CPython would build it on freed memory.
// Inside PyGILState_Ensure it is CPython's own call, already decided.
__attribute__((visibility("hidden"))) void *pfg_hook_PyThreadState_New(void *interp) {
  if (in_gilstate()) return PFG_REAL(PyThreadState_New)(interp);
  return acquiring<fn_PyThreadState_New>([interp](uint64_t e) {
    const policy::Call c = call_here(fn_PyThreadState_New, e);
    const policy::Verdict v = policy::new_thread_state(c, interp, kLive);
    if (PFG_UNLIKELY(v.stops())) park(c, v);
    void *ts = PFG_REAL(PyThreadState_New)(interp);
    note_ts_created(ts);
    return ts;
  });
}

// Records the deletion before the state is freed: a thread that saved it and restores
// it later parks instead (G1 of tests/subinterp/README.md). Never waits.
__attribute__((visibility("hidden"))) void pfg_hook_PyThreadState_Delete(void *ts) {
  exitwatch_arm_early();
  backtrace_prepare();  // a thread that saved ts parks from now on (backtrace.h)
  note_ts_deleted(ts);
  PFG_REAL(PyThreadState_Delete)(ts);
}

// The interpreter is recorded once Py_EndInterpreter returned -- everything of it is
// freed then -- so that a thread that attaches to it before the end (CPython's own
// threading._shutdown joins the interpreter's threads inside) is unchanged.
__attribute__((visibility("hidden"))) void pfg_hook_Py_EndInterpreter(void *ts) {
  exitwatch_arm_early();
  backtrace_prepare();  // a thread that attaches to it parks (backtrace.h)
  void *interp = runtime_interp_of(ts);  // ts is valid (current) at entry
  PFG_REAL(Py_EndInterpreter)(ts);
  note_interp_ended(interp);
}

__attribute__((visibility("hidden"))) void pfg_hook_Py_Initialize(void) {
  initializing([] { PFG_REAL(Py_Initialize)(); });
}

__attribute__((visibility("hidden"))) void pfg_hook_Py_InitializeEx(int initsigs) {
  initializing([=] { PFG_REAL(Py_InitializeEx)(initsigs); });
}

__attribute__((visibility("hidden"))) PyStatusABI pfg_hook_Py_InitializeFromConfig(const void *config) {
  return initializing([=] { return PFG_REAL(Py_InitializeFromConfig)(config); });
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_Main(int argc, wchar_t **argv) {
  main_starts();
  return main_returns(PFG_REAL(Py_Main)(argc, argv));
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_BytesMain(int argc, char **argv) {
  main_starts();
  return main_returns(PFG_REAL(Py_BytesMain)(argc, argv));
}

// CPython 3.7's Programs/python.c calls _Py_UnixMain (Py_BytesMain's predecessor).
__attribute__((visibility("hidden"))) int pfg_hook__Py_UnixMain(int argc, char **argv) {
  main_starts();
  return main_returns(PFG_REAL(_Py_UnixMain)(argc, argv));
}

}  // extern "C"

#define PFG_PY(ret, name, params, args) PFG_EXPORT_PY_ALIAS(ret, name, params)
#include "intercepted.def"
