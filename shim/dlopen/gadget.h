// The return gadget of dlopen as the caller (docs/design.md, "dlopen as the caller"):
// gadget.cc finds one in the caller's object, as unwinders find FDEs; x86_64.cc and
// aarch64.cc each give their architecture's trampoline, the gadget's shape and how a
// shadow stack is asked for. Built on x86-64 and aarch64 only (shim/meson.build).
#pragma once
#include <cstddef>
#include <cstdint>

namespace pfg::gadget {

// The caller's object: its executable segments and its unwind table.
struct Seg {
  uintptr_t addr;    // the caller's object (dlpi_addr), or 0 when pc is in none
  uintptr_t lo[4], hi[4];
  int n;
  const void *phdr;  // identity of the mapping, with addr
  uintptr_t eh_hdr;  // its .eh_frame_hdr (PT_GNU_EH_FRAME), 0 when it has none
};

// The FDE covering pc in the object's .eh_frame_hdr table: 1 (and its range), 0, or -1
// for an encoding this reader does not take.
int fde_range(uintptr_t hdr, uintptr_t pc, uintptr_t *lo, uintptr_t *hi);

// Per architecture: a gadget in sg's code (0: none; aarch64 sets bit 0 for the
// authenticating form), whether one is still there (`end`: the end of its segment's
// bytes), whether a shadow stack is on, and real(file, mode) entered through it.
uintptr_t scan(const Seg &sg);
bool still_there(uintptr_t g, uintptr_t end);
bool shadow_stack_on();
void *call_via(uintptr_t g, const char *file, int mode, void *real);

// The gadget for a dlopen called from `caller` (cached per object), 0 when there is none.
uintptr_t find(void *caller);

}  // namespace pfg::gadget
