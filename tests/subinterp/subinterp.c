/* Sub-interpreter scenarios (tests/subinterp/README.md, run by subinterp.py).
 *
 *     subinterp <end|fin|endfin|atexit> <daemon|sleep|nondaemon|native|zap|late> <shared|own>
 *
 * The main thread initializes Python, creates one sub-interpreter (Py_NewInterpreter, or
 * with "own" Py_NewInterpreterFromConfig with PyInterpreterConfig_OWN_GIL, 3.12+: what
 * mod_wsgi does per application is the former) and gives it one thread:
 *   daemon     a Python daemon thread of the sub-interpreter blocked in os.read on a pipe
 *   sleep      a Python daemon thread of the sub-interpreter in time.sleep(1.0)
 *   nondaemon  a Python non-daemon thread blocked in os.read; a native "waker" thread
 *              writes to its pipe 500 ms after the thread is ready, whatever happens
 *   native     a native thread with a thread state of the sub-interpreter
 *              (PyThreadState_New), saved with PyEval_SaveThread and restored when woken
 *   zap        as native, and before the call the main thread deletes the worker's
 *              saved thread state (PyThreadState_Clear + PyThreadState_Delete), as an
 *              embedder that caches one state per native thread and interpreter does
 *              (mod_wsgi) so that Py_EndInterpreter does not stop at "not the last thread"
 *   late       a native thread that keeps the PyInterpreterState pointer and attaches
 *              (PyThreadState_New + PyEval_RestoreThread) only when woken
 * then
 *   end   Py_EndInterpreter(sub) while the thread lives, wake it, let it settle, then
 *         Py_FinalizeEx
 *   fin   Py_FinalizeEx of the main interpreter while the sub-interpreter and its thread
 *         live (the sub-interpreter is never ended: CPython's documentation says
 *         Py_FinalizeEx destroys the sub-interpreters left), then wake the thread
 *   endfin Py_EndInterpreter(sub), then Py_FinalizeEx, then wake the thread (with "zap"
 *         and "late", whose thread does not stop Py_EndInterpreter: an embedder that
 *         ends its sub-interpreters first, as CPython <= 3.12 requires)
 *   atexit as fin, but a Python atexit callback of the main interpreter wakes the thread
 *         and waits until it got past its blocking call and ended (the native worker
 *         deletes its thread state): all before the point of no return
 * and prints, scen.h's conventions, `STATE <thread> <passed|gone|parked|blocked|done>`
 * ("done": the thread had already finished normally -- joined by Py_EndInterpreter --
 * when the call returned), "PASSED" lines when a late thread got through its call into a
 * finished interpreter, `MARK` before the call that may block, and exits 7 when it
 * survives. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <pthread.h>
#include "scen.h"

static gate_t ready, wake, done;  /* done: a Python thread got past its blocking call */
static int wtid;
static volatile int passed;
static PyInterpreterState *sub_interp;
static PyThreadState *main_ts, *sub_ts, *worker_ts;
static int atexit_mode;

/* settle() for a Python thread, whose "passed" is a byte on the done pipe. */
static const char *settle_py(int tid, int ms) {
  long long end = now_ms() + ms;
  for (;;) {
    char c;
    if (!passed && read(done.fd[0], &c, 1) == 1) passed = 1;
    const char *s = thread_state(tid, passed);
    if (strcmp(s, "blocked") != 0 || now_ms() >= end) return s;
    sleep_ms(10);
  }
}

static PyInterpreterState *interp_of(PyThreadState *ts) {
#if PY_VERSION_HEX >= 0x03090000
  return PyThreadState_GetInterpreter(ts);
#else
  return ts->interp;
#endif
}

static void *native_saved(void *arg) {
  (void)arg;
  wtid = scen_tid();
  PyThreadState *ts = PyThreadState_New(sub_interp);
  worker_ts = ts;
  PyEval_RestoreThread(ts);                   /* attach to the sub-interpreter */
  PyEval_SaveThread();                        /* Py_BEGIN_ALLOW_THREADS by hand */
  gate_open(&ready);
  gate_wait(&wake);                           /* a blocking native call */
  say("worker: woke, calling PyEval_RestoreThread with its sub-interpreter thread state");
  PyEval_RestoreThread(ts);
  passed = 1;
  gate_open(&done);
  if (atexit_mode) {
    say("worker: PyEval_RestoreThread returned; deleting its thread state");
    PyThreadState_Clear(ts);
    PyThreadState_DeleteCurrent();
    return NULL;
  }
  say("worker: PASSED PyEval_RestoreThread returned into a finished interpreter");
  PyEval_SaveThread();                        /* give the GIL back; leak the state */
  return NULL;
}

