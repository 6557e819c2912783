// Parking a thread, the registry of parked threads, and join completion.
#pragma once
#include <atomic>
#include <cstdint>
#include <pthread.h>

#include "interpose.h"
#include "parkrecord.h"

namespace pfg {

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

// fork(): the child has none of the parent's parked threads (preload.cc calls it).
void park_atfork_child();

const char *reason_text(Reason r);

}  // namespace pfg
