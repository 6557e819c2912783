// aarch64's return gadget (gadget.h; docs/design.md, "dlopen as the caller"): an
// epilogue `ldp x29, x30, [sp], #16; [autiasp;] ret` in the caller's object, entered
// through pfg_dlopen_via.
#include <sys/prctl.h>

#include "dlopen/gadget.h"

extern "C" void *pfg_dlopen_via(const char *file, int mode, void *gadget, void *real, int sign);

namespace pfg::gadget {

namespace {

constexpr uint32_t kLdpFpLrPost16 = 0xa8c17bfd;  // ldp x29, x30, [sp], #16
constexpr uint32_t kAutiasp = 0xd50323bf;        // autiasp (hint #29)
constexpr uint32_t kRet = 0xd65f03c0;            // ret (x30)

// 0: `ldp x29, x30, [sp], #16; ret` at w, 1: the same with autiasp before the ret, -1: neither.
int gadget_kind(const uint32_t *w, size_t left) {
  if (left < 2 || w[0] != kLdpFpLrPost16) return -1;
  if (w[1] == kRet) return 0;
  return left >= 3 && w[1] == kAutiasp && w[2] == kRet ? 1 : -1;
}

}  // namespace

// An epilogue `ldp x29, x30, [sp], #16; [autiasp;] ret` in the caller's executable
// segment, covered by an FDE (the ldp's post-index fixes the CFI row at it: CFA = sp+16,
// x29/x30 at CFA-16/-8; pfg_dlopen_via), else one no FDE covers. The authenticating form
// is returned with bit 0 set (instructions are 4-byte aligned). None: 0, and the search
// is emulated.
uintptr_t scan(const Seg &sg) {
  uintptr_t uncovered = 0;
  for (int s = 0; s < sg.n; ++s) {
    const uintptr_t lo = (sg.lo[s] + 3) & ~uintptr_t(3);
    if (sg.hi[s] <= lo) continue;
    const auto *w = reinterpret_cast<const uint32_t *>(lo);
    const size_t n = (sg.hi[s] - lo) / 4;
    for (size_t i = 0; i < n; ++i) {
      if (w[i] != kLdpFpLrPost16) continue;  // the common case: one compare a word
      const int kind = gadget_kind(w + i, n - i);
      if (kind < 0) continue;
      const uintptr_t g = lo + 4 * i;
      uintptr_t flo = 0, fhi = 0;
      const int f = fde_range(sg.eh_hdr, g, &flo, &fhi);
      if (f < 0) return 0;
      if (f == 0) {
        if (!uncovered) uncovered = g | uintptr_t(kind);
        continue;
      }
      return g | uintptr_t(kind);
    }
  }
  return uncovered;
}

bool still_there(uintptr_t g, uintptr_t end) {
  const uintptr_t at = g & ~uintptr_t(3);  // bit 0 is the kind
  return gadget_kind(reinterpret_cast<const uint32_t *>(at), (end - at) / 4) == int(g & 1);
}

// pfg_dlopen_via(file, mode, gadget, real, sign): enters real(file, mode) with x30 =
// `gadget`, an epilogue `ldp x29, x30, [sp], #16; [autiasp;] ret` in the caller's object,
// and under sp the frame record that ldp pops: {our frame, the continuation}. real's
// `ret` goes to the gadget, which loads x30 = the continuation and returns there, with
// sp back at our frame and real's result in x0 (the gadget touches x29, x30 and sp only).
// The stack at real's entry (S = its sp, F = S+16 = our frame):
//   S+0   F              x29 as the gadget's ldp restores it (and the frame record x29 = S
//   S+8   1f             points to, for frame-pointer walkers); the continuation
//   F+0   caller's x29, F+8 our return address (into dlopen_as_caller)
// sign != 0 when the gadget authenticates (autiasp): the continuation is then signed
// here with key A and the sp autiasp will see (F), as the gadget's function signed its
// own; both are hints, NOPs on a CPU without pointer authentication. real is entered
// with `br x16`, which a `bti c` landing pad accepts (BTI-guarded libc). Unwinding from
// inside real: x30 = the gadget, whose CFI row says CFA = sp+16 (the ldp's #16 fixes it),
// x29 and x30 saved at CFA-16 and CFA-8, which leads to the continuation; its `nop`
// carries our own row (return addresses are looked up at address-1), and the signed
// state the unwinder applies is the gadget function's (sign matches it).
__asm__(R"(
  .text
  .p2align 4
  .type pfg_dlopen_via, %function
  .hidden pfg_dlopen_via
pfg_dlopen_via:
  .cfi_startproc
  stp x29, x30, [sp, #-32]!
  .cfi_def_cfa_offset 32
  .cfi_offset 29, -32
  .cfi_offset 30, -24
  mov x29, sp
  adr x30, 1f
  cbz w4, 2f
  hint #25
2:
  stp x29, x30, [sp, #-16]!
  .cfi_adjust_cfa_offset 16
  mov x29, sp
  mov x16, x3
  mov x30, x2
  br x16
  .cfi_adjust_cfa_offset -16
  nop
1:
  ldp x29, x30, [sp], #32
  .cfi_restore 29
  .cfi_restore 30
  .cfi_def_cfa_offset 0
  ret
  .cfi_endproc
  .size pfg_dlopen_via, .-pfg_dlopen_via
)");

// A guarded control stack (GCS, Linux 6.13) would see real return to an address it was
// not called from.
bool shadow_stack_on() {
  unsigned long status = 0;
  // PR_GET_SHADOW_STACK_STATUS; older kernels answer EINVAL: no shadow stack.
  return prctl(74, &status, 0, 0, 0) == 0 && (status & 1);
}

void *call_via(uintptr_t g, const char *file, int mode, void *real) {
  return pfg_dlopen_via(file, mode, reinterpret_cast<void *>(g & ~uintptr_t(3)), real, int(g & 1));
}

}  // namespace pfg::gadget
