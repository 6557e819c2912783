/*
 * pyfinguard's park protocol against CPython's finalization sequence, for spin.
 *
 * The protocol of docs/design.md ("The principle": do no harm): up to CPython's point of no return (PONR) the
 * guard only does thread-local bookkeeping and calls the real function; past it, a late
 * thread parks; the finalizer drains the acquisition windows after the PONR, holding the
 * GIL, before CPython frees any thread state.  docs/model.md explains the model, its
 * abstractions, the properties and the runs; shim/model/run.py runs every configuration.
 * Names in comments are the C++ functions of shim/ (hooks.cc, state.cc, window.cc,
 * gilwait.cc, park.cc) that each piece models.
 *
 * Selected with -D on the spin command line:
 *   PYGEN   38  CPython <= 3.8   (exit_thread_if_finalizing after acquiring the GIL;
 *                                 Py_FinalizeEx leaves the GIL held forever;
 *                                 t_bootstrap ends in PyThread_exit_thread())
 *           313 CPython 3.9-3.13 (take_gil checks tstate_must_exit before waiting,
 *                                 after each timed wait and after acquiring, then
 *                                 PyThread_exit_thread() -> pthread_exit)
 *           314 CPython 3.14     (the same checks, then PyThread_hang_thread() -> pause())
 *   REINIT  1: the embedder may call Py_Initialize again after Py_FinalizeEx
 *   ASSUME_* environment assumptions (on by default; GAP_* turns one off)
 *   OLD_DESIGN  the design before that principle (shim at 32a7d97): OLD_DRAIN + OLD_GATE
 *   OLD_DRAIN   the drain at Py_FinalizeEx entry, releasing the GIL (real SaveThread)
 *   OLD_GATE    the admission gate (gate_admit, g_released, g_inflight; grace off)
 *   NO_P0       P0a-c not checked (to see what the old design does without them)
 *   P0_STRICT   P0 for a native thread without a thread state against any live runtime,
 *               whatever generation g_epoch still names (the re-initialization instant)
 *   CPY_FIN_RESET  CPython clears its finalizing flag on the way out of Py_FinalizeEx
 *   TRACEMALLOC    the native thread's Ensure may run a nested Ensure/Release inside its
 *                  real call (tracemalloc's raw allocator hook in PyThreadState_New)
 *   FIX_NESTED_WINDOW  window_close() restores the window value window_open() found
 *   MUT_*   mutants: one check, store or step of the protocol dropped or reordered
 *   ARM_AT_FINALIZING  the hot pair "armed at finalization" (a design judged in
 *               docs/design.md): until the finalizer's FINALIZING store the
 *               PyEval_SaveThread/RestoreThread hooks are the bare real functions
 *               (no handle, no window, no check); from it on, the hooks as they are
 */

#ifndef PYGEN
#define PYGEN 313
#endif
#ifndef REINIT
#define REINIT 1
#endif

#ifdef OLD_DESIGN
#define OLD_DRAIN
#define OLD_GATE
#endif

/* ---- fixes in the code that a MUT_ turns off */
#ifndef MUT_JOIN_FASTPATH
#define FIX_JOIN_GEN      /* plain pthread_join only while nothing was ever finalized */
#endif
#ifndef MUT_INIT_EARLY
#define FIX_INIT_AFTER    /* the new generation is announced after Py_Initialize returns */
#endif

/* ---- environment assumptions (docs/model.md, "Assumptions and gaps") */
#ifndef GAP_REINIT_INFLIGHT
#define ASSUME_NO_INFLIGHT_REINIT /* A1: no thread is inside an acquisition at re-init */
#endif
#ifndef GAP_UNSTARTED
#define ASSUME_STARTED_REINIT     /* A2: every thread of gen 1 started before re-init */
#endif
#ifndef GAP_TAKE_GIL_WINDOW
#define ASSUME_TAKE_GIL_WINDOW    /* A3: the eval loop's take_gil: check + first tstate read not split */
#endif
#ifndef GAP_DRAIN_BOUND
#define ASSUME_DRAIN_COMPLETES    /* A4: the drain's 1 s bound never expires */
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

