// The wrappers: policy only. docs/design.md ("Decisions") is the reference and
// shim/model/ checks it; keep the three in step.
//
// Each hook is defined once, hidden, as pfg_hook_<name>; the exported <name> is an
// alias. Inside the library we only ever use the hidden address, which is what an
// entry patch jumps to even when an executable's definition of <name> wins lookup.
#include <atomic>
#include <cerrno>
#include <dlfcn.h>

#include "gilwait.h"
#include "window.h"
#include "images.h"
#include "interpose.h"
#include "lifecycle.h"
#include "park.h"
#include "probes.h"
#include "runtime.h"
#include "state.h"

#define PFG_LIKELY(x) __builtin_expect(!!(x), 1)
#define PFG_UNLIKELY(x) __builtin_expect(!!(x), 0)
// The hook's caller is CPython's own code (libpython, or a static python executable).
// A macro: __builtin_return_address(0) must be the hook's own return address.
#define PFG_CALLED_FROM_PYTHON() in_python_text(reinterpret_cast<uintptr_t>(__builtin_return_address(0)))
#define PFG_EXPORT_ALIAS(ret, name, params) \
  extern "C" __attribute__((visibility("default"), alias("pfg_hook_" #name))) ret name params;

using namespace pfg;

namespace {

// The slow path: only reached when the phase is not RUNNING or the thread's handle
// does not match the current epoch. Returns to let the call through, at once; parks
// otherwise. Up to CPython's own point of no return it never waits (issue 10): a thread
// CPython would let run runs, and one that holds the GIL -- a nested PyGILState_Ensure
// from a ctypes.PyDLL callback or tracemalloc's allocator hook -- is never held up.
__attribute__((noinline, cold)) void decide(Fn api, void *ts, uint64_t e, bool from_cpython = false) {
  // 1. The thread that finalizes the current runtime is never parked, during
  //    finalization or after (an embedder's main thread calling into a finalized
  //    runtime gets CPython's own behaviour, as without the guard).
  if (t_pt.finalizer_gen == gen_of(e)) return;
  // 2. A thread state saved under an earlier runtime: freed at that finalization, its
  //    address possibly reused by the current one. Never dereferenced.
  const Handle h = t_pt.h;
  if (ts && h.epoch != 0 && h.ts == ts && gen_of(h.epoch) != gen_of(e))
    park(api, e, Reason::stale_ts);
  switch (phase_of(e)) {
    case kRunning:
      break;
    case kFinalizing:
      // Threads still run while CPython joins non-daemon threads and calls atexit
      // hooks; only past its own point of no return is the runtime gone for them. A
      // thread that passes here and is still inside CPython's acquisition code when the
      // finalizer crosses that point is covered by its window (window.h).
      if (runtime_is_finalizing()) park(api, e, Reason::finalizing, from_cpython);
      break;
    default:
      park(api, e, Reason::finalized, from_cpython);
  }
  // 3. The runtime runs, but an embedder deleted this very thread state after this thread
  //    saved it (mod_wsgi-style: before ending its sub-interpreter): lifecycle.h.
  if (ts && h.epoch != 0 && h.ts == ts && ts_deleted_since(ts, h.epoch, e)) park(api, e, Reason::deleted_ts);
}

// Restore/Acquire fast path: the handle was saved in this epoch and it is RUNNING.
inline bool handle_current(uint64_t e) { return ((t_pt.h.epoch ^ e) | phase_of(e)) == 0; }

// PyEval_SaveThread when not RUNNING. The handle keeps the generation but gets phase
// bits 3, which no g_epoch value has: the matching restore can never take the fast
// path (which is a single compare because of this), and rule 2 of decide() still sees
// the generation.
__attribute__((noinline, cold)) void *save_slow(void *ts, uint64_t e) {
  window_register();
  if (phase_of(e) != kRunning) t_pt.h.epoch = e | 3;
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
  t_pt.finalizer_gen = gen_of(g_epoch.load());
  begin_finalizing();
}

// CPython calls PyThreadState_Clear on every other thread's state before it frees it,
// and PyInterpreterState_Clear before it frees the rest (<= 3.8 frees thread states
// there, under a lock it takes inside): the last moment before anything an acquiring
// thread uses goes away. If this is the finalizer and CPython is past its point of no
// return, let every open window close first (window.h). One load and a compare otherwise.
inline void before_cpython_frees() {
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) == kFinalizing) && t_pt.finalizer_gen == gen_of(e) && runtime_is_finalizing())
    drain_windows_once(gen_of(e));
}

}  // namespace

