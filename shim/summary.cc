#include "summary.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sys/auxv.h>
#include <unistd.h>

#include "config.h"
#include "parkrecord.h"
#include "report.h"
#include "sink.h"
#include "threadscan.h"
#include "writer.h"

namespace pfg {

namespace {

// Late threads the summary counted when it was last printed (0: not printed).
std::atomic<unsigned> g_summarized{0};

// The exit summary, in either format. n: threads parked (not ended); ended: ended with
// pthread_exit as CPython ends them (docs/design.md, "Ending or parking").
void write_summary(Writer &w, unsigned n, unsigned present, unsigned ended, unsigned reported, unsigned routine) {
  if (g_config.format == Format::json) {
    json_head(w, "exit");
    w.str(",\"parked\":").dec(n).str(",\"present\":").dec(present).str(",\"ended\":").dec(ended)
        .str(",\"reported\":")
        .dec(reported).str(",\"routine\":").dec(routine).str(",\"log\":");
    if (g_config.syslog) w.str("\"syslog\",\"log_path\":").json(g_config.syslog_path, sizeof g_config.syslog_path);
    else if (g_config.log_file) w.str("\"file\",\"log_path\":").json(g_config.log_path, 200);
    else w.str("\"stderr\",\"log_path\":null");
    w.str("}\n");
    return;
  }
  w.str("pyfinguard: ").dec(n).str(n == 1 ? " thread" : " threads")
      .str(" parked after Python finalization began, ").dec(present).str(" still present at exit");
  // Ended threads only where there are any: the line is otherwise as it always was.
  if (ended) w.str(", ").dec(ended).str(" ended with pthread_exit as this CPython ends late threads");
  w.str("; ").dec(reported).str(" reported");
  if (g_config.log_file) w.str(" in ").safe(g_config.log_path, 200);
  else if (g_config.syslog) w.str(" to syslog at ").safe(g_config.syslog_path, 108);
  w.str(", ").dec(routine).str(" routine");
  // Routine parks are reported only with PYFINGUARD_LOG set (docs/diagnostics.md).
  if (reported < n) w.str(" (not reported; PYFINGUARD_LOG=stderr reports them too)");
  w.chr('\n');
}

}  // namespace

// Set by the first call (the library's destructor, or the exit watch): from then on each
// late thread brings the summary up to date itself.
std::atomic<bool> g_summary_due{false};

bool summary_printed() { return g_summary_due.load(); }

void report_exit_summary() {
  g_summary_due.store(true);
  if (g_parked_count.load() == 0) return;
  // Let threads that are parking right now finish their reports (bounded: 250 ms).
  for (int i = 0; i < 250 && g_reports_in_flight.load() > 0; ++i) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, nullptr);
  }
  unsigned n = g_parked_count.load();
  if (g_config.quiet || g_config.secure) return;
  // Only routine parks (CPython's own shutdown of its threads) and no PYFINGUARD_LOG:
  // nothing was reported, and a program's stderr stays exactly as without the guard.
  if (g_reported.load() == 0) return;
  // Once per count: the destructor, a late park and the exit watch may all get here.
  if (g_summarized.exchange(n) == n) return;
  unsigned present = 0, routine = 0, ended = 0, described = n < kMaxParkRecords ? n : kMaxParkRecords;
  for (unsigned i = 0; i < described; ++i) {
    int tid = g_parked[i].tid.load();
    if (tid == 0) continue;
    routine += g_parked[i].routine;
    if (g_parked[i].ended.load()) {
      ++ended;
      continue;
    }
    if (thread_present(tid)) ++present;  // a thread that parked never exits
  }
  // Parks happen from the moment CPython passes its point of no return inside
  // Py_FinalizeEx (and, for threads of an earlier runtime, later): "after finalization
  // began" is what is measured.
  const unsigned reported = g_reported.load();
  {
    Writer w(2);
    write_summary(w, n - ended, present, ended, reported, routine);
  }
  // With syslog, the summary goes there too: a log pipeline sees how many parks were
  // only counted (routine ones are reported there anyway: PYFINGUARD_LOG is set).
  if (int s = syslog_fd(); s >= 0) {
    char head[40];
    syslog_head(head, 5);  // notice
    Writer w(s, head);
    write_summary(w, n - ended, present, ended, reported, routine);
  }
}

// PYFINGUARD_STRICT=N. An on_exit handler registered by the library's constructor, i.e.
// before __libc_start_main registered the loader's destructor pass (_dl_fini): exit()
// runs its handlers last-registered first, so this one runs after every atexit handler
// of the program, after _dl_fini (every library's destructors, ours with the summary
// included) -- and only before exit()'s own last step, flushing stdio. The status
// cannot be changed from here; _exit(N) can end the process instead, and all that is
// skipped is that flush, which fflush(NULL) does first. (A library that registers an
// exit handler from its constructor before ours would be skipped too: glibc's and
// libstdc++'s register theirs against their own DSO handle, run by _dl_fini.)
void report_strict_at_exit(int status, void *) {
  if (!g_config.loaded || g_config.secure || g_config.strict == 0) return;
  const unsigned n = g_reportable_count.load();
  if (n == 0) return;
  if (!g_config.quiet) {
    Writer w(2);
    if (g_config.format == Format::json) {
      json_head(w, "strict");
      w.str(",\"status\":").dec(g_config.strict).str(",\"exit_status\":").dec(status)
          .str(",\"reported_parks\":").dec(n).str("}\n");
    } else {
      w.str("pyfinguard: strict: exit status ").dec(g_config.strict).str(" instead of ").dec(status)
          .str(": ").dec(n).str(n == 1 ? " thread" : " threads")
          .str(" stopped (ended or parked) that the rules report (PYFINGUARD_STRICT=").dec(g_config.strict).str(")\n");
    }
  }
  fflush(nullptr);
  _exit(g_config.strict);
}

void strict_register_at_load() {
  // Only the variable's presence is looked at here; its value is checked with the others
  // in config_load() (one warning line, in a process that runs Python). on_exit rather
  // than atexit: its handler gets the exit status, and it is not tied to this library's
  // DSO handle, so __cxa_finalize does not run it early when our destructors run.
  if (getauxval(AT_SECURE) || !getenv("PYFINGUARD_STRICT")) return;
  on_exit(report_strict_at_exit, nullptr);
}

}  // namespace pfg
