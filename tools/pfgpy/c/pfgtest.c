/* pfgtest: a test extension whose threads reach for the GIL after Python finalization.
 *
 * The module registers a libc atexit() handler when imported. In a Python program that
 * handler runs after Py_FinalizeEx (main() has returned into exit()). It then wakes every
 * thread the module knows about, waits up to ~2 s for each of them to settle (crash the
 * process, exit, be parked by pyfinguard, or get past its call), and prints one
 *     STATE <name> <passed|gone|parked|blocked>
 * line per thread (see scen.h). API (kept stable: the launcher's `demo` uses late_ensure):
 *
 *   late_ensure() -> tid        start a native pthread that, once woken by the atexit
 *                               handler, makes its first PyGILState_Ensure call
 *   block_in_allow_threads(name='native') -> None
 *                               register the calling thread, then read(2) a pipe inside
 *                               Py_BEGIN_ALLOW_THREADS; the atexit handler writes the pipe
 *   wake_fd_at_exit(fd)         the atexit handler writes one byte to fd (for threads that
 *                               block in os.read or elsewhere)
 *   register_thread(name) -> tid  report the calling thread in the atexit STATE lines
 *   wait_blocked(n, timeout=5.0) -> bool
 *                               wait (GIL released) until n registered threads sit in
 *                               read(2) (from /proc/self/task/<tid>/syscall); prints a MARK
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include "scen.h"

#define MAXT 16
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char name[32];
  int tid;
  volatile int passed;
} threads[MAXT];
static int nthreads;
static int wake_fds[MAXT];
static int nwake;
static gate_t late_gate;    /* late_ensure threads wait here */
static gate_t block_pipe;   /* block_in_allow_threads reads here */
static int nlate, nblock;

static int add_thread(const char *name, int tid) {
  pthread_mutex_lock(&mu);
  int i = nthreads < MAXT ? nthreads++ : -1;
  if (i >= 0) {
    snprintf(threads[i].name, sizeof threads[i].name, "%s", name);
    threads[i].tid = tid;
  }
  pthread_mutex_unlock(&mu);
  return i;
}

static void at_exit(void) {
  if (nthreads == 0 && nwake == 0) return;
  say("pfgtest: atexit handler: Python is %s", Py_IsInitialized() ? "STILL INITIALIZED" : "finalized");
  say("MARK pfgtest: waking %d thread(s) after finalization; waiting up to 2 s", nthreads);
  for (int i = 0; i < nwake; i++) {
    char c = 'x';
    ssize_t w = write(wake_fds[i], &c, 1);
    (void)w;
  }
  for (int i = 0; i < nlate; i++) gate_open(&late_gate);
  for (int i = 0; i < nblock; i++) gate_open(&block_pipe);
  /* A common deadline, generous for a loaded machine; only a thread blocked for good
   * (3.6-3.8 without the guard) costs all of it. */
  long long end = now_ms() + 2000;
  int n = nthreads;
  for (int i = 0; i < n; i++) {
    int left = (int)(end - now_ms());
    settle(threads[i].tid, &threads[i].passed, left > 0 ? left : 0);
  }
  for (int i = 0; i < n; i++)
    say("STATE %s %s", threads[i].name, thread_state(threads[i].tid, threads[i].passed));
}

static void *late_main(void *arg) {
  int i = (int)(long)arg;
  __atomic_store_n(&threads[i].tid, scen_tid(), __ATOMIC_SEQ_CST);
  gate_wait(&late_gate);
  say("late_ensure: calling PyGILState_Ensure after finalization");
  PyGILState_STATE g = PyGILState_Ensure();
  (void)g;
  threads[i].passed = 1;
  say("late_ensure: PASSED PyGILState_Ensure returned after finalization");
  return NULL;
}

static PyObject *late_ensure(PyObject *self, PyObject *args) {
  (void)self; (void)args;
  int i = add_thread("late_ensure", 0);
  if (i < 0) return PyErr_Format(PyExc_RuntimeError, "too many threads");
  pthread_t t;
  if (pthread_create(&t, NULL, late_main, (void *)(long)i) != 0)
    return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  pthread_detach(t);
  nlate++;
  int tid;
  while ((tid = __atomic_load_n(&threads[i].tid, __ATOMIC_SEQ_CST)) == 0) sleep_ms(1);
  return PyLong_FromLong(tid);
}