extern "C" {

// The hot pair. Fast paths: one GOT load for this thread's block, one load of g_epoch,
// a handful of compares and stores; everything else is in restore_slow().
__attribute__((visibility("hidden"))) void *pfg_hook_PyEval_SaveThread(void) {
  const uint64_t e = g_epoch.load();  // before the release: see docs/design.md
  void *ts = PFG_REAL(PyEval_SaveThread)();
  PerThread &pt = t_pt;
  pt.h = {ts, e};  // inside a GILState hook too: that hook restores the caller's handle
  // Not RUNNING, or a thread not yet registered for the drain (its first save): the
  // handle must not let the restore take the fast path before the thread's window is
  // visible to a finalizer.
  if (PFG_UNLIKELY(phase_of(e) != kRunning || !(pt.mode & 1))) return save_slow(ts, e);
  return ts;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_RestoreThread(void *ts) {
  PerThread &pt = t_pt;
  // The window is open on the fast path too: without it a restore that read RUNNING just
  // before finalization began is invisible to the drain, and on <= 3.8, whose finalizer
  // never releases the GIL again, it would wait in take_gil for ever instead of being
  // let through or parked (docs/model.md F9). That costs the tail call.
  window_open();
  const uint64_t e = g_epoch.load();
  // Saved in this very epoch, which was RUNNING (a save in any other phase stores phase
  // bits 3: save_slow), by a registered thread, so one compare. Inside a GILState hook
  // the same test holds: that hook restores the caller's handle afterwards.
  if (PFG_UNLIKELY(pt.h.epoch != e)) return restore_slow(ts, e);
  pt.h.epoch = 0;
  pt.acquired_epoch = e;
  PFG_REAL(PyEval_RestoreThread)(ts);
  window_close();
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireThread(void *ts) {
  window_register();
  window_open();
  const uint64_t e = g_epoch.load();
  // A thread CPython starts (3.14's thread_run) takes its first GIL here: from_cpython
  // tells a program's own late thread from an extension's (docs/diagnostics.md).
  if (PFG_UNLIKELY(!handle_current(e))) decide(fn_PyEval_AcquireThread, ts, e, PFG_CALLED_FROM_PYTHON());
  if (t_pt.h.ts == ts) t_pt.h.epoch = 0;
  t_pt.acquired_epoch = e;
  PFG_REAL(PyEval_AcquireThread)(ts);
  window_close();
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireLock(void) {
  window_register();
  window_open();
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyEval_AcquireLock, nullptr, e);
  t_pt.acquired_epoch = e;
  PFG_REAL(PyEval_AcquireLock)();
  window_close();
}

// CPython switches thread states inside Ensure/Release (calling RestoreThread and
// SaveThread itself, through the PLT or through our entry patches); t_in_gilstate keeps
// those internal switches from overwriting the caller's own outstanding save.
__attribute__((visibility("hidden"))) int pfg_hook_PyGILState_Ensure(void) {
  window_register();
  window_open();
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Ensure, nullptr, e);
  const Handle outer = t_pt.h;  // CPython's own switches inside may overwrite it
  t_pt.mode += 2;
  t_pt.acquired_epoch = e;
  int st = PFG_REAL(PyGILState_Ensure)();
  t_pt.mode -= 2;
  t_pt.h = outer;
  window_close();
  return st;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyGILState_Release(int st) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Release, nullptr, e);
  const Handle outer = t_pt.h;
  t_pt.mode += 2;
  PFG_REAL(PyGILState_Release)(st);
  t_pt.mode -= 2;
  t_pt.h = outer;
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
  window_register();
  window_open();
  const uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyThreadState_New, nullptr, e);
  if (PFG_UNLIKELY(interp_ended(interp)) && t_pt.finalizer_gen != gen_of(e))
    park(fn_PyThreadState_New, e, Reason::ended_interp);
  void *ts = PFG_REAL(PyThreadState_New)(interp);
  note_ts_created(ts);
  window_close();
  return ts;
}

