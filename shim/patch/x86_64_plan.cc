// Planning and encoding for the x86-64 patcher (x86_64_plan.h).
#include "x86_64_plan.h"

#include <string.h>

#include "zydis.h"

namespace pfg::patch::impl {
namespace {

// Scan the whole function for relative branches into bytes 1..covered-1 of the patch.
// Linear sweep: x86-64 compilers keep jump tables in .rodata, so text decodes cleanly;
// undecodable bytes are skipped one at a time (conservative: more branches seen, not fewer).
//
// A byte-pattern prefilter runs first: every relative branch has its opcode byte at some
// offset with its displacement right after it, so checking *every* offset for those
// patterns finds a superset of the branches into the range. Only when it finds a
// candidate does the (ten times slower) decode run to confirm. This keeps load-time
// patching cheap: Zydis costs ~400 instructions per decoded instruction.
// The first byte of each relative branch form, by how its displacement follows: one
// table load per byte of the function (the prefilter runs over every byte of every
// function patched at load, and a chain of compares per byte was most of its cost).
enum BranchForm : uint8_t { kNoBranch, kRel8, kRel32, kJcc32, kXbegin, kRel16 };
struct FormTable {
  uint8_t of[256];
  constexpr FormTable() : of() {
    for (int c = 0x70; c <= 0x7F; ++c) of[c] = kRel8;  // jcc rel8
    of[0xEB] = kRel8;                                  // jmp rel8
    for (int c = 0xE0; c <= 0xE3; ++c) of[c] = kRel8;  // loop/loopcc/jrcxz rel8
    of[0xE8] = of[0xE9] = kRel32;                      // call/jmp rel32
    of[0x0F] = kJcc32;                                 // 0F 8x: jcc rel32
    of[0xC7] = kXbegin;                                // C7 F8: xbegin rel32
    of[0x66] = kRel16;                                 // 66 E8/E9: rel16 forms
  }
};
constexpr FormTable kForms;

bool may_branch_into(const uint8_t *b, std::size_t n, uintptr_t ip0, uintptr_t lo, uintptr_t hi) {
  auto hit = [&](std::size_t end, int64_t rel) {
    uintptr_t d = ip0 + end + static_cast<uintptr_t>(rel);
    return d >= lo && d < hi;
  };
  auto rel32 = [&](std::size_t at) { int32_t v; memcpy(&v, b + at, 4); return static_cast<int64_t>(v); };
  auto rel16 = [&](std::size_t at) { int16_t v; memcpy(&v, b + at, 2); return static_cast<int64_t>(v); };
  for (std::size_t q = 0; q + 2 <= n; ++q) {
    switch (kForms.of[b[q]]) {
      case kNoBranch:
        break;
      case kRel8:
        if (hit(q + 2, static_cast<int8_t>(b[q + 1]))) return true;
        break;
      case kRel32:
        if (q + 5 <= n && hit(q + 5, rel32(q + 1))) return true;
        break;
      case kJcc32:
        if (q + 6 <= n && (b[q + 1] & 0xF0) == 0x80 && hit(q + 6, rel32(q + 2))) return true;
        break;
      case kXbegin:
        if (q + 6 <= n && b[q + 1] == 0xF8 && hit(q + 6, rel32(q + 2))) return true;
        break;
      case kRel16:
        if (q + 4 <= n && (b[q + 1] == 0xE8 || b[q + 1] == 0xE9) && hit(q + 4, rel16(q + 2))) return true;
        break;
    }
  }
  return false;
}

bool scan_function(const Plan &p, std::size_t fn_size, Result &r) {
  const ZydisApi *z = zydis();
  if (!z) { fail(r, "%s", zydis_error()); return false; }
  const uint8_t *base = reinterpret_cast<const uint8_t *>(p.target);
  uintptr_t lo = p.at + 1, hi = p.at + p.covered;  // forbidden destinations [lo, hi)
  if (!may_branch_into(base, fn_size, p.target, lo, hi)) return true;
  std::size_t off = 0;
  while (off < fn_size) {
    ZydisDecodedInstruction in;
    if (!ZYAN_SUCCESS(z->decode(&z->decoder, nullptr, base + off, fn_size - off, &in))) {
      ++off;
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      if (!in.raw.imm[i].is_relative) continue;
      uintptr_t dest = p.target + off + in.length + static_cast<uintptr_t>(rel_imm(in, i));
      if (dest >= lo && dest < hi) {
        fail(r, "branch into patched range at +%zu (%s at +%zu)", static_cast<std::size_t>(dest - p.target),
             z->mnemonic(in.mnemonic), off);
        return false;
      }
    }
    off += in.length;
  }
  return true;
}

}  // namespace

bool plan(const void *target_v, std::size_t fn_size, Plan &p, Result &r) {
  uintptr_t target = reinterpret_cast<uintptr_t>(target_v);
  p.target = target;
  if (!target) { fail(r, "null target"); return false; }
  if (!survey(target, fn_size, p.sv)) { fail(r, "cannot read /proc/self/maps"); return false; }
  const Mapping &m = p.sv.ext;
  if (!p.sv.found) { fail(r, "target %p is not mapped", target_v); return false; }
  if (!m.x) { fail(r, "target %p is not in an executable mapping", target_v); return false; }
  if (!m.r) { fail(r, "target %p is execute-only (cannot decode)", target_v); return false; }
  if (m.special) { fail(r, "target %p is in a kernel-provided mapping ([vdso])", target_v); return false; }
  if (is_arena_addr(target)) { fail(r, "target is a pyfinguard trampoline"); return false; }
  if (fn_size && !p.sv.fn_rx) {
    fail(r, "function (%zu bytes) extends past its executable mapping", fn_size);
    return false;
  }
  const uint8_t *t = reinterpret_cast<const uint8_t *>(target);
  std::size_t avail = m.end - target;  // readable bytes in this mapping
  p.endbr = avail >= 4 && t[0] == 0xF3 && t[1] == 0x0F && t[2] == 0x1E && t[3] == 0xFA;
  // Keep endbr64 at the entry: with IBT, indirect calls must land on it, and the
  // trampoline (called indirectly from the hook) gets its own copy.
  p.at = target + (p.endbr ? 4 : 0);
  unsigned skip = p.endbr ? 4 : 0;
  if (fn_size && fn_size < skip + kJmpLen) {
    fail(r, "function too short (%zu bytes, patch needs %u)", fn_size, skip + kJmpLen);
    return false;
  }
  avail -= skip;
  if (avail < kJmpLen) { fail(r, "entry too close to the end of its mapping"); return false; }
  std::size_t ncopy = avail < sizeof p.code ? avail : sizeof p.code;
  memcpy(p.code, reinterpret_cast<const void *>(p.at), ncopy);
  if (p.code[0] == 0xCC) { fail(r, "int3 at entry (a debugger breakpoint?)"); return false; }

  const ZydisApi *z = zydis();
  if (!z) { fail(r, "%s", zydis_error()); return false; }
  p.n = 0;
  p.covered = 0;
  p.terminated = false;
  while (p.covered < kJmpLen) {
    ZydisDecodedInstruction in;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    unsigned off = p.covered;
    if (!ZYAN_SUCCESS(z->decode_full(&z->decoder, p.code + off, ncopy - off, &in, ops))) {
      fail(r, "undecodable instruction at +%u", skip + off);
      return false;
    }
    if (p.n == kMaxInsns) { fail(r, "too many instructions in the prologue"); return false; }
    PInsn &pi = p.insns[p.n++];
    pi.off = static_cast<uint8_t>(off);
    pi.len = in.length;
    pi.kind = Kind::copy;
    pi.disp_off = 0;
    pi.cc = 0;
    pi.abs = 0;
    const char *mn = z->mnemonic(in.mnemonic);
    uintptr_t ip_next = p.at + off + in.length;
    bool rel_imm_seen = in.raw.imm[0].is_relative || in.raw.imm[1].is_relative;
    bool riprel = false;
    for (unsigned i = 0; i < in.operand_count; ++i)
      if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[i].mem.base == ZYDIS_REGISTER_RIP) riprel = true;
    if (rel_imm_seen) {
      uintptr_t dest = ip_next + static_cast<uintptr_t>(rel_imm(in, in.raw.imm[0].is_relative ? 0 : 1));
      pi.abs = dest;
      if (in.mnemonic == ZYDIS_MNEMONIC_JMP) pi.kind = Kind::jmp;
      else if (in.mnemonic == ZYDIS_MNEMONIC_CALL) pi.kind = Kind::call;
      else if (is_jcc(in.mnemonic)) {
        pi.kind = Kind::jcc;
        pi.cc = in.opcode & 0x0F;
      } else {
        fail(r, "cannot relocate '%s' at +%u", mn, skip + off);
        return false;
      }
      if (in.operand_width != 64 || (in.raw.imm[0].size != 8 && in.raw.imm[0].size != 32)) {
        fail(r, "cannot relocate '%s' with %u-bit operand at +%u", mn, in.operand_width, skip + off);
        return false;
      }
    } else if (riprel) {
      if (in.raw.disp.size != 32) {
        fail(r, "RIP-relative '%s' without disp32 at +%u", mn, skip + off);
        return false;
      }
      pi.kind = Kind::riprel;
      pi.disp_off = in.raw.disp.offset;
      pi.abs = ip_next + static_cast<uintptr_t>(static_cast<int64_t>(static_cast<int32_t>(in.raw.disp.value)));
    } else if (in.attributes & ZYDIS_ATTRIB_IS_RELATIVE) {
      fail(r, "cannot relocate relative '%s' at +%u", mn, skip + off);
      return false;
    }
    if (in.mnemonic == ZYDIS_MNEMONIC_INT3) { fail(r, "int3 in the prologue at +%u", skip + off); return false; }
    p.covered += in.length;
    bool term = in.meta.category == ZYDIS_CATEGORY_RET || in.meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
                in.mnemonic == ZYDIS_MNEMONIC_UD2 || in.mnemonic == ZYDIS_MNEMONIC_HLT;
    if (term) {
      p.terminated = true;
      if (p.covered < kJmpLen) {
        // The bytes after it may belong to another function (or padding a branch
        // targets). Only the symbol size says they are this function's own.
        if (!fn_size) {
          fail(r, "function too short: '%s' at +%u ends it before %u bytes (size unknown)", mn,
               skip + off, kJmpLen);
          return false;
        }
        // Remaining bytes up to 5 are this function's and unreachable except through a
        // branch, which scan_function() refuses.
        p.covered = kJmpLen;
      }
      break;
    }
  }
  if (fn_size && skip + p.covered > fn_size && !p.terminated) {
    fail(r, "prologue (%u bytes) crosses the function end (%zu)", skip + p.covered, fn_size);
    return false;
  }
  if (p.terminated && fn_size && skip + p.covered > fn_size) {
    fail(r, "function too short (%zu bytes, patch needs %u)", fn_size, skip + p.covered);
    return false;
  }
  // Branches inside the relocated prologue to the prologue itself (would need
  // intra-trampoline fixups; compilers do not emit them).
  for (unsigned i = 0; i < p.n; ++i) {
    const PInsn &pi = p.insns[i];
    if (pi.kind != Kind::copy && pi.kind != Kind::riprel && pi.abs >= p.at && pi.abs < p.at + p.covered) {
      fail(r, "branch from the prologue into itself at +%u", skip + pi.off);
      return false;
    }
  }
  if (fn_size && !scan_function(p, fn_size, r)) return false;
  return true;
}

