// What is known of a parked thread: plain data, written once by the thread as it parks
// (park.cc) and read by its report (report.cc) and the exit summary (summary.cc).
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

}  // namespace pfg
