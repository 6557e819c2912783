// What the x86-64 patcher's files share: the sizes of a patch and fail(). The interface is
// patch.h; docs/patching.md has the design and the safety argument. The pieces, after
// funchook's split:
//
//   patch_x86_64.cc  the interface (check, install, batches, forget) and the patch table
//   patch_maps.cc    /proc/self/maps: parsing, one reading per batch, mapping extents
//   patch_arena.cc   near memory: where trampolines go, arenas of slots, the survey
//   patch_write.cc   writing code: the entry (page swap, /proc/self/mem, ...), core sync
//   patch_zydis.cc   the decoder, loaded with dlopen on first use
//   patch_plan.cc    planning (decode, relocate or refuse) and encoding the trampoline
//   patch_fixup.cc   the RIP-relative displacement fix-up (tests build a broken one)
//
// All state lives in these files' fixed arrays and mmap'ed chunks, guarded by one mutex
// that the interface takes (patch_x86_64.cc); nothing allocates with malloc or throws.
#pragma once
#include <stdint.h>

#include <cstddef>

#include "patch.h"

namespace pfg::patch::x86 {

constexpr unsigned kJmpLen = 5;        // E9 rel32
constexpr unsigned kStubLen = 16;      // FF 25 00000000 <hook>, padded to 16
constexpr unsigned kSlotLen = 128;     // stub + worst-case trampoline (see encode())
constexpr unsigned kMaxInsns = 8;      // instructions relocated (>= 5 bytes needs <= 5)
constexpr std::size_t kPage = 4096;

inline bool fits32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// r.ok = false and a one-line reason.
void fail(Result &r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace pfg::patch::x86
