#include "state.h"

#include <ctime>


namespace pfg {

std::atomic<uint64_t> g_epoch{make_epoch(1, kRunning)};
std::atomic<int64_t> g_finalize_start_ns{0};

// Every thread starts unregistered (the initial TLS image, copied by the C library for
// each new thread, and into the static TLS of threads that exist when a dlopen loads us).
__thread PerThread t_pt = {{nullptr, 0}, kUnregistered, 0, 0, 0, 0};
std::atomic<uint64_t> g_main_generation{0};

int64_t monotonic_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO, async-signal-safe
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct timespec clock_in_ms(clockid_t clk, int ms) {
  struct timespec t;
  clock_gettime(clk, &t);
  t.tv_nsec += ms * 1000000L;
  t.tv_sec += t.tv_nsec / 1000000000;
  t.tv_nsec %= 1000000000;
  return t;
}

namespace {
// Set once, before any hook can act on it: the runtime is one the guard does not support
// (free-threaded), so the phase never leaves RUNNING and every hook passes through.
std::atomic<bool> g_inactive{false};
}  // namespace

void state_step_aside() { g_inactive.store(true); }

namespace {
// Every store to g_epoch: a CAS loop, so that the transitions (generation, phase) and
// count_event() (the events counter, from any thread's PyThreadState_Delete) never lose
// each other's update. Returns the value stored.
template <typename F>
uint64_t update_epoch(F &&next) {
  uint64_t e = g_epoch.load();
  uint64_t n;
  do {
    n = next(e);
  } while (!g_epoch.compare_exchange_weak(e, n));
  return n;
}
}  // namespace

bool begin_finalizing() {
  if (g_inactive.load(std::memory_order_relaxed)) return false;
  if (phase_of(g_epoch.load()) != kRunning) return false;  // nested (Py_Exit -> Py_FinalizeEx) or repeated
  g_finalize_start_ns.store(monotonic_ns());
  update_epoch([](uint64_t e) { return e | kFinalizing; });
  return true;
}

void end_finalizing() {
  update_epoch([](uint64_t e) { return (e & ~uint64_t(3)) | kFinalized; });
}

void begin_generation() {
  if (phase_of(g_epoch.load()) == kRunning) return;  // first runtime, or nested Py_Initialize* calls
  // From this store on every handle saved under the old runtime is stale, even when the
  // new runtime reuses the old thread states' addresses.
  update_epoch([](uint64_t e) { return make_epoch(gen_of(e) + 1, kRunning); });
}

uint64_t count_event() {
  return update_epoch([](uint64_t e) { return runtime_of(e) | uint64_t((events_of(e) + 1) & kEventsMask) << 2; });
}

}  // namespace pfg
