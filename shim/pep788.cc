// The guard's side of PEP 788 on CPython 3.6-3.14 (pep788.h; docs/pep788.md).
#include "pep788.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>

#include "facts.h"
#include "interpose.h"
#include "lifecycle.h"
#include "probes.h"
#include "state.h"

#define PFG_API extern "C" __attribute__((visibility("default")))

namespace pfg {
namespace {

// Guards held now, process-wide (every interpreter: the main runtime's finalization
// ends them all). 32 bits: the futex word.
std::atomic<int32_t> g_guards{0};
// The finalizer sleeps on g_guards; set while it does, so that a close that is not the
// last one, or one with nobody waiting, makes no syscall.
std::atomic<int32_t> g_waiting{0};

void futex_wait(std::atomic<int32_t> *w, int32_t v) {
  struct timespec t = {0, 50 * 1000 * 1000};  // a safety net only: the wake is the rule
  syscall(SYS_futex, reinterpret_cast<int32_t *>(w), FUTEX_WAIT_PRIVATE, v, &t, nullptr, 0);
}
void futex_wake_all(std::atomic<int32_t> *w) {
  syscall(SYS_futex, reinterpret_cast<int32_t *>(w), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

void release_one() {
  if (g_guards.fetch_sub(1) == 1 && g_waiting.load()) futex_wake_all(&g_guards);
}

// May a guard of (interp, gen) be created now? gen 0: the current generation. A
// generation that is not RUNNING, a runtime past CPython's own point of no return (the
// python executable of 3.13+ finalizes without passing Py_FinalizeEx's entry, so the
// phase alone can still say RUNNING there), an earlier runtime, an interpreter ended
// with Py_EndInterpreter: no. Never dereferences interp.
bool alive(uint64_t e, void *interp, uint64_t gen) {
  if (phase_of(e) != kRunning) return false;
  if (gen != 0 && gen_of(e) != gen) return false;
  // Probes absent (a runtime the guard did not take over): the phase alone decides,
  // rather than refusing every guard of a running interpreter.
  if (probes_present() && policy::past_point_of_no_return(kLive)) return false;
  if (interp && interp_ended(interp)) return false;
  return true;
}

}  // namespace

void pep788_finalize_wait() {
  if (__builtin_expect(g_guards.load() == 0, 1)) return;
  // Guards are held: their holders need the GIL to finish (PyThreadState_Ensure), and the
  // caller of Py_FinalizeEx holds it. So the GIL is released for the wait, as CPython
  // 3.15 does while it waits for guards, and as threading._shutdown() does right after
  // this point anyway. Only processes that asked for a guard get here (docs/pep788.md:
  // the one departure from docs/design.md "The principle", opt-in; docs/model.md P0).
  // The real functions: this is the finalizer's own GIL, not a thread's save/restore
  // pair, and its handle must not change.
  void *ts = PFG_REAL(PyEval_SaveThread)();
  g_waiting.fetch_add(1);
  for (int32_t n; (n = g_guards.load()) != 0;) futex_wait(&g_guards, n);
  g_waiting.fetch_sub(1);
  PFG_REAL(PyEval_RestoreThread)(ts);
}

}  // namespace pfg

using namespace pfg;

// The generation a view names: the current one while it runs and CPython has not begun
// to finalize, else 0 (no view can be made).
PFG_API unsigned long long pyfinguard_view_generation(void) {
  const uint64_t e = g_epoch.load();
  return alive(e, nullptr, 0) ? gen_of(e) : 0;
}

// Acquire a guard on interp (nullptr: the main interpreter) of generation gen (0: the
// current one). 1: held, close it with pyfinguard_guard_release(); 0: finalization has
// begun, the runtime is gone, or the interpreter was ended.
PFG_API int pyfinguard_guard_acquire(void *interp, unsigned long long gen) {
  g_guards.fetch_add(1);
  if (alive(g_epoch.load(), interp, gen)) return 1;  // the load after the add: Dekker, pep788.h
  release_one();
  return 0;
}

PFG_API void pyfinguard_guard_release(void) { release_one(); }

// Guards held now (tests, diagnostics).
PFG_API int pyfinguard_guards_held(void) { return g_guards.load(); }
