/* pair: cost of one PyEval_SaveThread/PyEval_RestoreThread pair in an embedding program.
 *
 *   pair N [REPS] [MODE]
 *
 * Initializes Python, runs a warm-up of N/10+1 pairs, then REPS timed loops of N pairs each
 * and prints one line per loop and a summary:
 *   rep <i> <wall ns/pair> <cpu ns/pair>
 *   RESULT min=<ns/pair> median=<ns/pair> cpumin=<ns/pair> cpumedian=<ns/pair> n=.. reps=.. mode=..
 * Wall time is clock_gettime(CLOCK_MONOTONIC); cpu time is CLOCK_THREAD_CPUTIME_ID, which
 * does not advance while the thread waits for a CPU, so on a loaded machine it is the
 * steadier of the two (preemption inflates wall time by whole time slices).
 * tools/bench/bench.py parses RESULT. Under callgrind it is run with REPS=1 for two values
 * of N, so the difference of the instruction totals divided by the difference of the pair
 * counts (N + N/10 + 1 each) is the cost of one pair: start-up and finalization cancel.
 *
 * MODE selects which definition of the two functions is called:
 *   plt            (default) the ordinary call through this program's PLT: with the guard
 *                  preloaded that binds to the guard's exported wrapper (interposition).
 *   direct:<LIB>   the definitions inside the already-loaded <LIB> itself (dlsym on its
 *                  handle), i.e. the path CPython's own internal calls take. On a library
 *                  built with -fno-semantic-interposition (Debian's libpython3.11) the guard
 *                  entry-patches those definitions, so this measures entry jump + wrapper +
 *                  trampoline.
 *   ab:<LIB>       both in one process, for a library the preloaded wrapper interposes
 *                  (not patches): each of REPS rounds times N pairs through <LIB>'s own
 *                  definitions ("raw") and N through the PLT-bound ones ("wrapped"), in
 *                  alternating order, and prints
 *                    ab <i> <raw cpu ns/pair> <wrapped cpu ns/pair>
 *                    ABRESULT raw=<median> wrapped=<median> ratio=<median of per-round ratios>
 *                  Same process, same GIL, same memory layout: what differs is only the
 *                  wrapper, so the ratio is far steadier than one taken across processes.
 *
 * With PAIR_DESCRIBE=1 in the environment it also prints the guard's coverage lines for the
 * two functions (pyfinguard_describe, when a guard is loaded), so the benchmark can say
 * which path it measured.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef PyThreadState *(*save_fn)(void);
typedef void (*restore_fn)(PyThreadState *);

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double now_ns(clockid_t clk) {
  struct timespec t;
  clock_gettime(clk, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double median_of(double *r, int reps) {
  qsort(r, (size_t)reps, sizeof *r, cmp_double);
  return reps % 2 ? r[reps / 2] : (r[reps / 2 - 1] + r[reps / 2]) / 2;
}

/* noinline: one place holding the loop, so callgrind_annotate shows it by name. The calls
 * are through pointers the compiler cannot see through, and the empty asm statements with
 * a memory clobber keep every iteration (and its order) even if it could. */
__attribute__((noinline)) static void pairs(long n, save_fn save, restore_fn restore) {
  for (long i = 0; i < n; i++) {
    PyThreadState *ts = save();
    __asm__ __volatile__("" : "+r"(ts) : : "memory");
    restore(ts);
    __asm__ __volatile__("" : : : "memory");
  }
}

static void describe(void) {
  typedef int (*describe_fn)(char *, unsigned long);
  describe_fn d = (describe_fn)dlsym(RTLD_DEFAULT, "pyfinguard_describe");
  if (!d) {
    printf("describe: no guard loaded\n");
    return;
  }
  static char buf[16384];
  d(buf, sizeof buf);
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
    if (strncmp(line, "cover PyEval_SaveThread ", 24) == 0 ||
        strncmp(line, "cover PyEval_RestoreThread ", 27) == 0 || strncmp(line, "image: ", 7) == 0)
      printf("describe: %s\n", line);
}

/* The definitions inside the already-loaded lib itself (dlsym on its handle). 0 on
 * success, else 2 with a message. */
