// PROT_BTI survives an entry patch on a page the loader guarded: run (by
// run_a64_corpus.py --bti) under qemu-aarch64-static -L SYSROOT, dynamically linked, so
// that the sysroot's ld.so maps its libc. Where that libc carries the BTI property (Debian
// 13), ld.so maps its text with PROT_BTI, which /proc/self/maps does not show; the
// patcher finds it from the ELF note (aarch64_mem.cc, bti_guarded()) and must keep it
// across the mprotect() pair of the entry write. The check: an indirect call to the word
// after getpid's `bti c` (not a landing pad) raises SIGILL before and after patching.
// Exit 77 when that libc page is not guarded here (nothing to check).
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patch.h"

namespace {
using Fn = long (*)(long);
void *g_real;
long g_hits;
long hook(long x) {
  ++g_hits;
  return reinterpret_cast<Fn>(g_real)(x);
}
int dies(uintptr_t f) {
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) {
    dup2(open("/dev/null", O_WRONLY), 2);  // qemu's "uncaught target signal" line
    reinterpret_cast<Fn>(f)(0);
    _exit(0);
  }
  int st = 0;
  waitpid(p, &st, 0);
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}
}  // namespace

int main() {
  const uintptr_t f = reinterpret_cast<uintptr_t>(dlsym(RTLD_DEFAULT, "getpid"));
  uint32_t w = 0;
  if (f) memcpy(&w, reinterpret_cast<void *>(f), 4);
  if (!f || (w & 0xFFFFFF3F) != 0xD503241F) {
    printf("not checked: getpid does not start with bti here (%08x): libc not built for BTI\n", w);
    return 77;
  }
  const int before = dies(f + 4);
  if (before != SIGILL) {
    printf("not checked: libc's text is not BTI-guarded here (indirect call past bti c: signal %d)\n", before);
    return 77;
  }
  pfg::patch::Result r = pfg::patch::install(reinterpret_cast<void *>(f), 0, reinterpret_cast<void *>(&hook), &g_real);
  if (!r.ok) {
    printf("FAIL: install(getpid) refused: %s\n", r.why);
    return 1;
  }
  const bool works = getpid() > 0 && g_hits == 1;
  const int after = dies(f + 4);
  printf("getpid patched (%s through the hook); indirect call past its bti c: signal %d before, %d after patching\n",
         works ? "called" : "NOT called", before, after);
  if (!works || after != SIGILL) {
    printf("FAIL: %s\n", !works ? "the patched getpid did not go through the hook" : "the page lost PROT_BTI");
    return 1;
  }
  return 0;
}
