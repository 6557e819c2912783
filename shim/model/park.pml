/*
 * pyfinguard's park protocol against CPython's finalization sequence, for spin.
 *
 * docs/model.md explains the model, its abstractions, the properties and the runs;
 * shim/model/run.py runs every configuration.  Names in comments are the C++ functions
 * in shim/hooks.cc, shim/state.cc, shim/gate.cc, shim/runtime.cc and shim/park.cc (as of
 * commit 5b1804b) that each piece models.
 *
 * Selected with -D on the spin command line:
 *   PYGEN   38  CPython <= 3.8   (exit_thread_if_finalizing after acquiring the GIL;
 *                                 Py_FinalizeEx leaves the GIL held forever;
 *                                 t_bootstrap ends in PyThread_exit_thread())
 *           313 CPython 3.9-3.13 (take_gil checks tstate_must_exit before waiting,
 *                                 after each timed wait and after acquiring, then
 *                                 PyThread_exit_thread() -> pthread_exit)
 *           314 CPython 3.14     (the same checks, then PyThread_hang_thread())
 *   REINIT  1: the embedder may call Py_Initialize again after Py_FinalizeEx
 *   ASCODED the guard exactly as shim/ is written today (F5 and F7 fixed there; F3 open;
 *           RestoreThread's fast path without a window; the gate's grace on for 3.14);
 *           without it, the recommended protocol: the code plus the open fixes
 *   ASSUME_* environment assumptions that exclude windows the guard cannot close
 *           (on by default; GAP_* turns one off)
 *   NO_GATE the protocol before commit 2de512a (no windows, drain or admission gate)
 *   CPY_FIN_RESET  CPython clears its finalizing flag on the way out of Py_FinalizeEx
 *   MUT_*   mutants: one check, store or step of the protocol dropped or reordered
 */

#ifndef PYGEN
#define PYGEN 313
#endif
#ifndef REINIT
#define REINIT 1
#endif

/* ---- fixes in the code (docs/model.md, "Findings"); a MUT_ turns one off */
#ifndef MUT_JOIN_FASTPATH
#define FIX_JOIN_GEN      /* F5 (fixed in ad8e768): plain pthread_join only while nothing was ever finalized */
#endif
#ifndef MUT_INIT_EARLY
#define FIX_INIT_AFTER    /* F7 (fixed in ad8e768): the new generation is announced after Py_Initialize returns */
#endif
/* ---- proposed, not in the code; ASCODED, a MUT_ or a GAP_ turns one off */
#ifndef ASCODED
#ifndef MUT_NO_HANG_HOOK
#define FIX_HANG_HOOK     /* F3: PyThread_hang_thread (3.14) is intercepted and parks */
#endif
#ifndef GAP_RESTORE_FAST
#define FIX_RESTORE_WINDOW /* F9: PyEval_RestoreThread's fast path opens the window too */
#endif
/* F1 (join of a thread stuck in a finalized <= 3.8 runtime's take_gil) needed a fix
 * before the gate; with the gate's drain no hooked thread is left in take_gil at the
 * point of no return. -DFIX_STUCK_JOIN models that fix; the results do not change. */
#else
#if PYGEN == 314
#define GAP_GATE_GRACE    /* gate_init(minor >= 13 || !semantic): the grace is on for 3.13+ */
#endif
#endif

/* ---- environment assumptions (docs/model.md, "Gaps") */
#ifndef GAP_REINIT_INFLIGHT
#define ASSUME_NO_INFLIGHT_REINIT /* F2: no thread is inside an acquisition at re-init */
#endif
#ifndef GAP_UNSTARTED
#define ASSUME_STARTED_REINIT     /* F6: every thread of gen 1 started before re-init */
#endif
#if defined(NO_GATE) && !defined(GAP_ENSURE_WINDOW)
#define ASSUME_ENSURE_WINDOW      /* G1: guard check + Ensure's first read not split */
#endif
#ifndef GAP_GATE_GRACE
#define ASSUME_NO_GRACE           /* F8: no thread waits kGateGraceNs (20 ms) at the gate */
#endif
#ifndef GAP_TAKE_GIL_WINDOW
#define ASSUME_TAKE_GIL_WINDOW    /* G2: take_gil's check + first tstate read not split */
#endif

