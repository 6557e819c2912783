/* The core scenarios, made for valgrind memcheck (tests/stress/memcheck.py):
 *
 *   memcheck_scen restore   a worker saves its thread state (PyEval_SaveThread), blocks,
 *                           and calls PyEval_RestoreThread after Py_FinalizeEx freed it
 *   memcheck_scen ensure    a native thread's first PyGILState_Ensure after Py_FinalizeEx
 *   memcheck_scen reinit    Py_Initialize again; then a worker of the first runtime wakes
 *                           and calls PyEval_RestoreThread with its freed thread state
 *
 * Run with PYTHONMALLOC=malloc so that freed Python memory goes back to malloc, where
 * memcheck sees it. Waits are pipes and sleeps, no spinning (memcheck serializes
 * threads). Exit status 7 unless something crashed first. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scen.h"

static gate_t ready, wake;  /* pipes: waits are real blocking read(2)s */

static void *saver(void *arg) {
  (void)arg;
  PyThreadState *ts = save_and_block(&ready, &wake);
  PyEval_RestoreThread(ts);   /* ts was freed by Py_FinalizeEx */
  fprintf(stderr, "memcheck_scen: worker PASSED PyEval_RestoreThread\n");
  PyEval_SaveThread();
  return NULL;
}

static void *late(void *arg) {
  (void)arg;
  gate_open(&ready);
  gate_wait(&wake);
  PyGILState_STATE g = PyGILState_Ensure();
  fprintf(stderr, "memcheck_scen: native thread PASSED PyGILState_Ensure\n");
  PyGILState_Release(g);
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "restore";
  gate_init(&ready);
  gate_init(&wake);
  scen_py_init();
  pthread_t t;
  int is_late = strcmp(mode, "ensure") == 0;
  pthread_create(&t, NULL, is_late ? late : saver, NULL);
  wait_without_gil(&ready);
  Py_FinalizeEx();
  if (strcmp(mode, "reinit") == 0) {
    Py_InitializeEx(0);
    gate_open(&wake);
    /* The second runtime drops the GIL so that the stale worker can get at it. */
    PyRun_SimpleString("import time\nfor _ in range(10):\n    time.sleep(0.05)\n");
    Py_FinalizeEx();
  } else {
    gate_open(&wake);
  }
  sleep_ms(1500);  /* the woken thread crashes, passes, is parked or blocks meanwhile */
  fprintf(stderr, "memcheck_scen: %s: main exits 7\n", mode);
  return 7;
}
