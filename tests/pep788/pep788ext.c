/* A C extension whose native thread uses PEP 788 through <pyfinguard/pep788.h>, run by
 * the python executable itself (pep788.py, scripts in EXT_SCRIPTS there).
 *
 *   hold(ms, callback)  a native thread takes a guard from a view now, sleeps ms, then
 *                       enters Python, calls callback() and closes the guard: an exit
 *                       that begins meanwhile waits for it (callback output is seen)
 *   poll(callback)      a native thread calls callback() every 2 ms through
 *                       EnsureFromView until it returns NULL (the interpreter is
 *                       finalizing), then prints EXT backed out
 */
#include <Python.h>
#include <pyfinguard/pep788.h>

#include <pthread.h>
#include <stdio.h>
#include <time.h>

static PyfgInterpreterView *g_view;
static PyObject *g_cb;
static int g_ms;

static void msleep(int ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static void call_cb(void) {
  PyObject *r = PyObject_CallObject(g_cb, NULL);
  if (!r) PyErr_Print();
  Py_XDECREF(r);
}

static void *holder(void *arg) {
  PyfgInterpreterGuard *g = (PyfgInterpreterGuard *)arg;
  msleep(g_ms);
  PyfgThreadStateToken *t = PyfgThreadState_Ensure(g);
  if (t) {
    call_cb();
    PyfgThreadState_Release(t);
  }
  PyfgInterpreterGuard_Close(g);
  return NULL;
}

static void *poller(void *arg) {
  (void)arg;
  for (;;) {
    PyfgThreadStateToken *t = PyfgThreadState_EnsureFromView(g_view);
    if (!t) break;
    call_cb();
    PyfgThreadState_Release(t);
    msleep(2);
  }
  printf("EXT backed out\n");
  fflush(stdout);
  return NULL;
}

static PyObject *start(PyObject *args, void *(*fn)(void *), int with_guard) {
  pthread_t th;
  void *arg = NULL;
  if (!PyArg_ParseTuple(args, "iO", &g_ms, &g_cb)) return NULL;
  Py_INCREF(g_cb);  /* kept for the life of the process: the thread may outlive the module */
  g_view = PyfgInterpreterView_FromCurrent();
  if (!g_view) return PyErr_Format(PyExc_RuntimeError, "no view");
  if (with_guard && !(arg = PyfgInterpreterGuard_FromView(g_view)))
    return PyErr_Format(PyExc_RuntimeError, "no guard");
  pthread_create(&th, NULL, fn, arg);
  pthread_detach(th);
  Py_RETURN_NONE;
}

static PyObject *hold(PyObject *self, PyObject *args) { (void)self; return start(args, holder, 1); }
static PyObject *poll(PyObject *self, PyObject *args) { (void)self; return start(args, poller, 0); }
static PyObject *backend(PyObject *self, PyObject *args) {
  (void)self; (void)args;
  return PyLong_FromLong(PyfgPEP788_Backend());
}

static PyMethodDef methods[] = {
  {"hold", hold, METH_VARARGS, NULL},
  {"poll", poll, METH_VARARGS, NULL},
  {"backend", backend, METH_NOARGS, NULL},
  {NULL, NULL, 0, NULL},
};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "pep788ext", NULL, -1, methods,
                                 NULL, NULL, NULL, NULL};
PyMODINIT_FUNC PyInit_pep788ext(void) { return PyModule_Create(&mod); }
