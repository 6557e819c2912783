// The wrappers of libc functions (PFG_LIBC in intercepted.def): every Python image calls
// them through its PLT, so interposition alone reaches them. They act on policy.h's
// verdicts, as hooks.cc does.
#include <atomic>
#include <dlfcn.h>
#include <pthread.h>

#include "gilwait.h"
#include "hooks.h"
#include "interpose.h"
#include "facts.h"
#include "park.h"
#include "probes.h"
#include "runtime.h"
#include "state.h"

using namespace pfg;

namespace {

// A join on a thread that has parked completes at once: it will never run again. Two
// loads when nothing was parked.
inline bool join_parked(pthread_t t, void **retval) {
  if (g_parked_count.load() == 0 || !is_parked_thread(t)) return false;
  if (retval) *retval = nullptr;
  return true;
}

}  // namespace

extern "C" {

// CPython 3.9-3.13 terminate a late thread from take_gil() (after releasing the GIL
// mutex), <= 3.8 from exit_thread_if_finalizing() after dropping the GIL: both through
// PyThread_exit_thread() -> pthread_exit(). Unwinding C++ frames from there aborts
// (noexcept destructors), and the seed's open race -- finalization starting while the
// thread waits in take_gil (bpo-33608) -- ends exactly here. Park instead.
__attribute__((visibility("hidden"))) void pfg_hook_pthread_exit(void *retval) {
  // policy.h, exit: CPython's own flags, not our phase, and not a thread at its normal end.
  const policy::Call c = call_here(fn_pthread_exit, g_epoch.load(), nullptr, PFG_CALLED_FROM_PYTHON());
  const policy::Verdict v = policy::thread_exit(c, kLive);
  if (v.stops()) park(c, v);
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
  const policy::Call c = call_here(fn_pause, g_epoch.load(), nullptr, PFG_CALLED_FROM_PYTHON());
  const policy::Verdict v = policy::thread_hang(c, kLive);  // policy.h, hang
  if (v.stops()) park(c, v);
  if (c.from_cpython) {
    // Inside an acquiring hook's real call CPython only pauses to hang the thread for
    // good: 3.14+ does so to the threads of a sub-interpreter that Py_EndInterpreter
    // ended while the main runtime runs (tests/subinterp end-daemon). Left as CPython
    // has it, but its window must not hold up the drain of a later Py_FinalizeEx (it
    // did, for 1 s and a warning).
    windows_close_all();
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

// drop_gil()'s switch wait (gilwait.h): every pthread_cond_wait in the process comes here;
// only Python text's is more than a range check and a call.
__attribute__((visibility("hidden"))) int pfg_hook_pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
  if (PFG_LIKELY(!PFG_CALLED_FROM_PYTHON())) return PFG_REAL(pthread_cond_wait)(c, m);
  return gil_switch_wait(c, m);
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
  // and a join already waiting on it must complete (docs/model.md, mutant mut-join-fastpath).
  if (PFG_LIKELY(g_parked_count.load() == 0 && runtime_of(g_epoch.load()) == make_epoch(1, kRunning)))
    return PFG_REAL(pthread_join)(t, retval);
  return join_completing(t, retval);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_tryjoin_np(pthread_t t, void **retval) {
  return join_parked(t, retval) ? 0 : PFG_REAL(pthread_tryjoin_np)(t, retval);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_timedjoin_np(pthread_t t, void **retval,
                                                                        const struct timespec *abstime) {
  return join_parked(t, retval) ? 0 : PFG_REAL(pthread_timedjoin_np)(t, retval, abstime);
}

__attribute__((visibility("hidden"))) int pfg_hook_pthread_clockjoin_np(pthread_t t, void **retval, clockid_t clk,
                                                                        const struct timespec *abstime) {
  return join_parked(t, retval) ? 0 : PFG_REAL(pthread_clockjoin_np)(t, retval, clk, abstime);
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

#define PFG_LIBC(ret, name, params, args) PFG_EXPORT_ALIAS(ret, name, params)
#if defined(__x86_64__)
// glibc's new condition variables are pthread_cond_*@@GLIBC_2.3.2 here, the old ABI
// @GLIBC_2.2.5 (hooks.h; pyfinguard-x86_64.map). aarch64 has only the one, @@GLIBC_2.17.
#define PFG_LIBC_CONDVAR(ret, name, params, args) \
  PFG_EXPORT_LIBC_VERSIONED_ALIAS(ret, name, params, "GLIBC_2.3.2")
#endif
#include "intercepted.def"