#ifdef ASSUME_NO_INFLIGHT_REINIT
#define NO_INFLIGHT (!in_cpython[WORK] && !in_cpython[NAT])
#else
#define NO_INFLIGHT true
#endif
#ifdef ASSUME_STARTED_REINIT
#define W_STARTED started[WORK]
#else
#define W_STARTED true
#endif
#define REINIT_ALLOWED (NO_INFLIGHT && W_STARTED)

#define RUNNING    0
#define FINALIZING 1
#define FINALIZED  2
#define EPOCH(g, p) ((g) * 4 + (p))   /* make_epoch: generation << 2 | phase */
#define GEN(x)   ((x) / 4)            /* gen_of */
#define PHASE(x) ((x) % 4)            /* phase_of */

#define MAIN 0      /* the embedder's main thread: initializes, finalizes, joins */
#define WORK 1      /* a Python thread of generation 1 (threading / pybind11 worker) */
#define NAT  2      /* a native thread calling PyGILState_Ensure/Release at any time */
#define NPROC 3
#define NSLOT 3     /* thread-state addresses; freed ones are reused */
#define NONE 255
#define GIL_FREE 0
#define GIL_DEAD 9  /* 3.9+: destroyed by Py_FinalizeEx, never free again */

#define FIN_EXIT 1  /* CPython terminates the thread because of finalization */
#define NORMAL   2  /* <= 3.8 t_bootstrap's own PyThread_exit_thread() at thread end */

/* runtime_is_finalizing(): !Py_IsInitialized() || CPython's finalizing flag */
#define PROBE (!rt_init || rt_fin)

/* ---- the guard's shared state (shim/state.h, shim/park.h, shim/gate.h) */
byte g_epoch = EPOCH(1, RUNNING);
byte parked_count;          /* g_parked_count */
bool parked[NPROC];         /* the g_parked registry (is_parked_thread) */
byte acq_gen[NPROC];        /* FIX_STUCK_JOIN: generation of a guarded acquisition in progress */
bool window[NPROC];         /* t_pt.window (gate.h): inside a real acquiring call */
bool released;              /* g_released: the finalizer waits with the GIL released */
bool fallback;              /* g_fallback: the gate's 20 ms grace has expired */
byte inflight;              /* g_inflight: admitted threads still inside the real call */

/* ---- CPython's state */
byte rt_gen = 1;            /* generation of the runtime CPython is running */
bool rt_fin;                /* _PyRuntime finalizing != NULL: the point of no return */
bool rt_alive = 1;          /* interpreter + gilstate (autoInterpreterState) not freed */
bool rt_init = 1;           /* Py_IsInitialized(): cleared at the point of no return */
byte gil;                   /* holder pid + 1, GIL_FREE or GIL_DEAD */
byte mem_owner[NSLOT];      /* thread-state memory: owner pid + 1, 0 = free */
byte mem_gen[NSLOT];        /* generation the thread state was allocated in */

/* ---- ghosts: observation only, no counterpart in the code */
bool inited;
bool done[NPROC];           /* really terminated (pthread_exit or return) */
bool in_cpython[NPROC];     /* inside any CPython GIL acquisition (or in transit to it) */
bool started[NPROC];
bool eval_wait[NPROC];      /* waiting in the eval loop's own take_gil (no hook sees it) */

/* ------------------------------------------------------------------------------------
 * Properties, as assertions at the point where they can first be violated.
 */
#define USE_TS(ts) \
  assert(ts != NONE && mem_owner[ts] == _pid + 1)   /* P1: no use of a freed thread state */

inline run_python() {
  assert(gil == _pid + 1);
  USE_TS(my_ts);
  assert(mem_gen[my_ts] == rt_gen);              /* P5: no thread of an old generation admitted */
  assert(!rt_fin || _pid == MAIN)                /* P2: only the finalizer runs after the point of no return */
}

/* park() in shim/park.cc: record, block all signals, futex-wait forever. */
inline park() {
  assert(_pid != MAIN);                          /* P3: the finalizing thread is never parked */
  atomic {
    parked[_pid] = 1; parked_count++; acq_gen[_pid] = 0; in_cpython[_pid] = 0;
    window[_pid] = 0;                    /* gate_forget_this_thread() */
    if :: admitted -> admitted = 0; inflight-- :: else fi
  };
  goto end_parked
}

