/* Native helpers for the Python-level stress program (stress_py.py), so that native
 * threads and C extensions race finalization inside an ordinary `python` process,
 * including Debian's static /usr/bin/python3.11 where nothing can be embedded.
 *
 *   ensurers(n, seed)          n native threads looping PyGILState_Ensure / work /
 *                              Release (with a Py_BEGIN_ALLOW_THREADS section) forever
 *   late(n, seed, window_us)   n native threads whose first PyGILState_Ensure happens at a
 *                              random time in [0, window_us) from now
 *   wake_later(fd, delay_us)   a native thread writes one byte to fd after delay_us, with
 *                              no Python API (wakes os.read at a random stage)
 *   allow_threads(us)          Py_BEGIN_ALLOW_THREADS; sleep or spin us; Py_END_ALLOW_THREADS
 *   parked_count()             pyfinguard_parked_count(), -1 without the guard
 *   late_at_exit()             a native thread whose first PyGILState_Ensure is made when
 *                              this module's atexit handler runs (after finalization)
 *   native_churn(n, width)     n native threads (width at a time) that each Ensure, drop and
 *                              retake the GIL, Release and exit (tests/stress/churn.py)
 *
 * At exit (libc atexit, i.e. after Py_FinalizeEx) it prints "PARKED <n> pid <pid>" once
 * the late threads' windows have passed, so the harness sees how many threads the guard parked. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "scen.h"  /* the splitmix64 mix()/rnd(), native_work(), now_us() (tools/pfgpy/c) */

static long long last_deadline_us;

static int start(void *(*fn)(void *), void *arg) {
  pthread_t t;
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &a, fn, arg);
  pthread_attr_destroy(&a);
  return rc;
}

static PyObject *make_int(uint64_t *s) { return PyLong_FromLong((long)rnd(s, 1000)); }
static void *ensurer_main(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg;
  for (;;) ensurer_round(&s, make_int);
  return NULL;
}

struct late_arg { uint64_t seed; long long at_us; };
static void *late_main(void *arg) {
  struct late_arg *a = (struct late_arg *)arg;
  sleep_until_us(a->at_us);
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *o = PyLong_FromLong(1);
  Py_XDECREF(o);
  PyGILState_Release(g);
  return NULL;
}

struct wake_arg { int fd; long long at_us; };
static void *wake_main(void *arg) {
  struct wake_arg *a = (struct wake_arg *)arg;
  sleep_until_us(a->at_us);
  char c = 'x';
  ssize_t n = write(a->fd, &c, 1);
  (void)n;
  return NULL;
}

static PyObject *ensurers(PyObject *self, PyObject *args) {
  int n;
  unsigned long long seed;
  (void)self;
  if (!PyArg_ParseTuple(args, "iK", &n, &seed)) return NULL;
  uint64_t s = seed;
  for (int i = 0; i < n; i++)
    if (start(ensurer_main, (void *)(uintptr_t)mix(&s)) != 0)
      return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  Py_RETURN_NONE;
}

static PyObject *late(PyObject *self, PyObject *args) {
  int n;
  unsigned long long seed;
  long window;
  (void)self;
  if (!PyArg_ParseTuple(args, "iKl", &n, &seed, &window)) return NULL;
  uint64_t s = seed;
  for (int i = 0; i < n; i++) {
    struct late_arg *a = (struct late_arg *)malloc(sizeof *a);  /* lives as long as the thread */
    a->seed = mix(&s);
    a->at_us = now_us() + rnd(&s, (unsigned)window);
    if (a->at_us > last_deadline_us) last_deadline_us = a->at_us;
    if (start(late_main, a) != 0) return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  }
  Py_RETURN_NONE;
}

static PyObject *wake_later(PyObject *self, PyObject *args) {
  int fd;
  long delay;
  (void)self;
  if (!PyArg_ParseTuple(args, "il", &fd, &delay)) return NULL;
  struct wake_arg *a = (struct wake_arg *)malloc(sizeof *a);
  a->fd = fd;
  a->at_us = now_us() + delay;
  if (a->at_us > last_deadline_us) last_deadline_us = a->at_us;
  if (start(wake_main, a) != 0) return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  Py_RETURN_NONE;
}