// Emit the trampoline for placement at `tramp`. Worst case per instruction is 16 bytes
// (call/jcc out of rel32 reach), at most 5 instructions plus endbr64 and a 14-byte
// absolute jump back: 4 + 5*16 + 14 = 98 <= kSlotLen - kStubLen.
bool encode(const Plan &p, uintptr_t tramp, uint8_t *out, unsigned &len, Result &r) {
  unsigned pos = 0;
  auto put = [&](const void *b, unsigned n) { memcpy(out + pos, b, n); pos += n; };
  auto put32 = [&](int64_t v) { int32_t x = static_cast<int32_t>(v); put(&x, 4); };
  auto put64 = [&](uint64_t v) { put(&v, 8); };
  auto abs_jmp = [&](uintptr_t dest) {  // jmp qword [rip+0]; .quad dest
    static const uint8_t j[6] = {0xFF, 0x25, 0, 0, 0, 0};
    put(j, 6);
    put64(dest);
  };
  unsigned skip = p.endbr ? 4 : 0;
  if (p.endbr) {
    static const uint8_t e[4] = {0xF3, 0x0F, 0x1E, 0xFA};
    put(e, 4);
  }
  for (unsigned i = 0; i < p.n; ++i) {
    const PInsn &pi = p.insns[i];
    uintptr_t ip = tramp + pos;
    switch (pi.kind) {
      case Kind::copy:
        put(p.code + pi.off, pi.len);
        break;
      case Kind::riprel: {
        int64_t d = static_cast<int64_t>(pi.abs) - static_cast<int64_t>(ip + pi.len);
        if (!fits32(d)) {
          fail(r, "RIP-relative operand at +%u is out of rel32 reach of the trampoline", skip + pi.off);
          return false;
        }
        put(p.code + pi.off, pi.len);
        fix_disp32(out + pos - pi.len + pi.disp_off, static_cast<int32_t>(d));
        break;
      }
      case Kind::jmp: {
        int64_t d = static_cast<int64_t>(pi.abs) - static_cast<int64_t>(ip + 5);
        if (fits32(d)) { uint8_t o = 0xE9; put(&o, 1); put32(d); }
        else abs_jmp(pi.abs);
        break;
      }
      case Kind::call: {
        int64_t d = static_cast<int64_t>(pi.abs) - static_cast<int64_t>(ip + 5);
        if (fits32(d)) { uint8_t o = 0xE8; put(&o, 1); put32(d); }
        else {  // call [rip+2]; jmp +8; .quad dest  (returns onto the jmp over the literal)
          static const uint8_t c[8] = {0xFF, 0x15, 2, 0, 0, 0, 0xEB, 0x08};
          put(c, 8);
          put64(pi.abs);
        }
        break;
      }
      case Kind::jcc: {
        int64_t d = static_cast<int64_t>(pi.abs) - static_cast<int64_t>(ip + 6);
        if (fits32(d)) {
          uint8_t o[2] = {0x0F, static_cast<uint8_t>(0x80 | pi.cc)};
          put(o, 2);
          put32(d);
        } else {  // j!cc over an absolute jump
          uint8_t o[2] = {static_cast<uint8_t>(0x70 | (pi.cc ^ 1)), 14};
          put(o, 2);
          abs_jmp(pi.abs);
        }
        break;
      }
    }
  }
  if (!p.terminated) {
    uintptr_t back = p.at + p.covered;
    int64_t d = static_cast<int64_t>(back) - static_cast<int64_t>(tramp + pos + 5);
    if (fits32(d)) { uint8_t o = 0xE9; put(&o, 1); put32(d); }
    else abs_jmp(back);
  }
  len = pos;
  return true;
}

}  // namespace pfg::patch::impl
