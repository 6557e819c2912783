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
#include <stdarg.h>
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

#ifdef __cplusplus
}
#endif
#endif
