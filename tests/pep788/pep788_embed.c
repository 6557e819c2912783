/* An embedder whose native threads use PEP 788 through <pyfinguard/pep788.h>: on 3.15 that
 * is CPython's own API, on 3.6-3.14 the guard's (preloaded) or the fallback. One mode per
 * run; every line it prints is an observable result that pep788.py compares across
 * Pythons (no timing figure is printed, only whether an order held).
 *
 *   backend   which implementation the header uses (1 CPython, 2 pyfinguard, 0 fallback)
 *   wait      a native thread holds a guard from a view made before Py_FinalizeEx; it
 *             enters Python 300 ms after finalization began and closes the guard: the
 *             finalization must wait for it (its Python code ran before Py_FinalizeEx
 *             returned) and proceed (returns 0)
 *   late      after Py_FinalizeEx: GuardFromView, EnsureFromView and View_FromMain on a
 *             native thread all return NULL: the thread backs out
 *   storm     4 native threads loop EnsureFromView + Python code + Release while the main
 *             thread finalizes: each gets in some times, then NULL, and backs out
 *   storm-tight  the same without the pause between guards
 *   subinterp    a native thread enters a sub-interpreter through a view of it; after
 *             Py_EndInterpreter a guard from that view is refused
 *   reinit    a view of the first runtime, Py_FinalizeEx, Py_Initialize: a guard from the
 *             old view is refused (PYFG_OLD_VIEW ... refused) or made (... accepted)
 */
#include <Python.h>
#include <pyfinguard/pep788.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static PyfgInterpreterView *g_view;
static volatile int g_ran, g_closed, g_started;

