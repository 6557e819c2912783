/* Scenario d: re-initialization. The embedder finalizes Python and initializes it again;
 * then a thread of the first runtime wakes with its stale thread state, whose memory may
 * already be reused by the second runtime.
 *   reinit c   a C worker that saved its thread state with PyEval_SaveThread
 *   reinit py  a Python daemon thread of the first runtime blocked in os.read
 * The second runtime then runs Python code that releases the GIL (time.sleep) so that the
 * stale thread can get at it, and is finalized. Without a guard this reads freed memory
 * (made visible with MALLOC_PERTURB_). With pyfinguard the stale thread is parked and the
 * program exits with its own status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

static gate_t ready, wake;
static int wtid;
static volatile int passed;

static void *cworker(void *arg) {
  (void)arg;
  wtid = scen_tid();
  PyThreadState *ts = save_and_block(&ready, &wake);
  say("worker: woke in the second runtime, calling PyEval_RestoreThread");
  PyEval_RestoreThread(ts);
  passed = 1;
  say("worker: PASSED PyEval_RestoreThread with a first-runtime thread state");
  PyEval_SaveThread();  /* give the GIL back so the second runtime can finish */
  return NULL;
}

int main(int argc, char **argv) {
  int py = argc > 1 && strcmp(argv[1], "py") == 0;
  gate_init(&ready);
  gate_init(&wake);
  scen_py_init();
  pthread_t t;
  if (py) {
    char code[1024];
    /* The daemon thread reports its kernel tid through the ready pipe, then blocks. */
    snprintf(code, sizeof code,
             "import os, threading, ctypes\n"
             "def reader():\n"
             /* gettid: 186 on x86-64, 178 on arm64 (asm-generic/unistd.h) */
             "    tid = ctypes.CDLL(None).syscall({'aarch64': 178}.get(os.uname().machine, 186))\n"
             "    os.write(%d, str(tid).encode() + b'\\n')\n"
             "    os.read(%d, 1)\n"
             "    os.write(1, b'reader: PASSED os.read returned into the second runtime\\n')\n"
             "threading.Thread(target=reader, name='reader', daemon=True).start()\n",
             ready.fd[1], wake.fd[0]);
    if (PyRun_SimpleString(code) != 0) return 91;
    PyThreadState *mts = PyEval_SaveThread();
    char buf[32] = {0};
    for (size_t i = 0; i < sizeof buf - 1; i++) {
      if (read(ready.fd[0], &buf[i], 1) != 1 || buf[i] == '\n') break;
    }
    wtid = atoi(buf);
    sleep_ms(100);  /* from write() to being blocked in read() */
    PyEval_RestoreThread(mts);
  } else {
    pthread_create(&t, NULL, cworker, NULL);
    wait_without_gil(&ready);
  }
  say("main: %s thread %d is blocked; finalizing the first runtime", py ? "daemon" : "worker", wtid);
  int rc = Py_FinalizeEx();
  say("main: Py_FinalizeEx returned %d; initializing again", rc);
  Py_InitializeEx(0);
  PyRun_SimpleString("junk = [str(i) * 3 for i in range(20000)]\n"
                     "print('main: second runtime is running', flush=True)");
  say("main: waking the first runtime's thread");
  gate_open(&wake);
  say("MARK main: second runtime releases the GIL for 500 ms");
  PyRun_SimpleString("import time\ntime.sleep(0.5)\nprint('main: second runtime slept', flush=True)");
  rc = Py_FinalizeEx();
  say("main: second Py_FinalizeEx returned %d", rc);
  say("STATE %s %s", py ? "reader" : "worker", settle(wtid, &passed, 1000));
  say("main: exit 7");
  return 7;
}
