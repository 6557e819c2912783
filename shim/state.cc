#include "state.h"

#include <ctime>


namespace pfg {

std::atomic<uint64_t> g_epoch{make_epoch(1, kRunning)};
std::atomic<int64_t> g_finalize_start_ns{0};

__thread PerThread t_pt;
std::atomic<uint64_t> g_main_generation{0};

int64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO, async-signal-safe
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

namespace {
// Set once, before any hook can act on it: the runtime is one the guard does not support
// (free-threaded), so the phase never leaves RUNNING and every hook passes through.
std::atomic<bool> g_inactive{false};
}  // namespace

void state_step_aside() { g_inactive.store(true); }

bool begin_finalizing() {
  if (g_inactive.load(std::memory_order_relaxed)) return false;
  uint64_t e = g_epoch.load();
  if (phase_of(e) != kRunning) return false;  // nested (Py_Exit -> Py_FinalizeEx) or repeated
  g_finalize_start_ns.store(monotonic_ns());
  g_epoch.store(make_epoch(gen_of(e), kFinalizing));
  return true;
}

void end_finalizing() {
  g_epoch.store(make_epoch(gen_of(g_epoch.load()), kFinalized));
}

void begin_generation() {
  uint64_t e = g_epoch.load();
  if (phase_of(e) == kRunning) return;  // first runtime, or nested Py_Initialize* calls
  // From this store on every handle saved under the old runtime is stale, even when the
  // new runtime reuses the old thread states' addresses.
  g_epoch.store(make_epoch(gen_of(e) + 1, kRunning));
}

}  // namespace pfg