/* gate_admit() (shim/gate.cc): during FINALIZING a thread enters the real acquiring
 * call only while the finalizer waits with the GIL released. */
inline gate_admit() {
  do
  :: atomic { admitted = 1; inflight++ };
#ifdef MUT_ADMIT_IGNORES_RELEASED
     ok = 1;
#else
     ok = released || fallback;
#endif
     if :: ok -> ok = (g_epoch == e) :: else fi;
     if :: ok -> ok = !PROBE :: else fi;
     if
     :: ok -> window[_pid] = 1; break    /* admitted: gate_leave() after the real call */
     :: else ->
        atomic { admitted = 0; inflight-- };   /* leave() */
        window[_pid] = 0;
        if :: g_epoch != e -> park() :: else -> skip fi;
        if :: PROBE -> park() :: else -> skip fi;
#ifdef ASSUME_NO_GRACE
        /* futex_wait(g_released, 0, 5 ms): re-check when it changes or times out */
        (released || g_epoch != e || PROBE)
#else
        if                               /* waited kGateGraceNs: open for this finalization */
        :: fallback = 1
        :: (released || g_epoch != e || PROBE)
        fi
#endif
     fi
  od
}

/* decide() in shim/hooks.cc; e is the caller's load of g_epoch, ts NONE for nullptr,
 * acq: the call takes the GIL. */
inline decide(ts, acq) {
  if
  :: t_fin_gen == GEN(e) ->                                          /* 1. finalizer */
#ifndef NO_GATE
     if
     :: acq && PHASE(e) == FINALIZING ->
        released = 0;                    /* gate_finalizer_reacquiring() */
#ifndef MUT_NO_REACQUIRE_WAIT
        (inflight == 0)
#else
        skip
#endif
     :: else -> skip
     fi
#else
     skip
#endif
  :: else ->
     if
#ifndef MUT_NO_STALE_RULE
     :: ts != NONE && h_epoch != 0 && h_ts == ts && GEN(h_epoch) != GEN(e) ->
        park()                                                       /* 2. stale handle */
#endif
     :: else ->
        if
        :: PHASE(e) == RUNNING -> skip                               /* 3. */
        :: PHASE(e) == FINALIZING ->                                 /* 4. ask CPython */
#ifdef MUT_FINALIZING_NOASK
           skip
#else
           if
           :: PROBE -> park()            /* runtime_is_finalizing() */
           :: else -> skip
           fi;
#ifndef NO_GATE
           if
           :: acq -> gate_admit()
           :: else -> skip               /* PyGILState_Release: holds the GIL already */
           fi
#endif
#endif
        :: PHASE(e) == FINALIZED -> park()                           /* 5. */
        fi
     fi
  fi
}

/* P4: a thread arriving after the point of no return never passes the guard. */
#define PASSED() assert(!my_late)

/* The hook's load of g_epoch.  my_late is a ghost: was CPython past its point of no
 * return (or its runtime freed) at the instant of the load, and is this thread not the
 * finalizer?  Such a thread must end parked. */
#if defined(NO_GATE) || defined(MUT_NO_WINDOW)
#define WINDOW_OPEN skip
#else
#define WINDOW_OPEN window[_pid] = 1     /* window_open(), before the load */
#endif
#define LOAD_EPOCH(acq) \
  atomic { e = g_epoch; my_late = (rt_fin || !rt_alive) && t_fin_gen != rt_gen && _pid != MAIN; \
           started[_pid] = 1; in_cpython[_pid] = acq }

/* pthread_exit hook (pfg_hook_pthread_exit); CPython's caller is always in its image. */
inline pthread_exit_hook(why) {
  e = g_epoch;
  fin_seen = PROBE;                      /* runtime_is_finalizing() */
  if
#ifdef MUT_NO_EXIT_HOOK
  :: false -> skip
#elif defined(MUT_EXIT_PHASE)
  :: t_fin_gen != GEN(e) && (PHASE(e) != RUNNING || fin_seen) ->   /* before ed21215 (F4) */
#else
  /* runtime_is_finalizing() && (t_pt.window || !runtime_thread_ending_normally()) */
  :: t_fin_gen != GEN(e) && fin_seen && (window[_pid] || why != NORMAL) ->
#endif
     /* P6: a thread ending normally is parked only if it got there after the point
      * of no return (then its function had finished anyway) */
     assert(why == FIN_EXIT || fin_seen || PHASE(e) == FINALIZED);
     park()
  :: else ->
     assert(why != FIN_EXIT);            /* P4: CPython terminated a late thread; it must park */
     goto exited
  fi
}

