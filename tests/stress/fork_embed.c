/* fork with parked threads in the parent (tests/stress/fork_test.py).
 *
 *   fork_embed FORK_PROG_PY
 *
 * The first runtime gets two late threads parked (a worker's PyEval_RestoreThread with a
 * saved thread state, a native thread's first PyGILState_Ensure, both after
 * Py_FinalizeEx); Python is initialized again and runs fork_prog.py, which forks with
 * os.fork and multiprocessing 'fork' while those parked threads and the guard's records
 * of them exist. fork_prog.py ends the process with status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "scen.h"

static gate_t ready, wake;  /* pipes: waits are real blocking read(2)s */

static void *saver(void *arg) {
  (void)arg;
  PyThreadState *ts = save_and_block(&ready, &wake);
  PyEval_RestoreThread(ts);
  return NULL;
}
static void *late(void *arg) {
  (void)arg;
  gate_wait(&wake);
  PyGILState_Ensure();
  return NULL;
}

static unsigned parked(void) {
  unsigned (*f)(void) = (unsigned (*)(void))dlsym(RTLD_DEFAULT, "pyfinguard_parked_count");
  return f ? f() : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return 90;
  gate_init(&ready);
  gate_init(&wake);
  scen_py_init();
  pthread_t t1, t2;
  pthread_create(&t1, NULL, saver, NULL);
  pthread_create(&t2, NULL, late, NULL);
  wait_without_gil(&ready);
  Py_FinalizeEx();
  gate_open(&wake);
  gate_open(&wake);
  for (int i = 0; i < 200 && parked() < 2; i++) {
    struct timespec ms = {0, 10000000};
    nanosleep(&ms, NULL);
  }
  printf("embed: first runtime finalized, %u thread(s) parked; initializing again\n", parked());
  fflush(stdout);
  Py_InitializeEx(0);
  FILE *f = fopen(argv[1], "r");
  if (!f) return 91;
  wchar_t *wargv[1] = {Py_DecodeLocale(argv[1], NULL)};
  PySys_SetArgvEx(1, wargv, 1);
  PyRun_SimpleFileEx(f, argv[1], 1);  /* ends with sys.exit(7) -> exit(7) */
  return 92;
}
