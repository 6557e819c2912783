/* PEP 788 (interpreter guards and views) for extensions on every CPython 3.6+.
 *
 *   #include <Python.h>
 *   #include <pyfinguard/pep788.h>
 *
 * Header-only: an extension built against it needs neither the guard nor any library
 * of pyfinguard to load (docs/pep788.md is the reference).
 *
 *  - CPython 3.15+ (PY_VERSION_HEX): every Pyfg name is CPython's own PEP 788 function
 *    or type, nothing else.
 *  - CPython 3.6-3.14 with pyfinguard loaded (LD_PRELOAD): guards are counted by the
 *    guard, found at run time with dlsym(RTLD_DEFAULT, "pyfinguard_guard_acquire"); a
 *    view names (interpreter, runtime generation); a guard can be made from it only while
 *    that generation runs and finalization has not begun, and Py_FinalizeEx waits at its
 *    entry until every guard is closed. The contracts of PEP 788.
 *  - CPython 3.6-3.14 without pyfinguard: best effort. A guard is made when
 *    Py_IsInitialized() and CPython's finalizing flag is clear, and nothing makes
 *    finalization wait for it: a thread that passed the check can still meet a
 *    finalizing runtime inside PyThreadState_Ensure (the race PEP 788 was written to
 *    close), and a view of an earlier runtime is not recognised. docs/pep788.md says what
 *    holds where.
 *
 * The names are prefixed (Pyfg...): on 3.15 Python.h declares CPython's own, and a
 * backport of the same names by another header (pythoncapi-compat) must not clash with
 * ours. The shapes are PEP 788's as CPython 3.15.2 declares them (pointers, NULL on
 * failure, PyfgThreadStateToken is void).
 */
#ifndef PYFINGUARD_PEP788_H
#define PYFINGUARD_PEP788_H

#ifndef Py_PYTHON_H
#error "include <Python.h> before <pyfinguard/pep788.h>"
#endif

#if defined(Py_LIMITED_API) && (PY_VERSION_HEX < 0x030F0000 || Py_LIMITED_API + 0 < 0x030F0000)
/* Before 3.15 the backport needs the full C API (thread states, interpreters). */
#error "<pyfinguard/pep788.h> needs the full C API, or Py_LIMITED_API >= 3.15 on 3.15+"
#endif

#if PY_VERSION_HEX >= 0x030F0000

/* ------------------------------------------------------------------ CPython 3.15+ */
typedef PyInterpreterGuard PyfgInterpreterGuard;
typedef PyInterpreterView PyfgInterpreterView;
typedef PyThreadStateToken PyfgThreadStateToken;
#define PyfgInterpreterGuard_FromCurrent PyInterpreterGuard_FromCurrent
#define PyfgInterpreterGuard_FromView PyInterpreterGuard_FromView
#define PyfgInterpreterGuard_Close PyInterpreterGuard_Close
#define PyfgInterpreterView_FromCurrent PyInterpreterView_FromCurrent
#define PyfgInterpreterView_FromMain PyInterpreterView_FromMain
#define PyfgInterpreterView_Close PyInterpreterView_Close
#define PyfgThreadState_Ensure PyThreadState_Ensure
#define PyfgThreadState_EnsureFromView PyThreadState_EnsureFromView
#define PyfgThreadState_Release PyThreadState_Release
/* 1: CPython's own implementation; 2: pyfinguard's; 0: the best-effort fallback. */
#define PyfgPEP788_Backend() 1

#else

/* -------------------------------------------------------------- CPython 3.6-3.14 */
#include <dlfcn.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PyfgInterpreterGuard {
  PyInterpreterState *interp;
  unsigned long long generation; /* 0: unknown (fallback) */
  int counted;                   /* held in pyfinguard's count */
} PyfgInterpreterGuard;

typedef struct PyfgInterpreterView {
  PyInterpreterState *interp; /* never dereferenced after the view was made */
  unsigned long long generation;
} PyfgInterpreterView;

typedef void PyfgThreadStateToken;

/* The guard's functions (include/pyfinguard.h), looked up once per extension. */
typedef struct {
  unsigned long long (*view_generation)(void);
  unsigned (*generation)(void);
  int (*acquire)(void *, unsigned long long);
  void (*release)(void);
} pyfg__api_t;

