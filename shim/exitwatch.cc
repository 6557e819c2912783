#include "exitwatch.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <pthread.h>
#include <unistd.h>

#include "config.h"
#include "parkrecord.h"
#include "report.h"
#include "sink.h"
#include "state.h"
#include "summary.h"
#include "threadscan.h"
#include "writer.h"

namespace pfg {

namespace {

// 0: no handler registered; 1: by a lifecycle hook (exitwatch_arm_early); 2: at a
// finalization or the python executable's return (exitwatch_arm).
std::atomic<int> g_armed{0};
std::atomic<bool> g_exiting{false};
std::atomic<int> g_exit_status{0};
std::atomic<int64_t> g_exit_start_ns{0};
std::atomic<bool> g_watch_started{false};

// How long every other thread must have been waiting on a futex without a timeout, and
// nothing ran, before the watch concludes that only the threads the guard stopped could
// have ended the wait.
constexpr int64_t kCertainNs = 100 * 1000000LL;
constexpr int64_t kTickNs = 10 * 1000000LL;


// Registered once or twice (exitwatch_arm_early, then exitwatch_arm); the first run, the
// later registration, is the one that counts.
void on_exit_handler(int status, void *) {
  if (g_exiting.load()) return;
  g_exit_status.store(status);
  g_exit_start_ns.store(monotonic_ns());
  g_exiting.store(true);
  exitwatch_late_thread();  // threads stopped before the exit began: watch now
}

bool skip_parked(int tid) { return is_parked_tid(tid); }

unsigned parked_now() {
  unsigned k = 0;
  for (unsigned i = 0, n = described_count(); i < n; ++i)
    k += g_parked[i].tid.load() != 0 && !g_parked[i].ended.load();
  return k;
}

// The report of a blocked exit: why the watch ends it, then each parked thread. Text
// lines or one JSON line; to the report destination (and stderr's summary after it).
void report_blocked(int64_t waited_ns, bool certain, int status) {
  const int fd = log_fd();
  if (fd < 0) return;
  Writer w(fd);
  g_reported.fetch_add(1);  // the exit summary follows this report
  const unsigned parked = parked_now(), stopped = g_parked_count.load();
  const unsigned ended = stopped > parked ? stopped - parked : 0;
  if (g_config.format == Format::json) {
    json_head(w, "exit_blocked");
    w.str(",\"waited_ms\":").ms(waited_ns).str(",\"cause\":\"")
        .str(certain ? "every other thread waits on a stopped one" : "timeout").str("\",\"status\":")
        .dec(status).str(",\"ended\":").dec(ended).str(",\"parked\":[");
  } else {
    w.str("pyfinguard: exit blocked for ").ms(waited_ns).str(" ms after the guard stopped ")
        .dec(stopped).str(stopped == 1 ? " late thread (" : " late threads (").dec(parked)
        .str(" parked, ").dec(ended).str(" ended): ")
        .str(certain ? "every other thread waits, with no timeout, on what only they could release"
                     : "no progress for PYFINGUARD_EXIT_TIMEOUT")
        .str("; ending the process with its exit status ").dec(status).chr('\n');
  }
  const int64_t now = monotonic_ns();
  bool first = true;
  for (unsigned i = 0, n = described_count(); i < n; ++i) {
    const ParkRecord &r = g_parked[i];
    if (r.tid.load() == 0 || r.ended.load()) continue;
    if (g_config.format == Format::json) {
      if (!first) w.chr(',');
      w.str("{\"tid\":").dec(r.tid.load()).str(",\"thread\":").json(r.name, sizeof r.name)
          .str(",\"api\":\"").str(kFns[r.api].name).str("\",\"reason\":\"").str(r.why)
          .str("\",\"parked_ms\":").ms(now - r.when_ns).chr('}');
    } else {
      w.str("pyfinguard:   thread ").dec(r.tid.load()).str(" '").str(r.name).str("' parked in ")
          .str(kFns[r.api].name).str(" (").str(r.why).str(") ").ms(now - r.when_ns).str(" ms ago\n");
    }
    first = false;
  }
  if (g_config.format == Format::json) w.str("]}\n");
}

// Flushes stdout and stderr only if no other thread holds them: the exiting thread may
// be blocked anywhere, and a blocking fflush would turn the watch's exit into a hang.
void flush_if_free(FILE *f) {
  if (ftrylockfile(f) != 0) return;
  fflush_unlocked(f);
  funlockfile(f);
}

[[noreturn]] void end_process(int64_t waited_ns, bool certain) {
  int status = g_exit_status.load();
  // PYFINGUARD_STRICT applies as at any exit (summary.h).
  if (!g_config.secure && g_config.strict && g_reportable_count.load()) status = g_config.strict;
  if (!g_config.secure) report_blocked(waited_ns, certain, status);
  report_exit_summary();
  flush_if_free(stdout);
  flush_if_free(stderr);
  _exit(status);
}

// The watch, a thread of its own: every 10 ms, what every thread that is not parked does. Progress is a tenth
// of a core or more of CPU time in the tick, or a thread in disk I/O (a destructor
// flushing a database, a join of a working thread): the exit is never cut while it
// works. A thread that wakes now and then (a poll with a timeout) is not progress. Without progress, the exit ends after 100 ms when every
// other thread waits on a futex with no timeout -- only a parked thread could end such a
// wait -- and after PYFINGUARD_EXIT_TIMEOUT otherwise (a read of a pipe a parked thread
// would write, a process where /proc cannot be read). Everything here is a raw syscall
// or a Writer: the exiting thread may hold any lock.
void *watch(void *) {
  const int64_t timeout = g_config.exit_timeout_ns;
  int64_t quiet_since = g_exit_start_ns.load();
  uint64_t last_runtime = ~uint64_t(0);
  for (;;) {
    struct timespec tick = {0, kTickNs};
    clock_nanosleep(CLOCK_MONOTONIC, 0, &tick, nullptr);
    const int64_t now = monotonic_ns();
    ThreadScan s;
    const bool known = scan_threads(skip_parked, s);
    const bool progress = known && last_runtime != ~uint64_t(0) &&
                          (s.runtime_ns - last_runtime >= uint64_t(kTickNs / 10) || s.in_io > 0);
    if (known) last_runtime = s.runtime_ns;
    if (progress) {
      quiet_since = now;
      continue;
    }
    const int64_t quiet = now - quiet_since;
    if (known && s.threads > 0 && s.futex_untimed == s.threads && quiet >= kCertainNs)
      end_process(now - g_exit_start_ns.load(), true);
    if (timeout > 0 && quiet >= timeout) end_process(now - g_exit_start_ns.load(), false);
  }
  return nullptr;
}

// A thread of its own, detached, every signal blocked (no handler of the program runs
// on it), small stack: started by the exiting thread's handler or by a thread being
// stopped -- ordinary contexts, neither holding a lock of the guard's.
void start_watch() {
  if (g_watch_started.load() || g_watch_started.exchange(true)) return;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&a, 128 * 1024);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);  // the new thread inherits the mask
  pthread_t t;
  if (pthread_create(&t, &a, watch, nullptr) != 0) g_watch_started.store(false);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&a);
}

}  // namespace

namespace {
// Registers the handler unless one is registered at this level or later already: a
// registration made later runs earlier at exit (before the destructors of what was
// loaded in between), so an early one must not keep the finalization from registering.
void arm(int level) {
  int cur = g_armed.load(std::memory_order_relaxed);
  while (cur < level)
    if (g_armed.compare_exchange_weak(cur, level)) {
      on_exit(on_exit_handler, nullptr);
      return;
    }
}
}  // namespace

void exitwatch_arm() { arm(2); }
void exitwatch_arm_early() { arm(1); }

bool exit_begun() { return g_exiting.load(); }

void exitwatch_late_thread() {
  // Both orders meet here: a thread stopped before the exit began is seen by the
  // handler (it counted itself first), one stopped after sees g_exiting (seq_cst).
  if (g_exiting.load() && g_parked_count.load() != 0) start_watch();
}

}  // namespace pfg