/* ---- the guard's shared state (shim/state.h, shim/park.h, shim/window.h) */
byte g_epoch = EPOCH(1, RUNNING);
byte parked_count;          /* g_parked_count */
bool parked[NPROC];         /* the g_parked registry (is_parked_thread) */
bool window[NPROC];         /* t_pt.window: inside a real acquiring call (Main's is not scanned) */
#ifdef OLD_GATE
bool released;              /* g_released: the finalizer waits with the GIL released */
byte inflight;              /* g_inflight: admitted threads still inside the real call */
#endif

/* ---- CPython's state */
byte rt_gen = 1;            /* generation of the runtime CPython is running */
bool rt_fin;                /* _PyRuntime finalizing != NULL: set at the point of no return */
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

/* CPython of generation g is before its point of no return: the runtime is up, its
 * finalizing flag not set.  A thread's generation (my_gen) is that of its thread state,
 * or, for a native thread without one, that of the g_epoch it loaded. */
#ifdef P0_STRICT
/* also a native thread without a thread state, against whatever runtime is up */
#define BEFORE_PONR(g) ((rt_gen == (g) || my_ts == NONE) && !rt_fin && rt_alive && rt_init)
#else
#define BEFORE_PONR(g) (rt_gen == (g) && !rt_fin && rt_alive)
#endif

/* Every wait in guard code (park, the drain; in the mutants the gate, the old drain,
 * decide() waiting) starts with GUARD_WAIT: the P0 properties. */
#ifdef NO_P0
#define GUARD_WAIT(g) skip
#define GUARD_GIL skip
#else
#define GUARD_WAIT(g) \
  assert(MAIN != _pid || !BEFORE_PONR(rt_gen));      /* P0b: the finalizer never waits before the PONR */ \
  assert(gil != _pid + 1 || !BEFORE_PONR(g));        /* P0c: no GIL holder waits before the PONR */ \
  assert(_pid == MAIN || !BEFORE_PONR(g))            /* P0a: no thread waits before the PONR */
/* the guard itself releases or takes the finalizer's GIL (real SaveThread/RestoreThread) */
#define GUARD_GIL assert(MAIN != _pid)               /* P0b */
#endif

/* park() in shim/park.cc: record, block all signals, futex-wait forever.  One copy per
 * process (proc_tail() below); every call site jumps there. */
#define park() goto parking

#ifdef OLD_GATE
/* gate_admit() (shim/gate.cc at 32a7d97, grace off): during FINALIZING a thread enters
 * the real acquiring call only while the finalizer waits with the GIL released. */
inline gate_admit() {
  do
  :: atomic { admitted = 1; inflight++ };
     ok = released;
     if :: ok -> ok = (g_epoch == e) :: else fi;
     if :: ok -> ok = !PROBE :: else fi;
     if
     :: ok -> window[_pid] = 1; break    /* admitted: gate_leave() after the real call */
     :: else ->
        atomic { admitted = 0; inflight-- };   /* leave() */
        window[_pid] = 0;
        if :: g_epoch != e -> park() :: else -> skip fi;
        if :: PROBE -> park() :: else -> skip fi;
        GUARD_WAIT(my_gen);
        (released || g_epoch != e || PROBE)    /* futex_wait(g_released), 5 ms re-checks */
     fi
  od
}
#endif

/* decide() in shim/hooks.cc; e is the caller's load of g_epoch, ts NONE for nullptr,
 * acq: the call takes the GIL. */