static PyObject *block_in_allow_threads(PyObject *self, PyObject *args) {
  (void)self;
  const char *name = "native";
  if (!PyArg_ParseTuple(args, "|s", &name)) return NULL;
  int i = add_thread(name, scen_tid());
  if (i < 0) return PyErr_Format(PyExc_RuntimeError, "too many threads");
  __sync_fetch_and_add(&nblock, 1);
  char c;
  ssize_t r;
  Py_BEGIN_ALLOW_THREADS
  do { r = read(block_pipe.fd[0], &c, 1); } while (r < 0 && errno == EINTR);
  Py_END_ALLOW_THREADS
  threads[i].passed = 1;   /* only reached if Py_END_ALLOW_THREADS returned */
  Py_RETURN_NONE;
}

static PyObject *wake_fd_at_exit(PyObject *self, PyObject *args) {
  (void)self;
  int fd;
  if (!PyArg_ParseTuple(args, "i", &fd)) return NULL;
  pthread_mutex_lock(&mu);
  int ok = nwake < MAXT;
  if (ok) wake_fds[nwake++] = fd;
  pthread_mutex_unlock(&mu);
  if (!ok) return PyErr_Format(PyExc_RuntimeError, "too many fds");
  Py_RETURN_NONE;
}

static PyObject *register_thread(PyObject *self, PyObject *args) {
  (void)self;
  const char *name;
  if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
  int tid = scen_tid();
  if (add_thread(name, tid) < 0) return PyErr_Format(PyExc_RuntimeError, "too many threads");
  return PyLong_FromLong(tid);
}

static PyObject *mark_passed(PyObject *self, PyObject *args) {
  /* Python threads call this after their blocking call returned post-finalization (if
   * they ever run again); it flags them "passed" in the STATE lines. */
  (void)self; (void)args;
  int tid = scen_tid();
  for (int i = 0; i < nthreads; i++)
    if (threads[i].tid == tid) threads[i].passed = 1;
  Py_RETURN_NONE;
}

static int in_read(int tid) {
  char p[64], buf[64] = {0};
  snprintf(p, sizeof p, "/proc/self/task/%d/syscall", tid);
  FILE *f = fopen(p, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  (void)n;
  return strncmp(buf, "0 ", 2) == 0;   /* x86-64 read(2) is syscall 0 */
}

static PyObject *wait_blocked(PyObject *self, PyObject *args) {
  (void)self;
  int want;
  double timeout = 5.0;
  if (!PyArg_ParseTuple(args, "i|d", &want, &timeout)) return NULL;
  int ok = 0;
  Py_BEGIN_ALLOW_THREADS
  long long end = now_ms() + (long long)(timeout * 1000);
  while (now_ms() < end) {
    int n = 0;
    for (int i = 0; i < nthreads; i++)
      if (threads[i].tid && in_read(threads[i].tid)) n++;
    if (n >= want) { ok = 1; break; }
    sleep_ms(5);
  }
  Py_END_ALLOW_THREADS
  if (ok) say("MARK pfgtest: %d thread(s) blocked in read(2)", want);
  else say("pfgtest: timeout: fewer than %d thread(s) blocked in read(2)", want);
  return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
  {"late_ensure", late_ensure, METH_NOARGS,
   "Start a native thread that calls PyGILState_Ensure after finalization; returns its tid."},
  {"block_in_allow_threads", block_in_allow_threads, METH_VARARGS,
   "Block in read(2) inside Py_BEGIN_ALLOW_THREADS until the atexit handler wakes us."},
  {"wake_fd_at_exit", wake_fd_at_exit, METH_VARARGS, "Write a byte to fd from the atexit handler."},
  {"register_thread", register_thread, METH_VARARGS, "Report the calling thread at exit."},
  {"mark_passed", mark_passed, METH_NOARGS, "The calling thread ran again after finalization."},
  {"wait_blocked", wait_blocked, METH_VARARGS, "Wait until n registered threads are in read(2)."},
  {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pfgtest", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit_pfgtest(void) {
  static int once;
  if (!once) {
    once = 1;
    gate_init(&late_gate);
    gate_init(&block_pipe);
    /* libc atexit: runs after Py_FinalizeEx when main() returns into exit(). */
    atexit(at_exit);
  }
  return PyModule_Create(&moddef);
}
