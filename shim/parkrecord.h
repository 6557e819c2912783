// What is known of each late thread the guard stopped -- parked, or ended as CPython
// ends it -- and the registry of them: plain data and lock-free queries. Written once by
// the thread as it stops (park.cc), read by its report (report.cc), joins (libc_hooks.cc),
// the exit summary (summary.cc) and the exit watch (exitwatch.cc).
#pragma once
#include <atomic>
#include <cstdint>
#include <pthread.h>

#include "interpose.h"

namespace pfg {

struct ParkRecord {
  std::atomic<int> tid;  // 0 while the slot is being filled
  pthread_t thread;
  Fn api;                // the intercepted function the thread called
  uint64_t generation;   // runtime generation the thread belonged to / reached for
  uint64_t epoch;        // g_epoch seen by the thread
  int64_t when_ns;       // CLOCK_MONOTONIC at park
  char name[16];         // thread name (prctl)
  const char *why;       // reason_text() of the park (static string)
  // Stopped during CPython's own finalization, where CPython stops such a thread too,
  // silently (<= 3.13: pthread_exit from take_gil; 3.14: hangs it). Reported only with
  // PYFINGUARD_LOG set (report.cc). Everything else -- a thread reaching for the GIL
  // after Py_FinalizeEx returned or in a later runtime, where CPython would let it use
  // freed memory -- is always reported.
  bool routine;
  // Never took the GIL through a hook: a native thread whose first call into Python is
  // the late one (or a Python thread whose acquisitions no hook saw: a static build's
  // internal calls). Its report names its start routine, not the executable.
  bool native;
  // Ended with pthread_exit, as this CPython ends late threads (docs/design.md,
  // "Ending or parking"), rather than parked. Cleared if its unwind reaches a frame that
  // may not throw and the thread parks after all. Written by the thread itself only.
  std::atomic<bool> ended;
};

constexpr unsigned kMaxParkRecords = 4096;
extern ParkRecord g_parked[kMaxParkRecords];
extern std::atomic<unsigned> g_parked_count;  // slots handed out (may exceed the array)
// Late threads that are not routine, i.e. that the rules always report (counted even past
// the array): what PYFINGUARD_STRICT turns into an exit status.
extern std::atomic<unsigned> g_reportable_count;
// Reports being written right now: the exit summary waits (bounded) for them, so a
// process that exits while a thread parks still gets that thread's report.
extern std::atomic<int> g_reports_in_flight;

inline unsigned described_count() {
  unsigned n = g_parked_count.load();
  return n < kMaxParkRecords ? n : kMaxParkRecords;
}

// Is this thread parked (stopped for good and still there)? Ended threads are not: a
// join of one must reap it, and its pthread_t may be reused.
bool is_parked_thread(pthread_t t);
bool is_parked_tid(int tid);

// fork(): the child has none of the parent's late threads (preload.cc calls it).
void registry_atfork_child();

}  // namespace pfg
