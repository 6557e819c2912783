// Do callers of a function rely on registers the ABI says the call clobbers?
//
// GCC's -fipa-ra (on at -O2) lets a caller keep values in call-clobbered registers across a
// call when it knows the callee's final code and that the callee does not touch them.
// That needs the call to bind locally: calls inside a static executable or a library
// built with -fno-semantic-interposition, with LTO across files -- exactly the images
// the entry patcher is for. A hook reached through an entry patch is ordinary compiled
// code that clobbers every call-clobbered register, so at such a call site it would
// corrupt the caller's live values.
//
// This tool finds every direct `call rel32` to the named functions in an ELF image and
// follows the code after each call with Zydis (all paths, see after_call): a
// call-clobbered register (rcx rdx rsi rdi r8-r11, xmm0-15, and rax after
// a function returning void) read before it is written means that caller relies on the
// callee preserving it. Bounded and path-insensitive at joins, so it can undercount; a
// hit is worth reading in the disassembly.
//
// Usage: callsite_regs IMAGE FUNC[:void|:noreturn] ...
// Prints one line per function; exit status 1 if any call site relies on a clobberable
// register (used as an informational test: see tests/unit/meson.build).
#include <Zydis/Zydis.h>
#include <elf.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

struct Target {
  char name[128];
  bool is_void;
  bool noreturn;  // the code after a call to it belongs to something else: not analysed
  uint64_t vaddr;
  int sites, relying;
  unsigned regs_hist[ZYDIS_REGISTER_MAX_VALUE + 1];
  uint64_t example;
  char example_reg[16];
};

bool tracked(ZydisRegister r, bool is_void) {
  switch (r) {
    case ZYDIS_REGISTER_RCX: case ZYDIS_REGISTER_RDX: case ZYDIS_REGISTER_RSI:
    case ZYDIS_REGISTER_RDI: case ZYDIS_REGISTER_R8: case ZYDIS_REGISTER_R9:
    case ZYDIS_REGISTER_R10: case ZYDIS_REGISTER_R11:
      return true;
    case ZYDIS_REGISTER_RAX:
      return is_void;
    default:
      return r >= ZYDIS_REGISTER_ZMM0 && r <= ZYDIS_REGISTER_ZMM15;
  }
}

ZydisRegister widest(ZydisRegister r) {
  ZydisRegister w = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
  return w == ZYDIS_REGISTER_NONE ? r : w;
}

