// Parking a thread, the registry of parked threads, and join completion.
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
  // Stopped during CPython's own finalization, where CPython stops such a thread too,
  // silently (<= 3.13: pthread_exit from take_gil; 3.14: hangs it). Reported only with
  // PYFINGUARD_LOG set (report.cc). Everything else -- a thread reaching for the GIL
  // after Py_FinalizeEx returned or in a later runtime, where CPython would let it use
  // freed memory -- is always reported.
  bool routine;
};

constexpr unsigned kMaxParkRecords = 4096;
extern ParkRecord g_parked[kMaxParkRecords];
extern std::atomic<unsigned> g_parked_count;  // slots handed out (may exceed the array)
// Parks that are not routine, i.e. that the rules always report (counted even past the
// array): what PYFINGUARD_STRICT turns into an exit status.
extern std::atomic<unsigned> g_reportable_count;
// Reports being written right now: the exit summary waits (bounded) for them, so a
// process that exits while a thread parks still gets that thread's report.
extern std::atomic<int> g_reports_in_flight;

// Why the thread is being stopped; printed in the report.
enum class Reason { stale_ts, finalizing, finalized, thread_exit, thread_hang, gil_wait, deleted_ts, ended_interp };

// The slow-path outcome for a late thread. PYFINGUARD_MODE=park: never returns (blocks
// forever); exit: the real pthread_exit (CPython <= 3.13 behaviour); abort: abort().
// from_cpython: the call came from CPython's own code (e.g. a new threading.Thread taking
// its first GIL in PyEval_AcquireThread), not from an extension or an embedder.
[[noreturn]] void park(Fn api, uint64_t epoch, Reason why, bool from_cpython = false);

bool is_parked_thread(pthread_t t);
bool is_parked_tid(int tid);

// pthread_join on a thread that has parked (or parks while we wait) completes at once:
// it will never run again. Only used when something is parked or Python is finalizing.
int join_completing(pthread_t t, void **retval);

// fork(): the child has none of the parent's parked threads.
void park_atfork_child();

const char *reason_text(Reason r);

}  // namespace pfg