// Records the deletion before the state is freed: a thread that saved it and restores
// it later parks instead (G1 of tests/subinterp/README.md). Never waits.
__attribute__((visibility("hidden"))) void pfg_hook_PyThreadState_Delete(void *ts) {
  note_ts_deleted(ts);
  PFG_REAL(PyThreadState_Delete)(ts);
}

// The interpreter is recorded once Py_EndInterpreter returned -- everything of it is
// freed then -- so that a thread that attaches to it before the end (CPython's own
// threading._shutdown joins the interpreter's threads inside) is unchanged.
__attribute__((visibility("hidden"))) void pfg_hook_Py_EndInterpreter(void *ts) {
  void *interp = runtime_interp_of(ts);  // ts is valid (current) at entry
  PFG_REAL(Py_EndInterpreter)(ts);
  note_interp_ended(interp);
}

// (Re-)initialization. Py_Initialize* start the new generation only once the runtime
// exists: until then the thread that initializes passes as the previous runtime's
// finalizer, and every other thread still sees FINALIZED and parks -- announcing the
// new generation first let a PyGILState_Ensure into a half-built runtime (found by the
// model, docs/model.md F7). Py_Main/Py_BytesMain run the whole program inside the real
// call, so they announce it first.
}  // extern "C"

// Py_Main/Py_BytesMain/_Py_UnixMain: the python executable's own runtime, whose whole
// program runs inside the real call. Announce its generation first and remember it
// (park.cc: what happens to its threads at exit is routine).
static void main_starts() {
  begin_generation();
  t_pt.acquired_epoch = g_epoch.load();
  g_main_generation.store(gen_of(t_pt.acquired_epoch));
}

