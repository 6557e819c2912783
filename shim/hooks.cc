// The wrappers: policy only. docs/design.md ("Decisions") is the reference and
// shim/model/ checks it; keep the three in step.
//
// Each hook is defined once, hidden, as pfg_hook_<name>; the exported <name> is an
// alias. Inside the library we only ever use the hidden address, which is what an
// entry patch jumps to even when an executable's definition of <name> wins lookup.
#include <atomic>
#include <cerrno>
#include <dlfcn.h>

#include "gate.h"
#include "gilwait.h"
#include "images.h"
#include "interpose.h"
#include "park.h"
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
// does not match the current epoch. Returns to let the call through (true: admitted
// through the gate, call gate_leave() after the real call); parks otherwise.
// acquiring: the call takes the GIL (all but PyGILState_Release).
__attribute__((noinline, cold)) bool decide(Fn api, void *ts, uint64_t e, bool acquiring) {
  // 1. The thread that finalizes the current runtime is never parked, during
  //    finalization or after (an embedder's main thread calling into a finalized
  //    runtime gets CPython's own behaviour, as without the guard). While finalizing it
  //    waits, before taking the GIL back, for the threads it let in (gate.h).
  if (t_pt.finalizer_gen == gen_of(e)) {
    if (acquiring && phase_of(e) == kFinalizing) gate_finalizer_reacquiring();
    return false;
  }
  // 2. A thread state saved under an earlier runtime: freed at that finalization, its
  //    address possibly reused by the current one. Never dereferenced.
  const Handle h = t_pt.h;
  if (ts && h.epoch != 0 && h.ts == ts && gen_of(h.epoch) != gen_of(e))
    park(api, e, Reason::stale_ts);
  switch (phase_of(e)) {
    case kRunning:
      return false;
    case kFinalizing:
      // Threads still run while CPython joins non-daemon threads and calls atexit
      // hooks; only past its own point of no return is the runtime gone for them.
      if (runtime_is_finalizing()) park(api, e, Reason::finalizing);
      if (!acquiring) return false;  // holds the GIL already
      gate_admit(api, e);
      return true;
    default:
      park(api, e, Reason::finalized);
  }
}

// The window around a real acquiring call (gate.h): opened before g_epoch is read,
// closed when the call returns. Plain TLS stores; the finalizer's membarrier supplies
// the fence, the signal fence keeps the compiler from moving the load above the store.
inline void window_open() {
  __atomic_store_n(&t_pt.window, 1, __ATOMIC_RELAXED);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}
inline void window_close() { __atomic_store_n(&t_pt.window, 0, __ATOMIC_RELEASE); }

// Restore/Acquire fast path: the handle was saved in this epoch and it is RUNNING.
inline bool handle_current(uint64_t e) { return ((t_pt.h.epoch ^ e) | phase_of(e)) == 0; }

// PyEval_SaveThread when not RUNNING. The handle keeps the generation but gets phase
// bits 3, which no g_epoch value has: the matching restore can never take the fast
// path (which is a single compare because of this), and rule 2 of decide() still sees
// the generation. While FINALIZING the finalizer's release opens the gate.
__attribute__((noinline, cold)) void *save_slow(void *ts, uint64_t e) {
  window_register();
  if (phase_of(e) == kRunning) return ts;  // registered now; the handle stands
  t_pt.h.epoch = e | 3;
  if (phase_of(e) == kFinalizing && t_pt.finalizer_gen == gen_of(e)) gate_finalizer_released();
  return ts;
}

// Everything PyEval_RestoreThread does off its fast path.
__attribute__((noinline, cold)) void restore_slow(void *ts, uint64_t e) {
  PerThread &pt = t_pt;
  if (in_gilstate()) {
    // CPython's own call inside PyGILState_Ensure: the Ensure hook has decided and
    // opened the window. A finalizer still waits for the threads it let in before it
    // takes the GIL back.
    if (phase_of(e) == kFinalizing && pt.finalizer_gen == gen_of(e)) gate_finalizer_reacquiring();
    pt.acquired_epoch = e;
    PFG_REAL(PyEval_RestoreThread)(ts);
    window_close();
    return;
  }
  window_register();
  e = g_epoch.load();  // re-read after opening the window (the drain's Dekker pairing)
  const bool admitted = decide(fn_PyEval_RestoreThread, ts, e, true);
  if (pt.h.ts == ts) pt.h.epoch = 0;
  pt.acquired_epoch = e;
  PFG_REAL(PyEval_RestoreThread)(ts);
  window_close();
  if (admitted) gate_leave();
}

// Entering Py_FinalizeEx/Py_Finalize/Py_Exit (they nest: Py_Exit -> Py_FinalizeEx).
// Mark this thread as the finalizer of the current generation before announcing
// FINALIZING, so that it can never see itself as a late thread; on the transition
// itself, let every window opened while RUNNING close (gate.h).
void finalizer_enter() {
  t_pt.finalizer_gen = gen_of(g_epoch.load());
  if (begin_finalizing()) gate_drain_windows(PFG_REAL(PyEval_SaveThread), PFG_REAL(PyEval_RestoreThread));
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
  uint64_t e = g_epoch.load();
  bool admitted = false;
  if (PFG_UNLIKELY(!handle_current(e))) admitted = decide(fn_PyEval_AcquireThread, ts, e, true);
  if (t_pt.h.ts == ts) t_pt.h.epoch = 0;
  t_pt.acquired_epoch = e;
  PFG_REAL(PyEval_AcquireThread)(ts);
  window_close();
  if (PFG_UNLIKELY(admitted)) gate_leave();
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireLock(void) {
  window_register();
  window_open();
  uint64_t e = g_epoch.load();
  bool admitted = false;
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) admitted = decide(fn_PyEval_AcquireLock, nullptr, e, true);
  t_pt.acquired_epoch = e;
  PFG_REAL(PyEval_AcquireLock)();
  window_close();
  if (PFG_UNLIKELY(admitted)) gate_leave();
}

// CPython switches thread states inside Ensure/Release (calling RestoreThread and
// SaveThread itself, through the PLT or through our entry patches); t_in_gilstate keeps
// those internal switches from overwriting the caller's own outstanding save.
__attribute__((visibility("hidden"))) int pfg_hook_PyGILState_Ensure(void) {
  window_register();
  window_open();
  uint64_t e = g_epoch.load();
  bool admitted = false;
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) admitted = decide(fn_PyGILState_Ensure, nullptr, e, true);
  const Handle outer = t_pt.h;  // CPython's own switches inside may overwrite it
  t_pt.mode += 2;
  t_pt.acquired_epoch = e;
  int st = PFG_REAL(PyGILState_Ensure)();
  t_pt.mode -= 2;
  t_pt.h = outer;
  window_close();
  if (PFG_UNLIKELY(admitted)) gate_leave();
  return st;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyGILState_Release(int st) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Release, nullptr, e, false);
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
  if (PFG_LIKELY(g_parked_count.load() == 0 && g_epoch.load() == make_epoch(1, kRunning)))
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
