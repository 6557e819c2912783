// The fallback patcher (shim/patch/none.cc), built here on x86-64 as it is built on every
// architecture without an implementation: it must build, say it is unsupported, refuse
// every request with a reason, and write nothing.
#include "patch/patch.h"

#include <stdio.h>
#include <string.h>

#include "expect.h"

static long target(long x) { return x + 1; }
static long hook(long x) { return x + 2; }

int main() {
  EXPECT(!pfg::patch::supported(), "supported() must be false");
  const char *d = pfg::patch::describe();
  EXPECT(strstr(d, "not implemented") != nullptr, "describe: %s", d);
  pfg::patch::Result c = pfg::patch::check(reinterpret_cast<const void *>(&target), 16);
  EXPECT(!c.ok && c.trampoline == nullptr && strstr(c.why, "entry patching not implemented for ") == c.why,
         "check: %s", c.why);
  unsigned char before[16];
  memcpy(before, reinterpret_cast<const void *>(&target), sizeof before);
  void *real = nullptr;
  pfg::patch::Result r = pfg::patch::install(reinterpret_cast<void *>(&target), 16, reinterpret_cast<void *>(&hook),
                                             &real);
  EXPECT(!r.ok && r.trampoline == nullptr && real == nullptr, "install: %s", r.why);
  EXPECT(strcmp(r.why, c.why) == 0, "check/install reasons differ: %s / %s", c.why, r.why);
  EXPECT(memcmp(before, reinterpret_cast<const void *>(&target), sizeof before) == 0, "bytes changed");
  EXPECT(target(1) == 2, "target still works");
  printf("patch_none: describe '%s', refusal '%s'\n", d, r.why);
  return EXPECT_SUMMARY();
}