template <typename F>
static inline auto initializing(F &&real) {
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

extern "C" {

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
  return PFG_REAL(Py_Main)(argc, argv);
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_BytesMain(int argc, char **argv) {
  main_starts();
  return PFG_REAL(Py_BytesMain)(argc, argv);
}

// CPython 3.7's Programs/python.c calls _Py_UnixMain (Py_BytesMain's predecessor).
__attribute__((visibility("hidden"))) int pfg_hook__Py_UnixMain(int argc, char **argv) {
  main_starts();
  return PFG_REAL(_Py_UnixMain)(argc, argv);
}

// CPython 3.9-3.13 terminate a late thread from take_gil() (after releasing the GIL
// mutex), <= 3.8 from exit_thread_if_finalizing() after dropping the GIL: both through
// PyThread_exit_thread() -> pthread_exit(). Unwinding C++ frames from there aborts
// (noexcept destructors), and the seed's open race -- finalization starting while the
// thread waits in take_gil (bpo-33608) -- ends exactly here. Park instead.
__attribute__((visibility("hidden"))) void pfg_hook_pthread_exit(void *retval) {
  if (PFG_CALLED_FROM_PYTHON()) {
    uint64_t e = g_epoch.load();
    // CPython's own flags, not our phase, and not a thread at its normal end: <= 3.9
    // end every thread with PyThread_exit_thread() after deleting its thread state, and
    // a non-daemon thread may get there just after Py_FinalizeEx, having waited for
    // it, went on (tests/scenarios/h_ordinary.py). A thread inside one of our
    // acquiring hooks (window open) is being terminated whatever its TSS says.
    if (t_pt.finalizer_gen != gen_of(e) && runtime_is_finalizing() &&
        (t_pt.window || !runtime_thread_ending_normally()))
      park(fn_pthread_exit, e, Reason::thread_exit);
  }
  PFG_REAL(pthread_exit)(retval);
  __builtin_unreachable();
}

// CPython >= 3.14 (and 3.13.x with the gh-87135 backport) no longer terminates a late
// thread: PyThread_hang_thread() loops around pause() for ever. Such a thread is adopted:
// parked like the ones the guard stops itself, so that it is counted and reported by the
// same rules, PYFINGUARD_MODE applies, its window closes and a join on it completes.
// signal.pause() from Python code reaches here too; before the point of no return, and
// for the finalizer, it is the real pause().
__attribute__((visibility("hidden"))) int pfg_hook_pause(void) {
  if (PFG_CALLED_FROM_PYTHON()) {
    const uint64_t e = g_epoch.load();
    if (t_pt.finalizer_gen != gen_of(e) && phase_of(e) != kRunning && runtime_is_finalizing())
      park(fn_pause, e, Reason::thread_hang);
    // Inside an acquiring hook's real call CPython only pauses to hang the thread for
    // good: 3.14+ does so to the threads of a sub-interpreter that Py_EndInterpreter
    // ended while the main runtime runs (tests/subinterp end-daemon). Left as CPython
    // has it, but its window must not hold up the drain of a later Py_FinalizeEx (it
    // did, for 1 s and a warning).
    t_pt.window = 0;
  }
  return PFG_REAL(pause)();
}

// CPython's own GIL waits (gilwait.h): every pthread_cond_timedwait in the process comes
// here; only Python text's -- take_gil() -- is more than a range check and a call.
__attribute__((visibility("hidden"))) int pfg_hook_pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                                                          const struct timespec *abstime) {
  if (PFG_LIKELY(!PFG_CALLED_FROM_PYTHON()))
    return PFG_REAL(pthread_cond_timedwait)(c, m, abstime);
  return gil_wait(c, m, abstime);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_cond_destroy(pthread_cond_t *c) {
  if (PFG_CALLED_FROM_PYTHON()) gil_cond_destroying(c);
  return PFG_REAL(pthread_cond_destroy)(c);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_mutex_destroy(pthread_mutex_t *m) {
  if (PFG_CALLED_FROM_PYTHON() && !gil_mutex_destroy_allowed())
    return 0;
  return PFG_REAL(pthread_mutex_destroy)(m);
}

// Joins complete when their target is parked: it will never run again. The plain path
// costs two loads when nothing was parked and the first runtime is running.
__attribute__((visibility("hidden"))) int pfg_hook_pthread_join(pthread_t t, void **retval) {
  // Plain only while the first runtime runs and nothing parked: after a finalization
  // (even once a new runtime RUNS again) a thread of the old one may park at any time,
  // and a join already waiting on it must complete (docs/model.md F5).
  if (PFG_LIKELY(g_parked_count.load() == 0 && runtime_of(g_epoch.load()) == make_epoch(1, kRunning)))
    return PFG_REAL(pthread_join)(t, retval);
  return join_completing(t, retval);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_tryjoin_np(pthread_t t, void **retval) {
  if (g_parked_count.load() != 0 && is_parked_thread(t)) {
    if (retval) *retval = nullptr;
    return 0;
  }
  return PFG_REAL(pthread_tryjoin_np)(t, retval);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_timedjoin_np(pthread_t t, void **retval,
                                                                        const struct timespec *abstime) {
  if (g_parked_count.load() != 0 && is_parked_thread(t)) {
    if (retval) *retval = nullptr;
    return 0;
  }
  return PFG_REAL(pthread_timedjoin_np)(t, retval, abstime);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_clockjoin_np(pthread_t t, void **retval, clockid_t clk,
                                                                        const struct timespec *abstime) {
  if (g_parked_count.load() != 0 && is_parked_thread(t)) {
    if (retval) *retval = nullptr;
    return 0;
  }
  return PFG_REAL(pthread_clockjoin_np)(t, retval, clk, abstime);
}

// A runtime loaded late (plpython3u, uWSGI, any embedder using dlopen) is taken over
// before dlopen returns, i.e. before its first call.
__attribute__((visibility("hidden"))) void *pfg_hook_dlopen(const char *file, int mode) {
  void *h = dlopen_as_caller(file, mode, __builtin_return_address(0));
  if (h) runtime_detect_in(h);
  return h;
}

// A dlclose may unmap the runtime's image (directly, or as a dependency of what it
// closes): the guard forgets everything that pointed there before anyone can use it
// (runtime.h; docs/design.md, "Images come and go").
__attribute__((visibility("hidden"))) int pfg_hook_dlclose(void *handle) {
  const int rc = PFG_REAL(dlclose)(handle);
  if (rc == 0) runtime_after_dlclose();  // a failed dlclose unmapped nothing (and keeps its dlerror)
  return rc;
}

}  // extern "C"

#define PFG_PY(ret, name, params, args) PFG_EXPORT_ALIAS(ret, name, params)
#define PFG_LIBC(ret, name, params, args) PFG_EXPORT_ALIAS(ret, name, params)
#include "intercepted.def"
