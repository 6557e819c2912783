#include "park.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config.h"
#include "probes.h"
#include "report.h"

namespace pfg {

ParkRecord g_parked[kMaxParkRecords];
std::atomic<unsigned> g_parked_count{0};
std::atomic<unsigned> g_reportable_count{0};
std::atomic<int> g_reports_in_flight{0};

const char *reason_text(Reason r) {
  switch (r) {
    case Reason::stale_ts: return "thread state of an earlier runtime";
    case Reason::finalizing: return "runtime finalizing";
    case Reason::finalized: return "runtime finalized";
    case Reason::thread_exit: return "CPython terminating the thread";
    case Reason::gil_wait: return "waiting in take_gil past the point of no return";
    case Reason::thread_hang: return "CPython hanging the thread";
    case Reason::deleted_ts: return "its thread state was deleted (PyThreadState_Delete) while saved";
    case Reason::ended_interp: return "interpreter ended (Py_EndInterpreter)";
  }
  return "?";
}

namespace {

// Claims a slot and fills it. Lock-free (one fetch_add), so any number of threads can
// park at once. tid is published last (release): readers skip slots still at 0.
// Routine: what CPython's own shutdown does to a thread anyway, silently (<= 3.13 ends
// it from take_gil, 3.14 hangs it) -- a thread it was terminating, one reaching for the
// GIL past the point of no return while Py_FinalizeEx runs, and, in the python
// executable's own runtime (Py_Main/Py_BytesMain), a Python thread coming back from a
// blocking call, waiting for the GIL, or starting (CPython's own PyEval_AcquireThread
// call) between Py_FinalizeEx and the process exit: a program's daemon threads. Not routine: a thread of an earlier runtime; a native
// thread entering through PyGILState_Ensure/PyEval_AcquireThread after finalization;
// any thread calling into a runtime an embedder finalized while the host goes on --
// where CPython would let it use freed memory (docs/diagnostics.md).
bool is_routine(Fn api, Reason why, uint64_t epoch, bool from_cpython) {
  if (why == Reason::thread_exit || why == Reason::thread_hang) return true;
  if (why == Reason::stale_ts || why == Reason::deleted_ts || why == Reason::ended_interp) return false;
  // FINALIZING as the guard saw it, but CPython's finalization may be over: 3.13's
  // Py_RunMain and Py_Exit finalize through an internal function, so no hook returns
  // to store FINALIZED, and a native thread's late PyGILState_Ensure from a libc atexit
  // handler must not pass as routine.
  if (phase_of(epoch) == kFinalizing && !runtime_finalization_over()) return true;
  return gen_of(epoch) == g_main_generation.load() &&
         (api == fn_PyEval_RestoreThread || api == fn_pthread_cond_timedwait ||
          (api == fn_PyEval_AcquireThread && from_cpython));
}

unsigned record(Fn api, uint64_t epoch, Reason why, bool from_cpython) {
  g_reports_in_flight.fetch_add(1);  // before the slot is counted: see report_exit_summary
  unsigned i = g_parked_count.fetch_add(1);
  const bool routine = is_routine(api, why, epoch, from_cpython);
  if (!routine) g_reportable_count.fetch_add(1);
  if (i >= kMaxParkRecords) return i;  // counted, not described
  ParkRecord &r = g_parked[i];
  r.thread = pthread_self();
  r.api = api;
  r.epoch = epoch;
  r.generation = gen_of(epoch);
  r.when_ns = monotonic_ns();
  r.routine = routine;
  prctl(PR_GET_NAME, r.name, 0, 0, 0);
  r.tid.store(int(syscall(SYS_gettid)), std::memory_order_release);
  return i;
}

[[noreturn]] void wait_forever() {
  // A futex word nobody ever wakes: the thread sleeps in the kernel, using no CPU.
  // The loop absorbs spurious wake-ups and the glibc-internal signals (SIGSETXID,
  // SIGCANCEL) that pthread_sigmask refuses to block.
  static int never = 0;
  for (;;) syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

}  // namespace

void park(Fn api, uint64_t epoch, Reason why, bool from_cpython) {
  t_pt.window = 0;  // it never comes out of its calls, outer ones included: the drain must not wait for it
  switch (g_config.mode) {
    case Mode::exit:
      // For comparison with CPython <= 3.13: terminate the thread as take_gil() would.
      PFG_REAL(pthread_exit)(nullptr);
      __builtin_unreachable();
    case Mode::abort: {
      unsigned slot = record(api, epoch, why, from_cpython);
      if (slot < kMaxParkRecords) report_park(g_parked[slot], reason_text(why));
      g_reports_in_flight.fetch_sub(1);
      abort();
    }
    case Mode::park:
      break;
  }
  // Block every signal first: a handler must never run Python code (or anything else)
  // on this thread again. SIGKILL/SIGSTOP cannot be blocked and need not be.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  // Registered before the report, so that a joiner stops waiting for this thread even
  // while the report is still being written (the report may wait for the loader lock).
  unsigned slot = record(api, epoch, why, from_cpython);
  if (slot < kMaxParkRecords) report_park(g_parked[slot], reason_text(why));
  g_reports_in_flight.fetch_sub(1);
  wait_forever();
}

bool is_parked_thread(pthread_t t) {
  unsigned n = g_parked_count.load();
  if (n > kMaxParkRecords) n = kMaxParkRecords;
  for (unsigned i = 0; i < n; ++i)
    if (g_parked[i].tid.load(std::memory_order_acquire) != 0 &&
        pthread_equal(g_parked[i].thread, t))
      return true;
  return false;
}

bool is_parked_tid(int tid) {
  unsigned n = g_parked_count.load();
  if (n > kMaxParkRecords) n = kMaxParkRecords;
  for (unsigned i = 0; i < n; ++i)
    if (g_parked[i].tid.load(std::memory_order_acquire) == tid) return true;
  return false;
}

int join_completing(pthread_t t, void **retval) {
  // Poll in 20 ms slices: only reached when a thread has parked or Python is
  // finalizing, i.e. at exit, where a parked target would otherwise hang the process
  // (CPython 3.14 hangs exactly here with Arrow's thread pools).
  for (;;) {
    if (is_parked_thread(t)) {
      if (retval) *retval = nullptr;
      return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 20 * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
      deadline.tv_sec += 1;
      deadline.tv_nsec -= 1000000000;
    }
    int rc = PFG_REAL(pthread_timedjoin_np)(t, retval, &deadline);
    if (rc != ETIMEDOUT) return rc;
  }
}

void park_atfork_child() {
  // Only the forking thread exists in the child. Its parent's parked threads are gone.
  for (unsigned i = 0; i < kMaxParkRecords; ++i) g_parked[i].tid.store(0);
  g_parked_count.store(0);
  g_reportable_count.store(0);
}

}  // namespace pfg