static void msleep(int ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void *holder(void *arg) {
  (void)arg;
  PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromView(g_view);
  g_started = 1;
  if (!g) {
    printf("HOLDER guard refused\n");
    fflush(stdout);
    return NULL;
  }
  msleep(300);  /* meanwhile the main thread enters Py_FinalizeEx */
  PyfgThreadStateToken *t = PyfgThreadState_Ensure(g);
  if (t) {
    PyRun_SimpleString("import sys; sys.stdout.write('HOLDER python ran\\n'); sys.stdout.flush()");
    g_ran = 1;
    PyfgThreadState_Release(t);
  } else {
    printf("HOLDER ensure failed\n");
  }
  g_closed = 1;
  PyfgInterpreterGuard_Close(g);
  return NULL;
}

static void *late(void *arg) {
  (void)arg;
  PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromView(g_view);
  printf("LATE guard %s\n", g ? "made" : "NULL");
  if (g) PyfgInterpreterGuard_Close(g);
  PyfgThreadStateToken *t = PyfgThreadState_EnsureFromView(g_view);
  printf("LATE ensure %s\n", t ? "made" : "NULL");
  if (t) PyfgThreadState_Release(t);
  PyfgInterpreterView *m = PyfgInterpreterView_FromMain();
  printf("LATE view_main %s\n", m ? "made" : "NULL");
  if (m) {
    g = PyfgInterpreterGuard_FromView(m);
    printf("LATE guard_from_main_view %s\n", g ? "made" : "NULL");
    if (g) PyfgInterpreterGuard_Close(g);
    PyfgInterpreterView_Close(m);
  }
  return NULL;
}

static PyfgInterpreterView *g_subview;
static void *sub_enter(void *arg) {
  (void)arg;
  PyfgThreadStateToken *t = PyfgThreadState_EnsureFromView(g_subview);
  printf("SUB ensure %s\n", t ? "made" : "NULL");
  fflush(stdout);
  if (t) {
    PyRun_SimpleString("import sys; sys.stdout.write('SUB python ran\\n'); sys.stdout.flush()");
    PyfgThreadState_Release(t);
  }
  return NULL;
}
static void *sub_after(void *arg) {
  (void)arg;
  PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromView(g_subview);
  printf("SUB after_end guard %s\n", g ? "made" : "NULL");
  if (g) PyfgInterpreterGuard_Close(g);
  return NULL;
}

static volatile int g_in[4], g_out[4], g_tight;
static void *stormer(void *arg) {
  int i = (int)(long)arg;
  for (;;) {
    PyfgThreadStateToken *t = PyfgThreadState_EnsureFromView(g_view);
    if (!t) break;
    PyRun_SimpleString("x = sum(range(100))");
    g_in[i]++;
    PyfgThreadState_Release(t);
    /* A pause with no guard held: CPython 3.15 lets new guards be made while its
     * finalization waits, and only refuses them once the count has reached zero, so
     * threads that always hold one between them would hold the exit off for ever. */
    if (!g_tight) msleep(2);
  }
  g_out[i] = 1;
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "wait";
  Py_Initialize();
#if PY_VERSION_HEX < 0x03070000
  PyEval_InitThreads();  /* 3.6 creates the GIL on first use: the embedder must, first */
#endif
  if (!strcmp(mode, "backend")) {
    printf("BACKEND %d\n", PyfgPEP788_Backend());
    return Py_FinalizeEx() ? 1 : 0;
  }
  g_view = PyfgInterpreterView_FromCurrent();
  if (!g_view) {
    printf("VIEW NULL while running\n");
    return 2;
  }
  if (!strcmp(mode, "wait")) {
    pthread_t th;
    pthread_create(&th, NULL, holder, NULL);
    Py_BEGIN_ALLOW_THREADS
    while (!g_started) msleep(1);
    Py_END_ALLOW_THREADS
    int rc = Py_FinalizeEx();
    /* Read at once, before the join: did the finalization wait for the holder? */
    printf("FINALIZE rc=%d holder_ran_before=%d holder_closed_before=%d\n", rc, g_ran, g_closed);
    fflush(stdout);
    pthread_join(th, NULL);
    printf("JOINED\n");
  } else if (!strcmp(mode, "late")) {
    Py_FinalizeEx();
    pthread_t th;
    pthread_create(&th, NULL, late, NULL);
    pthread_join(th, NULL);
  } else if (!strcmp(mode, "storm") || !strcmp(mode, "storm-tight")) {
    g_tight = !strcmp(mode, "storm-tight");
    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, stormer, (void *)i);
    /* Finalize once every thread has been in at least once (a fixed 100 ms left one of
     * four tight loopers without a turn on a loaded machine), at most 5 s. */
    Py_BEGIN_ALLOW_THREADS
    for (int waited = 0; waited < 5000 && !(g_in[0] && g_in[1] && g_in[2] && g_in[3]); waited++) msleep(1);
    msleep(20);
    Py_END_ALLOW_THREADS
    int rc = Py_FinalizeEx();
    printf("FINALIZE rc=%d\n", rc);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    int entered = 0, out = 0;
    for (int i = 0; i < 4; i++) entered += g_in[i] > 0, out += g_out[i];
    printf("STORM threads_that_entered=%d backed_out=%d\n", entered, out);
  } else if (!strcmp(mode, "subinterp")) {
    PyThreadState *main_ts = PyThreadState_Get();
    PyThreadState *sub = Py_NewInterpreter();
    pthread_t th;
    g_subview = PyfgInterpreterView_FromCurrent();
    PyEval_SaveThread();
    pthread_create(&th, NULL, sub_enter, NULL);
    pthread_join(th, NULL);
    PyEval_RestoreThread(sub);
    Py_EndInterpreter(sub);
    PyThreadState_Swap(main_ts);
    Py_BEGIN_ALLOW_THREADS
    pthread_create(&th, NULL, sub_after, NULL);
    pthread_join(th, NULL);
    Py_END_ALLOW_THREADS
    PyfgInterpreterView_Close(g_subview);
    printf("SUB finalize rc=%d\n", Py_FinalizeEx());
  } else if (!strcmp(mode, "reinit")) {
    Py_FinalizeEx();
    Py_Initialize();
    PyThreadState *save = PyEval_SaveThread();
    PyfgInterpreterGuard *g = PyfgInterpreterGuard_FromView(g_view);
    printf("OLD_VIEW %s\n", g ? "accepted" : "refused");
    if (g) PyfgInterpreterGuard_Close(g);
    PyEval_RestoreThread(save);
    printf("REINIT finalize rc=%d\n", Py_FinalizeEx());
  }
  PyfgInterpreterView_Close(g_view);
  fflush(stdout);
  return 0;
}