static void *native_late(void *arg) {
  (void)arg;
  wtid = scen_tid();
  gate_open(&ready);
  gate_wait(&wake);
  say("worker: woke, attaching to the sub-interpreter (PyThreadState_New)");
  PyThreadState *ts = PyThreadState_New(sub_interp);
  say("worker: PyThreadState_New returned, calling PyEval_RestoreThread");
  PyEval_RestoreThread(ts);
  passed = 1;
  say("worker: PASSED attached to a finished interpreter");
  PyEval_SaveThread();
  return NULL;
}

static void *waker(void *arg) {
  (void)arg;
  sleep_ms(500);
  gate_open(&wake);
  return NULL;
}

static void usage(void) {
  fprintf(stderr, "usage: subinterp <end|fin|endfin|atexit> <daemon|sleep|nondaemon|native|zap|late> "
                  "<shared|own>\n");
  exit(2);
}

int main(int argc, char **argv) {
  if (argc != 4) usage();
  const char *when = argv[1], *kind = argv[2];
  int own = strcmp(argv[3], "own") == 0;
  int end = strcmp(when, "end") == 0, endfin = strcmp(when, "endfin") == 0;
  atexit_mode = strcmp(when, "atexit") == 0;
  if (!end && !endfin && !atexit_mode && strcmp(when, "fin") != 0) usage();
  int python = !strcmp(kind, "daemon") || !strcmp(kind, "sleep") || !strcmp(kind, "nondaemon");
  int zap = !strcmp(kind, "zap");
  if (!python && strcmp(kind, "native") && strcmp(kind, "late") && !zap) usage();
  if (!own && strcmp(argv[3], "shared")) usage();
  gate_init(&ready);
  gate_init(&wake);
  gate_init(&done);
  fcntl(done.fd[0], F_SETFL, O_NONBLOCK);

  scen_py_init();
  main_ts = PyThreadState_Get();
  if (own) {
#if PY_VERSION_HEX >= 0x030C0000
    PyInterpreterConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.use_main_obmalloc = 0;
    cfg.allow_fork = 0;
    cfg.allow_exec = 0;
    cfg.allow_threads = 1;
    cfg.allow_daemon_threads = 1;
    cfg.check_multi_interp_extensions = 1;
    cfg.gil = PyInterpreterConfig_OWN_GIL;
    PyStatus st = Py_NewInterpreterFromConfig(&sub_ts, &cfg);
    if (PyStatus_Exception(st)) {
      say("main: Py_NewInterpreterFromConfig failed: %s", st.err_msg ? st.err_msg : "?");
      return 92;
    }
#else
    say("main: own GIL needs 3.12");
    return 77;
#endif
  } else {
    sub_ts = Py_NewInterpreter();
    if (!sub_ts) return 92;
  }
  sub_interp = interp_of(sub_ts);
  /* Now sub_ts is current and holds the sub-interpreter's GIL. */
  pthread_t t, wk;
  if (python) {
    char code[2048];
    snprintf(code, sizeof code,
             "import os, threading, time\n"
             "def _tid():\n"
             "    f = getattr(threading, 'get_native_id', None)\n"
             "    if f is not None:\n"
             "        return f()\n"
             "    import ctypes\n"
             "    return ctypes.CDLL(None).syscall(186)\n"
             "def reader():\n"
             "    os.write(%d, str(_tid()).encode() + b'\\n')\n"
             "    if %d:\n"
             "        time.sleep(1.0)\n"
             "    else:\n"
             "        os.read(%d, 1)\n"
             "    os.write(%d, b'x')\n"
             "    os.write(1, b'reader: returned from its blocking call\\n')\n"
             "threading.Thread(target=reader, name='reader', daemon=%s).start()\n",
             ready.fd[1], !strcmp(kind, "sleep"), wake.fd[0], done.fd[1],
             strcmp(kind, "nondaemon") ? "True" : "False");
    if (PyRun_SimpleString(code) != 0) return 91;
    PyEval_SaveThread();
    char buf[32] = {0};
    for (size_t i = 0; i < sizeof buf - 1; i++) {
      if (read(ready.fd[0], &buf[i], 1) != 1 || buf[i] == '\n') break;
    }
    wtid = atoi(buf);
    sleep_ms(100);  /* from write() to being blocked in read() */
  } else {
    PyEval_SaveThread();
    pthread_create(&t, NULL, strcmp(kind, "late") ? native_saved : native_late, NULL);
    pthread_detach(t);
    gate_wait(&ready);
  }
  PyEval_RestoreThread(main_ts);
  say("main: %s thread %d of the sub-interpreter (%s GIL) is ready", kind, wtid,
      own ? "own" : "shared");
  if (!strcmp(kind, "nondaemon")) {
    pthread_create(&wk, NULL, waker, NULL);
    pthread_detach(wk);
  }

  if (zap) {
    /* What an embedder that caches a thread state per native thread and per interpreter
     * (mod_wsgi's request threads) does before ending the interpreter: delete the cached
     * states, so that Py_EndInterpreter does not stop at "not the last thread". */
    PyEval_SaveThread();
    PyEval_RestoreThread(sub_ts);
    PyThreadState_Clear(worker_ts);
    PyThreadState_Delete(worker_ts);
    say("main: deleted the worker's saved thread state of the sub-interpreter");
    PyEval_SaveThread();
    PyEval_RestoreThread(main_ts);
  }
  if (end || endfin) {
    PyEval_SaveThread();
    PyEval_RestoreThread(sub_ts);
    say("MARK main: Py_EndInterpreter");
    Py_EndInterpreter(sub_ts);
    PyThreadState_Swap(main_ts);
    say("main: Py_EndInterpreter returned");
  }
  if (atexit_mode) {
    /* A main-interpreter atexit callback wakes the sub-interpreter's thread and waits
     * (GIL released, in select) until it got past its blocking call: all of this is
     * before CPython's point of no return, where the guard must change nothing. */
    char code[1024];
    snprintf(code, sizeof code,
             "import atexit, os, select, time\n"
             "def _wake():\n"
             "    os.write(%d, b'x')\n"
             "    r = select.select([%d], [], [], 5.0)[0]\n"
             "    t = time.monotonic() + 5.0\n"
             "    while os.path.exists('/proc/self/task/%d') and time.monotonic() < t:\n"
             "        time.sleep(0.01)\n"
             "    print('main atexit: the thread %%s' %% ('ended' if r else 'did not return'),"
             " flush=True)\n"
             "atexit.register(_wake)\n", wake.fd[1], done.fd[0], wtid);
    if (PyRun_SimpleString(code) != 0) return 91;
  }
  if (!end) {
    if (!endfin) say("MARK main: Py_FinalizeEx with the sub-interpreter's thread alive");
    int rc = Py_FinalizeEx();
    say("main: Py_FinalizeEx returned %d", rc);
  }
  say("main: waking the thread");
  char c;
  if (read(done.fd[0], &c, 1) == 1) {
    /* It got past its blocking call before the call above returned: joined by
     * Py_EndInterpreter (nondaemon), or woken by the atexit callback: an ordinary end. */
    say("STATE %s done", python ? "reader" : "worker");
  } else {
    /* While the main runtime runs (end), the main thread waits without the GIL, as an
     * embedder's main thread does between calls into Python. */
    PyThreadState *m = end ? PyEval_SaveThread() : NULL;
    gate_open(&wake);
    say("STATE %s %s", python ? "reader" : "worker",
        python ? settle_py(wtid, 1500) : settle(wtid, &passed, 1500));
    if (m) PyEval_RestoreThread(m);
  }
  if (end) {
    /* The sub-interpreter's thread ran into an ended interpreter while the main one still
     * runs; if it survived that, the program ends as usual. */
    int rc = Py_FinalizeEx();
    say("main: Py_FinalizeEx returned %d", rc);
  }
  say("main: exit 7");
  return 7;
}