static inline const pyfg__api_t *pyfg__api(void) {
  static pyfg__api_t api;
  static int state; /* 0: not looked up, 1: being filled, 2: ready */
  static __thread pyfg__api_t mine;
  pyfg__api_t a;
  int expected = 0;
  if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == 2) return &api;
  /* POSIX's way to store dlsym's result in a function pointer (ISO C has no cast). */
  *(void **)&a.view_generation = dlsym(RTLD_DEFAULT, "pyfinguard_view_generation");
  *(void **)&a.generation = dlsym(RTLD_DEFAULT, "pyfinguard_generation");
  *(void **)&a.acquire = dlsym(RTLD_DEFAULT, "pyfinguard_guard_acquire");
  *(void **)&a.release = dlsym(RTLD_DEFAULT, "pyfinguard_guard_release");
  if (!a.view_generation || !a.generation || !a.acquire || !a.release) a.acquire = NULL;
  if (__atomic_compare_exchange_n(&state, &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    api = a;
    __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
    return &api;
  }
  mine = a; /* another thread is filling api: the same answers, this thread's copy */
  return &mine;
}

#define PyfgPEP788_Backend() (pyfg__api()->acquire ? 2 : 0)

/* CPython's finalizing flag: lock-free reads of the runtime's static data. */
static inline int pyfg__finalizing(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#elif PY_VERSION_HEX >= 0x03070000
  return _Py_IsFinalizing();
#else
  return _Py_Finalizing != NULL;
#endif
}

static inline PyThreadState *pyfg__current(void) {
#if PY_VERSION_HEX >= 0x030D0000
  return PyThreadState_GetUnchecked();
#else
  return _PyThreadState_UncheckedGet();
#endif
}

static inline PyInterpreterState *pyfg__interp_of(PyThreadState *ts) {
#if PY_VERSION_HEX >= 0x03090000
  return PyThreadState_GetInterpreter(ts);
#else
  return ts->interp;
#endif
}

static inline PyInterpreterState *pyfg__main(void) {
#if PY_VERSION_HEX >= 0x03080000
  return PyInterpreterState_Main();
#else
  /* The main interpreter is the first created: the last in the list. */
  PyInterpreterState *i = PyInterpreterState_Head(), *n;
  while (i && (n = PyInterpreterState_Next(i)) != NULL) i = n;
  return i;
#endif
}

/* The check a guard is made on: the guard's (Dekker with Py_FinalizeEx's entry, the
 * generation, ended sub-interpreters) or, without it, CPython's flags (racy). */
static inline int pyfg__acquire(PyInterpreterState *interp, unsigned long long gen, int *counted) {
  const pyfg__api_t *api = pyfg__api();
  *counted = 0;
  if (api->acquire) {
    if (!api->acquire(interp == pyfg__main() ? NULL : (void *)interp, gen)) return 0;
    *counted = 1;
    return 1;
  }
  return Py_IsInitialized() && !pyfg__finalizing();
}

/* ---- views. Need no attached thread state to close, nor (FromMain) to make. */

/* The caller must hold an attached thread state. NULL (no exception) when finalizing. */
static inline PyfgInterpreterView *PyfgInterpreterView_FromCurrent(void) {
  const pyfg__api_t *api = pyfg__api();
  PyfgInterpreterView *v;
  unsigned long long gen = 0;
  if (api->acquire && (gen = api->view_generation()) == 0) return NULL;
  if (!api->acquire && pyfg__finalizing()) return NULL;
  v = (PyfgInterpreterView *)malloc(sizeof *v);
  if (!v) return NULL;
  v->interp = pyfg__interp_of(PyThreadState_Get());
  v->generation = gen;
  return v;
}

/* As in CPython 3.15, a view of the main interpreter can be made at any time, even
 * after finalization (a guard from it is then refused). */
static inline PyfgInterpreterView *PyfgInterpreterView_FromMain(void) {
  const pyfg__api_t *api = pyfg__api();
  PyfgInterpreterView *v = (PyfgInterpreterView *)malloc(sizeof *v);
  if (!v) return NULL;
  v->generation = api->acquire ? api->generation() : 0;
  v->interp = pyfg__main();
  return v;
}

