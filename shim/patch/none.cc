// Entry patching on architectures without an implementation: every request is refused
// with a reason, so the guard falls back to interposition and reports the gap
// (docs/patching.md says what an aarch64 port would need).
#include "patch.h"

#include <stdio.h>

namespace pfg::patch {
namespace {

#if defined(__aarch64__)
#define PFG_ARCH "aarch64"
#elif defined(__arm__)
#define PFG_ARCH "arm"
#elif defined(__i386__)
#define PFG_ARCH "i386"
#elif defined(__powerpc64__)
#define PFG_ARCH "ppc64"
#elif defined(__s390x__)
#define PFG_ARCH "s390x"
#elif defined(__riscv)
#define PFG_ARCH "riscv"
#elif defined(__x86_64__)
#define PFG_ARCH "x86-64 (built without Zydis)"
#else
#define PFG_ARCH "this architecture"
#endif

Result refused() {
  Result r;
  r.ok = false;
  r.trampoline = nullptr;
  snprintf(r.why, sizeof r.why, "entry patching not implemented for %s", PFG_ARCH);
  return r;
}

}  // namespace

bool supported() { return false; }

void batch_begin() {}
void batch_end() {}
int forget(std::uintptr_t, std::uintptr_t) { return 0; }

Result check(const void *, std::size_t) { return refused(); }

Result install(void *, std::size_t, void *, void **) { return refused(); }

const char *describe() { return PFG_ARCH ": entry patching not implemented"; }

}  // namespace pfg::patch
