// Where and why a late thread is stopped (ended or parked), and which stops are routine:
// the rules of docs/design.md ("Decisions", "Threads already waiting in take_gil",
// "Ending or parking"), each one named piece of code below, in design.md's order and
// with its name. Nothing else in the shim decides whether a thread is stopped.
//
// Pure: a rule reads only its arguments -- what the hook saw (Call: the call, the epoch,
// a copy of the calling thread's block) and what the process and CPython say (Runtime).
// It returns a Verdict; the hooks act on it (park.h: park() ends or parks the thread and
// reports it). Runtime's facts are functions, each called only where a rule needs it,
// in the order the rules read them: a call that is let through asks CPython nothing
// more than the rules say (facts.h's kLive is a constant, so the hooks' calls are direct).
//
// tests/unit/test_policy.cc checks every rule against a fake runtime; each
// -DPFG_MUTANT_<RULE> below breaks exactly one rule and must fail that test.
#pragma once
#include <cstdint>

#include "config.h"
#include "interpose.h"
#include "state.h"

namespace pfg {

// Why a thread is stopped; printed in its report.
enum class Reason { stale_ts, finalizing, finalized, thread_exit, thread_hang, gil_wait, deleted_ts, ended_interp };

inline const char *reason_text(Reason r) {
  switch (r) {
    case Reason::stale_ts: return "thread state of an earlier runtime";
    case Reason::finalizing: return "runtime finalizing";
    case Reason::finalized: return "runtime finalized";
    case Reason::thread_exit: return "CPython terminating the thread";
    case Reason::gil_wait: return "waiting in take_gil past the point of no return";
    case Reason::thread_hang: return "CPython hanging the thread";
    case Reason::deleted_ts: return "its thread state was deleted (PyThreadState_Delete) while saved";
    case Reason::ended_interp: return "interpreter ended (Py_EndInterpreter)";
  }
  return "?";
}

namespace policy {

// The rules, as docs/design.md names them.
enum class Rule : uint8_t {
  none,          // a verdict that lets the call through
  rule1,         // 1. the finalizer is never stopped
  rule2,         // 2. a thread state saved under an earlier runtime
  rule3,         // 3. RUNNING: the phase stops nobody, only rule 6 may
  rule4,         // 4. FINALIZING: stopped past CPython's point of no return
  rule5,         // 5. FINALIZED: stopped
  rule6,         // 6. its own thread state deleted since the save
  ended_interp,  // PyThreadState_New on an interpreter Py_EndInterpreter ended
  exit,          // pthread_exit: CPython terminating a late thread
  hang,          // pause: CPython hanging a late thread
  gil_late,      // a take_gil waiter past the point of no return
  gil_stale,     // a take_gil waiter of an earlier runtime
  gil_destroy,   // CPython destroying the GIL past the point of no return
  gil_switch,    // drop_gil's switch wait, once a waiter may never take the GIL
  drain,         // the finalizer's drain before CPython frees
  end_or_park,   // how a stopped thread is stopped
  routine,       // which stops are what CPython's own shutdown does anyway
};

inline const char *rule_name(Rule r) {
  static const char *const kNames[] = {"none", "rule1", "rule2", "rule3", "rule4", "rule5", "rule6",
                                       "ended_interp", "exit", "hang", "gil_late", "gil_stale",
                                       "gil_destroy", "gil_switch", "drain", "end_or_park", "routine"};
  return kNames[int(r)];
}

// pass: let the call through; the rule functions say stop, settle() says how.
enum class Action : uint8_t { pass, stop, end, park, abort };

struct Verdict {
  Action action;
  Reason why;    // when stopped
  Rule rule;     // the rule that stopped it (none: let through)
  bool routine;  // set by settle(): counted, not reported (docs/diagnostics.md)
  bool stops() const { return action != Action::pass; }
};

// What a hook saw: the call, g_epoch as it read it, and the calling thread's block.
struct Call {
  Fn api;
  uint64_t e;               // g_epoch
  void *ts;                 // the thread state the call names (nullptr: none)
  bool from_cpython;        // the caller's return address lies in the Python image
  Handle h;                 // the thread's outstanding save (state.h)
  uint64_t finalizer_gen;   // the generation this thread finalizes (0: none)
  uint64_t acquired_epoch;  // g_epoch when it last took the GIL through a hook (0: never)
  bool in_window;           // inside an acquiring hook's real call (window.h)
};

// What the process and CPython say, asked only when a rule needs it (facts.h: kLive).
struct Runtime {
  bool (*cpython_finalizing)();         // probes.h: runtime_is_finalizing
  bool (*cpython_finalization_over)();  // probes.h: runtime_finalization_over
  bool (*thread_ending_normally)();     // probes.h: runtime_thread_ending_normally
  bool (*ends_late_threads)();          // probes.h: runtime_ends_late_threads
  bool (*ts_deleted_since)(void *ts, uint64_t h_epoch, uint64_t e);  // lifecycle.h
  bool (*interp_ended)(void *interp);   // lifecycle.h
  bool (*exit_begun)();                 // exitwatch.h
  Mode (*mode)();                       // PYFINGUARD_MODE
  uint64_t (*main_generation)();        // the python executable's own runtime (0: none)
};

inline Verdict let_through() { return {Action::pass, Reason::finalizing, Rule::none, false}; }
inline Verdict stop(Reason why, Rule rule) { return {Action::stop, why, rule, false}; }

// CPython's point of no return (docs/design.md, "The principle"), as CPython itself says
// it: Py_IsInitialized() false, or its finalizing flag set (probes.h). Before it CPython
// lets every thread run -- it joins non-daemon threads and calls atexit callbacks -- and
// so does the guard. The one test of it: every rule below that stops a thread for being
// late asks this, combined with the guard's phase as the rule says.
inline bool past_point_of_no_return(const Runtime &rt) { return rt.cpython_finalizing(); }

// The thread that finalizes (or finalized) the current runtime (state.h,
// PerThread::finalizer_gen). Never stopped: it gets CPython's own behaviour.
inline bool is_finalizer(const Call &c) { return c.finalizer_gen == gen_of(c.e); }

// A save of exactly the thread state this call names.
inline bool saved_this_ts(const Call &c) { return c.ts && c.h.epoch != 0 && c.h.ts == c.ts; }

// Rule 4's stop: FINALIZING, and CPython past its point of no return.
inline bool rule4_stops(uint64_t e, const Runtime &rt) {
#ifdef PFG_MUTANT_RULE4  // the phase alone: atexit callbacks and joins parked
  return phase_of(e) == kFinalizing;
#else
  return phase_of(e) == kFinalizing && past_point_of_no_return(rt);
#endif
}

// Rule 5's stop: FINALIZED (Py_FinalizeEx returned, or a new runtime is still being built).
inline bool rule5_stops(uint64_t e) {
#ifdef PFG_MUTANT_RULE5
  return false;
#else
  return phase_of(e) == kFinalized;
#endif
}

// The runtime is gone for every thread but its finalizer: what rules 4 and 5 stop.
inline bool runtime_gone(uint64_t e, const Runtime &rt) { return rule5_stops(e) || rule4_stops(e, rt); }

// decide(): the slow path of PyEval_RestoreThread/AcquireThread, PyGILState_Ensure/
// Release, PyEval_AcquireLock, PyThreadState_New -- reached when the phase is not
// RUNNING or the handle does not match the current epoch. In this order:
inline Verdict decide(const Call &c, const Runtime &rt) {
  // 1. The finalizer is never stopped, during finalization or after: an embedder's main
  //    thread calling into a finalized runtime gets CPython's own behaviour.
#ifndef PFG_MUTANT_RULE1
  if (is_finalizer(c)) return let_through();
#endif
  // 2. A thread state saved under an earlier runtime: freed at that finalization, its
  //    address possibly reused by the current one. Never dereferenced.
#ifndef PFG_MUTANT_RULE2
  if (saved_this_ts(c) && gen_of(c.h.epoch) != gen_of(c.e)) return stop(Reason::stale_ts, Rule::rule2);
#endif
  switch (phase_of(c.e)) {
    // 3. RUNNING: on to rule 6. CPython's flags are not asked: they read "gone" until a
    //    runtime is taken over (probes.h), and a runtime that finalizes without passing
    //    a hook is caught by the pthread_exit and pause rules.
    case kRunning:
#ifdef PFG_MUTANT_RULE3  // RUNNING read as FINALIZING
      if (past_point_of_no_return(rt)) return stop(Reason::finalizing, Rule::rule3);
#endif
      break;
    // 4. FINALIZING: stopped past CPython's point of no return; before it, on to rule 6
    //    at once -- threads run while CPython joins non-daemon threads and calls atexit
    //    callbacks. A thread let through here and still inside CPython's acquisition when
    //    the finalizer crosses that point is covered by its window (window.h).
    case kFinalizing:
      if (rule4_stops(c.e, rt)) return stop(Reason::finalizing, Rule::rule4);
      break;
    // 5. FINALIZED: stopped.
    default:
      if (rule5_stops(c.e)) return stop(Reason::finalized, Rule::rule5);
  }
  // 6. The runtime runs (or finalizes, before the point), but an embedder deleted this
  //    very thread state after this thread saved it (mod_wsgi-style, before ending its
  //    sub-interpreter): lifecycle.h. Only reached when g_epoch moved since the save.
#ifndef PFG_MUTANT_RULE6
  if (saved_this_ts(c) && rt.ts_deleted_since(c.ts, c.h.epoch, c.e)) return stop(Reason::deleted_ts, Rule::rule6);
#endif
  return let_through();
}

// PyThreadState_New(interp), inside its window, after decide(): an interpreter ended
// with Py_EndInterpreter in this generation and not listed among the runtime's
// interpreters again -- CPython would build the state on freed memory. Not the finalizer.
inline Verdict new_thread_state(const Call &c, void *interp, const Runtime &rt) {
#ifndef PFG_MUTANT_ENDED_INTERP
  if (rt.interp_ended(interp) && !is_finalizer(c)) return stop(Reason::ended_interp, Rule::ended_interp);
#endif
  return let_through();
}

// pthread_exit from CPython's text (3.9-3.13's take_gil, <= 3.8's
// exit_thread_if_finalizing): CPython terminating a late thread, when a thread other than
// the finalizer calls it past the point of no return -- by CPython's flags, not the
// phase: a static python finalizes without passing a hook. Not a thread at its normal
// end (<= 3.9 end every thread with PyThread_exit_thread() after deleting its state,
// e.g. a non-daemon thread just after Py_FinalizeEx waited for it:
// tests/scenarios/h_ordinary.py), unless it is inside one of our acquiring hooks (its
// window open): that one is being terminated whatever its TSS says.
inline Verdict thread_exit(const Call &c, const Runtime &rt) {
#ifndef PFG_MUTANT_EXIT
  if (c.from_cpython && !is_finalizer(c) && past_point_of_no_return(rt) &&
      (c.in_window || !rt.thread_ending_normally()))
    return stop(Reason::thread_exit, Rule::exit);
#endif
  return let_through();
}

// pause from CPython's text (PyThread_hang_thread: 3.14+, 3.13.x with gh-87135): CPython
// hanging a late thread, when a thread other than the finalizer calls it while not
// RUNNING and past the point of no return. Otherwise signal.pause() from Python code.
inline Verdict thread_hang(const Call &c, const Runtime &rt) {
#ifndef PFG_MUTANT_HANG
  if (c.from_cpython && !is_finalizer(c) && phase_of(c.e) != kRunning && past_point_of_no_return(rt))
    return stop(Reason::thread_hang, Rule::hang);
#endif
  return let_through();
}

// pthread_cond_timedwait from CPython's text, i.e. take_gil (docs/design.md, "Threads
// already waiting in take_gil"), before and after the real wait. Not the finalizer.
inline Verdict gil_wait(const Call &c, const Runtime &rt) {
  if (is_finalizer(c)) return let_through();
  // gil_stale: it last took the GIL in an earlier generation, so its thread state was
  // freed with that runtime (the initializing thread records the new generation).
#ifndef PFG_MUTANT_GIL_STALE
  if (c.acquired_epoch != 0 && gen_of(c.acquired_epoch) != gen_of(c.e))
    return stop(Reason::stale_ts, Rule::gil_stale);
#endif
  // gil_late: the runtime is gone (rules 4 and 5).
#ifndef PFG_MUTANT_GIL_LATE
  if (runtime_gone(c.e, rt)) return stop(Reason::gil_wait, Rule::gil_late);
#endif
  return let_through();
}

// gil_destroy: pthread_cond_destroy/pthread_mutex_destroy from CPython's text
// (destroy_gil) while the runtime is gone: the condition variable's waiters are woken
// and parked first, and the mutex is left valid (gilwait.h).
inline bool gil_destroy_guarded(uint64_t e, const Runtime &rt) {
#ifdef PFG_MUTANT_GIL_DESTROY
  return false;
#else
  return runtime_gone(e, rt);
#endif
}

// gil_switch: pthread_cond_wait from CPython's text, i.e. drop_gil's FORCE_SWITCHING wait
// (docs/design.md, "Threads already waiting in take_gil"), after a slice of it timed out
// without a signal: over once any thread has been stopped (`stopped`: the record count,
// which only grows), since the waiter that asked for the switch may be one of them and
// would never take the GIL. drop_gil does not loop around the wait: ending it is a
// spurious wake-up. Before any stop it is CPython's wait, a slice at a time.
inline bool gil_switch_over(bool slice_timed_out, unsigned stopped) {
#ifdef PFG_MUTANT_GIL_SWITCH  // the wait CPython has: only a taker ends it
  (void)slice_timed_out, (void)stopped;
  return false;
#else
  return slice_timed_out && stopped != 0;
#endif
}

// drain: PyThreadState_Clear/PyInterpreterState_Clear by the finalizer past the point of
// no return -- the last moment before anything an acquiring thread uses is freed: every
// open window closes first (window.h). FINALIZING only: one compare on every other call.
inline bool drain_due(const Call &c, const Runtime &rt) {
#ifdef PFG_MUTANT_DRAIN  // any thread drains, before the point too
  return phase_of(c.e) == kFinalizing;
#else
  return phase_of(c.e) == kFinalizing && is_finalizer(c) && past_point_of_no_return(rt);
#endif
}

// end_or_park (docs/design.md, "Ending or parking"): end the thread as this CPython would
// (pthread_exit) where it ends late threads itself (3.6-3.13.7) and for the reasons it
// ends them (the runtime past its point of no return); park it where CPython would use a
// freed thread state or interpreter, or hangs late threads (3.13.8+, 3.14+).
// PYFINGUARD_MODE=park/exit/abort override.
inline Action end_or_park(Reason why, const Runtime &rt) {
  switch (rt.mode()) {
    case Mode::exit: return Action::end;
    case Mode::park: return Action::park;
    case Mode::abort: return Action::abort;
    case Mode::automatic: break;
  }
  switch (why) {
    case Reason::finalizing:
    case Reason::finalized:
    case Reason::thread_exit:
    case Reason::gil_wait:
#ifdef PFG_MUTANT_END_OR_PARK
      return Action::park;
#else
      return rt.ends_late_threads() ? Action::end : Action::park;
#endif
    default: return Action::park;
  }
}

// routine: what CPython's own shutdown does to a thread anyway, silently (<= 3.13 ends it
// from take_gil, 3.14 hangs it) -- a thread it was terminating or hanging; one reaching
// for the GIL past the point of no return while Py_FinalizeEx runs; and, in the python
// executable's own runtime (Py_Main/Py_BytesMain), a Python thread coming back from a
// blocking call, waiting for the GIL, or starting (CPython's own PyEval_AcquireThread)
// between Py_FinalizeEx and the exit: a program's daemon threads. Not routine: a freed
// thread state or interpreter; a native thread entering through PyGILState_Ensure/
// PyEval_AcquireThread after finalization; any thread calling into a runtime an embedder
// finalized while the host goes on -- where CPython would use freed memory
// (docs/diagnostics.md).
inline bool routine(const Call &c, Reason why, const Runtime &rt) {
  if (why == Reason::thread_exit || why == Reason::thread_hang) return true;
  if (why == Reason::stale_ts || why == Reason::deleted_ts || why == Reason::ended_interp) return false;
  // FINALIZING as the guard saw it, but CPython's finalization may be over: 3.13's
  // Py_RunMain and Py_Exit finalize through an internal function, so no hook returns to
  // store FINALIZED, and a native thread's late PyGILState_Ensure from a libc atexit
  // handler or an exit-time destructor must not pass as routine (CPython would crash
  // there). Once exit() began, finalization is over whatever CPython's flags say.
#ifdef PFG_MUTANT_ROUTINE  // FINALIZING routine even once finalization is over
  if (phase_of(c.e) == kFinalizing) return true;
#else
  if (phase_of(c.e) == kFinalizing && !rt.cpython_finalization_over() && !rt.exit_begun()) return true;
#endif
  return gen_of(c.e) == rt.main_generation() &&
         (c.api == fn_PyEval_RestoreThread || c.api == fn_pthread_cond_timedwait ||
          (c.api == fn_PyEval_AcquireThread && c.from_cpython));
}

// How a stopped thread is stopped, and whether that is routine: park() asks this first.
inline Verdict settle(Verdict v, const Call &c, const Runtime &rt) {
  if (!v.stops()) return v;
  v.action = end_or_park(v.why, rt);
  v.routine = routine(c, v.why, rt);
  return v;
}

}  // namespace policy
}  // namespace pfg