bool zeroing_idiom(const ZydisDecodedInstruction &in, const ZydisDecodedOperand *ops) {
  // or r,-1 / and r,0: the result does not depend on r (GCC sets -1 with `or`)
  if ((in.mnemonic == ZYDIS_MNEMONIC_OR || in.mnemonic == ZYDIS_MNEMONIC_AND) && in.operand_count_visible == 2 &&
      ops[0].type == ZYDIS_OPERAND_TYPE_REGISTER && ops[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
    return ops[1].imm.value.s == (in.mnemonic == ZYDIS_MNEMONIC_OR ? -1 : 0);
  switch (in.mnemonic) {
    case ZYDIS_MNEMONIC_XOR: case ZYDIS_MNEMONIC_SUB: case ZYDIS_MNEMONIC_PXOR:
    case ZYDIS_MNEMONIC_XORPS: case ZYDIS_MNEMONIC_XORPD: case ZYDIS_MNEMONIC_VPXOR:
    case ZYDIS_MNEMONIC_VXORPS: case ZYDIS_MNEMONIC_VXORPD: case ZYDIS_MNEMONIC_VPXORD:
    case ZYDIS_MNEMONIC_VPXORQ:
      break;
    default:
      return false;
  }
  int nreg = 0;
  ZydisRegister r[3];
  for (int i = 0; i < in.operand_count_visible; ++i) {
    if (ops[i].type != ZYDIS_OPERAND_TYPE_REGISTER) return false;
    r[nreg++] = ops[i].reg.value;
  }
  return nreg >= 2 && r[nreg - 1] == r[nreg - 2];
}

// Analyse the code after one call: every path from the return address (both sides of
// each conditional branch, direct jumps followed) until a return, another call, an
// indirect jump, or 512 instructions in all. Returns the first relied-on register or NONE.
// Starts of the image's exported functions: a jump there is a tail call, whose target
// reads its own arguments, not our caller's leftovers.
uint64_t *g_fn_starts;
std::size_t g_nfn_starts;
uint64_t g_va;  // address of code[0]

bool is_fn_start(uint64_t va) {
  std::size_t lo = 0, hi = g_nfn_starts;
  while (lo < hi) {
    std::size_t mid = (lo + hi) / 2;
    if (g_fn_starts[mid] < va) lo = mid + 1;
    else hi = mid;
  }
  return lo < g_nfn_starts && g_fn_starts[lo] == va;
}

int cmp_u64(const void *a, const void *b) {
  uint64_t x = *static_cast<const uint64_t *>(a), y = *static_cast<const uint64_t *>(b);
  return x < y ? -1 : x > y;
}

struct PathState {
  std::size_t off;
  bool written[ZYDIS_REGISTER_MAX_VALUE + 1];
};

ZydisRegister after_call(const ZydisDecoder &dec, const uint8_t *code, std::size_t len, std::size_t start,
                         bool is_void) {
  static PathState stack[64];
  static std::size_t visited[512];
  int nvisited = 0, sp = 0, budget = 512;
  stack[sp].off = start;
  memset(stack[sp].written, 0, sizeof stack[sp].written);
  ++sp;
  while (sp > 0) {
    PathState cur = stack[--sp];
    for (;;) {
      if (cur.off >= len || budget-- <= 0) break;
      bool seen = false;
      for (int i = 0; i < nvisited; ++i) seen |= visited[i] == cur.off;
      if (seen) break;
      if (nvisited < 512) visited[nvisited++] = cur.off;
      ZydisDecodedInstruction in;
      ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code + cur.off, len - cur.off, &in, ops))) break;
      // xor eax,eax and friends only write; a multi-byte nop's memory operand is not read
      bool zero = zeroing_idiom(in, ops) || in.mnemonic == ZYDIS_MNEMONIC_NOP;
      // reads first (an instruction reads its inputs before writing its outputs)
      for (int i = 0; i < in.operand_count && !zero; ++i) {
        const ZydisDecodedOperand &o = ops[i];
        ZydisRegister rs[3] = {ZYDIS_REGISTER_NONE, ZYDIS_REGISTER_NONE, ZYDIS_REGISTER_NONE};
        if (o.type == ZYDIS_OPERAND_TYPE_REGISTER && (o.actions & ZYDIS_OPERAND_ACTION_MASK_READ)) rs[0] = o.reg.value;
        if (o.type == ZYDIS_OPERAND_TYPE_MEMORY) {
          rs[1] = o.mem.base;
          rs[2] = o.mem.index;
        }
        for (ZydisRegister r : rs) {
          if (r == ZYDIS_REGISTER_NONE) continue;
          ZydisRegister w = widest(r);
          if (tracked(w, is_void) && !cur.written[w]) return w;
        }
      }
      for (int i = 0; i < in.operand_count; ++i) {
        const ZydisDecodedOperand &o = ops[i];
        // An 8/16-bit write (setcc al) merges into the old value, but compilers only use
        // such a merged register for its low part: counting it as a read gave false hits.
        if (o.type != ZYDIS_OPERAND_TYPE_REGISTER || !(o.actions & ZYDIS_OPERAND_ACTION_WRITE)) continue;
        cur.written[widest(o.reg.value)] = true;
      }
      ZydisInstructionCategory cat = in.meta.category;
      if (cat == ZYDIS_CATEGORY_RET || cat == ZYDIS_CATEGORY_CALL || cat == ZYDIS_CATEGORY_SYSCALL ||
          in.mnemonic == ZYDIS_MNEMONIC_UD2 || in.mnemonic == ZYDIS_MNEMONIC_HLT)
        break;
      bool rel = in.raw.imm[0].is_relative;
      std::size_t dest = rel ? cur.off + in.length + static_cast<std::size_t>(in.raw.imm[0].value.s) : 0;
      if (cat == ZYDIS_CATEGORY_UNCOND_BR) {
        if (!rel) break;  // indirect jump (switch table, tail call through a pointer)
        if (is_fn_start(g_va + dest)) break;  // tail call
        cur.off = dest;
        continue;
      }
      if (cat == ZYDIS_CATEGORY_COND_BR && rel && sp < 64) {
        stack[sp] = cur;
        stack[sp].off = dest;
        ++sp;
      }
      cur.off += in.length;
    }
  }
  return ZYDIS_REGISTER_NONE;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s IMAGE FUNC[:void] ...\n", argv[0]);
    return 2;
  }
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) {
    perror(argv[1]);
    return 2;
  }
  const uint8_t *f = static_cast<const uint8_t *>(mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0));
  if (f == MAP_FAILED) return 2;
  const Elf64_Ehdr *eh = reinterpret_cast<const Elf64_Ehdr *>(f);
  const Elf64_Shdr *sh = reinterpret_cast<const Elf64_Shdr *>(f + eh->e_shoff);
  int nt = argc - 2;
  Target *t = static_cast<Target *>(calloc(nt, sizeof(Target)));
  for (int i = 0; i < nt; ++i) {
    snprintf(t[i].name, sizeof t[i].name, "%s", argv[i + 2]);
    char *c = strchr(t[i].name, ':');
    if (c) {
      t[i].is_void = strcmp(c + 1, "void") == 0;
      t[i].noreturn = strcmp(c + 1, "noreturn") == 0;
      *c = 0;
    }
  }
  for (int s = 0; s < eh->e_shnum; ++s) {
    if (sh[s].sh_type != SHT_DYNSYM) continue;
    const Elf64_Sym *sy = reinterpret_cast<const Elf64_Sym *>(f + sh[s].sh_offset);
    const char *str = reinterpret_cast<const char *>(f + sh[sh[s].sh_link].sh_offset);
    std::size_t nsym = sh[s].sh_size / sizeof(Elf64_Sym);
    g_fn_starts = static_cast<uint64_t *>(calloc(nsym, sizeof(uint64_t)));
    for (std::size_t k = 0; k < nsym; ++k)
      if (ELF64_ST_TYPE(sy[k].st_info) == STT_FUNC && sy[k].st_shndx != SHN_UNDEF)
        g_fn_starts[g_nfn_starts++] = sy[k].st_value;
    qsort(g_fn_starts, g_nfn_starts, sizeof(uint64_t), cmp_u64);
    for (std::size_t k = 0; k < nsym; ++k)
      for (int i = 0; i < nt; ++i)
        if (sy[k].st_shndx != SHN_UNDEF && strcmp(str + sy[k].st_name, t[i].name) == 0) t[i].vaddr = sy[k].st_value;
  }
  ZydisDecoder dec;
  ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  for (int s = 0; s < eh->e_shnum; ++s) {
    if (sh[s].sh_type != SHT_PROGBITS || !(sh[s].sh_flags & SHF_EXECINSTR)) continue;
    const uint8_t *code = f + sh[s].sh_offset;
    std::size_t len = sh[s].sh_size;
    uint64_t va = sh[s].sh_addr;
    g_va = va;
    // A direct call is E8 rel32; checking every byte offset instead of a linear sweep
    // finds every call site whatever the padding, at the price of rare false matches
    // inside other instructions (filtered: the decoded instruction must be that call and
    // the bytes after it must decode).
    for (std::size_t off = 0; off + 5 <= len; ++off) {
      if (code[off] != 0xE8) continue;
      int32_t rel;
      memcpy(&rel, code + off + 1, 4);
      uint64_t dest = va + off + 5 + static_cast<int64_t>(rel);
      for (int i = 0; i < nt; ++i) {
        if (!t[i].vaddr || dest != t[i].vaddr) continue;
        ++t[i].sites;
        if (t[i].noreturn) continue;
        ZydisRegister r = after_call(dec, code, len, off + 5, t[i].is_void);
        if (r != ZYDIS_REGISTER_NONE) {
          if (!t[i].relying) {
            t[i].example = va + off;
            snprintf(t[i].example_reg, sizeof t[i].example_reg, "%s", ZydisRegisterGetString(r));
          }
          ++t[i].relying;
          ++t[i].regs_hist[r];
        }
      }
    }
  }
  int bad = 0;
  for (int i = 0; i < nt; ++i) {
    if (!t[i].vaddr) {
      printf("%-24s absent\n", t[i].name);
      continue;
    }
    printf("%-24s %4d direct call sites, %3d read a call-clobbered register before writing it", t[i].name,
           t[i].sites, t[i].relying);
    if (t[i].relying) {
      printf(" (e.g. %s after the call at 0x%lx; registers:", t[i].example_reg,
             static_cast<unsigned long>(t[i].example));
      for (int r = 0; r <= ZYDIS_REGISTER_MAX_VALUE; ++r)
        if (t[i].regs_hist[r]) printf(" %s x%u", ZydisRegisterGetString(static_cast<ZydisRegister>(r)), t[i].regs_hist[r]);
      printf(")");
      bad = 1;
    }
    printf("\n");
  }
  return bad;
}