inline decide(ts, acq) {
  if
  :: t_fin_gen == GEN(e) ->                                          /* 1. finalizer */
#ifdef OLD_GATE
     if
     :: acq && PHASE(e) == FINALIZING ->
        released = 0;                    /* gate_finalizer_reacquiring() */
        if :: inflight != 0 -> GUARD_WAIT(rt_gen); (inflight == 0) :: else -> skip fi
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
#ifdef MUT_DECIDE_WAITS
           /* holds the thread until CPython has decided (its PONR) or the phase changes */
           if :: !PROBE -> GUARD_WAIT(my_gen); (PROBE || g_epoch != e) :: else -> skip fi;
#endif
           if
           :: PROBE -> park()            /* past the PONR: park */
           :: else -> skip               /* before it: pass at once */
           fi;
#ifdef OLD_GATE
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

/* Windows (window.h): every acquiring hook stores window = 1 (relaxed TLS store +
 * compiler fence) BEFORE it loads g_epoch, and 0 when the real call returns.  The
 * finalizer's membarrier before its scan makes the pair an asymmetric Dekker; in this
 * sequentially consistent model that is the order of the two statements.  Without the
 * membarrier (MUT_NO_MEMBARRIER) x86-TSO may keep the store in the store buffer past the
 * load: the window becomes visible only at the real call's first locked instruction. */
#if defined(MUT_NO_WINDOW) || defined(MUT_NO_MEMBARRIER)
#define WINDOW_OPEN skip
#else
#define WINDOW_OPEN window[_pid] = 1
#endif
#ifdef MUT_NO_MEMBARRIER
#define WINDOW_VISIBLE window[_pid] = 1
#else
#define WINDOW_VISIBLE skip
#endif
#ifdef OLD_GATE
#define WINDOW_CLOSE atomic { window[_pid] = 0; if :: admitted -> admitted = 0; inflight-- :: else fi }
#else
#define WINDOW_CLOSE window[_pid] = 0
#endif

/* The hook's load of g_epoch.  my_late is a ghost: was CPython past its point of no
 * return (or its runtime freed) at the instant of the load, and is this thread not the
 * finalizer?  Such a thread must end parked. */
#define LOAD_EPOCH(acq) \
  atomic { e = g_epoch; my_late = (rt_fin || !rt_alive) && t_fin_gen != rt_gen && _pid != MAIN; \
           my_gen = (my_ts == NONE -> GEN(e) : my_gen); \
           started[_pid] = 1; in_cpython[_pid] = acq }

/* pthread_exit hook (pfg_hook_pthread_exit); CPython's caller is always in its image. */
inline pthread_exit_hook(why) {
  e = g_epoch;
  fin_seen = PROBE;                      /* runtime_is_finalizing() */
  if
#ifdef MUT_NO_EXIT_HOOK
  :: false -> skip
#elif defined(MUT_EXIT_PHASE)
  :: t_fin_gen != GEN(e) && (PHASE(e) != RUNNING || fin_seen) ->   /* phase only */
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

/* pause() hook (pfg_hook_pause), reached from PyThread_hang_thread() (3.14): a
 * non-finalizer past the point of no return is adopted (parked); otherwise the real
 * pause(), for ever. */
inline pause_hook() {
  e = g_epoch;
#ifdef MUT_NO_PAUSE_HOOK
  goto hung
#else
  if
  :: t_fin_gen != GEN(e) && PHASE(e) != RUNNING && PROBE -> park()
  :: else -> goto hung
  fi
#endif
}

/* Where CPython stops a late thread: PyThread_exit_thread() (<= 3.13), or
 * PyThread_hang_thread() (3.14).  One copy per process (proc_tail()). */
#define CPY_EXIT() goto cpy_exit

#define MUST_EXIT (rt_fin && _pid != MAIN)   /* tstate_must_exit / exit_thread_if_finalizing */

/* The take_gil wait hook (gilwait.cc, pthread_cond_timedwait from Python text): a thread
 * that waits, or wakes from a wait, while the runtime is past its point of no return
 * (FINALIZED, or FINALIZING with CPython's flag) parks unless it is the finalizer.  The
 * drain broadcasts the GIL condition variables, so the wake-up is immediate; in the model
 * a timed wait can end at any moment anyway. */
#define WAIT_LATE (t_fin_gen != GEN(g_epoch) && \
                   (PHASE(g_epoch) == FINALIZED || (PHASE(g_epoch) == FINALIZING && PROBE)))
#ifdef MUT_NO_WAIT_HOOK
#define WAIT_HOOK :: false -> skip
#else
#define WAIT_HOOK :: atomic { gil != GIL_FREE && WAIT_LATE -> park() }
#endif

/* CPython's take_gil() (+ the exit check of its caller in <= 3.8), for thread state ts.
 * n makes the wait's label unique: a thread waiting for the GIL when the process exits
 * is a valid end state (as without the guard; the joins catch the ones that matter). */
#if PYGEN == 38
#define TAKE_GIL(ts, n) \
  in_cpython[_pid] = 1; \
  end_gilwait_##n: do \
  :: atomic { gil == GIL_FREE -> gil = _pid + 1 }; break \
  WAIT_HOOK \
  od; \
  USE_TS(ts);          /* take_gil reads tstate->async_exc after acquiring */ \
  if \
  :: MUST_EXIT -> gil = GIL_FREE; CPY_EXIT() /* exit_thread_if_finalizing */ \
  :: else -> in_cpython[_pid] = 0 \
  fi
#define TAKE_GIL_EVAL(ts, n) TAKE_GIL(ts, n)
#else
#ifdef MUT_CPY_NO_FIRST_CHECK
#define FIRST_CHECK :: false -> skip
#else
#define FIRST_CHECK :: MUST_EXIT -> CPY_EXIT()
#endif
/* the check before taking the mutex, then the first read of the thread state
 * (tstate->interp).  A hooked acquisition has its window open: the drain keeps the
 * thread state alive across the two.  The eval loop's own switch has no window: A3. */
#define FIRST(ts) if FIRST_CHECK :: else -> USE_TS(ts) fi
#ifdef ASSUME_TAKE_GIL_WINDOW
#define FIRST_EVAL(ts) atomic { FIRST(ts) }
#else
#define FIRST_EVAL(ts) FIRST(ts)
#endif
#define TAKE_GIL_WITH(ts, n, first) \
  in_cpython[_pid] = 1; \
  first; \
  end_gilwait_##n: do \
  :: atomic { gil == GIL_FREE -> gil = _pid + 1 }; break \
  WAIT_HOOK \
  :: atomic { gil != GIL_FREE && MUST_EXIT } -> CPY_EXIT() /* after a timed wait */ \
  od; \
  if \
  :: MUST_EXIT -> gil = GIL_FREE; CPY_EXIT()  /* after acquiring */ \
  :: else -> USE_TS(ts); in_cpython[_pid] = 0 \
  fi
#define TAKE_GIL(ts, n) TAKE_GIL_WITH(ts, n, FIRST(ts))
#define TAKE_GIL_EVAL(ts, n) TAKE_GIL_WITH(ts, n, FIRST_EVAL(ts))
#endif

/* ---- the hooks (shim/hooks.cc) */

/* ARM_AT_FINALIZING: the hook reads its slot (armed or not) in one step, then runs what
 * it read; the FINALIZING store arms it (one atomic store), and nothing disarms it. */
#define ARMED (g_epoch != EPOCH(1, RUNNING))

/* pfg_hook_PyEval_SaveThread; CPython's PyEval_SaveThread drops the GIL. */
inline save_thread() {
#ifdef ARM_AT_FINALIZING
  if
  :: !ARMED ->                           /* not armed: the real function only */
     USE_TS(my_ts); assert(gil == _pid + 1); gil = GIL_FREE
  :: else ->
#endif
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
#ifdef OLD_GATE
     if                                  /* gate_finalizer_released() */
     :: PHASE(e) == FINALIZING && t_fin_gen == GEN(e) -> released = 1
     :: else -> skip
     fi
#else
     skip
#endif
  :: else -> skip
  fi
#ifdef ARM_AT_FINALIZING
  fi
#endif
}

/* handle_current(e): one compare, since a save outside RUNNING stores phase bits 3 */
#ifdef MUT_FAST_NOGEN
#define HANDLE_CURRENT (h_epoch != 0 && PHASE(h_epoch) == RUNNING && PHASE(e) == RUNNING)
#else
#define HANDLE_CURRENT (h_epoch == e)
#endif

/* pfg_hook_PyEval_AcquireThread, and pfg_hook_PyEval_RestoreThread (fast path and
 * restore_slow() alike): window opened before the load, then the policy. */
#define ACQUIRE_THREAD(ts, n) \
  WINDOW_OPEN; \
  LOAD_EPOCH(1); \
  if \
  :: !HANDLE_CURRENT -> decide(ts, 1) \
  :: else -> skip \
  fi; \
  PASSED(); \
  WINDOW_VISIBLE; \
  if \
  :: h_ts == ts -> h_epoch = 0 \
  :: else -> skip \
  fi; \
  TAKE_GIL(ts, n);            /* real PyEval_AcquireThread/RestoreThread: take_gil + swap */ \
  WINDOW_CLOSE

/* MUT_RESTORE_NOWINDOW: RestoreThread's fast path without a window */
#if defined(ARM_AT_FINALIZING)
#define RESTORE_THREAD(ts, n) \
  if \
  :: !ARMED -> TAKE_GIL(ts, n##_bare)   /* not armed: the real function only */ \
  :: else -> ACQUIRE_THREAD(ts, n) \
  fi
#elif !defined(MUT_RESTORE_NOWINDOW)
#define RESTORE_THREAD(ts, n) ACQUIRE_THREAD(ts, n)
#else
#define RESTORE_THREAD(ts, n) \
  LOAD_EPOCH(1); \
  if \
  :: !HANDLE_CURRENT -> WINDOW_OPEN; LOAD_EPOCH(1); decide(ts, 1) \
  :: else -> skip             /* fast path: no window */ \
  fi; \
  PASSED(); \
  if \
  :: h_ts == ts -> h_epoch = 0 \
  :: else -> skip \
  fi; \
  TAKE_GIL(ts, n); \
  WINDOW_CLOSE
#endif

/* pfg_hook_PyGILState_Ensure by a thread that already holds the GIL (a ctypes.PyDLL
 * callback, tracemalloc's raw allocator hook): the real call only counts
 * (gilstate_counter++); no GIL operation.  Then Python, then the matching Release. */
#define NESTED_ENSURE \
  WINDOW_OPEN; \
  LOAD_EPOCH(1); \
  if \
  :: PHASE(e) != RUNNING -> decide(NONE, 1) \
  :: else -> skip \
  fi; \
  PASSED(); \
  WINDOW_VISIBLE; \
  assert(gil == _pid + 1); USE_TS(my_ts);   /* real: PyGILState_GetThisThreadState, counter++ */ \
  atomic { WINDOW_CLOSE; in_cpython[_pid] = 0 }; \
  run_python(); \
  LOAD_EPOCH(0);                            /* pfg_hook_PyGILState_Release */ \
  if \
  :: PHASE(e) != RUNNING -> decide(NONE, 0) \
  :: else -> skip \
  fi; \
  PASSED(); \
  USE_TS(my_ts)                             /* real: counter-- */

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
#ifdef MUT_NO_JOIN_COMPLETION
#define COMPLETES(t) done[t]
#else
#define COMPLETES(t) (done[t] || parked[t])
#endif
#define JOIN(t) \
  if \
  :: JOIN_PLAIN -> done[t]    /* real pthread_join: only a real exit ends it */ \
  :: else -> COMPLETES(t)     /* join_completing: polls is_parked_thread + timedjoin */ \
  fi

/* The drain (window.cc drain_windows_once), called by before_cpython_frees() in the hooks
 * on PyThreadState_Clear (3.9+: _PyThreadState_DeleteExcept / _DeleteList call it on
 * every other thread's state before freeing it) and PyInterpreterState_Clear (<= 3.8: at
 * entry, before it takes HEAD_LOCK and before zapthreads): in the finalizer, once per
 * finalization, when FINALIZING and CPython is past its point of no return.  membarrier,
 * then wait HOLDING THE GIL until every window has closed or its thread has parked. */
inline drain() {
  if
  :: t_fin_gen == GEN(g_epoch) && PHASE(g_epoch) == FINALIZING && PROBE ->
     if
     :: window[WORK] || window[NAT] ->
        GUARD_WAIT(rt_gen);
#ifdef MUT_DRAIN_RELEASES
        GUARD_GIL; USE_TS(my_ts); gil = GIL_FREE;      /* real PyEval_SaveThread */
#endif
#ifdef ASSUME_DRAIN_COMPLETES
        (!window[WORK] && !window[NAT]);
#else
        if
        :: (!window[WORK] && !window[NAT])
        :: skip                                       /* the 1 s bound expires */
        fi;
#endif
#ifdef MUT_DRAIN_RELEASES
        GUARD_GIL; TAKE_GIL(my_ts, m5)                /* real PyEval_RestoreThread */
#else
        skip
#endif
     :: else -> skip
     fi
  :: else -> skip
  fi
}

/* The end of every process: CPython's exit of a late thread, and park().  Inlined once
 * per process; the call sites jump to its labels. */
inline proc_tail() {
  goto finish;
cpy_exit:
#if PYGEN == 314
  pause_hook();
#else
  pthread_exit_hook(FIN_EXIT);
#endif
parking:
  assert(_pid != MAIN);                          /* P3: the finalizing thread is never parked */
  GUARD_WAIT(my_gen);
  atomic {
    parked[_pid] = 1; parked_count++; in_cpython[_pid] = 0;
    window[_pid] = 0;                            /* window_close(): the drain stops waiting for it */
#ifdef OLD_GATE
    if :: admitted -> admitted = 0; inflight-- :: else fi
#endif
  };
end_parked:
  false             /* parked: futex wait forever, all signals blocked */
}

/* ------------------------------------------------------------------------------------
 * The embedder's main thread: runs generation 1, finalizes it, maybe initializes
 * generation 2, then joins both other threads at exit.
 */
active proctype Main() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = 0, my_gen = 1;
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

  /* pfg_hook_Py_FinalizeEx: finalizer_enter() */
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
#ifdef OLD_DRAIN
  /* gate_drain_windows() at 32a7d97: membarrier, then let every window opened before
   * the store close, with the GIL released through the real PyEval_SaveThread */
  if
  :: window[WORK] || window[NAT] ->
     GUARD_GIL; USE_TS(my_ts); gil = GIL_FREE;
     GUARD_WAIT(rt_gen);
     (!window[WORK] && !window[NAT]);
     GUARD_GIL; TAKE_GIL(my_ts, m0)
  :: else -> skip
  fi;
#endif
#ifdef MUT_DRAIN_BEFORE_PONR
  /* the new drain (holding the GIL), but at Py_FinalizeEx's entry */
  if
  :: t_fin_gen == GEN(g_epoch) ->
     if
     :: window[WORK] || window[NAT] -> GUARD_WAIT(rt_gen); (!window[WORK] && !window[NAT])
     :: else -> skip
     fi
  :: else -> skip
  fi;
#endif
  /* real Py_FinalizeEx: wait_for_thread_shutdown, atexit -- threads still run, and the
   * finalizer may itself call PyGILState_Ensure under the GIL (an atexit callback
   * through ctypes) */
  if
  :: MAIN_WINDOW(m2)
  :: NESTED_ENSURE
  :: skip
  fi;
#ifndef MUT_CPY_FREE_FIRST
#ifndef MUT_CPY_NO_FINALIZING
  atomic { rt_fin = 1; rt_init = 0 };           /* the PONR: _PyRuntimeState_SetFinalizing, initialized = 0 */
#endif
  if
  :: MAIN_WINDOW(m3)       /* GC / __del__ doing I/O after the point of no return */
  :: skip
  fi;
#endif
#if !defined(OLD_DRAIN) && !defined(MUT_NO_DRAIN) && !defined(MUT_DRAIN_BEFORE_PONR)
  drain();                 /* first PyThreadState_Clear (3.9+) / PyInterpreterState_Clear entry (<= 3.8) */
#endif
  atomic {                                      /* thread states freed, interpreter deleted */
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
#ifdef OLD_GATE
  released = 0;                                 /* gate_phase_changed() */
#endif

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
     :: PHASE(e) != RUNNING -> g_epoch = EPOCH(NEXT_GEN, RUNNING)
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
     :: PHASE(e) != RUNNING -> g_epoch = EPOCH(NEXT_GEN, RUNNING)
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
  proc_tail();      /* unreachable for main (P3) */
exited:
  false;            /* unreachable for main */
hung:
  false;            /* unreachable for main */
finish:
  skip
}

/* ------------------------------------------------------------------------------------
 * A Python thread of generation 1 (threading.Thread, or a C++ worker running Python):
 * starts through PyEval_AcquireThread (t_bootstrap), runs, maybe switches inside the
 * eval loop (not interposable), releases the GIL around a blocking call (the seed's
 * scenario), reacquires and ends.
 */
active proctype Worker() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = 1, my_gen = 1;
  bool my_late, fin_seen, admitted, ok;

  inited;
  ACQUIRE_THREAD(my_ts, w1);                    /* PyEval_AcquireThread in t_bootstrap */
  run_python();
  if
  :: atomic {                                  /* eval loop: drop_gil ... take_gil */
       gil = GIL_FREE; in_cpython[_pid] = 1
     };
     TAKE_GIL_EVAL(my_ts, w2);
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
  proc_tail();
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
 * runs Python, maybe calls PyGILState_Ensure again while it holds the GIL (nested), and
 * calls PyGILState_Release.
 */
active proctype Native() {
  byte e, h_ts = NONE, h_epoch, t_fin_gen, my_ts = NONE, my_gen;
  bool my_late, fin_seen, admitted, ok, outer_win;

  inited;
  /* pfg_hook_PyGILState_Ensure */
  WINDOW_OPEN;
  LOAD_EPOCH(1);
  if
  :: PHASE(e) != RUNNING -> decide(NONE, 1)
  :: else -> skip
  fi;
  PASSED();
  WINDOW_VISIBLE;
  /* real PyGILState_Ensure: PyThreadState_New(autoInterpreterState) */
#ifdef TRACEMALLOC
  if
  :: /* tracemalloc's raw allocator hook, called by PyThreadState_New's PyMem_RawMalloc
      * (TRACE_RAW_MALLOC): PyGILState_Ensure + Release inside the outer real Ensure, on a
      * thread without a thread state, i.e. an acquisition nested in an open window */
     atomic { outer_win = window[_pid]; window[_pid] = 1 };   /* window_open() */
     LOAD_EPOCH(1);
     if
     :: PHASE(e) != RUNNING -> decide(NONE, 1)
     :: else -> skip
     fi;
     PASSED();
     assert(rt_alive);
     alloc_ts();                                /* the inner Ensure's own thread state */
     TAKE_GIL(my_ts, n0);
#ifdef FIX_NESTED_WINDOW
     window[_pid] = outer_win;                  /* window_close() restores the outer window */
#else
     window[_pid] = 0;                          /* window_close() as specified: 0 */
#endif
     run_python();                              /* tracemalloc_alloc() under the GIL */
     LOAD_EPOCH(0);                             /* inner pfg_hook_PyGILState_Release */
     if
     :: PHASE(e) != RUNNING -> decide(NONE, 0)
     :: else -> skip
     fi;
     PASSED();
     atomic {                                   /* PyThreadState_Clear + DeleteCurrent */
       USE_TS(my_ts); mem_owner[my_ts] = 0; gil = GIL_FREE; my_ts = NONE; in_cpython[_pid] = 1
     }
  :: skip
  fi;
#endif
  assert(rt_alive);                             /* P1: the interpreter is not freed */
  alloc_ts();
  TAKE_GIL(my_ts, n1);                          /* its PyEval_RestoreThread (in_gilstate()) */
  WINDOW_CLOSE;
  run_python();
  if
  :: NESTED_ENSURE          /* a callback into Python while holding the GIL */
  :: skip
  fi;
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
  proc_tail();
exited:
  atomic { done[_pid] = 1; in_cpython[_pid] = 0 };
  goto finish;
hung:
  false;            /* PyThread_hang_thread: pause() forever, not parked */
finish:
  skip
}
