#include "window.h"

#include <ctime>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gilwait.h"
#include "sink.h"
#include "writer.h"

namespace pfg {

namespace {

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
// The generation whose finalization has drained its windows (0: none yet).
std::atomic<uint64_t> g_drained_gen{0};
// How long the drain waits at most. A build parameter only so that tests/stress/drain.py
// can build a mutant with 0 -- the drain then never waits -- and show that the storm
// crashes without it.
#ifndef PFG_DRAIN_LIMIT_MS
#define PFG_DRAIN_LIMIT_MS 1000
#endif
constexpr int64_t kDrainLimitNs = PFG_DRAIN_LIMIT_MS * 1000000LL;

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

}  // namespace


void window_register_slow() {
  t_pt.save_mark = 0;  // also when the table is full: do not retry every call
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

void window_init() {
  pthread_once(&g_window_once, make_key);
  g_membarrier_ok = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

void drain_windows_once(uint64_t gen) {
  // Once per finalization: CPython calls PyThreadState_Clear once per thread state.
  if (g_drained_gen.load(std::memory_order_relaxed) == gen) return;
  g_drained_gen.store(gen, std::memory_order_relaxed);
  heavy_barrier();
  if (!any_window_open()) return;
  // Some thread entered a real acquisition before the point of no return and has not
  // come out. It is on its way into take_gil, where it parks (window.h): wake the GIL
  // waiters so that they re-check now rather than at their next 5 ms time-out. We keep
  // the GIL throughout -- CPython holds it here, and so does its finalizer without us.
  const int64_t deadline = monotonic_ns() + kDrainLimitNs;
  while (any_window_open()) {
    if (monotonic_ns() > deadline) {
      const int fd = log_fd();
      if (fd >= 0 && kDrainLimitNs > 0)
        Writer(fd).str("pyfinguard: warning: a thread inside CPython's GIL acquisition did not park within ")
            .dec(PFG_DRAIN_LIMIT_MS).str(" ms of the point of no return; continuing\n");
      return;
    }
    gil_wake_waiters();
    struct timespec t = {0, 100000};
    nanosleep(&t, nullptr);
  }
}

void window_atfork_child() {
  for (int i = 0; i < kMaxWindows; ++i)
    if (g_windows[i].load() != &t_pt.window) g_windows[i].store(nullptr);
  g_drained_gen.store(0);
}

}  // namespace pfg
