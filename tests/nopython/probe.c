/* The probe patterns of programs that ask the dynamic linker whether they run inside
 * Python (tests/nopython/README.md): run without and with the guard, the output must be
 * the same.
 *
 *   probe                  dlsym(RTLD_DEFAULT) and dlsym(RTLD_NEXT) of every C API name
 *                          the guard defines, with dlerror()'s text (folly's
 *                          SingletonVault::defaultVaultType() probes Py_Main this way)
 *   call                   probe-and-call: call Py_Initialize and Py_FinalizeEx if found,
 *                          else take the no-Python branch (Python-proxy libraries)
 *   load LIBPYTHON         probe, then load libpython itself (RTLD_GLOBAL, as a proxy
 *                          library does when the probe fails), probe again, and use it
 *   late LIBPYTHON         the same load, then a native thread's first PyGILState_Ensure
 *                          after Py_FinalizeEx: prints "parked" when the guard took the
 *                          late-loaded runtime over (only meaningful with the guard; the
 *                          runner checks it; without the guard the thread would crash)
 *   guard                  "guard: yes" when pyfinguard is in the process (the runner's
 *                          check that its preload took effect)
 *
 * Only whether a symbol was found is printed, never its address: with a runtime loaded,
 * the guard's definition is found where libpython's is without it (docs/design.md,
 * "Invisible where Python is absent"). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const names[] = {
    "PyEval_SaveThread", "PyEval_RestoreThread", "PyEval_AcquireThread", "PyEval_AcquireLock",
    "PyGILState_Ensure", "PyGILState_Release", "Py_FinalizeEx", "Py_Finalize", "Py_Exit",
    "Py_Initialize", "Py_InitializeEx", "Py_InitializeFromConfig", "Py_Main", "Py_BytesMain",
    "_Py_UnixMain", "PyThreadState_Clear", "PyInterpreterState_Clear", "PyThreadState_New",
    "PyThreadState_Delete", "Py_EndInterpreter", NULL};

static void probe(const char *when, int with_error) {
  for (int i = 0; names[i]; ++i) {
    void *scopes[] = {RTLD_DEFAULT, RTLD_NEXT};
    for (int s = 0; s < 2; ++s) {
      dlerror();
      void *p = dlsym(scopes[s], names[i]);
      const char *e = dlerror();
      printf("%s %s %s: %s%s%s\n", when, s ? "RTLD_NEXT" : "RTLD_DEFAULT", names[i], p ? "found" : "null",
             with_error ? ", dlerror " : "", with_error ? (e ? e : "(none)") : "");
    }
  }
}

typedef void (*void_fn)(void);
typedef int (*int_fn)(void);
typedef int (*run_fn)(const char *);

static int use_python(void) {
  void (*initex)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "Py_InitializeEx");
  run_fn run = (run_fn)dlsym(RTLD_DEFAULT, "PyRun_SimpleString");
  int_fn fin = (int_fn)dlsym(RTLD_DEFAULT, "Py_FinalizeEx");
  if (!initex || !run || !fin) {
    printf("libpython lacks the C API\n");
    return 1;
  }
  initex(0);
  fflush(stdout);
  run("import sys; print('python', sys.version_info[0]); sys.stdout.flush()");
  printf("finalize %d\n", fin());
  return 0;
}

static struct {
  int_fn ensure;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int go;
} late = {NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};

static void *late_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&late.mu);
  while (!late.go) pthread_cond_wait(&late.cv, &late.mu);
  pthread_mutex_unlock(&late.mu);
  late.ensure();  /* after Py_FinalizeEx: the guard parks this thread */
  printf("late ensure returned\n");
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const char *mode = argc > 1 ? argv[1] : "probe";
  if (strcmp(mode, "guard") == 0) {
    printf("guard: %s\n", dlsym(RTLD_DEFAULT, "pyfinguard_version") ? "yes" : "no");
    return 0;
  }
  if (strcmp(mode, "probe") == 0) {
    probe("start", 1);
    return 0;
  }
  if (strcmp(mode, "call") == 0) {
    void_fn init = (void_fn)dlsym(RTLD_DEFAULT, "Py_Initialize");
    int_fn fin = (int_fn)dlsym(RTLD_DEFAULT, "Py_FinalizeEx");
    if (!init || !fin) {
      printf("no Python in this process: the native branch\n");
      return 0;
    }
    init();
    printf("Python initialized, finalize %d\n", fin());
    return 0;
  }
  if ((strcmp(mode, "load") == 0 || strcmp(mode, "late") == 0) && argc > 2) {
    probe("before", 1);
    void *h = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      printf("dlopen failed: %s\n", dlerror());
      return 2;
    }
    probe("after", 0);
    if (strcmp(mode, "load") == 0) return use_python();
    late.ensure = (int_fn)dlsym(RTLD_DEFAULT, "PyGILState_Ensure");
    pthread_t t;
    pthread_create(&t, NULL, late_thread, NULL);
    if (use_python() != 0) return 1;
    pthread_mutex_lock(&late.mu);
    late.go = 1;
    pthread_cond_signal(&late.cv);
    pthread_mutex_unlock(&late.mu);
    unsigned (*parked)(void) = (unsigned (*)(void))dlsym(RTLD_DEFAULT, "pyfinguard_parked_count");
    for (int i = 0; i < 500 && !(parked && parked() > 0); ++i) usleep(10000);
    printf("%s\n", parked && parked() > 0 ? "parked" : "not parked");
    fflush(stdout);
    _exit(0);  /* the parked thread stays parked; nothing more to run */
  }
  fprintf(stderr, "usage: probe [probe | call | guard | load LIBPYTHON | late LIBPYTHON]\n");
  return 2;
}
