/* dlopen's search, as the caller sees it (tests/nopython/dlsearch.py builds this file as
 * an executable and as a library, each with one DT_RPATH or DT_RUNPATH, and runs every
 * case without and with the guard: the output must be the same).
 *
 *   dlsearch [lib] MODE NAME...   MODE: now | deepbind | dlmopen | soname
 * "lib": the dlopen call is made by the library build of this file (libdlsearch.so,
 * found through the executable's own DT_RUNPATH), so the library's path list applies.
 * For each NAME prints what dlopen answered: the path of the object (its link_map's
 * l_name) or dlerror()'s text. "soname": NAME[0] is opened by path first, then NAME[1]
 * by its soname -- an already-loaded object must be found by name, not searched. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <string.h>

#ifdef DLSEARCH_LIB
#define ENTRY dlsearch_lib
#else
#define ENTRY dlsearch_exe
#endif

int ENTRY(int argc, char **argv);

// A non-leaf function with a 16-byte frame: on aarch64 its epilogue is
// `ldp x29, x30, [sp], #16; ret`, or with -mbranch-protection=standard the same with
// autiasp before the ret -- the return gadget the guard looks for in the caller's object
// (shim/dlopen/aarch64.cc), covered by an FDE, so each build has one of each kind to offer.
// (No arguments or locals, so that even at -O0 the frame is the 16-byte frame record.)
__attribute__((noinline)) static void flush_out(void) { fflush(stdout); }

int ENTRY(int argc, char **argv) {
  const char *mode = argv[0];
  for (int i = 1; i < argc; ++i) {
    void *h;
    if (strcmp(mode, "dlmopen") == 0) h = dlmopen(LM_ID_NEWLM, argv[i], RTLD_NOW);
    else if (strcmp(mode, "deepbind") == 0) h = dlopen(argv[i], RTLD_NOW | RTLD_DEEPBIND);
    else h = dlopen(argv[i], RTLD_NOW);
    struct link_map *lm = NULL;
    if (h) dlinfo(h, RTLD_DI_LINKMAP, &lm);
    printf("%s %s: %s\n", mode, argv[i], h ? (lm ? lm->l_name : "(no link map)") : dlerror());
    flush_out();
  }
  return 0;
}

#ifndef DLSEARCH_LIB
int dlsearch_lib(int argc, char **argv) __attribute__((weak));
int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1 && strcmp(argv[1], "lib") == 0) {
    if (!dlsearch_lib) return 2;
    return dlsearch_lib(argc - 2, argv + 2);
  }
  return dlsearch_exe(argc - 1, argv + 1);
}
#endif
