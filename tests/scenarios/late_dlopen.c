/* Scenario i: a host that loads libpython late with dlopen (as PostgreSQL's plpython3u or
 * uWSGI do) and calls the C API only through addresses from dlsym(handle, ...): no PLT of
 * its own reaches the guard's definitions, so the guard must take the runtime over inside
 * dlopen and patch its entries. Two late threads: a worker that saved its thread state
 * and restores it after Py_FinalizeEx, and a native thread whose first PyGILState_Ensure
 * comes after it. Without a guard the native thread crashes (SIGSEGV); with pyfinguard
 * both are parked and the host exits with its own status 7.
 *
 *   late_dlopen <path of libpython> */
#include <pthread.h>
#include "scen.h"

typedef void *(*save_t)(void);
typedef void (*restore_t)(void *);
typedef int (*ensure_t)(void);
typedef void (*initex_t)(int);
typedef int (*fini_t)(void);
typedef int (*run_t)(const char *);
typedef void (*void_t)(void);

static save_t save;
static restore_t restore;
static ensure_t ensure;
static gate_t wake_worker, wake_native, worker_ready, native_ready;
static int worker_tid, native_tid;
static volatile int worker_passed, native_passed;

static void *sym(void *h, const char *name) {
  void *p = dlsym(h, name);
  if (!p) { say("late_dlopen: %s: %s", name, dlerror()); exit(91); }
  return p;
}

static void *worker(void *arg) {
  (void)arg;
  worker_tid = scen_tid();
  ensure();
  void *ts = save();
  gate_open(&worker_ready);
  gate_wait(&wake_worker);
  say("worker: restoring its thread state after finalization");
  restore(ts);
  worker_passed = 1;
  say("worker: PASSED PyEval_RestoreThread after finalization");
  return NULL;
}

static void *native(void *arg) {
  (void)arg;
  native_tid = scen_tid();
  gate_open(&native_ready);
  gate_wait(&wake_native);
  say("native: first PyGILState_Ensure after finalization");
  ensure();
  native_passed = 1;
  say("native: PASSED PyGILState_Ensure after finalization");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) { say("usage: late_dlopen LIBPYTHON"); return 2; }
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) { say("late_dlopen: %s", dlerror()); return 92; }
  initex_t initex = (initex_t)sym(h, "Py_InitializeEx");
  fini_t fini = (fini_t)sym(h, "Py_FinalizeEx");
  run_t run = (run_t)sym(h, "PyRun_SimpleString");
  save = (save_t)sym(h, "PyEval_SaveThread");
  restore = (restore_t)sym(h, "PyEval_RestoreThread");
  ensure = (ensure_t)sym(h, "PyGILState_Ensure");
  gate_init(&wake_worker);
  gate_init(&wake_native);
  gate_init(&worker_ready);
  gate_init(&native_ready);

  initex(0);
  void_t init_threads = (void_t)dlsym(h, "PyEval_InitThreads");  /* needed on 3.6 */
  if (init_threads) init_threads();
  run("print('host: python ran', flush=True)");
  void *mts = save();
  pthread_t w, n;
  pthread_create(&w, NULL, worker, NULL);
  pthread_create(&n, NULL, native, NULL);
  gate_wait(&worker_ready);
  gate_wait(&native_ready);  /* its tid is known before anyone looks for it */
  restore(mts);
  say("main: finalizing");
  int rc = fini();
  say("MARK main: Py_FinalizeEx returned %d; waking both threads", rc);
  gate_open(&wake_worker);
  gate_open(&wake_native);
  say("STATE worker %s", settle(worker_tid, &worker_passed, 1000));
  say("STATE native %s", settle(native_tid, &native_passed, 1000));
  say("main: exit 7");
  return 7;
}
