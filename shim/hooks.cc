// The wrappers: policy only. docs/design.md ("Decisions") is the reference and
// shim/model/ checks it; keep the three in step.
//
// Each hook is defined once, hidden, as pfg_hook_<name>; the exported <name> is an
// alias. Inside the library we only ever use the hidden address, which is what an
// entry patch jumps to even when an executable's definition of <name> wins lookup.
#include <cerrno>
#include <dlfcn.h>

#include "images.h"
#include "interpose.h"
#include "park.h"
#include "runtime.h"
#include "state.h"

#define PFG_LIKELY(x) __builtin_expect(!!(x), 1)
#define PFG_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PFG_EXPORT_ALIAS(ret, name, params) \
  extern "C" __attribute__((visibility("default"), alias("pfg_hook_" #name))) ret name params;

using namespace pfg;

namespace {

// The slow path: only reached when the phase is not RUNNING or the thread's handle
// does not match the current epoch. Returns to let the call through; parks otherwise.
__attribute__((noinline, cold)) void decide(Fn api, void *ts, uint64_t e) {
  // 1. The thread that finalizes the current runtime is never parked, during
  //    finalization or after (an embedder's main thread calling into a finalized
  //    runtime gets CPython's own behaviour, as without the guard).
  if (t_finalizer_gen == gen_of(e)) return;
  // 2. A thread state saved under an earlier runtime: freed at that finalization, its
  //    address possibly reused by the current one. Never dereferenced.
  const Handle h = t_handle;
  if (ts && h.epoch != 0 && h.ts == ts && gen_of(h.epoch) != gen_of(e))
    park(api, e, Reason::stale_ts);
  switch (phase_of(e)) {
    case kRunning:
      return;
    case kFinalizing:
      // Threads still run while CPython joins non-daemon threads and calls atexit
      // hooks; only past its own point of no return is the runtime gone for them.
      if (runtime_is_finalizing()) park(api, e, Reason::finalizing);
      return;
    default:
      park(api, e, Reason::finalized);
  }
}

// Restore/Acquire fast path: the handle was saved in this epoch and it is RUNNING.
inline bool handle_current(uint64_t e) { return ((t_handle.epoch ^ e) | phase_of(e)) == 0; }

}  // namespace

extern "C" {

__attribute__((visibility("hidden"))) void *pfg_hook_PyEval_SaveThread(void) {
  uint64_t e = g_epoch.load();
  void *ts = PFG_REAL(PyEval_SaveThread)();
  if (PFG_LIKELY(!t_in_gilstate)) t_handle = {ts, e};
  return ts;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_RestoreThread(void *ts) {
  uint64_t e = g_epoch.load();
  if (PFG_LIKELY(!t_in_gilstate)) {
    if (PFG_UNLIKELY(!handle_current(e))) decide(fn_PyEval_RestoreThread, ts, e);
    if (t_handle.ts == ts) t_handle.epoch = 0;
  }
  PFG_REAL(PyEval_RestoreThread)(ts);
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireThread(void *ts) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(!handle_current(e))) decide(fn_PyEval_AcquireThread, ts, e);
  if (t_handle.ts == ts) t_handle.epoch = 0;
  PFG_REAL(PyEval_AcquireThread)(ts);
}

__attribute__((visibility("hidden"))) void pfg_hook_PyEval_AcquireLock(void) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyEval_AcquireLock, nullptr, e);
  PFG_REAL(PyEval_AcquireLock)();
}

// CPython switches thread states inside Ensure/Release (calling RestoreThread and
// SaveThread itself, through the PLT or through our entry patches); t_in_gilstate keeps
// those internal switches from overwriting the caller's own outstanding save.
__attribute__((visibility("hidden"))) int pfg_hook_PyGILState_Ensure(void) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Ensure, nullptr, e);
  ++t_in_gilstate;
  int st = PFG_REAL(PyGILState_Ensure)();
  --t_in_gilstate;
  return st;
}

