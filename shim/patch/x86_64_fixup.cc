// The RIP-relative displacement fix-up of the x86-64 patcher (x86_64_plan.h says why it is
// alone here: tests/unit/mutant_fixup.cc replaces it in the corpus mutant).
#include <string.h>

#include "x86_64_plan.h"

namespace pfg::patch::impl {

void fix_disp32(uint8_t *disp, int32_t value) { memcpy(disp, &value, 4); }

}  // namespace pfg::patch::impl
