// The aarch64 relocator (aarch64_reloc.h). Encodings: Arm ARM (DDI 0487), C4.1 "A64
// instruction set encoding"; the classes are those docs/patching.md lists.
//
// PFG_A64_RELOC_MUTANT (tests only, tests/unit/meson.build): ADRP and CBZ/CBNZ are copied
// unchanged instead of relocated, so the unit tests must fail against that build.
#include "aarch64_reloc.h"

#include <stdio.h>

namespace pfg::patch::a64 {
namespace {

int64_t sext(uint64_t v, unsigned bits) {
  const uint64_t m = uint64_t{1} << (bits - 1);
  return static_cast<int64_t>((v ^ m) - m);
}
bool fits(int64_t v, unsigned bits) {
  return v >= -(int64_t{1} << (bits - 1)) && v < (int64_t{1} << (bits - 1));
}
int64_t diff(uintptr_t a, uintptr_t b) { return static_cast<int64_t>(a - b); }

uint32_t with_imm19(uint32_t w, int64_t words) {
  return (w & ~(0x7FFFFu << 5)) | ((static_cast<uint32_t>(words) & 0x7FFFF) << 5);
}
uint32_t with_imm14(uint32_t w, int64_t words) {
  return (w & ~(0x3FFFu << 5)) | ((static_cast<uint32_t>(words) & 0x3FFF) << 5);
}
uint32_t enc_adr(bool page, unsigned rd, int64_t imm) {  // imm: bytes (adr) or pages (adrp)
  const uint32_t u = static_cast<uint32_t>(imm);
  return (page ? 0x90000000u : 0x10000000u) | (u & 3) << 29 | ((u >> 2) & 0x7FFFF) << 5 | rd;
}
uint32_t enc_add_imm(unsigned rd, unsigned rn, unsigned imm12) {
  return 0x91000000u | imm12 << 10 | rn << 5 | rd;
}

// Words at consecutive addresses from `base`, then a pool of 8-byte literals whose LDRs
// are fixed up by finish().
struct Emitter {
  uint32_t *out;
  unsigned cap;
  uintptr_t base;
  unsigned n = 0;
  uint64_t lit[24] = {};
  unsigned lit_at[24] = {};
  unsigned nlit = 0;

  // x16/x17 are dead at a function entry (AAPCS64: IP0/IP1), but not once a relocated
  // instruction may have written one: a far form after that would clobber it.
  bool ip_used = false, ip_clobbered = false;

