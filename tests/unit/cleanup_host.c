/* A C program (no C++ runtime of its own) that dlopen()s cleanup_lib and ends one of
 * its threads: see cleanup_lib.cc and cancel_cleanup.py. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fprintf(stderr, "%s\n", dlerror());
    return 2;
  }
  int (*run)(const char *) = (int (*)(const char *))dlsym(h, "cleanup_run");
  int r = run(argv[2]);
  printf("%s: lock %s\n", argv[2], r == 1 ? "released" : r == 0 ? "still held" : "?");
  fflush(stdout);
  return r == 1 ? 0 : 1;
}
