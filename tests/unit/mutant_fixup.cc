// The corpus mutant's displacement "fix-up": it leaves the copied displacement as it was,
// so every relocated RIP-relative operand points 2 GiB-ish away from its data. Linked
// instead of shim/patch/x86_64_fixup.cc into pfgpatch_mutant; patch-corpus-mutant passes
// only if every image's patched run then fails.
#include "patch/x86_64_plan.h"

namespace pfg::patch::impl {

void fix_disp32(uint8_t *, int32_t) {}

}  // namespace pfg::patch::impl
