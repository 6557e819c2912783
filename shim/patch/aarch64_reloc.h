// The aarch64 relocator: decode the PC-relative instruction classes of A64 and move a
// function's first instructions to a trampoline at another address. Pure functions on
// words and addresses (no memory mapped, nothing written), so the unit tests drive them
// directly (tests/unit/test_patch_a64.cc). docs/patching.md, "aarch64", has the design.
//
// Scratch registers: x16 (IP0) for far branches, x17 (IP1) for far literal loads. The
// AAPCS64 lets veneers clobber both at any call boundary, and the instructions relocated
// are the first of a function, where nothing live is kept in them.
#pragma once
#include <stdint.h>

#include <cstddef>

namespace pfg::patch::a64 {

// A64 encodings used by more than one file.
constexpr uint32_t kNop = 0xD503201F;
constexpr uint32_t kBrk = 0xD4200000;       // brk #0: fills unused slot words
constexpr uint32_t kBtiC = 0xD503245F;
constexpr uint32_t kPaciasp = 0xD503233F, kPacibsp = 0xD503237F;
constexpr uint32_t kAutiasp = 0xD50323BF, kAutibsp = 0xD50323FF;
inline bool is_bti(uint32_t w) { return (w & 0xFFFFFF3F) == 0xD503241F; }  // bti, bti c/j/jc
inline bool is_brk(uint32_t w) { return (w & 0xFFE0001F) == 0xD4200000; }

enum class Op : uint8_t {
  other,    // no PC-relative operand: copied as is
  b, bl,    // imm26, +-128 MiB
  bcond,    // B.cond / BC.cond, imm19, +-1 MiB
  cbz,      // CBZ/CBNZ, imm19
  tbz,      // TBZ/TBNZ, imm14, +-32 KiB
  adr,      // imm21, +-1 MiB
  adrp,     // imm21 pages, +-4 GiB
  ldr_lit,  // LDR Wt/Xt/St/Dt/Qt, LDRSW, PRFM (literal), imm19
  ldr_bad,  // the unallocated literal form (V=1, opc=11)
};

struct Insn {
  Op op;
  bool ends;        // control never falls through: B, BR, RET, RETAA/RETAB, BRK, UDF
  uintptr_t dest;   // the address a PC-relative operand names (adrp: the page)
};

Insn decode(uint32_t w, uintptr_t pc);
inline bool is_branch(Op op) { return op == Op::b || op == Op::bl || op == Op::bcond || op == Op::cbz || op == Op::tbz; }

// Branch instructions (B, BL, B.cond, CBZ, TBZ, and the register-free forms only) for
// a destination, when it is in their reach; 0 when not. Exposed for the entry and tests.
uint32_t enc_b(uintptr_t pc, uintptr_t dest, bool link);
bool adrp_x16_add_br(uintptr_t pc, uintptr_t dest, uint32_t out[3]);  // +-4 GiB entry

// Relocate n instructions from src to dst. Each keeps its meaning at the new address:
// re-encoded when its operand still reaches from dst, otherwise through x16/x17 and a
// literal (an absolute address in a pool after the code). When back != 0 and the last
// instruction can fall through, a jump to `back` follows. out[0] is the word at dst;
// words = code + padding + literals (at most cap). False with why when an instruction
// cannot be moved (an unallocated literal load, a branch into the relocated range itself).
bool relocate(const uint32_t *in, unsigned n, uintptr_t src, uintptr_t dst, uintptr_t back,
              uint32_t *out, unsigned cap, unsigned &words, char *why, std::size_t whylen);

}  // namespace pfg::patch::a64
