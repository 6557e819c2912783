// Embedding host for the patcher corpus test: dlopen() a libpython, patch every exported
// function of it (libpfgcorpus.so, unless PFG_CORPUS_PATCH=0), then initialize that
// interpreter and call a few side-effect-free C API functions with known results through
// their (patched) entries, run a script, finalize, and write the report.
// Usage: corpus_host LIBPYTHON SCRIPT
// Output lines are compared between the unpatched and the patched run by
// test_patch_corpus.py; they must be identical.
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>

extern "C" bool pfg_corpus_patch_linkmap(const struct link_map *lm);
extern "C" void pfg_corpus_report();

template <class T>
T sym(void *h, const char *name) {
  void *p = dlsym(h, name);
  if (!p) {
    printf("MISSING %s\n", name);
    fflush(stdout);
    exit(3);
  }
  return reinterpret_cast<T>(p);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LIBPYTHON SCRIPT\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, nullptr, _IOLBF, 0);
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    fprintf(stderr, "dlopen: %s\n", dlerror());
    return 2;
  }
  struct link_map *lm = nullptr;
  if (dlinfo(h, RTLD_DI_LINKMAP, &lm) != 0) return 2;
  const char *pe = getenv("PFG_CORPUS_PATCH");
  if (!(pe && strcmp(pe, "0") == 0) && !pfg_corpus_patch_linkmap(lm)) return 2;

  auto init = sym<void (*)(int)>(h, "Py_InitializeEx");
  auto fin = sym<int (*)()>(h, "Py_FinalizeEx");
  auto run = sym<int (*)(const char *, void *)>(h, "PyRun_SimpleStringFlags");
  auto version = sym<const char *(*)()>(h, "Py_GetVersion");
  auto from_long = sym<void *(*)(long)>(h, "PyLong_FromLong");
  auto as_long = sym<long (*)(void *)>(h, "PyLong_AsLong");
  auto decref = sym<void (*)(void *)>(h, "Py_DecRef");
  auto snp = sym<int (*)(char *, size_t, const char *, ...)>(h, "PyOS_snprintf");
  auto save = sym<void *(*)()>(h, "PyEval_SaveThread");
  auto restore = sym<void (*)(void *)>(h, "PyEval_RestoreThread");
  auto ensure = sym<int (*)()>(h, "PyGILState_Ensure");
  auto release = sym<void (*)(int)>(h, "PyGILState_Release");

  init(0);
  printf("VERSION %s\n", version());
  long sum = 0;
  for (long v : {0L, 1L, -1L, 123456789L, 1L << 40, -(1L << 62)}) {
    void *o = from_long(v);
    long back = as_long(o);
    decref(o);
    printf("LONG %ld -> %ld\n", v, back);
    sum += back == v;
  }
  char buf[64];
  int n = snp(buf, sizeof buf, "%d-%s-%ld-%x", 42, "pfg", -7L, 0xbeef);
  printf("SNPRINTF %d %s\n", n, buf);
  for (int i = 0; i < 1000; ++i) {
    void *ts = save();
    restore(ts);
    int g = ensure();
    release(g);
  }
  printf("GIL 1000 save/restore/ensure/release pairs\n");

  FILE *f = fopen(argv[2], "r");
  if (!f) return 2;
  static char src[1 << 16];
  size_t len = fread(src, 1, sizeof src - 1, f);
  fclose(f);
  src[len] = 0;
  printf("RUN %d\n", run(src, nullptr));
  fflush(stdout);
  printf("FINALIZE %d\n", fin());
  pfg_corpus_report();
  return 0;
}