/* Where CPython stops a late thread: PyThread_exit_thread() (<= 3.13), or
 * PyThread_hang_thread() (3.14), which FIX_HANG_HOOK intercepts like pthread_exit. */
#if PYGEN == 314
#ifdef FIX_HANG_HOOK
#define CPY_EXIT() park()
#else
#define CPY_EXIT() goto hung
#endif
#else
#define CPY_EXIT() pthread_exit_hook(FIN_EXIT)
#endif

#define MUST_EXIT (rt_fin && _pid != MAIN)   /* tstate_must_exit / exit_thread_if_finalizing */

/* CPython's take_gil() (+ the exit check of its caller in <= 3.8), for thread state ts.
 * n makes the wait's label unique: a thread waiting for the GIL when the process exits
 * is a valid end state (as without the guard). */
#if PYGEN == 38
#define TAKE_GIL(ts, n) \
  in_cpython[_pid] = 1; \
  end_gilwait_##n: atomic { gil == GIL_FREE -> gil = _pid + 1 }; \
  USE_TS(ts);          /* take_gil reads tstate->async_exc after acquiring */ \
  if \
  :: MUST_EXIT -> gil = GIL_FREE; CPY_EXIT() /* exit_thread_if_finalizing */ \
  :: else -> in_cpython[_pid] = 0 \
  fi
#else
#ifdef ASSUME_TAKE_GIL_WINDOW
#define TG_BEGIN atomic {
#define TG_END }
#else
#define TG_BEGIN
#define TG_END
#endif
#ifdef MUT_CPY_NO_FIRST_CHECK
#define FIRST_CHECK :: false -> skip
#else
#define FIRST_CHECK :: MUST_EXIT -> CPY_EXIT()
#endif
#define TAKE_GIL(ts, n) \
  in_cpython[_pid] = 1; \
  TG_BEGIN \
  if \
  FIRST_CHECK                 /* before taking the mutex */ \
  :: else -> USE_TS(ts)       /* tstate->interp */ \
  fi TG_END; \
  end_gilwait_##n: do \
  :: atomic { gil == GIL_FREE -> gil = _pid + 1 }; break \
  :: atomic { gil != GIL_FREE && MUST_EXIT } -> CPY_EXIT() /* after a timed wait */ \
  od; \
  if \
  :: MUST_EXIT -> gil = GIL_FREE; CPY_EXIT()  /* after acquiring */ \
  :: else -> USE_TS(ts); in_cpython[_pid] = 0 \
  fi
#endif

/* ---- the hooks (shim/hooks.cc) */

/* pfg_hook_PyEval_SaveThread; CPython's PyEval_SaveThread drops the GIL. */
inline save_thread() {
#ifndef MUT_SAVE_AFTER
  LOAD_EPOCH(0);
#endif
  USE_TS(my_ts); assert(gil == _pid + 1); gil = GIL_FREE;   /* real(): swap + drop_gil */
#ifdef MUT_SAVE_AFTER
  LOAD_EPOCH(0);
#endif
  h_ts = my_ts; h_epoch = e;
  if                                     /* save_slow(): outside RUNNING the handle gets */
  :: PHASE(e) != RUNNING ->              /* phase bits 3, which no g_epoch value has */
     h_epoch = EPOCH(GEN(e), 3);
#ifndef NO_GATE
     if                                  /* gate_finalizer_released() */
     :: PHASE(e) == FINALIZING && t_fin_gen == GEN(e) -> released = 1
     :: else -> skip
     fi
#else
     skip
#endif
  :: else -> skip
  fi
}

/* handle_current(e): one compare, since a save outside RUNNING stores phase bits 3 */
#ifdef MUT_FAST_NOGEN
#define HANDLE_CURRENT (h_epoch != 0 && PHASE(h_epoch) == RUNNING && PHASE(e) == RUNNING)
#else
#define HANDLE_CURRENT (h_epoch == e)
#endif

/* window_close(); if (admitted) gate_leave(); */
#define GATE_LEAVE atomic { window[_pid] = 0; if :: admitted -> admitted = 0; inflight-- :: else fi }

