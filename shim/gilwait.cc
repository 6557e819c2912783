#include "gilwait.h"

#include <atomic>
#include <cerrno>
#include <ctime>

#include "interpose.h"
#include "facts.h"
#include "park.h"
#include "parkrecord.h"
#include "probes.h"
#include "sink.h"
#include "state.h"
#include "writer.h"

namespace pfg {
namespace {

// The condition variables Python text has waited on: the GIL's (one per runtime, or per
// interpreter with its own GIL on 3.12+). A slot is claimed once per address with a CAS
// and reused when the same address waits again (a re-created GIL usually has the same
// static address); destroy frees it when nobody waits. No allocation, no lock: waiters
// run this on their way into a futex sleep and, later, on the way to parking.
struct CondSlot {
  std::atomic<pthread_cond_t *> cond;
  std::atomic<pthread_mutex_t *> mutex;
  std::atomic<int> waiters;  // threads between entry and exit of gil_wait() on it
};
constexpr int kMaxConds = 32;
CondSlot g_conds[kMaxConds];

CondSlot *find_slot(pthread_cond_t *c) {
  for (auto &s : g_conds)
    if (s.cond.load() == c) return &s;
  return nullptr;
}

CondSlot *claim_slot(pthread_cond_t *c) {
  if (CondSlot *s = find_slot(c)) return s;
  for (auto &s : g_conds) {
    pthread_cond_t *expected = nullptr;
    if (s.cond.compare_exchange_strong(expected, c) || expected == c) return &s;
  }
  return nullptr;  // more than kMaxConds GILs waited on at once: untracked (limitations.md)
}

// The GIL wait's rules (policy.h: gil_stale, gil_late), checked before and after the real
// wait; the finalizer is let through. A waiter they stop leaves the slot's count first:
// the destroying thread waits for it to reach 0 and then for the mutex, which is released
// right after. Both are plain atomics and an unlock: nothing here allocates or takes a
// lock of ours.
inline void park_if_late(CondSlot *s, pthread_mutex_t *m) {
  const policy::Call c = call_here(fn_pthread_cond_timedwait, g_epoch.load(), nullptr, true);
  const policy::Verdict v = policy::gil_wait(c, kLive);
  if (__builtin_expect(!v.stops(), 1)) return;
  if (s) s->waiters.fetch_sub(1);
  pthread_mutex_unlock(m);  // CPython's GIL mutex, held since cond-wait semantics say so
  park(c, v);
}

}  // namespace

int gil_wait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime) {
  CondSlot *s = claim_slot(c);
  if (s) {
    s->mutex.store(m);
    s->waiters.fetch_add(1);  // seq_cst: ordered before the g_epoch load in park_if_late
  }
  park_if_late(s, m);
  const int rc = PFG_REAL(pthread_cond_timedwait)(c, m, abstime);
  park_if_late(s, m);
  if (s) s->waiters.fetch_sub(1);
  return rc;
}

int gil_switch_wait(pthread_cond_t *c, pthread_mutex_t *m) {
  // The thread waiting here released the GIL because a waiter's 5 ms wait in take_gil()
  // timed out and it asked for the GIL (the drop request); a thread taking the GIL signals
  // the switch condition. The guard stops waiters after their timed wait, before
  // take_gil() goes on, so a request may be left with nobody to honour it: a daemon
  // thread that asked while the finalizer ran C code (an atexit handler), then woke past
  // the point of no return, leaves the finalizer's next bytecode waiting here for ever
  // (tests/scenarios/f_switch_orphan.py; in stress embed-reinit, the re-initializing
  // thread). CPython 3.9-3.13's own exit from take_gil() (tstate_must_exit) can do the same.
  //
  // policy.h, gil_switch. g_parked_count counts every thread stopped, by the guard or by
  // CPython through our pthread_exit/pause hooks (parked or ended, routine or not); it
  // never goes down, so reading it after a slice that timed out cannot miss a stop that
  // happened before or during the slice. Before any stop the wait is CPython's, 5 ms at a
  // time (a slice costs one clock_gettime; the hand-over normally takes microseconds).
  // CLOCK_MONOTONIC via clockwait, whatever clock CPython gave the condition variable.
  for (;;) {
    const struct timespec t = clock_in_ms(CLOCK_MONOTONIC, 5);
    const int rc = pthread_cond_clockwait(c, m, CLOCK_MONOTONIC, &t);
    if (policy::gil_switch_over(rc == ETIMEDOUT, g_parked_count.load())) return 0;  // a spurious wake-up
    if (rc != ETIMEDOUT) return rc;
  }
}

void gil_cond_destroying(pthread_cond_t *c) {
  CondSlot *s = find_slot(c);
  if (!s) return;
  if (policy::gil_destroy_guarded(g_epoch.load(), kLive)) {
    // Wake the waiters (they re-check and park), then make sure nobody is between two
    // waits holding the mutex: such a thread either waits again -- and parks on entry --
    // or leaves take_gil(); both release the mutex. Bounded: a waiter that cannot come
    // out (cancelled inside the wait, say) must not hang the finalizer; CPython then
    // destroys the condition variable under it, as it would without the guard.
    const int64_t deadline = monotonic_ns() + 500 * 1000000LL;
    for (;;) {
      if (s->waiters.load() == 0) {
        pthread_mutex_t *m = s->mutex.load();
        if (m && pthread_mutex_lock(m) == 0) pthread_mutex_unlock(m);
        if (s->waiters.load() == 0) break;
      }
      if (monotonic_ns() > deadline) {
        const int fd = log_fd();
        if (fd >= 0)
          Writer(fd).str("pyfinguard: warning: a thread waiting for the GIL did not park within "
                         "500 ms of CPython destroying it; continuing\n");
        break;
      }
      pthread_cond_broadcast(c);
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
  }
  // Free the slot unless someone (a new runtime's thread) is waiting on the address.
  if (s->waiters.load() == 0) {
    pthread_cond_t *expected = c;
    s->cond.compare_exchange_strong(expected, nullptr);
  }
}

void gil_wake_waiters() {
  // pthread_cond_broadcast needs no mutex, allocates nothing and takes no lock of ours.
  for (auto &s : g_conds)
    if (pthread_cond_t *c = s.cond.load())
      if (s.waiters.load() != 0) pthread_cond_broadcast(c);
}

bool gil_mutex_destroy_allowed() { return !policy::gil_destroy_guarded(g_epoch.load(), kLive); }

void gilwait_forget_range(uintptr_t lo, uintptr_t hi) {
  for (auto &s : g_conds) {
    pthread_cond_t *c = s.cond.load();
    const uintptr_t a = reinterpret_cast<uintptr_t>(c);
    if (!c || a < lo || a >= hi || s.waiters.load() != 0) continue;
    if (s.cond.compare_exchange_strong(c, nullptr)) s.mutex.store(nullptr);
  }
}

void gilwait_atfork_child() {
  for (auto &s : g_conds) s.waiters.store(0);
}

}  // namespace pfg
