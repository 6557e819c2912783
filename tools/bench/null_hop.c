/* A do-nothing interposer: the floor any LD_PRELOAD wrapper of PyEval_SaveThread/
 * PyEval_RestoreThread pays (one extra call + an indirect jump to the next definition).
 * bench.py reports the guard's cost next to this hop so that the guard's own work (its
 * checks and stores) is separated from the price of interposition itself.
 *
 * The next definitions are resolved by a constructor, so the hot path is a load and a
 * tail jump, as in the guard. Never used outside the benchmark. */
#define _GNU_SOURCE
#include <dlfcn.h>

typedef void *(*save_fn)(void);
typedef void (*restore_fn)(void *);

static save_fn next_save;
static restore_fn next_restore;

__attribute__((constructor)) static void resolve(void) {
  next_save = (save_fn)dlsym(RTLD_NEXT, "PyEval_SaveThread");
  next_restore = (restore_fn)dlsym(RTLD_NEXT, "PyEval_RestoreThread");
}

void *PyEval_SaveThread(void) {
  /* Python not yet loaded when the constructor ran (dlopen'ed later): resolve now. */
  if (__builtin_expect(!next_save, 0)) resolve();
  return next_save();
}

void PyEval_RestoreThread(void *ts) {
  if (__builtin_expect(!next_restore, 0)) resolve();
  next_restore(ts);
}