  uintptr_t pc() const { return base + 4 * uintptr_t{n}; }
  void put(uint32_t w) {
    if (n < cap) out[n] = w;
    ++n;
  }
  // LDR Xrt, <literal holding v>
  void load_lit(unsigned rt, uint64_t v) {
    if (nlit < sizeof lit / sizeof lit[0]) {
      lit[nlit] = v;
      lit_at[nlit++] = n;
    }
    put(0x58000000u | rt);
  }
  // B/BL when in reach, else LDR x16, =dest; BR/BLR x16.
  void jump(uintptr_t dest, bool link) {
    if (uint32_t b = enc_b(pc(), dest, link)) {
      put(b);
      return;
    }
    ip_clobbered |= ip_used;
    load_lit(16, dest);
    put((link ? 0xD63F0000u : 0xD61F0000u) | 16u << 5);
  }
  // A conditional branch `w` (imm field set by `imm`) to dest: re-encoded in reach, else
  // its inverse (flip) skips an unconditional jump to dest.
  void cond(uint32_t w, uintptr_t dest, unsigned bits, uint32_t flip) {
    const int64_t words = diff(dest, pc()) / 4;
    auto enc = [&](uint32_t x, int64_t imm) { return bits == 19 ? with_imm19(x, imm) : with_imm14(x, imm); };
    if (fits(words, bits)) {
      put(enc(w, words));
      return;
    }
    const bool near = enc_b(pc() + 4, dest, false) != 0;
    put(enc(w ^ flip, near ? 2 : 3));
    jump(dest, false);
  }
  bool finish() {
    if (nlit && (pc() & 7)) put(kBrk);
    for (unsigned i = 0; i < nlit; ++i) {
      const unsigned at = n;
      put(static_cast<uint32_t>(lit[i]));
      put(static_cast<uint32_t>(lit[i] >> 32));
      if (lit_at[i] < cap) out[lit_at[i]] = with_imm19(out[lit_at[i]], at - lit_at[i]);
    }
    return n <= cap && nlit < sizeof lit / sizeof lit[0];
  }
};

// Might w name x16 or x17 in one of its register fields? Conservative (an immediate that
// happens to hold 16 or 17 there counts too): only far forms are refused for it.
bool mentions_ip(uint32_t w) {
  const unsigned f[4] = {w & 31, (w >> 5) & 31, (w >> 10) & 31, (w >> 16) & 31};
  for (unsigned r : f)
    if (r == 16 || r == 17) return true;
  return false;
}

// The load through x17 that replaces an out-of-reach literal load (LDR <t>, [x17]).
uint32_t load_via_x17(uint32_t w) {
  static const uint32_t gpr[4] = {0xB9400000, 0xF9400000, 0xB9800000, 0xF9800000};  // w, x, sw, prfm
  static const uint32_t simd[3] = {0xBD400000, 0xFD400000, 0x3DC00000};             // s, d, q
  const unsigned opc = w >> 30;
  return ((w >> 26) & 1 ? simd[opc] : gpr[opc]) | 17u << 5 | (w & 31);
}

}  // namespace

Insn decode(uint32_t w, uintptr_t pc) {
  Insn d{Op::other, false, 0};
  if ((w & 0x7C000000) == 0x14000000) {
    d.op = w >> 31 ? Op::bl : Op::b;
    d.ends = d.op == Op::b;
    d.dest = pc + sext(w & 0x3FFFFFF, 26) * 4;
  } else if ((w & 0xFF000000) == 0x54000000) {
    d.op = Op::bcond;
    d.ends = (w & 0xE) == 0xE;  // AL/NV: always
    d.dest = pc + sext((w >> 5) & 0x7FFFF, 19) * 4;
  } else if ((w & 0x7E000000) == 0x34000000) {
    d.op = Op::cbz;
    d.dest = pc + sext((w >> 5) & 0x7FFFF, 19) * 4;
  } else if ((w & 0x7E000000) == 0x36000000) {
    d.op = Op::tbz;
    d.dest = pc + sext((w >> 5) & 0x3FFF, 14) * 4;
  } else if ((w & 0x1F000000) == 0x10000000) {
    const int64_t imm = sext(((w >> 5) & 0x7FFFF) << 2 | ((w >> 29) & 3), 21);
    d.op = w >> 31 ? Op::adrp : Op::adr;
    d.dest = d.op == Op::adr ? pc + imm : (pc & ~uintptr_t{0xFFF}) + imm * 4096;
  } else if ((w & 0x3B000000) == 0x18000000) {
    d.op = ((w >> 26) & 1) && (w >> 30) == 3 ? Op::ldr_bad : Op::ldr_lit;
    d.dest = pc + sext((w >> 5) & 0x7FFFF, 19) * 4;
  } else if ((w & 0xFE000000) == 0xD6000000) {  // branch (register): BR, RET, ERET, BRAA...
    const unsigned opc = (w >> 21) & 0xF;
    d.ends = opc != 1 && opc != 9;  // not BLR/BLRAA
  } else if (is_brk(w) || (w >> 16) == 0) {  // BRK, UDF
    d.ends = true;
  }
  return d;
}

uint32_t enc_b(uintptr_t pc, uintptr_t dest, bool link) {
  const int64_t words = diff(dest, pc) / 4;
  if (!fits(words, 26)) return 0;
  return (link ? 0x94000000u : 0x14000000u) | (static_cast<uint32_t>(words) & 0x3FFFFFF);
}

bool adrp_x16_add_br(uintptr_t pc, uintptr_t dest, uint32_t out[3]) {
  const int64_t pages = diff(dest >> 12, pc >> 12);
  if (!fits(pages, 21)) return false;
  out[0] = enc_adr(true, 16, pages);
  out[1] = enc_add_imm(16, 16, dest & 0xFFF);
  out[2] = 0xD61F0000u | 16u << 5;
  return true;
}

bool relocate(const uint32_t *in, unsigned n, uintptr_t src, uintptr_t dst, uintptr_t back,
              uint32_t *out, unsigned cap, unsigned &words, char *why, std::size_t whylen) {
  Emitter e{out, cap, dst};
  const uintptr_t end = src + 4 * uintptr_t{n};
  bool ends = false;
  for (unsigned i = 0; i < n; ++i) {
    const uint32_t w = in[i];
    const uintptr_t pc = src + 4 * uintptr_t{i};
    const Insn d = decode(w, pc);
    ends = d.ends;
    const unsigned rd = w & 31;
    if ((is_branch(d.op) || d.op == Op::adr) && d.dest > src && d.dest < end) {
      snprintf(why, whylen, "branch from the prologue into itself at +%u", unsigned(d.dest - src));
      return false;
    }
    if (d.op == Op::ldr_lit && d.dest + 16 > src && d.dest < end) {
      snprintf(why, whylen, "literal load at +%u reads the patched bytes", 4 * i);
      return false;
    }
    switch (d.op) {
      case Op::other: e.put(w); break;
      case Op::ldr_bad:
        snprintf(why, whylen, "unallocated literal load %08x at +%u", w, 4 * i);
        return false;
      case Op::b:
      case Op::bl: e.jump(d.dest, d.op == Op::bl); break;
      case Op::bcond:
        if (d.ends) e.jump(d.dest, false);
        else e.cond(w, d.dest, 19, 1);  // cond ^ 1 is the inverse condition
        break;
      case Op::cbz:
#ifdef PFG_A64_RELOC_MUTANT
        e.put(w);
#else
        e.cond(w, d.dest, 19, 1u << 24);  // CBZ <-> CBNZ
#endif
        break;
      case Op::tbz: e.cond(w, d.dest, 14, 1u << 24); break;  // TBZ <-> TBNZ
      case Op::adr: {
        const int64_t bytes = diff(d.dest, e.pc());
        const int64_t pages = diff(d.dest >> 12, e.pc() >> 12);
        if (rd == 31) e.put(kNop);  // ADR to XZR: no effect (and ADD would name SP)
        else if (fits(bytes, 21)) e.put(enc_adr(false, rd, bytes));
        else if (fits(pages, 21)) {
          e.put(enc_adr(true, rd, pages));
          e.put(enc_add_imm(rd, rd, d.dest & 0xFFF));
        } else e.load_lit(rd, d.dest);
        break;
      }
      case Op::adrp: {
#ifdef PFG_A64_RELOC_MUTANT
        e.put(w);
#else
        const int64_t pages = diff(d.dest >> 12, e.pc() >> 12);
        if (fits(pages, 21)) e.put(enc_adr(true, rd, pages));
        else if (rd == 31) e.put(kNop);
        else e.load_lit(rd, d.dest);
#endif
        break;
      }
      case Op::ldr_lit: {
        const int64_t lw = diff(d.dest, e.pc()) / 4;
        if (fits(lw, 19)) e.put(with_imm19(w, lw));
        else {
          e.ip_clobbered |= e.ip_used;
          e.load_lit(17, d.dest);
          e.put(load_via_x17(w));
        }
        break;
      }
    }
    e.ip_used |= mentions_ip(w);
  }
  if (back && !ends) e.jump(back, false);
  if (e.ip_clobbered) {
    snprintf(why, whylen, "the relocated instructions may use x16/x17, which a far branch would clobber");
    return false;
  }
  if (!e.finish()) {
    snprintf(why, whylen, "relocated prologue does not fit the trampoline (%u words)", e.n);
    return false;
  }
  words = e.n;
  return true;
}

}  // namespace pfg::patch::a64
