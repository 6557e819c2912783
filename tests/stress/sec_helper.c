/* Helper for tests/stress/security.py. Linked with libpyfinguard.so as a DT_NEEDED entry
 * placed before libpython: a secure-execution process ignores LD_PRELOAD paths, but a
 * library a setuid program links still loads, so this is how the guard's own
 * secure-execution behaviour can be observed.
 *
 * Prints "AT_SECURE <0|1>", runs Python, finalizes it, then a native thread makes its first
 * PyGILState_Ensure (parked by the guard), and prints "PARKED <n>"; exit status 7. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <time.h>
#include <unistd.h>

static int wake[2];
static void *late(void *arg) {
  (void)arg;
  char c;
  while (read(wake[0], &c, 1) < 0 && errno == EINTR) {}
  PyGILState_Ensure();
  return NULL;
}

int main(void) {
  printf("AT_SECURE %lu uid %d euid %d\n", getauxval(AT_SECURE), (int)getuid(), (int)geteuid());
  fflush(stdout);
  if (pipe(wake) != 0) return 90;
  Py_InitializeEx(0);
  pthread_t t;
  pthread_create(&t, NULL, late, NULL);
  PyRun_SimpleString("x = sum(range(1000))");
  Py_FinalizeEx();
  char c = 'x';
  if (write(wake[1], &c, 1) != 1) return 91;
  struct timespec ts = {0, 300000000};
  nanosleep(&ts, NULL);
  unsigned (*f)(void) = (unsigned (*)(void))dlsym(RTLD_DEFAULT, "pyfinguard_parked_count");
  printf("PARKED %d\n", f ? (int)f() : -1);
  fflush(stdout);
  return 7;
}
