// Planning an x86-64 entry patch (decode the prologue, relocate or refuse, scan the whole
// function for branches into the patched bytes) and encoding its trampoline.
#pragma once
#include <stdint.h>

#include <cstddef>

#include "arena.h"
#include "internal.h"

namespace pfg::patch::impl {

constexpr unsigned kJmpLen = 5;        // E9 rel32
constexpr unsigned kStubLen = 16;      // FF 25 00000000 <hook>, padded to 16
constexpr unsigned kMaxInsns = 8;      // instructions relocated (>= 5 bytes needs <= 5)
static_assert(kStubLen + 98 <= kSlotLen, "the worst-case trampoline (encode()) fits a slot");

inline bool fits32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

enum class Kind : uint8_t { copy, riprel, jmp, jcc, call };

struct PInsn {
  Kind kind;
  uint8_t off;      // offset from `at`
  uint8_t len;
  uint8_t disp_off; // riprel: offset of the disp32 within the instruction
  uint8_t cc;       // jcc: condition code (low nibble of 7x / 0F 8x)
  uintptr_t abs;    // riprel: referenced address; branches: destination
};

struct Plan {
  uintptr_t target;
  uintptr_t at;          // where the jmp is written (target, or target+4 after endbr64)
  unsigned covered;      // bytes of whole instructions relocated from `at`
  bool endbr;
  bool terminated;       // the relocated code ends in jmp/ret: no jump back
  unsigned n;
  PInsn insns[kMaxInsns];
  uint8_t code[32];      // bytes from `at`
  Survey sv;             // /proc/self/maps as seen by plan()
};

// Everything check() and install() decide before writing anything; false with r.why.
bool plan(const void *target, std::size_t fn_size, Plan &p, Result &r);

// The trampoline for placement at `tramp`: out gets len bytes (at most kSlotLen -
// kStubLen). False with r.why when an operand cannot reach from there.
bool encode(const Plan &p, uintptr_t tramp, uint8_t *out, unsigned &len, Result &r);

// Store a relocated RIP-relative displacement into a copied instruction (x86_64_fixup.cc,
// a file of its own so that tests/unit can link a broken one: the corpus must then fail).
void fix_disp32(uint8_t *disp, int32_t value);

}  // namespace pfg::patch::impl
