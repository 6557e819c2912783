/* The embedder `pyfinguard doctor --libpython PATH` runs (tools/pyfinguard). It needs no
 * Python headers, so it works for any libpython 3.6+ given by path: it declares the few
 * functions it calls itself and gets their addresses with dlsym, from the process
 * (RTLD_DEFAULT) when it is built linked to the libpython -- the way most embedders
 * load it, and the guard's definitions come first there -- or from the handle of a
 * dlopen of PATH -- the way plugin hosts (Apache's mod_wsgi, PostgreSQL's plpython3u,
 * uWSGI) load it.
 *
 *   doctor_host linked|dlopen PATH describe
 *       print pyfinguard_describe() (or "no guard") once libpython is loaded
 *   doctor_host linked|dlopen PATH live [RELOADS]
 *       dlopen mode: first load and unload PATH RELOADS times (says whether it was really
 *       unmapped), then: initialize; a daemon thread blocks in os.read; a native thread
 *       that never used Python waits; finalize; then the daemon's pipe is written (its
 *       os.read returns into the finalized runtime) and the native thread calls
 *       PyGILState_Ensure. Each prints STATE; exits 7 when the process survives. */
#include <dirent.h>
#include <pthread.h>
#include "scen.h"

typedef void (*initex_t)(int);
typedef int (*fini_t)(void);
typedef int (*run_t)(const char *, void *);
typedef int (*ensure_t)(void);
typedef void *(*save_t)(void);
typedef void (*restore_t)(void *);
typedef void (*void_t)(void);

/* The native thread: started before finalization, its first PyGILState_Ensure after. */
static struct {
  ensure_t ensure;      /* dlsym'd: the host may not link libpython */
  gate_t wake, ready;
  int tid;
  volatile int passed;
} nat;

static void *native(void *arg) {
  (void)arg;
  nat.tid = scen_tid();
  gate_open(&nat.ready);
  gate_wait(&nat.wake);
  nat.ensure();
  nat.passed = 1;
  say("native: PASSED PyGILState_Ensure after finalization");
  return NULL;
}

/* The one thread of the process that is neither a nor b (the daemon), or 0. */
static int other_thread(int a, int b) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int found = 0;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.' && atoi(e->d_name) != a && atoi(e->d_name) != b) found = atoi(e->d_name);
  if (d) closedir(d);
  return found;
}

static void *sym(void *scope, const char *name) {
  void *p = dlsym(scope, name);
  if (!p) { say("doctor_host: %s: %s", name, dlerror()); exit(91); }
  return p;
}

static int libpython_mapped(const char *path) {
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  FILE *f = fopen("/proc/self/maps", "r");
  char line[1024];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, base)) found = 1;
  if (f) fclose(f);
  return found;
}

int main(int argc, char **argv) {
  if (argc < 4) { say("usage: doctor_host linked|dlopen PATH describe|live [RELOADS]"); return 2; }
  int linked = strcmp(argv[1], "linked") == 0;
  const char *path = argv[2];
  void *scope = RTLD_DEFAULT;
  if (!linked) {
    int reloads = argc > 4 ? atoi(argv[4]) : 0;
    for (int i = 0; i < reloads; ++i) {
      void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
      if (!h) { say("doctor_host: %s", dlerror()); return 92; }
      dlclose(h);
      say("RELOAD %d %s", i + 1, libpython_mapped(path) ? "stayed-mapped" : "unmapped");
    }
    scope = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!scope) { say("doctor_host: %s", dlerror()); return 92; }
  }
  if (strcmp(argv[3], "describe") == 0) {
    typedef int (*describe_t)(char *, unsigned long);
    describe_t d = (describe_t)dlsym(RTLD_DEFAULT, "pyfinguard_describe");
    static char text[65536];
    if (!d) { say("no guard"); return 3; }
    d(text, sizeof text);
    fputs(text, stdout);
    return 0;
  }
  initex_t initex = (initex_t)sym(scope, "Py_InitializeEx");
  fini_t fini = (fini_t)sym(scope, "Py_FinalizeEx");
  run_t run = (run_t)sym(scope, "PyRun_SimpleStringFlags");
  save_t save = (save_t)sym(scope, "PyEval_SaveThread");
  restore_t restore = (restore_t)sym(scope, "PyEval_RestoreThread");
  nat.ensure = (ensure_t)sym(scope, "PyGILState_Ensure");
  gate_init(&nat.wake);
  gate_init(&nat.ready);
  int daemon_pipe[2];
  if (pipe(daemon_pipe) != 0) return 90;
  initex(0);
  void_t init_threads = (void_t)dlsym(scope, "PyEval_InitThreads");  /* 3.6 */
  if (init_threads) init_threads();
  char code[512];
  snprintf(code, sizeof code,
           "import os, threading\n"
           "def reader():\n"
           "    os.read(%d, 1)\n"
           "    print('daemon: PASSED os.read after finalization', flush=True)\n"
           "t = threading.Thread(target=reader, daemon=True)\n"
           "t.start()\n",
           daemon_pipe[0]);
  run(code, NULL);
  void *mts = save();
  pthread_t n;
  pthread_create(&n, NULL, native, NULL);
  gate_wait(&nat.ready);
  sleep_ms(100);  /* the daemon is inside os.read by now */
  int daemon_tid = other_thread(scen_tid(), nat.tid);
  restore(mts);
  int rc = fini();
  say("MARK host: Py_FinalizeEx returned %d; waking the daemon and the native thread", rc);
  char c = 'x';
  if (write(daemon_pipe[1], &c, 1) != 1) return 90;
  gate_open(&nat.wake);
  say("STATE native %s", settle(nat.tid, &nat.passed, 1000));
  static volatile int daemon_passed;  /* it prints PASSED itself if it gets through */
  say("STATE daemon %s", daemon_tid ? settle(daemon_tid, &daemon_passed, 1000) : "unknown");
  say("host: exit 7");
  return 7;
}
