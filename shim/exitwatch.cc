#include "exitwatch.h"

#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <linux/futex.h>
#include <sys/syscall.h>
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

std::atomic<bool> g_armed{false};
std::atomic<bool> g_exiting{false};
std::atomic<int> g_exit_status{0};
std::atomic<int64_t> g_exit_start_ns{0};
// Parked threads sleep on this word; exit's handler wakes them (futex wake, one syscall,
// only when something is parked) so that one of them takes the watch.
int g_park_word = 0;
std::atomic<bool> g_watch_taken{false};

// How long every other thread must have been waiting on a futex without a timeout, and
// nothing ran, before the watch concludes that only parked threads could end the wait.
constexpr int64_t kCertainNs = 100 * 1000000LL;
constexpr int64_t kTickNs = 10 * 1000000LL;

void on_exit_handler(int status, void *) {
  g_exit_status.store(status);
  g_exit_start_ns.store(monotonic_ns());
  g_exiting.store(true);
  if (g_parked_count.load() == 0) return;
  g_park_word = 1;
  syscall(SYS_futex, &g_park_word, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

bool skip_parked(int tid) { return is_parked_tid(tid); }

unsigned parked_now() {
  unsigned k = 0;
  for (unsigned i = 0, n = described_count(); i < n; ++i)
    k += g_parked[i].tid.load() != 0 && !g_parked[i].ended.load();
  return k;
}

[[noreturn]] void never_wake() {
  static int never = 0;  // nobody ever wakes it: the thread sleeps in the kernel for good
  for (;;) syscall(SYS_futex, &never, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
}

// The report of a blocked exit: why the watch ends it, then each parked thread. Text
// lines or one JSON line; to the report destination (and stderr's summary after it).
void report_blocked(int64_t waited_ns, bool certain, int status) {
  const int fd = log_fd();
  if (fd < 0) return;
  Writer w(fd);
  g_reported.fetch_add(1);  // the exit summary follows this report
  const unsigned parked = parked_now();
  if (g_config.format == Format::json) {
    json_head(w, "exit_blocked");
    w.str(",\"waited_ms\":").ms(waited_ns).str(",\"cause\":\"")
        .str(certain ? "every other thread waits on a parked one" : "timeout").str("\",\"status\":")
        .dec(status).str(",\"parked\":[");
  } else {
    w.str("pyfinguard: exit blocked for ").ms(waited_ns).str(" ms with ").dec(parked)
        .str(parked == 1 ? " thread" : " threads").str(" parked (")
        .str(certain ? "every other thread waits on what only a parked thread can release"
                     : "no progress for PYFINGUARD_EXIT_TIMEOUT")
        .str("): ending the process with its exit status ").dec(status).chr('\n');
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

// The watch: every 10 ms, what every thread that is not parked does. Progress is a tenth
// of a core or more of CPU time in the tick, or a thread in disk I/O (a destructor
// flushing a database, a join of a working thread): the exit is never cut while it
// works. A thread that wakes now and then (a poll with a timeout) is not progress. Without progress, the exit ends after 100 ms when every
// other thread waits on a futex with no timeout -- only a parked thread could end such a
// wait -- and after PYFINGUARD_EXIT_TIMEOUT otherwise (a read of a pipe a parked thread
// would write, a process where /proc cannot be read). Everything here is a raw syscall
// or a Writer: the exiting thread may hold any lock.
[[noreturn]] void watch() {
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
}

}  // namespace

void exitwatch_arm() {
  if (g_armed.load(std::memory_order_relaxed) || g_armed.exchange(true)) return;
  on_exit(on_exit_handler, nullptr);
}

bool exit_begun() { return g_exiting.load(); }

void exitwatch_park_wait() {
  for (;;) {
    if (g_exiting.load()) {
      if (!g_watch_taken.exchange(true)) watch();
      never_wake();
    }
    syscall(SYS_futex, &g_park_word, FUTEX_WAIT_PRIVATE, 0, nullptr, nullptr, 0);
  }
}

}  // namespace pfg