#ifdef FIX_STUCK_JOIN
#define ACQ_BEGIN acq_gen[_pid] = GEN(e)
#define ACQ_END acq_gen[_pid] = 0
#else
#define ACQ_BEGIN skip
#define ACQ_END skip
#endif

/* pfg_hook_PyEval_AcquireThread: window opened before the load, then the policy. */
#define ACQUIRE_THREAD(ts, n) \
  WINDOW_OPEN; \
  LOAD_EPOCH(1); ACQ_BEGIN; \
  if \
  :: !HANDLE_CURRENT -> decide(ts, 1) \
  :: else -> skip \
  fi; \
  PASSED(); \
  if \
  :: h_ts == ts -> h_epoch = 0 \
  :: else -> skip \
  fi; \
  TAKE_GIL(ts, n);            /* real PyEval_AcquireThread/RestoreThread: take_gil + swap */ \
  GATE_LEAVE; \
  ACQ_END

/* pfg_hook_PyEval_RestoreThread.  The recommended protocol (FIX_RESTORE_WINDOW) is
 * AcquireThread's.  As coded since aa6d798: load g_epoch with no window; handle saved in
 * this epoch -> fast path, real call without a window; otherwise restore_slow(): open
 * the window, load g_epoch again, decide(). */
#ifdef FIX_RESTORE_WINDOW
#define RESTORE_THREAD(ts, n) ACQUIRE_THREAD(ts, n)
#else
#define RESTORE_THREAD(ts, n) \
  LOAD_EPOCH(1); \
  if \
  :: !HANDLE_CURRENT -> WINDOW_OPEN; LOAD_EPOCH(1); ACQ_BEGIN; decide(ts, 1) \
  :: else -> skip             /* fast path: no window */ \
  fi; \
  PASSED(); \
  if \
  :: h_ts == ts -> h_epoch = 0 \
  :: else -> skip \
  fi; \
  TAKE_GIL(ts, n);            /* real PyEval_RestoreThread: take_gil + swap */ \
  GATE_LEAVE; \
  ACQ_END
#endif

/* The main thread lets other threads run: Py_BEGIN/END_ALLOW_THREADS around I/O, the
 * switch interval, threading's join during shutdown, __del__ doing I/O during GC. */
#define MAIN_WINDOW(n) \
  save_thread(); \
  RESTORE_THREAD(my_ts, n); \
  run_python()

inline alloc_ts() {
  if
  :: mem_owner[0] == 0 -> my_ts = 0
  :: mem_owner[1] == 0 -> my_ts = 1
  :: mem_owner[2] == 0 -> my_ts = 2
  fi;
  mem_owner[my_ts] = _pid + 1; mem_gen[my_ts] = rt_gen
}

/* pthread_join hook (pfg_hook_pthread_join -> real join or join_completing). */
#ifdef FIX_JOIN_GEN
#define JOIN_PLAIN (parked_count == 0 && g_epoch == EPOCH(1, RUNNING))
#else
#define JOIN_PLAIN (parked_count == 0 && PHASE(g_epoch) == RUNNING)
#endif
#ifdef FIX_STUCK_JOIN
/* <= 3.8 never releases the GIL of a finalized runtime: a target inside a guarded
 * acquisition of it can never return (re-initialization excepted, see F2). */
#define STUCK(t) (PYGEN == 38 && acq_gen[t] != 0 && acq_gen[t] == GEN(g_epoch) && PHASE(g_epoch) == FINALIZED)
#else
#define STUCK(t) false
#endif
#ifdef MUT_NO_JOIN_COMPLETION
#define COMPLETES(t) done[t]
#else
#define COMPLETES(t) (done[t] || parked[t] || STUCK(t))
#endif
#if PYGEN == 38 && !defined(GAP_EVAL_WAIT38)
/* Out of the guard's reach (F1b): <= 3.8 never releases a finalized runtime's GIL, and a
 * thread waiting for it inside the eval loop called no hook; joining it hangs exactly as
 * without the guard.  The model lets the join end there instead of reporting it. */
#define BASELINE_HANG(t) || (eval_wait[t] && rt_fin)
#else
#define BASELINE_HANG(t)
#endif
#define JOIN(t) \
  if \
  :: JOIN_PLAIN -> done[t]    /* real pthread_join: only a real exit ends it */ \
  :: else -> COMPLETES(t) BASELINE_HANG(t) /* join_completing: polls is_parked_thread + timedjoin */ \
  fi

