// What an entry patch costs per call, in instructions: PyEval_SaveThread /
// PyEval_RestoreThread pairs on an embedded libpython, with the two entries patched to a
// do-nothing forwarding hook (`jmp [rip+real]`) or not patched. Run under
// `valgrind --tool=callgrind` at two loop lengths to cancel start-up; bench_patch_pair.py
// does that and prints the difference. The guard's own hook work comes on top of this.
// Usage: bench_patch_pair LIBPYTHON PAIRS PATCH(0|1)
#include "patch/patch.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

namespace {
void *g_real[2];
// Forwarding hooks: one indirect jump each, no other work. Built at run time next to
// g_real's address space would not matter: the stub reaches them with an absolute jump.
uint8_t *make_forwarder(void **slot) {
  uint8_t *p = static_cast<uint8_t *>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  // movabs r11, slot; jmp [r11]
  p[0] = 0x49;
  p[1] = 0xBB;
  memcpy(p + 2, &slot, 8);
  p[10] = 0x41;
  p[11] = 0xFF;
  p[12] = 0x23;
  mprotect(p, 4096, PROT_READ | PROT_EXEC);
  return p;
}
}  // namespace

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s LIBPYTHON PAIRS PATCH(0|1)\n", argv[0]);
    return 2;
  }
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!h) return 2;
  long pairs = atol(argv[2]);
  bool patch = atoi(argv[3]) != 0;
  auto save = reinterpret_cast<void *(*)()>(dlsym(h, "PyEval_SaveThread"));
  auto restore = reinterpret_cast<void (*)(void *)>(dlsym(h, "PyEval_RestoreThread"));
  auto init = reinterpret_cast<void (*)(int)>(dlsym(h, "Py_InitializeEx"));
  if (patch) {
    const char *names[2] = {"PyEval_SaveThread", "PyEval_RestoreThread"};
    for (int i = 0; i < 2; ++i) {
      void *f = dlsym(h, names[i]);
      Dl_info di;
      const ElfW(Sym) *sym = nullptr;
      dladdr1(f, &di, reinterpret_cast<void **>(const_cast<ElfW(Sym) **>(&sym)), RTLD_DL_SYMENT);
      pfg::patch::Result r = pfg::patch::install(f, sym ? sym->st_size : 0, make_forwarder(&g_real[i]), &g_real[i]);
      if (!r.ok) {
        fprintf(stderr, "patch %s: %s\n", names[i], r.why);
        return 1;
      }
    }
  }
  init(0);
  for (long i = 0; i < pairs; ++i) restore(save());
  printf("%ld pairs, patched=%d\n", pairs, patch);
  return 0;
}