__attribute__((visibility("hidden"))) void pfg_hook_PyGILState_Release(int st) {
  uint64_t e = g_epoch.load();
  if (PFG_UNLIKELY(phase_of(e) != kRunning)) decide(fn_PyGILState_Release, nullptr, e);
  ++t_in_gilstate;
  PFG_REAL(PyGILState_Release)(st);
  --t_in_gilstate;
}

// Finalization: mark this thread as the finalizer of the current generation before
// announcing FINALIZING, so that it can never see itself as a late thread.
__attribute__((visibility("hidden"))) int pfg_hook_Py_FinalizeEx(void) {
  t_finalizer_gen = gen_of(g_epoch.load());
  begin_finalizing();
  int rc = PFG_REAL(Py_FinalizeEx)();
  end_finalizing();
  return rc;
}

__attribute__((visibility("hidden"))) void pfg_hook_Py_Finalize(void) {
  t_finalizer_gen = gen_of(g_epoch.load());
  begin_finalizing();
  PFG_REAL(Py_Finalize)();
  end_finalizing();
}

// 3.13's Py_Exit finalizes through an internal function, not Py_FinalizeEx.
__attribute__((visibility("hidden"))) void pfg_hook_Py_Exit(int status) {
  t_finalizer_gen = gen_of(g_epoch.load());
  begin_finalizing();
  PFG_REAL(Py_Exit)(status);
  __builtin_unreachable();
}

// (Re-)initialization: a new generation starts before the runtime exists, so every
// handle of the previous runtime is stale before any of its addresses can be reused.
__attribute__((visibility("hidden"))) void pfg_hook_Py_Initialize(void) {
  begin_generation();
  PFG_REAL(Py_Initialize)();
}

__attribute__((visibility("hidden"))) void pfg_hook_Py_InitializeEx(int initsigs) {
  begin_generation();
  PFG_REAL(Py_InitializeEx)(initsigs);
}

__attribute__((visibility("hidden"))) PyStatusABI pfg_hook_Py_InitializeFromConfig(const void *config) {
  begin_generation();
  return PFG_REAL(Py_InitializeFromConfig)(config);
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_Main(int argc, wchar_t **argv) {
  begin_generation();
  return PFG_REAL(Py_Main)(argc, argv);
}

__attribute__((visibility("hidden"))) int pfg_hook_Py_BytesMain(int argc, char **argv) {
  begin_generation();
  return PFG_REAL(Py_BytesMain)(argc, argv);
}

// CPython 3.9-3.13 terminate a late thread from take_gil() (after releasing the GIL
// mutex), <= 3.8 from exit_thread_if_finalizing() after dropping the GIL: both through
// PyThread_exit_thread() -> pthread_exit(). Unwinding C++ frames from there aborts
// (noexcept destructors), and the seed's open race -- finalization starting while the
// thread waits in take_gil (bpo-33608) -- ends exactly here. Park instead.
__attribute__((visibility("hidden"))) void pfg_hook_pthread_exit(void *retval) {
  uintptr_t caller = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  if (in_python_text(caller)) {
    uint64_t e = g_epoch.load();
    if (t_finalizer_gen != gen_of(e) && (phase_of(e) != kRunning || runtime_is_finalizing()))
      park(fn_pthread_exit, e, Reason::thread_exit);
  }
  PFG_REAL(pthread_exit)(retval);
  __builtin_unreachable();
}

// Joins complete when their target is parked: it will never run again. The plain path
// costs one load each when nothing was parked and Python is not finalizing.
__attribute__((visibility("hidden"))) int pfg_hook_pthread_join(pthread_t t, void **retval) {
  if (PFG_LIKELY(g_parked_count.load() == 0 && phase_of(g_epoch.load()) == kRunning))
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

}  // extern "C"

#define PFG_PY(ret, name, params, args) PFG_EXPORT_ALIAS(ret, name, params)
#define PFG_LIBC(ret, name, params, args) PFG_EXPORT_ALIAS(ret, name, params)
#include "intercepted.def"