/* ------------------------------------------------------------------------------------
 * The embedder's main thread: runs generation 1, finalizes it, maybe initializes
 * generation 2, then joins both other threads at exit.
 */
active proctype Main() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = 0;
  bool my_late, fin_seen, admitted, ok;

  atomic {
    mem_owner[0] = MAIN + 1; mem_gen[0] = 1;    /* main's thread state */
    mem_owner[1] = WORK + 1; mem_gen[1] = 1;    /* the worker's, made by thread.start */
    gil = MAIN + 1;                             /* main holds the GIL */
    inited = 1
  };
  if
  :: MAIN_WINDOW(m1)       /* Python code running: other threads get the GIL */
  :: skip
  fi;

  /* pfg_hook_Py_FinalizeEx */
#ifndef MUT_NO_FINALIZER_FLAG
  t_fin_gen = GEN(g_epoch);
#endif
  e = g_epoch;                                  /* begin_finalizing() */
  if
#ifndef MUT_NO_FINALIZING_STORE
  :: PHASE(e) == RUNNING -> g_epoch = EPOCH(GEN(e), FINALIZING)
#endif
  :: else -> skip
  fi;
#if !defined(NO_GATE) && !defined(MUT_NO_DRAIN)
  /* gate_drain_windows(): membarrier, then let every window opened before the store
   * close, with the GIL released through the real PyEval_SaveThread (the gate stays shut) */
  if
  :: window[WORK] || window[NAT] ->
     USE_TS(my_ts); gil = GIL_FREE;
     (!window[WORK] && !window[NAT]);
     TAKE_GIL(my_ts, m0)
  :: else -> skip
  fi;
#endif
  /* real Py_FinalizeEx */
  if
  :: MAIN_WINDOW(m2)       /* wait_for_thread_shutdown, atexit: threads still run */
  :: skip
  fi;
#ifndef MUT_CPY_FREE_FIRST
#ifndef MUT_CPY_NO_FINALIZING
  atomic { rt_fin = 1; rt_init = 0 };           /* _PyRuntimeState_SetFinalizing, initialized = 0 */
#endif
  if
  :: MAIN_WINDOW(m3)       /* GC / __del__ doing I/O after the point of no return */
  :: skip
  fi;
#endif
  atomic {                                      /* zapthreads, interpreter delete */
    if :: mem_gen[0] == rt_gen -> mem_owner[0] = 0 :: else fi;
    if :: mem_gen[1] == rt_gen -> mem_owner[1] = 0 :: else fi;
    if :: mem_gen[2] == rt_gen -> mem_owner[2] = 0 :: else fi;
    rt_alive = 0;
#if PYGEN != 38
    gil = GIL_DEAD                              /* _PyEval_FiniGIL; <= 3.8 keeps it held */
#endif
  };
#ifdef MUT_CPY_FREE_FIRST
  atomic { rt_fin = 1; rt_init = 0 };
#endif
#ifdef CPY_FIN_RESET
  rt_fin = 0;                                   /* _PyRuntimeState_Fini on the way out */
#endif
  g_epoch = EPOCH(GEN(g_epoch), FINALIZED);    /* end_finalizing() */
  released = 0;                                 /* gate_phase_changed() */
  fallback = 0;

#if REINIT
  if
  :: skip
  :: REINIT_ALLOWED ->
     /* pfg_hook_Py_Initialize*: initializing(), begin_generation() */
     e = g_epoch;
#ifdef MUT_INIT_NO_BUMP
#define NEXT_GEN GEN(e)
#else
#define NEXT_GEN (GEN(e) + 1)
#endif
#ifdef FIX_INIT_AFTER
     /* the initializer passes decide() rule 1 while the old generation stays FINALIZED */
     t_fin_gen = GEN(e);
#else
     if
     :: PHASE(e) != RUNNING -> g_epoch = EPOCH(NEXT_GEN, RUNNING); released = 0
     :: else -> skip
     fi;
#endif
     atomic {                                   /* real Py_Initialize */
       rt_gen++; rt_fin = 0; rt_alive = 1; rt_init = 1;
       alloc_ts();                              /* may reuse a freed address */
       gil = MAIN + 1
     };