static int own_definitions(const char *lib, save_fn *save, restore_fn *restore) {
  void *h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD);
  if (!h) {
    fprintf(stderr, "pair: %s is not loaded: %s\n", lib, dlerror());
    return 2;
  }
  *save = (save_fn)dlsym(h, "PyEval_SaveThread");
  *restore = (restore_fn)dlsym(h, "PyEval_RestoreThread");
  if (!*save || !*restore) {
    fprintf(stderr, "pair: dlsym in %s failed\n", lib);
    return 2;
  }
  return 0;
}

/* mode ab:<LIB> (see the top of this file). */
static int ab_rounds(long n, int reps, const char *lib) {
  save_fn s;
  restore_fn r;
  if (own_definitions(lib, &s, &r)) return 2;
  save_fn volatile raw_save = s;
  restore_fn volatile raw_restore = r;
  save_fn volatile w_save = PyEval_SaveThread;
  restore_fn volatile w_restore = PyEval_RestoreThread;
  pairs(n / 10 + 1, raw_save, raw_restore);
  pairs(n / 10 + 1, w_save, w_restore);
  double *a = calloc((size_t)reps, sizeof *a), *b = calloc((size_t)reps, sizeof *b),
         *q = calloc((size_t)reps, sizeof *q);
  if (!a || !b || !q) return 2;
  for (int i = 0; i < reps; i++) {
    for (int k = 0; k < 2; k++) {
      int wrapped = (i + k) % 2; /* alternate which goes first */
      double c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
      if (wrapped) pairs(n, w_save, w_restore);
      else pairs(n, raw_save, raw_restore);
      double dt = (now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
      if (wrapped) b[i] = dt;
      else a[i] = dt;
    }
    q[i] = b[i] / a[i];
    printf("ab %d %.3f %.3f\n", i, a[i], b[i]);
  }
  printf("ABRESULT raw=%.3f wrapped=%.3f ratio=%.4f n=%ld reps=%d\n", median_of(a, reps),
         median_of(b, reps), median_of(q, reps), n, reps);
  free(a);
  free(b);
  free(q);
  fflush(stdout);
  return Py_FinalizeEx() < 0 ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s N [REPS] [plt|direct:LIB|ab:LIB]\n", argv[0]);
    return 2;
  }
  long n = atol(argv[1]);
  int reps = argc > 2 ? atoi(argv[2]) : 1;
  const char *mode = argc > 3 ? argv[3] : "plt";
  if (n <= 0 || reps <= 0 || reps > 1000) {
    fprintf(stderr, "pair: bad N or REPS\n");
    return 2;
  }

  Py_InitializeEx(0);
#if PY_VERSION_HEX < 0x03070000
  /* Before 3.7 the GIL exists only once threads were initialized; without it Save/Restore
   * skip the GIL entirely and the pair would not be comparable with later versions. */
  PyEval_InitThreads();
#endif
  if (getenv("PAIR_DESCRIBE")) describe();

  /* volatile: the pointers are read at run time, never folded into direct calls. */
  save_fn volatile save = PyEval_SaveThread;
  restore_fn volatile restore = PyEval_RestoreThread;
  if (strncmp(mode, "direct:", 7) == 0) {
    save_fn s;
    restore_fn r;
    if (own_definitions(mode + 7, &s, &r)) return 2;
    save = s;
    restore = r;
  } else if (strcmp(mode, "plt") != 0 && strncmp(mode, "ab:", 3) != 0) {
    fprintf(stderr, "pair: unknown mode %s\n", mode);
    return 2;
  }

  if (strncmp(mode, "ab:", 3) == 0) return ab_rounds(n, reps, mode + 3);

  pairs(n / 10 + 1, save, restore);
  double *r = calloc((size_t)reps, sizeof *r), *c = calloc((size_t)reps, sizeof *c);
  if (!r || !c) return 2;
  for (int i = 0; i < reps; i++) {
    double t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    pairs(n, save, restore);
    c[i] = (now_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)n;
    r[i] = (now_ns(CLOCK_MONOTONIC) - t0) / (double)n;
    printf("rep %d %.3f %.3f\n", i, r[i], c[i]);
  }
  double rmed = median_of(r, reps), cmed = median_of(c, reps);
  printf("RESULT min=%.3f median=%.3f cpumin=%.3f cpumedian=%.3f n=%ld reps=%d mode=%s\n", r[0],
         rmed, c[0], cmed, n, reps, mode);
  free(r);
  free(c);
  fflush(stdout);
  return Py_FinalizeEx() < 0 ? 1 : 0;
}
