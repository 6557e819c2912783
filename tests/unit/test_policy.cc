// The policy (shim/policy.h) on a fake runtime, no interpreter: a table of cases over
// phase x handle x thread x API x caller x CPython's flags x PYFINGUARD_MODE x whether
// this CPython ends late threads, each naming the docs/design.md rule it checks; then a
// sweep of the whole cross product for the properties every verdict must have.
//
//   test_policy                   every case must hold (exit 1 otherwise)
//   test_policy --killed-by RULE  a mutant build (-DPFG_MUTANT_<RULE>): exit 0 only if a
//                                 case of RULE fails, i.e. the test kills the mutant
#include <cstdio>
#include <cstring>

#include "policy.h"

using namespace pfg;
using namespace pfg::policy;

namespace {

// The fake runtime: what CPython and the process say, and how often CPython's flags
// were asked.
struct Fake {
  bool ponr, over, ending_normally, ends_late, deleted, interp_ended, exit_begun;
  Mode mode;
  uint64_t main_gen;
  int flag_reads;
} g;

const Runtime kFake = {
    [] { return ++g.flag_reads, g.ponr; },
    [] { return g.over; },
    [] { return g.ending_normally; },
    [] { return g.ends_late; },
    [](void *, uint64_t, uint64_t) { return g.deleted; },
    [](void *) { return g.interp_ended; },
    [] { return g.exit_begun; },
    [] { return g.mode; },
    [] { return g.main_gen; },
};

enum Entry { DECIDE, NEW_TS, EXIT, HANG, GIL, DESTROY, DRAIN, SWITCH };
enum Ph : uint64_t { RUN = kRunning, FIN = kFinalizing, DONE = kFinalized };
// The thread's outstanding save: none; of this very ts in this generation (before the
// current events count when BEFORE_EVENT); of this ts in the previous generation; of
// another thread state.
enum HandleKind { H_CURRENT, H_NONE, H_BEFORE_EVENT, H_EARLIER_GEN, H_OTHER_TS };
// The calling thread: another thread, this generation's finalizer, the previous one's.
enum Who { OTHER, FINALIZER, OLD_FINALIZER };
// Where it last took the GIL through a hook: this generation, never, an earlier one.
enum Acq { ACQ_THIS_GEN, ACQ_NEVER, ACQ_EARLIER_GEN };
enum Expect { PASS, END, PARK, ABORT, YES, NO };

struct Case {
  Rule rule;  // the docs/design.md rule the case checks
  const char *what;
  Entry entry = DECIDE;
  Fn api = fn_PyEval_RestoreThread;
  Ph phase = RUN;
  bool reinit = false;  // the current runtime is the second generation
  HandleKind handle = H_CURRENT;
  Who who = OTHER;
  Acq acq = ACQ_THIS_GEN;
  bool window = false;
  bool from_cpython = false;
  bool ponr = false, over = false, ending_normally = false, ends_late = false, deleted = false,
       interp_ended = false, exit_begun = false;
  Mode mode = Mode::automatic;
  uint64_t main_gen = 0;  // the generation the python executable runs (Py_Main; 0: none)
  Expect expect = PASS;
  Reason why = Reason::finalizing;
  bool routine = false;
  Rule by = Rule::none;   // the rule in the verdict when it is not .rule
  bool no_flags = false;  // CPython's flags must not be asked
  bool timed_out = false;  // SWITCH: the slice timed out
  unsigned stopped = 0;    // SWITCH: threads stopped so far
};

void *const TS = reinterpret_cast<void *>(0x1000);
void *const OTHER_TS = reinterpret_cast<void *>(0x2000);
void *const INTERP = reinterpret_cast<void *>(0x3000);
constexpr uint64_t kEvents = 5;

bool names_ts(Fn api) { return api == fn_PyEval_RestoreThread || api == fn_PyEval_AcquireThread; }

Call make_call(const Case &k) {
  const uint64_t gen = k.reinit ? 2 : 1;
  const uint64_t e = make_epoch(gen, k.phase) | kEvents << 2;
  const uint64_t saved = make_epoch(gen, kRunning) | kEvents << 2;
  Call c{};
  c.api = k.api;
  c.e = e;
  c.ts = names_ts(k.api) ? TS : nullptr;
  c.from_cpython = k.from_cpython;
  switch (k.handle) {
    case H_NONE: c.h = {nullptr, 0}; break;
    case H_CURRENT: c.h = {TS, saved}; break;
    case H_BEFORE_EVENT: c.h = {TS, saved - (1 << 2)}; break;
    case H_EARLIER_GEN: c.h = {TS, make_epoch(gen - 1, kRunning)}; break;
    case H_OTHER_TS: c.h = {OTHER_TS, saved}; break;
  }
  c.finalizer_gen = k.who == FINALIZER ? gen : k.who == OLD_FINALIZER ? gen - 1 : 0;
  c.acquired_epoch = k.acq == ACQ_NEVER ? 0 : make_epoch(k.acq == ACQ_THIS_GEN ? gen : gen - 1, kRunning);
  c.in_window = k.window;
  return c;
}

void set_fake(const Case &k) {
  g = {k.ponr, k.over, k.ending_normally, k.ends_late, k.deleted, k.interp_ended, k.exit_begun, k.mode,
       k.main_gen, 0};
}

// The verdict a hook acts on: the entry's rule, then park()'s settle().
Verdict verdict(Entry entry, const Call &c) {
  Verdict v = let_through();
  switch (entry) {
    case DECIDE: v = decide(c, kFake); break;
    case NEW_TS: v = new_thread_state(c, INTERP, kFake); break;
    case EXIT: v = thread_exit(c, kFake); break;
    case HANG: v = thread_hang(c, kFake); break;
    case GIL: v = gil_wait(c, kFake); break;
    case DESTROY: case DRAIN: case SWITCH: break;
  }
  return settle(v, c, kFake);
}

const char *action_name(Action a) {
  static const char *const n[] = {"pass", "stop", "end", "park", "abort"};
  return n[int(a)];
}

int g_cases, g_failed, g_failed_of[int(Rule::routine) + 1];

void fail(Rule rule, const char *what, const char *fmt, const char *a, const char *b) {
  ++g_failed;
  ++g_failed_of[int(rule)];
  printf("FAIL [%s] %s: ", rule_name(rule), what);
  printf(fmt, a, b);
  printf("\n");
}

void check(const Case &k) {
  ++g_cases;
  set_fake(k);
  const Call c = make_call(k);
  if (k.entry == DESTROY || k.entry == DRAIN || k.entry == SWITCH) {
    const bool yes = k.entry == DESTROY ? gil_destroy_guarded(c.e, kFake)
                     : k.entry == DRAIN ? drain_due(c, kFake)
                                        : gil_switch_over(k.timed_out, k.stopped);
    if (yes != (k.expect == YES)) fail(k.rule, k.what, "%s, expected %s", yes ? "yes" : "no", k.expect == YES ? "yes" : "no");
  } else {
    const Verdict v = verdict(k.entry, c);
    static const Action want_of[] = {Action::pass, Action::end, Action::park, Action::abort};
    const Action want = want_of[k.expect];
    const Rule by = k.by != Rule::none ? k.by : k.rule;
    char got[160], exp[160];
    snprintf(got, sizeof got, "%s (%s, rule %s, %s)", action_name(v.action), v.stops() ? reason_text(v.why) : "-",
             rule_name(v.rule), v.routine ? "routine" : "reported");
    snprintf(exp, sizeof exp, "%s (%s, rule %s, %s)", action_name(want), want != Action::pass ? reason_text(k.why) : "-",
             rule_name(want != Action::pass ? by : Rule::none), k.routine ? "routine" : "reported");
    const bool ok = v.action == want &&
                    (want == Action::pass || (v.why == k.why && v.rule == by && v.routine == k.routine));
    if (!ok) fail(k.rule, k.what, "%s, expected %s", got, exp);
  }
  if (k.no_flags && g.flag_reads) fail(k.rule, k.what, "CPython's flags asked%s%s", "", "");
}

}  // namespace

#include "test_policy_cases.h"
#include "test_policy_sweep.h"

int main(int argc, char **argv) {
  const char *killed_by = argc == 3 && !strcmp(argv[1], "--killed-by") ? argv[2] : nullptr;
  for (const Case &k : kCases) check(k);
  const int table_failed = g_failed;
  sweep();
  printf("%d table cases (%d failed), %d sweep verdicts (%d failed)\n", g_cases, table_failed, g_sweep_verdicts,
         g_failed - table_failed);
  if (!killed_by) return g_failed ? 1 : 0;
  for (int r = 0; r <= int(Rule::routine); ++r)
    if (!strcmp(rule_name(Rule(r)), killed_by)) {
      printf("mutant %s: %s (%d failing checks of its rule)\n", killed_by, g_failed_of[r] ? "killed" : "SURVIVED",
             g_failed_of[r]);
      return g_failed_of[r] ? 0 : 1;
    }
  printf("no rule %s\n", killed_by);
  return 2;
}