#ifdef FIX_INIT_AFTER
     if
     :: PHASE(e) != RUNNING -> g_epoch = EPOCH(NEXT_GEN, RUNNING); released = 0
     :: else -> skip
     fi;
#endif
     MAIN_WINDOW(m4);      /* the new runtime lets threads run */
     save_thread()         /* and joins with the GIL released (as any embedder must) */
  fi;
#endif

  /* exit(): a static destructor or the embedder joins its threads */
  JOIN(WORK);
  JOIN(NAT);
end_parked:      /* unreachable for main (P3) */
  false;            /* parked */
exited:
  false;            /* unreachable for main */
hung:
  false             /* unreachable for main */
}

/* ------------------------------------------------------------------------------------
 * A Python thread of generation 1 (threading.Thread, or a C++ worker running Python):
 * starts through PyEval_AcquireThread (t_bootstrap), runs, releases the GIL around a
 * blocking call (the seed's scenario), maybe switches inside the eval loop (not
 * interposable), reacquires and ends.
 */
active proctype Worker() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = 1;
  bool my_late, fin_seen, admitted, ok;

  inited;
  ACQUIRE_THREAD(my_ts, w1);                    /* PyEval_AcquireThread in t_bootstrap */
  run_python();
  if
  :: atomic {                                  /* eval loop: drop_gil ... take_gil */
       gil = GIL_FREE; eval_wait[_pid] = 1; in_cpython[_pid] = 1
     };
     TAKE_GIL(my_ts, w2);
     eval_wait[_pid] = 0;
     run_python()
  :: skip
  fi;
  save_thread();                                /* Py_BEGIN_ALLOW_THREADS */
  /* blocking call: any amount of time */
  RESTORE_THREAD(my_ts, w3);                    /* Py_END_ALLOW_THREADS */
  run_python();
  atomic {                                      /* PyThreadState_Clear + DeleteCurrent */
    USE_TS(my_ts); mem_owner[my_ts] = 0; gil = GIL_FREE
  };
#if PYGEN == 38
  pthread_exit_hook(NORMAL);                    /* t_bootstrap's PyThread_exit_thread() */
#endif
  done[_pid] = 1;
  goto finish;
end_parked:
  false;            /* parked: futex wait forever, all signals blocked */
exited:
  atomic { done[_pid] = 1; in_cpython[_pid] = 0 };
  goto finish;
hung:
  false;            /* PyThread_hang_thread: pause() forever, not parked */
finish:
  skip
}

/* ------------------------------------------------------------------------------------
 * A native thread (never created by Python) that calls PyGILState_Ensure at any time,
 * runs Python, and calls PyGILState_Release.
 */
active proctype Native() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = NONE;
  bool my_late, fin_seen, admitted, ok;

  inited;
  /* pfg_hook_PyGILState_Ensure */
  WINDOW_OPEN;
#ifdef ASSUME_ENSURE_WINDOW
  atomic {
#endif
  LOAD_EPOCH(1); ACQ_BEGIN;
  if
  :: PHASE(e) != RUNNING -> decide(NONE, 1)
  :: else -> skip
  fi;
  PASSED();
  /* real PyGILState_Ensure: PyThreadState_New(autoInterpreterState) */
  assert(rt_alive);                             /* P1: the interpreter is not freed */
  alloc_ts();
#ifdef ASSUME_ENSURE_WINDOW
  };
#endif
  TAKE_GIL(my_ts, n1);                          /* its PyEval_RestoreThread (in_gilstate()) */
  GATE_LEAVE;
  ACQ_END;
  run_python();
  /* pfg_hook_PyGILState_Release */
  LOAD_EPOCH(0);
  if
  :: PHASE(e) != RUNNING -> decide(NONE, 0)
  :: else -> skip
  fi;
  PASSED();
  atomic {                                      /* PyThreadState_Clear + DeleteCurrent */
    USE_TS(my_ts); mem_owner[my_ts] = 0; gil = GIL_FREE
  };
  done[_pid] = 1;
  goto finish;
end_parked:
  false;            /* parked: futex wait forever, all signals blocked */
exited:
  atomic { done[_pid] = 1; in_cpython[_pid] = 0 };
  goto finish;
hung:
  false;            /* PyThread_hang_thread: pause() forever, not parked */
finish:
  skip
}
