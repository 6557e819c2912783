/* Scenario k: "images come and go". A host that is not linked to Python dlopens a module
 * that links libpython (DT_NEEDED), and dlcloses it again, PASSES times -- Apache httpd
 * does this at start-up (modules are loaded twice) and at each graceful restart, and the
 * dynamic linker maps libpython anew each time, often at another address. Then it loads
 * the module once more and runs a Python session through it (rm_session: initialize,
 * threads, finalize).
 *
 *   reload MODULE PASSES plain   passes only load and unload
 *   reload MODULE PASSES python  each pass also runs a Python session before its dlclose
 *   reload MODULE PASSES late    as python, and in the final session a native thread
 *                                calls PyGILState_Ensure after Py_FinalizeEx (parked)
 *   reload MODULE PASSES churn   every 10th pass runs Python; meanwhile one thread waits
 *                                on a condition variable in a loop (the guard's
 *                                in_python_text() on every wait) and another dlopens
 *                                and dlcloses an unrelated library (the guard's hooks
 *                                race with the main thread's)
 *
 * Exits with its own status 5 (7 in the late variant, whose thread must be parked; there,
 * under a guard, 94 when pyfinguard_describe() does not count every mapping). */
#include <dirent.h>
#include "scen.h"

#include <pthread.h>

typedef int (*session_t)(int, int);

static volatile int stop;

static void *waiter(void *arg) {
  (void)arg;
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t c = PTHREAD_COND_INITIALIZER;
  while (!stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_mutex_lock(&m);
    pthread_cond_timedwait(&c, &m, &ts);
    pthread_mutex_unlock(&m);
  }
  return NULL;
}

static void *other_loader(void *arg) {
  (void)arg;
  while (!stop) {
    void *h = dlopen("libz.so.1", RTLD_NOW | RTLD_LOCAL);
    if (h) dlclose(h);
  }
  return NULL;
}
typedef const char *(*wake_t)(void);

static void *load(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) { say("reload: %s", dlerror()); exit(92); }
  return h;
}

static void *sym(void *h, const char *name) {
  void *p = dlsym(h, name);
  if (!p) { say("reload: %s: %s", name, dlerror()); exit(91); }
  return p;
}

/* Threads of the process now. */
static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') ++n;
  if (d) closedir(d);
  return n;
}

/* Python's threading.Thread.join() returns once the thread's Python code is done, while
 * the OS thread may still be on its way out through libpython's own code: unloading
 * libpython then would pull that code from under it (a crash of the host's making, with
 * or without a guard). Wait until only the host's own threads are left. */
static void wait_for_threads(int n) {
  for (int i = 0; i < 2000 && thread_count() > n; ++i) sleep_ms(1);
}

/* Is an object whose name contains "libpython" mapped? */
static int libpython_mapped(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[1024];
  int found = 0;
  while (f && fgets(line, sizeof line, f))
    if (strstr(line, "libpython")) found = 1;
  if (f) fclose(f);
  return found;
}

int main(int argc, char **argv) {
  if (argc < 4) { say("usage: reload MODULE PASSES plain|python|late|churn"); return 2; }
  int passes = atoi(argv[2]);
  int churn = strcmp(argv[3], "churn") == 0;
  int run_python = strcmp(argv[3], "plain") != 0;
  int with_late = strcmp(argv[3], "late") == 0;
  pthread_t bg[2];
  if (churn) {
    pthread_create(&bg[0], NULL, waiter, NULL);
    pthread_create(&bg[1], NULL, other_loader, NULL);
  }
  int unmapped = 0;  /* passes after which libpython was really gone (3.6/3.7 stay mapped
                     * once Python ran: the dynamic linker marks them not deletable) */
  for (int i = 1; i <= passes; ++i) {
    void *h = load(argv[1]);
    if (run_python && (!churn || i % 10 == 0)) {
      ((session_t)sym(h, "rm_session"))(i, 0);
      wait_for_threads(churn ? 3 : 1);
    }
    if (dlclose(h) != 0) { say("reload: dlclose: %s", dlerror()); return 93; }
    int gone = !libpython_mapped();
    unmapped += gone;
    say("host: pass %d unloaded, libpython %s", i, gone ? "unmapped" : "still mapped");
  }
  if (churn) {
    stop = 1;
    pthread_join(bg[0], NULL);
    pthread_join(bg[1], NULL);
  }
  void *h = load(argv[1]);
  ((session_t)sym(h, "rm_session"))(passes + 1, with_late);
  if (with_late || churn) {
    /* Under a guard: it must have seen every mapping (pyfinguard_describe's "loads:"). */
    typedef int (*describe_t)(char *, unsigned long);
    describe_t d = (describe_t)dlsym(RTLD_DEFAULT, "pyfinguard_describe");
    if (d) {
      static char text[16384];
      d(text, sizeof text);
      char want[96];
      snprintf(want, sizeof want, "loads: %d runtime mapping%s taken over, %d unmapped again\n",
               unmapped + 1, unmapped ? "s" : "", unmapped);
      if (!strstr(text, want)) {
        say("host: the guard's description lacks \"%.*s\":\n%s", (int)strlen(want) - 1, want, text);
        return 94;
      }
    }
  }
  if (with_late) {
    say("MARK host: waking the late thread");
    say("STATE late %s", ((wake_t)sym(h, "rm_wake_late"))());
    say("host: exit 7");
    return 7;
  }
  say("host: exit 5");
  return 5;
}
