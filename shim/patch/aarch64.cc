// aarch64 entry patcher: the interface (patch.h), planning and the table of installed
// patches. docs/patching.md, "aarch64", has the design and the safety argument;
// aarch64_reloc.cc moves instructions, aarch64_mem.cc places slots and writes code, and
// /proc/self/maps is parsed by maps.cc, shared with the x86-64 patcher.
//
// Layout of one patch:
//
//   target: [bti c] [paciasp]  b slot|hook ------.     one word written ("near": the slot
//           rest of the function, untouched      |     is within +-128 MiB), or
//                                                |     adrp x16; add x16; br x16 ("far")
//                                                v
//   slot:   stub:  [autiasp] b hook | ldr x16, =hook; br x16
//           tramp: [bti c] [paciasp] relocated instructions; b target+covered
//
// A landing pad at the entry (bti c, paciasp: Debian 13 builds with
// -mbranch-protection=standard) stays there, so indirect calls still land on one, and the
// patch goes after it. A kept paciasp has signed the return address before the patch
// runs; the stub authenticates it again (autiasp, same SP) before the hook, and the
// trampoline starts with its own paciasp, which the original epilogue's autiasp expects.
//
// Every entry point takes one mutex, which guards the state of all the patcher's files.
#include "patch.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "aarch64_mem.h"
#include "aarch64_reloc.h"
#include "internal.h"
#include "maps.h"

