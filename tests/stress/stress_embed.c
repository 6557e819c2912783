/* Stress program for embedding: finalization races threads at every stage.
 *
 *   stress_embed SEED [REINIT]
 *
 * REINIT 0 or 1 forces the re-initialization variant off or on (default: drawn from SEED;
 * the harness runs the two as separate cells because they fail in different ways).
 * Everything random is drawn from SEED (printed), so a failing run is reproduced by
 * running the same binary with the same seed (timing still varies with the scheduler;
 * the harness runs each seed once and reports it).
 *
 * Threads (counts drawn from the seed):
 *   saver    PyGILState_Ensure once, then loops SaveThread / native work (spin, sleep or
 *            yield) / RestoreThread / a little C-API work: at finalization it is waiting
 *            for the GIL, holding a saved thread state in native code, or just returning.
 *   ensurer  a native thread looping PyGILState_Ensure / work / Release with random gaps.
 *   late     a native thread whose FIRST PyGILState_Ensure happens at a random moment
 *            around finalization: before, during (Py_FinalizeEx running, before and after
 *            CPython's finalizing point) or after it returned.
 *   pydaemon Python daemon threads running bytecode (with time.sleep(0) GIL drops) or
 *            blocked in os.read on a pipe that a native timer writes at a random time.
 * Main holds the GIL running bytecode for a random time (so that threads queue for the GIL)
 * or releases it and sleeps, then calls Py_FinalizeEx. With REINIT it initializes
 * Python again and runs code that drops the GIL, so that first-runtime threads with stale
 * thread states wake into the second runtime, and finalizes again.
 *
 * Output: "PARKED <n>" (pyfinguard_parked_count(), -1 without the guard), then exit 7.
 * Any other exit, a signal or a hang is what the harness counts. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scen.h"  /* say(), the splitmix64 mix()/rnd(), native_work() (tools/pfgpy/c) */

static uint64_t rng_state;  /* splitmix64: each thread gets its own stream from the seed */

static volatile long long t_start_us;  /* set just before threads start */
static volatile int stop_creating;

static void *saver(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg;
  PyGILState_Ensure();
  for (;;) {
    PyThreadState *ts = PyEval_SaveThread();
    native_work(&s);
    PyEval_RestoreThread(ts);
    PyObject *o = PyLong_FromLong((long)rnd(&s, 1000));
    Py_XDECREF(o);
  }
  return NULL;
}

static PyObject *make_str(uint64_t *s) { return PyUnicode_FromFormat("x%u", rnd(s, 1000)); }
static void *ensurer(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg;
  sleep_us(rnd(&s, 2000));
  for (;;) ensurer_round(&s, make_str);
  return NULL;
}

/* First Ensure at t_start + delay: the harness's window covers main's whole range of
 * finalization start times plus the time Py_FinalizeEx takes. */
static void *late(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg;
  long delay = (long)rnd(&s, 40000);
  sleep_until_us(t_start_us + delay);
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *o = PyLong_FromLong(1);
  Py_XDECREF(o);
  PyGILState_Release(g);
  return NULL;
}

struct waker { int fd; long delay_us; };
static void *waker(void *arg) {
  struct waker *w = (struct waker *)arg;
  sleep_until_us(t_start_us + w->delay_us);
  char c = 'x';
  ssize_t n = write(w->fd, &c, 1);
  (void)n;
  return NULL;
}

int main(int argc, char **argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : (uint64_t)time(NULL);
  rng_state = seed * 0x2545F4914F6CDD1DULL + 1;
  uint64_t *s = &rng_state;
  unsigned nsaver = rnd(s, 4), nensurer = rnd(s, 4), nlate = rnd(s, 3), ndaemon = rnd(s, 3);
  int reinit = rnd(s, 4) == 0;
  if (argc > 2) reinit = atoi(argv[2]) != 0;
  unsigned main_mode = rnd(s, 3);       /* 0 hold GIL running bytecode, 1 release + sleep, 2 at once */
  long main_delay = (long)rnd(s, 20000);  /* us before Py_FinalizeEx */
  say("seed %llu: savers %u ensurers %u late %u daemons %u reinit %d main %u/%ldus",
      (unsigned long long)seed, nsaver, nensurer, nlate, ndaemon, reinit, main_mode, main_delay);

  scen_py_init();
  t_start_us = now_us();
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  for (unsigned i = 0; i < nsaver; i++)
    pthread_create(&t, &attr, saver, (void *)(uintptr_t)mix(s));
  for (unsigned i = 0; i < nensurer; i++)
    pthread_create(&t, &attr, ensurer, (void *)(uintptr_t)mix(s));
  for (unsigned i = 0; i < nlate; i++)
    pthread_create(&t, &attr, late, (void *)(uintptr_t)mix(s));
  static struct waker wk[8];
  for (unsigned i = 0; i < ndaemon; i++) {
    char code[1024];
    if (rnd(s, 2)) {
      int fd[2];
      if (pipe(fd) != 0) return 90;
      wk[i].fd = fd[1];
      wk[i].delay_us = (long)rnd(s, 40000);
      pthread_create(&t, &attr, waker, &wk[i]);
      snprintf(code, sizeof code,
               "import os, threading\n"
               "def _r():\n"
               "    os.read(%d, 1)\n"
               "    x = 0\n"
               "    while True:\n"
               "        x += 1\n"
               "threading.Thread(target=_r, daemon=True).start()\n", fd[0]);
    } else {
      snprintf(code, sizeof code,
               "import threading, time\n"
               "def _b(n):\n"
               "    while True:\n"
               "        sum(range(n))\n"
               "        time.sleep(0)\n"
               "threading.Thread(target=_b, args=(%u,), daemon=True).start()\n",
               1 + rnd(s, 3000));
    }
    if (PyRun_SimpleString(code) != 0) return 91;
  }
  if (main_mode == 0) {
    char code[256];
    snprintf(code, sizeof code,
             "import time\n_e = time.monotonic() + %f\nwhile time.monotonic() < _e:\n    pass\n",
             main_delay / 1e6);
    PyRun_SimpleString(code);
  } else if (main_mode == 1) {
    PyThreadState *mts = PyEval_SaveThread();
    sleep_us(main_delay);
    PyEval_RestoreThread(mts);
  }
  int rc = Py_FinalizeEx();
  if (rc != 0) say("Py_FinalizeEx returned %d", rc);
  if (reinit) {
    sleep_us((long)rnd(s, 5000));
    /* On 3.6 this includes PyEval_InitThreads, which creates a runtime's GIL: without it a
     * late native thread's first PyGILState_Ensure creates it while this thread runs
     * bytecode without holding it, and both run the second runtime at once (was K9:
     * "second runtime corrupted"). */
    scen_py_init();
    /* Drops the GIL repeatedly so that stale first-runtime threads get at it. */
    PyRun_SimpleString("import time\nfor _ in range(20):\n    time.sleep(0.001)\n"
                       "junk = [str(i) for i in range(5000)]\n");
    rc = Py_FinalizeEx();
    if (rc != 0) say("second Py_FinalizeEx returned %d", rc);
  }
  sleep_us((long)rnd(s, 20000));  /* late threads and wakers fire after finalization too */
  stop_creating = 1;
  say("PARKED %d", guard_parked_count());
  return 7;
}
