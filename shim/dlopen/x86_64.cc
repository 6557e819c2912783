// x86-64's return gadget (gadget.h; docs/design.md, "dlopen as the caller"): a `ret`
// byte in the caller's object, entered through pfg_dlopen_via.
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>

#include "dlopen/gadget.h"

extern "C" void *pfg_dlopen_via(const char *file, int mode, void *gadget, void *real);

namespace pfg::gadget {

// A 0xc3 byte in the caller's executable segment: executed, it is a `ret` whatever
// instruction the compiler meant it for. Preferred, so that an unwinder walking out of
// real dlopen (a backtrace in a constructor it runs) finds its way back:
//  1. the `ret` of a `pop; ret` epilogue that ends a function (its FDE, fde_range(),
//     ends right after it): the CFI row before it says CFA = rsp+16, so an
//     unwinder goes from the gadget's frame to our return address (pfg_dlopen_via);
//  2. else a 0xc3 no FDE covers (crt1's and crti's code has none): an unwinder stops
//     there, as at the outermost frame, instead of misreading the stack.
// None: 0, and the search is emulated.
uintptr_t scan(const Seg &sg) {
  uintptr_t uncovered = 0;
  int probes = 0;  // FDE lookups for candidates of kind 2: bounded (a big libpython has
                   // tens of thousands of 0xc3 bytes, all covered)
  for (int s = 0; s < sg.n; ++s) {
    const auto *b = reinterpret_cast<const unsigned char *>(sg.lo[s]);
    const size_t len = sg.hi[s] - sg.lo[s];
    for (size_t i = 2; i < len; ++i) {
      const void *next = memchr(b + i, 0xc3, len - i);
      if (!next) break;
      i = size_t(static_cast<const unsigned char *>(next) - b);
      const uintptr_t g = sg.lo[s] + i;
      const bool pop = b[i - 1] == 0x5b || b[i - 1] == 0x5d ||
                       (b[i - 2] == 0x41 && b[i - 1] >= 0x5c && b[i - 1] <= 0x5f);
      if (!pop && (uncovered || probes >= 256)) continue;
      if (!pop) ++probes;
      uintptr_t lo = 0, hi = 0;
      const int f = fde_range(sg.eh_hdr, g, &lo, &hi);
      if (f < 0) return 0;
      if (f == 0) {
        if (!uncovered) uncovered = g;
        continue;
      }
      if (pop && hi == g + 1 && lo < g - 1) return g;
    }
  }
  return uncovered;
}

// Still a gadget (the cache is re-checked on use).
bool still_there(uintptr_t g, uintptr_t) { return *reinterpret_cast<const unsigned char *>(g) == 0xc3; }

// pfg_dlopen_via(file, mode, gadget, real): enters real(file, mode) with `gadget` as its
// return address and our continuation under it. real's `ret` goes to the gadget, whose
// `ret` pops the continuation, which returns to our caller with real's result in rax.
// The stack at real's entry (S = its rsp):
//   S+0   gadget        real's return address: the caller's object, as glibc must see
//   S+8   1f            the continuation
//   S+16  our return address (into dlopen_as_caller)
// Alignment: entered with rsp = 8 mod 16, two pushes keep it so -- a normal call entry.
// Re-entrant and thread-safe: nothing but the stack (a constructor run by this dlopen
// may dlopen again, on this thread or another). Unwinding from inside real (a backtrace
// in a constructor): the gadget is an epilogue `pop; ret` at the end of a function
// (scan()), whose CFI row just before it says CFA = rsp+16, so an unwinder goes
// from the gadget's frame straight to our return address at S+16; had the row been
// CFA = rsp+8, it would reach the continuation, whose `nop` carries the row CFA = rsp+8
// (return addresses are looked up at address-1).
__asm__(R"(
  .text
  .p2align 4
  .type pfg_dlopen_via, @function
  .hidden pfg_dlopen_via
pfg_dlopen_via:
  .cfi_startproc
  leaq 1f(%rip), %rax
  pushq %rax
  .cfi_adjust_cfa_offset 8
  pushq %rdx
  .cfi_adjust_cfa_offset 8
  jmp *%rcx
  .cfi_adjust_cfa_offset -16
  nop
1:
  ret
  .cfi_endproc
  .size pfg_dlopen_via, .-pfg_dlopen_via
)");

// A shadow stack (CET) would see real return to an address it was not called from.
bool shadow_stack_on() {
  unsigned long features = 0;
  // ARCH_SHSTK_STATUS (Linux 6.6); older kernels answer EINVAL: no shadow stack.
  return syscall(SYS_arch_prctl, 0x5005, &features) == 0 && (features & 1);
}

void *call_via(uintptr_t g, const char *file, int mode, void *real) {
  return pfg_dlopen_via(file, mode, reinterpret_cast<void *>(g), real);
}

}  // namespace pfg::gadget
