// The sweep of tests/unit/test_policy.cc: every combination of phase, generation, handle,
// thread, caller, API, CPython's flags, deletions, ended interpreters, PYFINGUARD_MODE and
// whether CPython ends late threads, checked for what docs/design.md says of every
// verdict, whatever the case. Each property names its rule.
#pragma once

int g_sweep_verdicts;

namespace {

int g_sweep_printed;

void sweep_fail(Rule rule, const Case &k, Entry entry, const char *what) {
  ++g_failed;
  ++g_failed_of[int(rule)];
  if (++g_sweep_printed > 20) return;
  printf("FAIL [%s] sweep: %s (entry %d api %d phase %d reinit %d handle %d who %d acq %d window %d "
         "from_cpython %d ponr %d deleted %d interp_ended %d ends_late %d mode %d)\n",
         rule_name(rule), what, int(entry), int(k.api), int(k.phase), k.reinit, int(k.handle), int(k.who),
         int(k.acq), k.window, k.from_cpython, k.ponr, k.deleted, k.interp_ended, k.ends_late, int(k.mode));
}

bool ends_for(Reason r) {
  return r == Reason::finalizing || r == Reason::finalized || r == Reason::thread_exit || r == Reason::gil_wait;
}

void sweep_one(Case k, Entry entry) {
  set_fake(k);
  const Call c = make_call(k);
  const Verdict v = verdict(entry, c);
  const int flag_reads = g.flag_reads;
  ++g_sweep_verdicts;
  // 1: the finalizer is never stopped.
  if (k.who == FINALIZER && v.stops()) sweep_fail(Rule::rule1, k, entry, "the finalizer stopped");
  // 2: a thread state of an earlier runtime is stopped, whatever the phase.
  if (entry == DECIDE && k.reinit && k.handle == H_EARLIER_GEN && names_ts(k.api) && k.who != FINALIZER &&
      !(v.stops() && v.why == Reason::stale_ts))
    sweep_fail(Rule::rule2, k, entry, "a stale thread state let through");
  // 3: RUNNING, decide() asks nothing of CPython's flags and stops only for a freed state.
  if (entry == DECIDE && k.phase == RUN &&
      (flag_reads || (v.stops() && v.why != Reason::stale_ts && v.why != Reason::deleted_ts)))
    sweep_fail(Rule::rule3, k, entry, "RUNNING read as finalizing");
  // 4 ("The principle"): before CPython's point of no return, and before FINALIZED, nothing
  // of the current runtime is stopped.
  if (!k.ponr && k.phase != DONE && k.handle != H_EARLIER_GEN && k.acq != ACQ_EARLIER_GEN && !k.deleted &&
      !k.interp_ended && v.stops())
    sweep_fail(Rule::rule4, k, entry, "stopped before the point of no return");
  // 5: FINALIZED stops every acquiring call but the finalizer's.
  if (entry == DECIDE && k.phase == DONE && k.who != FINALIZER && !v.stops())
    sweep_fail(Rule::rule5, k, entry, "FINALIZED let through");
  if (!v.stops()) return;
  // end_or_park: the mode, then this CPython and the reason.
  const Action want = k.mode == Mode::park    ? Action::park
                      : k.mode == Mode::exit  ? Action::end
                      : k.mode == Mode::abort ? Action::abort
                      : k.ends_late && ends_for(v.why) ? Action::end
                                                       : Action::park;
  if (v.action != want) sweep_fail(Rule::end_or_park, k, entry, "ended/parked against the mode");
  // routine: never for freed memory, always for CPython's own terminate/hang.
  if ((v.why == Reason::stale_ts || v.why == Reason::deleted_ts || v.why == Reason::ended_interp) && v.routine)
    sweep_fail(Rule::routine, k, entry, "a freed thread state or interpreter passed as routine");
  if ((v.why == Reason::thread_exit || v.why == Reason::thread_hang) && !v.routine)
    sweep_fail(Rule::routine, k, entry, "CPython's own terminate/hang reported");
}

}  // namespace

void sweep() {
  static const Fn kApis[] = {fn_PyEval_RestoreThread, fn_PyEval_AcquireThread, fn_PyGILState_Ensure,
                             fn_PyGILState_Release, fn_PyEval_AcquireLock, fn_PyThreadState_New};
  static const Mode kModes[] = {Mode::automatic, Mode::park, Mode::exit, Mode::abort};
  Case k{};
  for (Ph phase : {RUN, FIN, DONE})
    for (bool reinit : {false, true})
      for (HandleKind handle : {H_CURRENT, H_NONE, H_BEFORE_EVENT, H_EARLIER_GEN, H_OTHER_TS})
        for (Who who : {OTHER, FINALIZER, OLD_FINALIZER})
          for (Acq acq : {ACQ_THIS_GEN, ACQ_NEVER, ACQ_EARLIER_GEN})
            for (bool from_cpython : {false, true})
              for (bool ponr : {false, true})
                for (bool deleted : {false, true})
                  for (bool ends_late : {false, true})
                    for (Mode mode : kModes) {
                      if (!reinit && (handle == H_EARLIER_GEN || who == OLD_FINALIZER || acq == ACQ_EARLIER_GEN))
                        continue;  // no earlier generation to speak of
                      k.phase = phase, k.reinit = reinit, k.handle = handle, k.who = who, k.acq = acq;
                      k.from_cpython = from_cpython, k.ponr = ponr, k.deleted = deleted;
                      k.ends_late = ends_late, k.mode = mode;
                      k.interp_ended = deleted;  // the same axis for PyThreadState_New
                      for (Fn api : kApis) {
                        k.api = api;
                        sweep_one(k, api == fn_PyThreadState_New ? NEW_TS : DECIDE);
                      }
                      k.api = fn_pthread_exit;
                      for (bool window : {false, true}) {
                        k.window = window;
                        sweep_one(k, EXIT);
                      }
                      k.window = false;
                      k.api = fn_pause;
                      sweep_one(k, HANG);
                      k.api = fn_pthread_cond_timedwait;
                      sweep_one(k, GIL);
                    }
}