namespace pfg::patch {
namespace a64 {
namespace {

constexpr std::size_t kScanUnknown = 4096;  // bytes scanned after an entry of unknown size
constexpr unsigned kTrampWords = (kSlotLen - kStubLen) / 4;

using impl::fail;    // internal.h: shared with the x86-64 patcher
using impl::Locker;  // the patcher's one mutex, held across fork

struct Installed {
  uintptr_t target, at, slot;
};
constexpr unsigned kMaxInstalled = 4096;
Installed g_installed[kMaxInstalled];
unsigned g_ninstalled;

Installed *find_installed(uintptr_t t) {
  for (unsigned i = 0; i < g_ninstalled; ++i)
    if (g_installed[i].target && (g_installed[i].target == t || g_installed[i].at == t)) return &g_installed[i];
  return nullptr;
}

Installed *free_record() {
  for (unsigned i = 0; i < g_ninstalled; ++i)
    if (!g_installed[i].target) return &g_installed[i];
  return g_ninstalled < kMaxInstalled ? &g_installed[g_ninstalled++] : nullptr;
}

struct Plan {
  uintptr_t target, at;
  unsigned prefix;     // words kept at the entry (bti, paciasp), copied to the trampoline
  uint32_t pre[2];
  uint32_t aut;        // the stub's autiasp/autibsp when a paciasp/pacibsp is kept
  bool far;
  unsigned n;          // instructions relocated from `at`: 1 (near) or 3 (far)
  uint32_t code[3];
  int prot;
  Survey sv;
};

const char *op_name(Op op) {
  switch (op) {
    case Op::b: return "b";
    case Op::bl: return "bl";
    case Op::bcond: return "b.cond";
    case Op::cbz: return "cbz/cbnz";
    case Op::tbz: return "tbz/tbnz";
    case Op::adr: return "adr";
    case Op::adrp: return "adrp";
    case Op::ldr_lit: return "ldr (literal)";
    default: return "instruction";
  }
}

// Branches (and ADR, which takes a code address) from the rest of the function into the
// bytes the patch replaces would land inside the new sequence. Each word is decoded on its
// own, so a literal pool in the text (a `$d` region) cannot desynchronize the scan; a data
// word that looks like such a branch makes it refuse, the safe direction.
bool scan(const Plan &p, std::size_t len, Result &r) {
  const uintptr_t w0 = p.at, w1 = p.at + 4 * p.n;
  for (std::size_t off = 0; off + 4 <= len; off += 4) {
    const uintptr_t pc = p.target + off;
    if (pc >= w0 && pc < w1) continue;  // the window itself: relocate() judges it
    uint32_t w;
    memcpy(&w, reinterpret_cast<const void *>(pc), 4);
    const Insn d = decode(w, pc);
    const bool code_ref = is_branch(d.op) || d.op == Op::adr;
    if (code_ref && d.dest > w0 && d.dest < w1) {
      fail(r, "branch into patched range at +%u (%s at +%zu)", unsigned(d.dest - p.target), op_name(d.op), off);
      return false;
    }
    if (d.op == Op::ldr_lit && d.dest + 16 > w0 && d.dest < w1) {
      fail(r, "literal load of the patched bytes (at +%zu)", off);
      return false;
    }
    if (code_ref && p.aut && d.dest == w0) {
      fail(r, "branch to +%u, after the kept %s (%s at +%zu)", unsigned(w0 - p.target),
           p.aut == kAutiasp ? "paciasp" : "pacibsp", op_name(d.op), off);
      return false;
    }
  }
  return true;
}

bool plan(const void *target, std::size_t fn_size, bool far, Plan &p, Result &r) {
  p = Plan{};
  p.target = reinterpret_cast<uintptr_t>(target);
  p.far = far;
  p.n = far ? 3 : 1;
  if (p.target & 3) { fail(r, "target %p is not 4-byte aligned", target); return false; }
  if (find_installed(p.target)) { fail(r, "already patched"); return false; }
  if (!survey(p.target, p.sv)) { fail(r, "cannot read /proc/self/maps"); return false; }
  if (!p.sv.found) { fail(r, "target %p is not mapped", target); return false; }
  if (p.sv.special) { fail(r, "target %p is in a kernel-provided mapping", target); return false; }
  if (!p.sv.x) { fail(r, "target %p is not in an executable mapping", target); return false; }
  if (!p.sv.r) { fail(r, "target %p is execute-only", target); return false; }
  p.prot = PROT_READ | PROT_EXEC | (p.sv.w ? PROT_WRITE : 0);
  const std::size_t avail = p.sv.ext_end - p.target;
  if (fn_size > avail) { fail(r, "function (%zu bytes) extends past its executable mapping", fn_size); return false; }
  uint32_t w[5];
  const unsigned nread = avail / 4 < 5 ? unsigned(avail / 4) : 5;
  memcpy(w, target, 4 * nread);
  unsigned i = 0;
  if (i < nread && is_bti(w[i])) p.pre[i] = w[i], ++i;
  if (i < nread && (w[i] == kPaciasp || w[i] == kPacibsp)) {
    p.aut = w[i] == kPaciasp ? kAutiasp : kAutibsp;
    p.pre[i] = w[i], ++i;
  }
  p.prefix = i;
  p.at = p.target + 4 * i;
  const unsigned need = 4 * (i + p.n);
  if (fn_size && fn_size < need) { fail(r, "function too short (%zu bytes, patch needs %u)", fn_size, need); return false; }
  if (nread < i + p.n) { fail(r, "function too short: its mapping ends at +%zu", avail); return false; }
  if (is_brk(w[i])) { fail(r, "brk at entry (a debugger breakpoint?)"); return false; }
  for (unsigned k = 0; k < p.n; ++k) p.code[k] = w[i + k];
  if (!fn_size)
    for (unsigned k = 0; k + 1 < p.n; ++k)
      if (decode(p.code[k], p.at + 4 * k).ends) {
        fail(r, "function too short: the instruction at +%u ends it before %u bytes (size unknown)", 4 * (i + k), need);
        return false;
      }
  return scan(p, fn_size ? fn_size : (avail < kScanUnknown ? avail : kScanUnknown), r);
}

struct SlotArgs {
  const Plan *p;
  void *hook;
};

// The slot's words: the stub (reaches the hook from anywhere), then the trampoline.
bool fill_slot(uintptr_t slot, uint32_t *w, void *ctx, Result &r) {
  const Plan &p = *static_cast<const SlotArgs *>(ctx)->p;
  const uintptr_t hook = reinterpret_cast<uintptr_t>(static_cast<const SlotArgs *>(ctx)->hook);
  unsigned k = 0;
  if (p.aut) w[k++] = p.aut;
  if (uint32_t b = enc_b(slot + 4 * k, hook, false)) {
    w[k++] = b;
  } else {  // ldr x16, <slot+24>; br x16; .quad hook
    w[k] = 0x58000000u | ((24 - 4 * k) / 4) << 5 | 16;
    w[k + 1] = 0xD61F0200u;
    w[6] = static_cast<uint32_t>(hook);
    w[7] = static_cast<uint32_t>(hook >> 32);
  }
  uint32_t *t = w + kStubLen / 4;
  for (unsigned i = 0; i < p.prefix; ++i) t[i] = p.pre[i];
  const uintptr_t tramp = slot + kStubLen;
  unsigned words;
  if (!relocate(p.code, p.n, p.at, tramp + 4 * p.prefix, p.at + 4 * p.n, t + p.prefix,
                kTrampWords - p.prefix, words, r.why, sizeof r.why)) {
    r.ok = false;
    return false;
  }
  return true;
}

// Plan near (one word at the entry), else far (three) when no slot is in B reach. A far
// trampoline returns with BR x16, which a BTI-guarded page accepts only on a landing
// pad: far is refused on such a page, and for a function that starts with a landing pad
// (built for BTI, wherever it is mapped).
bool plan_any(const void *target, std::size_t fn_size, Plan &p, int64_t &reach, uintptr_t &slot, Result &r) {
  if (!plan(target, fn_size, false, p, r)) return false;
  reach = kNearReach;
  if (peek_slot(p.at, reach, p.sv, slot)) return true;
  if (p.prefix || bti_guarded(p.at)) {
    fail(r, "no free address range within +-128 MiB of a function built for BTI (a far trampoline cannot branch back)");
    return false;
  }
  if (!plan(target, fn_size, true, p, r)) return false;
  reach = kFarReach;
  if (peek_slot(p.at, reach, p.sv, slot)) return true;
  fail(r, "no free address range within +-4 GiB of the target");
  return false;
}

Result fresh() {
  Result r;
  r.ok = false;
  r.trampoline = nullptr;
  r.why[0] = 0;
  return r;
}

}  // namespace
}  // namespace a64

using namespace a64;

bool supported() { return true; }

void batch_begin() {
  Locker lock;
  impl::maps_batch(true);
  writes_batch(true);
}

void batch_end() {
  Locker lock;
  writes_batch(false);
  impl::maps_batch(false);
}

Result check(const void *target, std::size_t fn_size) {
  Result r = fresh();
  Locker lock;
  Plan p;
  int64_t reach;
  uintptr_t slot;
  if (!plan_any(target, fn_size, p, reach, slot, r)) return r;
  uint32_t buf[kSlotLen / 4];
  SlotArgs args{&p, nullptr};
  if (!fill_slot(slot, buf, &args, r)) return r;
  r.ok = true;
  return r;
}

Result install(void *target, std::size_t fn_size, void *hook, void **real_out) {
  Result r = fresh();
  if (!hook || !real_out) { fail(r, "null hook or real_out"); return r; }
  Locker lock;
  Plan p;
  int64_t reach;
  uintptr_t slot;
  if (!plan_any(target, fn_size, p, reach, slot, r)) return r;
  Installed *rec = free_record();
  if (!rec) { fail(r, "the patch table is full"); return r; }
  SlotArgs args{&p, hook};
  slot = place_slot(p.at, reach, p.sv, fill_slot, &args, r);
  if (!slot) return r;
  void *tramp = reinterpret_cast<void *>(slot + kStubLen);

  // The entry goes straight to the hook when it reaches and no autiasp is needed.
  const uintptr_t h = reinterpret_cast<uintptr_t>(hook);
  uint32_t entry[3];
  if (!p.far) {
    entry[0] = p.aut ? 0 : enc_b(p.at, h, false);
    if (!entry[0]) entry[0] = enc_b(p.at, slot, false);
  } else if (p.aut || !adrp_x16_add_br(p.at, h, entry)) {
    adrp_x16_add_br(p.at, slot, entry);
  }

  void *prev = __atomic_load_n(real_out, __ATOMIC_ACQUIRE);
  __atomic_store_n(real_out, tramp, __ATOMIC_SEQ_CST);  // before any caller reaches the hook
  if (!write_entry(p.at, entry, p.n, p.prot)) {
    const int e = errno;
    __atomic_store_n(real_out, prev, __ATOMIC_SEQ_CST);
    slot_release(slot);
    fail(r, "could not make the entry writable (mprotect: errno %d)", e);
    return r;
  }
  *rec = Installed{p.target, p.at, slot};
  r.ok = true;
  r.trampoline = tramp;
  return r;
}

int forget(uintptr_t lo, uintptr_t hi) {
  Locker lock;
  int n = 0;
  for (unsigned i = 0; i < g_ninstalled; ++i) {
    Installed &e = g_installed[i];
    if (!e.target || e.target < lo || e.target >= hi) continue;
    slot_release(e.slot);
    e = Installed{};
    ++n;
  }
  unmap_released_arenas();
  impl::snapshot_drop();
  return n;
}

const char *describe() { return "aarch64 (built-in decoder of the PC-relative classes)"; }

}  // namespace pfg::patch
