#include "park.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <linux/futex.h>
#include <dlfcn.h>
#include <link.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backtrace.h"
#include "config.h"
#include "exitwatch.h"
#include "facts.h"
#include "probes.h"
#include "report.h"
#include "state.h"
#include "summary.h"

namespace pfg {

namespace {

using TerminateHandler = void (*)();
// std::set_terminate of the loaded C++ runtime, found by park_prepare() (0: none loaded).
std::atomic<TerminateHandler (*)(TerminateHandler)> g_set_terminate{nullptr};
std::atomic<TerminateHandler> g_prev_terminate{nullptr};
std::atomic<int> g_terminate_net{0};  // 0 not installed, 1 being installed, 2 installed

// The thread's own record while the guard ends it (-1: it is not being ended).
__thread int t_ending_slot = -1;

// Claims a slot and fills it. Lock-free (one fetch_add), so any number of threads can
// stop at once. tid is published last (release): readers skip slots still at 0.
unsigned record(const policy::Call &c, const policy::Verdict &v, bool ending) {
  g_reports_in_flight.fetch_add(1);  // before the slot is counted: see report_exit_summary
  unsigned i = g_parked_count.fetch_add(1);
  if (!v.routine) g_reportable_count.fetch_add(1);
  if (i >= kMaxParkRecords) return i;  // counted, not described
  ParkRecord &r = g_parked[i];
  r.thread = pthread_self();
  r.api = c.api;
  r.epoch = c.e;
  r.generation = gen_of(c.e);
  r.when_ns = monotonic_ns();
  r.why = reason_text(v.why);
  r.routine = v.routine;
  r.native = t_pt.acquired_epoch == 0;
  r.ended.store(ending);
  prctl(PR_GET_NAME, r.name, 0, 0, 0);
  r.tid.store(int(syscall(SYS_gettid)), std::memory_order_release);
  return i;
}

// After a report: a summary already printed at exit (the library's destructor ran) is
// printed again with this thread counted, so that no late thread goes unsummed.
void after_report() {
  if (summary_printed()) report_exit_summary();
}

// A handler must never run Python code (or anything else) on a parked thread again.
// SIGKILL/SIGSTOP cannot be blocked and need not be.
void block_all_signals() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

// Records the thread (ending: it is being ended, not parked) and writes its report; the
// slot, or kMaxParkRecords and more when it was counted but not described.
unsigned record_and_report(const policy::Call &c, const policy::Verdict &v, bool ending) {
  const unsigned slot = record(c, v, ending);
  if (slot < kMaxParkRecords) report_park(g_parked[slot], reason_text(v.why));
  g_reports_in_flight.fetch_sub(1);
  return slot;
}

// Signals are blocked already (park(), on_terminate()).
[[noreturn]] void wait_parked() {
  exitwatch_late_thread();
  // A futex word nobody ever wakes: the thread sleeps in the kernel, using no CPU.
  // The loop absorbs spurious wake-ups and the glibc-internal signals (SIGSETXID,
  // SIGCANCEL) that pthread_sigmask refuses to block.
  static int never = 0;
  for (;;) syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

// std::terminate while the guard ends this thread: its unwind reached a frame that may
// not throw (pybind11's gil_scoped_release destructor is noexcept), which would abort the
// process (CPython 3.9-3.13 without the guard: "terminate called without an active
// exception"). The frames already unwound ran their cleanups, as CPython's pthread_exit
// would have; the thread parks where it is instead of aborting. Any other thread's
// std::terminate goes to the handler the program had.
void on_terminate() {
  const int slot = t_ending_slot;
  if (slot >= 0) {
    t_ending_slot = -1;
    block_all_signals();
    if (slot < int(kMaxParkRecords)) {
      g_parked[slot].ended.store(false);
      report_unwind_parked(g_parked[slot]);
    }
    after_report();
    wait_parked();
  }
  if (TerminateHandler prev = g_prev_terminate.load()) prev();
  abort();
}

// Installed the first time a thread is ended, not before: a process without late threads
// keeps its own handler. set_terminate is an atomic exchange in libstdc++ (no lock).
void install_terminate_net() {
  auto set = g_set_terminate.load();
  if (!set) return;
  int expected = 0;
  if (g_terminate_net.compare_exchange_strong(expected, 1)) {
    g_prev_terminate.store(set(on_terminate));
    g_terminate_net.store(2);
  }
  while (g_terminate_net.load() != 2) sched_yield();  // another ending thread installs it
}

[[noreturn]] void end_thread(const policy::Call &c, const policy::Verdict &v) {
  const unsigned slot = record_and_report(c, v, true);
  after_report();
  exitwatch_late_thread();  // an exit that waits for what this thread would have done
  install_terminate_net();
  t_ending_slot = int(slot < kMaxParkRecords ? slot : kMaxParkRecords);
  // As CPython's PyThread_exit_thread() does: the forced unwind runs the thread's C++
  // destructors and pthread_cleanup handlers, so the locks they hold are released.
  PFG_REAL(pthread_exit)(nullptr);
  __builtin_unreachable();
}

int find_libstdcxx(struct dl_phdr_info *info, size_t, void *out) {
  if (info->dlpi_name && strstr(info->dlpi_name, "libstdc++.so")) {
    *static_cast<const char **>(out) = info->dlpi_name;
    return 1;
  }
  return 0;
}

}  // namespace

void park_prepare() {
  backtrace_prepare(gen_of(g_epoch.load()) == g_main_generation.load());
  if (g_set_terminate.load(std::memory_order_relaxed)) return;
  static const char kSetTerminate[] = "_ZSt13set_terminatePFvvE";  // std::set_terminate
  void *f = dlsym(RTLD_DEFAULT, kSetTerminate);
  if (!f) {
    // A C++ runtime loaded RTLD_LOCAL (by a ctypes/cffi library or an extension module)
    // is not in the global scope: ask it directly, without loading anything.
    const char *path = nullptr;
    dl_iterate_phdr(find_libstdcxx, &path);
    if (void *h = path ? dlopen(path, RTLD_LAZY | RTLD_NOLOAD) : nullptr) {
      f = dlsym(h, kSetTerminate);
      dlclose(h);  // drops the reference RTLD_NOLOAD took; the library stays loaded
    }
  }
  g_set_terminate.store(reinterpret_cast<TerminateHandler (*)(TerminateHandler)>(f));
}

void park(const policy::Call &c, policy::Verdict v) {
  windows_close_all();  // it never comes out of its calls, outer ones included: the drain must not wait for it
  v = policy::settle(v, c, kLive);  // end or park, routine or not
  if (v.action == policy::Action::end) end_thread(c, v);
  if (v.action == policy::Action::abort) {
    record_and_report(c, v, false);
    abort();
  }
  block_all_signals();
  // Registered before the report, so that a joiner stops waiting for this thread even
  // while the report is still being written (the report may wait for the loader lock).
  record_and_report(c, v, false);
  after_report();
  wait_parked();
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
    const struct timespec deadline = clock_in_ms(CLOCK_REALTIME, 20);
    int rc = PFG_REAL(pthread_timedjoin_np)(t, retval, &deadline);
    if (rc != ETIMEDOUT) return rc;
  }
}

void park_atfork_child() { registry_atfork_child(); }

}  // namespace pfg