static inline void PyfgInterpreterView_Close(PyfgInterpreterView *view) { free(view); }

/* ---- guards. While one is held (with pyfinguard), Py_FinalizeEx waits at its entry. */

static inline PyfgInterpreterGuard *pyfg__guard(PyInterpreterState *interp, unsigned long long gen) {
  PyfgInterpreterGuard *g = (PyfgInterpreterGuard *)malloc(sizeof *g);
  if (!g) return NULL;
  if (!pyfg__acquire(interp, gen, &g->counted)) {
    free(g);
    return NULL;
  }
  g->interp = interp;
  g->generation = gen;
  return g;
}

/* The caller must hold an attached thread state. NULL when finalization has begun. */
static inline PyfgInterpreterGuard *PyfgInterpreterGuard_FromCurrent(void) {
  PyThreadState *ts = PyThreadState_Get();
  return pyfg__guard(pyfg__interp_of(ts), 0);
}

/* Any thread, no thread state needed. NULL once the view's interpreter is finalizing or
 * gone (with pyfinguard also: a view of an earlier runtime, an ended sub-interpreter). */
static inline PyfgInterpreterGuard *PyfgInterpreterGuard_FromView(PyfgInterpreterView *view) {
  return pyfg__guard(view->interp, view->generation);
}

static inline void PyfgInterpreterGuard_Close(PyfgInterpreterGuard *guard) {
  if (guard->counted) pyfg__api()->release();
  free(guard);
}

/* ---- thread states. */

typedef struct {
  int kind; /* 1: PyGILState_Ensure (main interpreter); 2: own thread state; 3: nested */
  PyGILState_STATE gilstate;
  PyThreadState *ts;
  PyfgInterpreterGuard *owned_guard;
} pyfg__token;

/* Attach a thread state of the guard's interpreter to this thread (the caller holds the
 * guard until PyfgThreadState_Release). NULL on failure: the guard must still be closed. */
static inline PyfgThreadStateToken *PyfgThreadState_Ensure(PyfgInterpreterGuard *guard) {
  pyfg__token *t = (pyfg__token *)calloc(1, sizeof *t);
  PyThreadState *cur;
  if (!t) return NULL;
  cur = pyfg__current();
  if (guard->interp == pyfg__main()) {
    t->kind = 1;
    t->gilstate = PyGILState_Ensure();
  } else if (cur && pyfg__interp_of(cur) == guard->interp) {
    t->kind = 3; /* already attached to this interpreter */
  } else if (cur) {
    free(t); /* attached to another interpreter: not supported before 3.15 */
    return NULL;
  } else {
    t->kind = 2;
    t->ts = PyThreadState_New(guard->interp);
    if (!t->ts) {
      free(t);
      return NULL;
    }
    PyEval_RestoreThread(t->ts);
  }
  return t;
}

static inline void PyfgThreadState_Release(PyfgThreadStateToken *token) {
  pyfg__token *t = (pyfg__token *)token;
  if (t->kind == 1) {
    PyGILState_Release(t->gilstate);
  } else if (t->kind == 2) {
    PyThreadState_Clear(t->ts);
    PyThreadState_DeleteCurrent();
  }
  if (t->owned_guard) PyfgInterpreterGuard_Close(t->owned_guard);
  free(t);
}

/* A guard from the view and a thread state in one step; the guard is closed by
 * PyfgThreadState_Release. NULL once the interpreter is finalizing: back out. */
static inline PyfgThreadStateToken *PyfgThreadState_EnsureFromView(PyfgInterpreterView *view) {
  PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromView(view);
  pyfg__token *t;
  if (!g) return NULL;
  t = (pyfg__token *)PyfgThreadState_Ensure(g);
  if (!t) {
    PyfgInterpreterGuard_Close(g);
    return NULL;
  }
  t->owned_guard = g;
  return t;
}

#ifdef __cplusplus
}
#endif

#endif /* PY_VERSION_HEX */
#endif /* PYFINGUARD_PEP788_H */
