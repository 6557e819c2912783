// What the other threads of this process are doing, from /proc/self/task: for the exit
// watch (exitwatch.h), which must tell an exit that waits for ever on a parked thread from
// one that is still working. Raw syscalls into stack buffers: no malloc, no stdio, no
// lock, async-signal-safe; runs in a parked thread while the process exits.
#pragma once
#include <cstdint>

namespace pfg {

struct ThreadScan {
  int threads;          // threads looked at (not skipped)
  int futex_untimed;    // of those, waiting on a futex without a timeout (FUTEX_WAIT*,
                        // FUTEX_LOCK_PI, ... with a null timeout): only another thread
                        // of the process, or a signal, can end that wait
  int in_io;            // of those, in uninterruptible sleep (state D): disk I/O, working
  uint64_t runtime_ns;  // their CPU time so far (schedstat), summed
};

// Is thread tid of this process still there (/proc/self/task/<tid>)?
bool thread_present(int tid);

// Scans every thread but those skip(tid) names. False when /proc is unreadable (then
// nothing is known and the caller must not conclude anything from out).
bool scan_threads(bool (*skip)(int tid), ThreadScan &out);

}  // namespace pfg
