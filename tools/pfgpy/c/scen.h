/* Helpers shared by the scenario programs (tests/scenarios), the programs the launcher
 * builds (tools/pfgpy/c) and tests/stress.
 *
 * Every scenario reports what became of its threads on stdout with lines
 *     STATE <thread-name> <passed|gone|parked|blocked>
 * where "passed" means the thread got past the Python API call it made after finalization
 * (a use of a dead runtime that happened not to crash), "gone" that the thread no longer
 * exists (CPython's pthread_exit), "parked" that pyfinguard reports it parked, "blocked" that
 * it exists but the guard (if any) does not know it (e.g. waiting forever in take_gil).
 * "MARK <text>" lines tell tests/matrix.py the program reached a blocking point, so that a
 * timeout after the mark is a real hang and not a slow machine. */
#ifndef PFG_SCEN_H
#define PFG_SCEN_H

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline int scen_tid(void) { return (int)syscall(SYS_gettid); }

/* One write(2) per line: lines from several threads never interleave, and nothing sits in
 * a stdio buffer when a thread crashes the process. */
static inline void say(const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(1, buf, (size_t)n);
  (void)w;
}

static inline void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static inline long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Microsecond clock and waits for the stress programs (tests/stress). */
static inline long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
static inline void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}
/* Sleep until now_us() reaches at_us (no sleep when it already has). */
static inline void sleep_until_us(long long at_us) {
  long long t = at_us - now_us();
  if (t > 0) sleep_us((long)t);
}
static inline void spin_us(long us) {
  long long end = now_us() + us;
  while (now_us() < end) {}
}

/* splitmix64: the stress programs' random numbers, one stream per thread from the seed. */
static inline uint64_t mix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
/* A number in [0, n) drawn from stream s (0 when n is 0). */
static inline unsigned rnd(uint64_t *s, unsigned n) { return n ? (unsigned)(mix(s) % n) : 0; }

/* Native work of a random kind and length (0-500 us): spinning keeps the thread on a
 * CPU, sleeping and yielding let the scheduler interleave differently. */
static inline void native_work(uint64_t *s) {
  switch (rnd(s, 4)) {
    case 0: spin_us(rnd(s, 200)); break;
    case 1: sleep_us(rnd(s, 500)); break;
    case 2: sched_yield(); break;
    default: break;
  }
}

static inline int thread_present(int tid) {
  char p[64];
  snprintf(p, sizeof p, "/proc/self/task/%d", tid);
  return access(p, F_OK) == 0;
}

/* 1 parked, 0 not parked, -1 no guard in this process. */
static inline int guard_parked(int tid) {
  typedef int (*fn_t)(int);
  fn_t f = (fn_t)dlsym(RTLD_DEFAULT, "pyfinguard_is_parked");
  return f ? f(tid) : -1;
}

/* pyfinguard_parked_count(), -1 when no guard is in this process. */
static inline int guard_parked_count(void) {
  typedef unsigned (*fn_t)(void);
  fn_t f = (fn_t)dlsym(RTLD_DEFAULT, "pyfinguard_parked_count");
  return f ? (int)f() : -1;
}

static inline const char *thread_state(int tid, int passed) {
  if (passed) return "passed";
  if (!thread_present(tid)) return "gone";
  if (guard_parked(tid) == 1) return "parked";
  return "blocked";
}

/* Wait up to ms for a thread to settle (gone, parked or passed); returns its state. */
static inline const char *settle(int tid, volatile int *passed, int ms) {
  long long end = now_ms() + ms;
  for (;;) {
    const char *s = thread_state(tid, *passed);
    if (strcmp(s, "blocked") != 0 || now_ms() >= end) return s;
    sleep_ms(10);
  }
}

/* The end of a scenario whose main thread joins its thread t (`what` in the log lines,
 * `name` in the STATE line): the MARK, the join, the thread's state (tid and passed are
 * read after the join), "main: exit 7". Returns 7, the scenario's own exit status. */
static inline int join_report_exit(pthread_t t, const char *what, const char *name,
                                   const int *tid, volatile int *passed) {
  say("MARK main: joining %s", what);
  pthread_join(t, NULL);
  say("main: joined %s", what);
  /* The join returned: the thread ended, unless the guard completed the join of a parked
   * thread. Not /proc: qemu-user lets a joined thread linger in /proc/self/task. */
  say("STATE %s %s", name, *passed ? "passed" : guard_parked(*tid) == 1 ? "parked" : "gone");
  say("main: exit 7");
  return 7;
}

/* A one-shot gate built on a pipe: waiting blocks in read(2), a real blocking system call. */
typedef struct { int fd[2]; } gate_t;
static inline void gate_init(gate_t *g) {
  if (pipe(g->fd) != 0) { perror("pipe"); exit(90); }
}
static inline void gate_open(gate_t *g) {
  char c = 'x';
  while (write(g->fd[1], &c, 1) < 0 && errno == EINTR) {}
}
static inline void gate_wait(gate_t *g) {
  char c;
  while (read(g->fd[0], &c, 1) < 0 && errno == EINTR) {}
}

/* Python-side helpers, for the programs that include Python.h (before this header) and
 * link libpython; the programs that dlopen it (late_dlopen.c, doctor_host.c) do not see them. */
#ifdef Py_PYTHON_H
/* Py_InitializeEx(0), plus PyEval_InitThreads on 3.6, which creates the GIL lazily. */
static inline void scen_py_init(void) {
  Py_InitializeEx(0);
#if PY_VERSION_HEX < 0x03070000
  PyEval_InitThreads();
#endif
}

/* Main thread: release the GIL until gate g opens (a worker can take it meanwhile). */
static inline void wait_without_gil(gate_t *g) {
  PyThreadState *mts = PyEval_SaveThread();
  gate_wait(g);
  PyEval_RestoreThread(mts);
}

/* Worker: take the GIL once (which gives the thread its thread state), save that thread
 * state, open ready and block until wake opens; returns the saved thread state. */
static inline PyThreadState *save_and_block(gate_t *ready, gate_t *wake) {
  PyGILState_Ensure();
  PyThreadState *ts = PyEval_SaveThread();
  gate_open(ready);
  gate_wait(wake);
  return ts;
}

/* One round of a stress program's "ensurer" thread: PyGILState_Ensure, a little C-API work
 * (the object make() returns, dropped), one time in four a section that drops the GIL inside
 * Ensure/Release (as many C-API calls do), PyGILState_Release, then native work. */
static inline void ensurer_round(uint64_t *s, PyObject *(*make)(uint64_t *)) {
  PyGILState_STATE g = PyGILState_Ensure();
  PyObject *o = make(s);
  Py_XDECREF(o);
  if (rnd(s, 4) == 0) {
    Py_BEGIN_ALLOW_THREADS
    native_work(s);
    Py_END_ALLOW_THREADS
  }
  PyGILState_Release(g);
  native_work(s);
}
#endif

#ifdef __cplusplus
}
#endif
#endif
