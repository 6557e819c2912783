#include "gate.h"

#include <climits>
#include <ctime>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "park.h"
#include "runtime.h"
#include "state.h"

namespace pfg {

namespace {

// 1 while the finalizer waits with the GIL released. Futex word for waiting threads.
std::atomic<int> g_released{0};
// 1 once a thread has waited kGateGraceNs at the gate in this finalization: from then
// on the gate admits like g_released (see gate_admit).
std::atomic<int> g_fallback{0};
constexpr int64_t kGateGraceNs = 20 * 1000000;
bool g_grace;  // set once at detection (gate_init)
// 1 while the finalizer drains windows (gate_drain_windows). The grace must not open the
// gate then: the finalizer waits in our own code, visibly, and every thread let in would
// open a new window for it to wait on -- with threads looping through sleeps and
// PyGILState_Ensure the drain never ended (3.13, tests/stress seed 660748: 13-60 s).
std::atomic<int> g_draining{0};
// Threads admitted during FINALIZING that are still inside the real call (plus, for a
// moment, threads checking whether they may enter). Futex word for the finalizer.
std::atomic<int> g_inflight{0};

static_assert(sizeof(std::atomic<int>) == sizeof(int), "futex words");

int *word(std::atomic<int> &a) { return reinterpret_cast<int *>(&a); }

void futex_wait(std::atomic<int> &a, int expected, long ns) {
  struct timespec ts = {0, ns};
  syscall(SYS_futex, word(a), FUTEX_WAIT_PRIVATE, expected, &ts, nullptr, 0);
}

void futex_wake(std::atomic<int> &a) {
  syscall(SYS_futex, word(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// Registry of the threads' window words. Fixed size, no allocation; a slot is freed by
// a pthread key destructor when its thread exits. A thread beyond kMaxWindows is not
// tracked (its window race is then as without the drain; docs/limitations.md).
constexpr int kMaxWindows = 8192;
std::atomic<int *> g_windows[kMaxWindows];
// 1 + the highest slot ever claimed: the drain scans only that far (a process with a
// handful of threads scans a handful of slots, not 8192 at every exit). Raised with a
// seq_cst CAS right after the slot's own CAS, both before the thread's first window
// opens, so the drain's Dekker argument covers it like the slot.
std::atomic<int> g_windows_used{0};
pthread_key_t g_window_key;
pthread_once_t g_window_once = PTHREAD_ONCE_INIT;
bool g_membarrier_ok;

void window_unregister(void *v) {
  int i = int(reinterpret_cast<intptr_t>(v)) - 1;
  if (i >= 0 && i < kMaxWindows) g_windows[i].store(nullptr);
}

void make_key() { pthread_key_create(&g_window_key, window_unregister); }

// Every other thread of the process executes a full barrier before this returns.
void heavy_barrier() {
  if (g_membarrier_ok && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
  // Fallback (folly's asymmetricHeavyBarrier does the same): changing a page's
  // protection makes the kernel shoot down TLBs with IPIs on every CPU running one of
  // our threads, which serializes them.
  // (A plain global, not a function-local static: that would need __cxa_guard_* and
  // so libstdc++, which costs every guarded process ~1M instructions to load.)
  static std::atomic<char *> g_page{nullptr};
  char *page = g_page.load();
  if (!page) {
    void *p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    char *expected = nullptr;
    if (g_page.compare_exchange_strong(expected, static_cast<char *>(p))) page = static_cast<char *>(p);
    else munmap(p, 4096), page = expected;
  }
  *reinterpret_cast<volatile char *>(page) = 0;
  mprotect(page, 4096, PROT_READ);
  mprotect(page, 4096, PROT_READ | PROT_WRITE);
}

bool any_window_open() {
  const int used = g_windows_used.load();
  for (int i = 0; i < used; ++i) {
    int *w = g_windows[i].load(std::memory_order_acquire);
    if (w && w != &t_pt.window && __atomic_load_n(w, __ATOMIC_ACQUIRE)) return true;
  }
  return false;
}

void leave() {
  t_pt.admitted = false;
  if (g_inflight.fetch_sub(1) == 1) futex_wake(g_inflight);
}

}  // namespace


void window_register_slow() {
  t_pt.mode |= 1;  // also when the table is full: do not retry every call
  pthread_once(&g_window_once, make_key);
  for (int i = 0; i < kMaxWindows; ++i) {
    int *expected = nullptr;
    if (g_windows[i].compare_exchange_strong(expected, &t_pt.window)) {
      for (int u = g_windows_used.load(); u < i + 1 && !g_windows_used.compare_exchange_weak(u, i + 1);) {
      }
      pthread_setspecific(g_window_key, reinterpret_cast<void *>(intptr_t(i) + 1));
      return;
    }
  }
}

void gate_init(bool grace) {
  g_grace = grace;
  pthread_once(&g_window_once, make_key);
  g_membarrier_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

void gate_drain_windows(void *(*save)(void), void (*restore)(void *)) {
  g_fallback.store(0);
  g_draining.store(1);
  heavy_barrier();
  if (!any_window_open()) {
    g_draining.store(0);
    return;
  }
  // Some thread is inside a real acquiring call it entered while RUNNING (waiting for
  // the GIL we hold, or about to). Let it through: release the GIL until every such
  // window has closed. New windows cannot open meanwhile -- they see FINALIZING and
  // wait at the gate, which is closed (g_released == 0).
  void *ts = save();
  while (any_window_open()) {
    struct timespec ms = {0, 200000};
    nanosleep(&ms, nullptr);
  }
  g_draining.store(0);
  restore(ts);
}

void gate_atfork_child() {
  for (int i = 0; i < kMaxWindows; ++i)
    if (g_windows[i].load() != &t_pt.window) g_windows[i].store(nullptr);
  g_inflight.store(0);
  g_released.store(0);
  g_fallback.store(0);
  g_draining.store(0);
  t_pt.admitted = false;
}

void gate_admit(Fn api, uint64_t e) {
  const int64_t since = monotonic_ns();
  for (;;) {
    // Dekker-style with gate_finalizer_reacquiring(): we announce ourselves, then read
    // g_released; the finalizer clears g_released, then reads g_inflight. With seq_cst
    // at least one of the two sees the other, so no thread enters unseen.
    t_pt.admitted = true;
    g_inflight.fetch_add(1);
    if ((g_released.load() || (g_fallback.load() && !g_draining.load())) && g_epoch.load() == e &&
        !runtime_is_finalizing()) {
      __atomic_store_n(&t_pt.window, 1, __ATOMIC_RELAXED);  // closed again by the hook
      return;
    }
    leave();
    // Not inside the real call while waiting here: the finalizer must not wait for us.
    __atomic_store_n(&t_pt.window, 0, __ATOMIC_RELEASE);
    uint64_t now = g_epoch.load();
    if (now != e) park(api, e, gen_of(now) != gen_of(e) ? Reason::stale_ts : Reason::finalized);
    if (runtime_is_finalizing()) park(api, e, Reason::finalizing);
    // Liveness before safety, only here: the finalizer may be waiting for this very
    // thread through a GIL release the guard does not see (3.13 detaches inside
    // _Py_Finalize and PyMutex waits without PyEval_SaveThread), so a normal shutdown
    // would hang. After a grace period with CPython still before its point of no return,
    // the gate stays open for the rest of this finalization (docs/limitations.md).
    if (g_grace && !g_draining.load() && monotonic_ns() - since >= kGateGraceNs) g_fallback.store(1);
    // Nothing signals CPython's point of no return to us: re-check every 5 ms.
    futex_wait(g_released, 0, 5 * 1000000);
  }
}

void gate_leave() {
  if (t_pt.admitted) leave();
}

void gate_forget_this_thread() {
  __atomic_store_n(&t_pt.window, 0, __ATOMIC_RELEASE);  // it will never come out of the call
  gate_leave();
}

void gate_finalizer_released() {
  g_released.store(1);
  futex_wake(g_released);
}

void gate_finalizer_reacquiring() {
  g_released.store(0);
  // Admitted threads are taking the GIL, which is free until we take it: each comes
  // out of its real call soon. Bounded by their progress, never by ours.
  for (int n; (n = g_inflight.load()) != 0;) futex_wait(g_inflight, n, 1000000);
}

void gate_phase_changed() {
  g_released.store(0);
  futex_wake(g_released);
}

}  // namespace pfg
