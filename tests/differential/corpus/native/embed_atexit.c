/* An embedder (linked to libpython) whose native worker thread runs Python in a loop
 * (PyGILState_Ensure, a statement, Release) and whose atexit() handler -- run by exit(),
 * after main's Py_FinalizeEx -- needs that thread to be gone or to let go:
 *   argv[1] "join": the handler stops the worker and joins it;
 *   argv[1] "lock": the worker holds a mutex around each Python call (released by a
 *                   pthread_cleanup handler if the thread is ended there), and the handler
 *                   locks it to tear its state down.
 * The worker reaches for the GIL during and after finalization. CPython 3.9-3.13.7 end it
 * with pthread_exit (the cleanup handler unlocks); a worker blocked for ever keeps the
 * mutex and is never joined. Prints its lines with write(2) and exits with status 24. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t worker_thread;
static volatile int stop, lock_mode, rounds;
static PyObject *globals; /* __main__'s dict, one reference held for the process's life */

static void say(const char *s) {
  if (write(1, s, strlen(s)) < 0) {
  }
}

static void unlock(void *m) {
  if (m)
    pthread_mutex_unlock((pthread_mutex_t *)m);
}

static void *worker(void *arg) {
  (void)arg;
  while (!stop) {
    if (lock_mode)
      pthread_mutex_lock(&mu);
    pthread_cleanup_push(unlock, lock_mode ? &mu : NULL);
    PyGILState_STATE g = PyGILState_Ensure();
    /* Never prints: an error raised while the runtime is being torn down (3.14: "unable
     * to get sys.modules"; a cleared __main__) is dropped, so that the output is the same
     * in every run. */
    PyObject *r = PyRun_String("n = n + 1\n", Py_file_input, globals, globals);
    if (r)
      Py_DECREF(r);
    else
      PyErr_Clear();
    PyGILState_Release(g);
    pthread_cleanup_pop(0);
    if (lock_mode)
      pthread_mutex_unlock(&mu);
    __atomic_add_fetch(&rounds, 1, __ATOMIC_SEQ_CST);
    usleep(200);
  }
  return NULL;
}

static void at_exit(void) {
  stop = 1;
  if (lock_mode) {
    pthread_mutex_lock(&mu);
    say("atexit: state torn down under the worker's mutex\n");
    pthread_mutex_unlock(&mu);
  } else {
    pthread_join(worker_thread, NULL);
    say("atexit: worker joined\n");
  }
}

/* time.monotonic() of the runner's clock when the program starts to exit ($PFGDIFF_MARK,
 * tests/differential/corpus/_common.py). */
static void mark_exit(void) {
  const char *path = getenv("PFGDIFF_MARK");
  if (!path)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%ld.%06ld\n", (long)ts.tv_sec, ts.tv_nsec / 1000);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) {
    if (write(fd, buf, n) < 0) {
    }
    close(fd);
  }
}

int main(int argc, char **argv) {
  lock_mode = argc > 1 && strcmp(argv[1], "lock") == 0;
  atexit(at_exit);
  Py_Initialize();
#if PY_VERSION_HEX < 0x03070000
  PyEval_InitThreads();
#endif
  PyRun_SimpleString("n = 0\n");
  globals = PyModule_GetDict(PyImport_AddModule("__main__"));
  Py_INCREF(globals);
  PyThreadState *main_ts = PyEval_SaveThread();
  pthread_create(&worker_thread, NULL, worker, NULL);
  pthread_setname_np(worker_thread, "embed-worker");
  while (__atomic_load_n(&rounds, __ATOMIC_SEQ_CST) < 100)
    usleep(1000);
  PyEval_RestoreThread(main_ts);
  say(lock_mode ? "main: worker running Python under its mutex; finalizing, exit 24\n"
                : "main: worker running Python; finalizing, exit 24\n");
  mark_exit();
  Py_FinalizeEx();
  return 24;
}