static PyObject *allow_threads(PyObject *self, PyObject *args) {
  long us;
  (void)self;
  if (!PyArg_ParseTuple(args, "l", &us)) return NULL;
  Py_BEGIN_ALLOW_THREADS
  if (us & 1) {
    spin_us(us);
  } else {
    sleep_us(us);
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

static void *churn_main(void *arg) {
  (void)arg;
  PyGILState_STATE g = PyGILState_Ensure();
  Py_BEGIN_ALLOW_THREADS
  Py_END_ALLOW_THREADS
  PyGILState_Release(g);
  return NULL;
}

/* n native threads, `width` at a time, each: Ensure, release and reacquire the GIL,
 * Release, exit. Called with the GIL held; releases it while joining. */
static PyObject *native_churn(PyObject *self, PyObject *args) {
  long n;
  int width;
  (void)self;
  if (!PyArg_ParseTuple(args, "li", &n, &width)) return NULL;
  if (width < 1 || width > 256) width = 256;
  pthread_t t[256];
  int failed = 0;
  Py_BEGIN_ALLOW_THREADS
  for (long done = 0; done < n && !failed;) {
    int k = 0;
    for (; k < width && done + k < n; k++)
      if (pthread_create(&t[k], NULL, churn_main, NULL) != 0) { failed = 1; break; }
    for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
    done += k;
  }
  Py_END_ALLOW_THREADS
  if (failed) return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  Py_RETURN_NONE;
}

/* late_at_exit(): a native thread whose first PyGILState_Ensure happens when the libc
 * atexit handler (after Py_FinalizeEx) opens its gate. */
static int exit_gate[2] = {-1, -1};
static int n_at_exit;
static void *late_exit_main(void *arg) {
  (void)arg;
  char c;
  while (read(exit_gate[0], &c, 1) < 0 && errno == EINTR) {}
  PyGILState_STATE g = PyGILState_Ensure();
  PyGILState_Release(g);
  return NULL;
}
static PyObject *late_at_exit(PyObject *self, PyObject *args) {
  (void)self; (void)args;
  if (exit_gate[0] < 0 && pipe(exit_gate) != 0) return PyErr_SetFromErrno(PyExc_OSError);
  if (start(late_exit_main, NULL) != 0) return PyErr_Format(PyExc_RuntimeError, "pthread_create failed");
  n_at_exit++;
  Py_RETURN_NONE;
}

static PyObject *parked_count(PyObject *self, PyObject *args) {
  (void)self; (void)args;
  return PyLong_FromLong(guard_parked_count());
}

static void at_exit(void) {
  /* Let every late thread and waker fire (after finalization) before reporting. */
  long long t = last_deadline_us + 5000 - now_us();
  for (int i = 0; i < n_at_exit; i++) {
    char c = 'x';
    ssize_t w = write(exit_gate[1], &c, 1);
    (void)w;
  }
  if (n_at_exit && t < 300000) t = 300000;  /* time for them to reach the GIL and park */
  if (t > 0) sleep_us((long)t);
  char buf[64];
  int n = snprintf(buf, sizeof buf, "PARKED %d pid %d\n", guard_parked_count(), (int)getpid());
  ssize_t w = write(1, buf, (size_t)n);
  (void)w;
}

static PyMethodDef methods[] = {
  {"ensurers", ensurers, METH_VARARGS, NULL},
  {"late", late, METH_VARARGS, NULL},
  {"wake_later", wake_later, METH_VARARGS, NULL},
  {"allow_threads", allow_threads, METH_VARARGS, NULL},
  {"parked_count", parked_count, METH_NOARGS, NULL},
  {"native_churn", native_churn, METH_VARARGS, NULL},
  {"late_at_exit", late_at_exit, METH_NOARGS, NULL},
  {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "pfgstress", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

/* A forked child has none of its parent's threads: its late_at_exit threads are its own,
 * on a gate of its own (the parent's pipe is shared and must not be written). */
static void atfork_child(void) {
  n_at_exit = 0;
  exit_gate[0] = exit_gate[1] = -1;
  last_deadline_us = 0;
}

PyMODINIT_FUNC PyInit_pfgstress(void) {
  atexit(at_exit);
  pthread_atfork(NULL, NULL, atfork_child);
  return PyModule_Create(&moddef);
}
