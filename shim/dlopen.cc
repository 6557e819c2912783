// The dlopen hook: a Python runtime loaded after start-up is taken over before dlopen
// returns to its caller.
//
// Mechanics: glibc's dlopen searches a slash-less name with the *caller's* DT_RPATH /
// DT_RUNPATH (and picks the caller's namespace), taking the caller from its own return
// address (RETURN_ADDRESS(0) -> _dl_find_dso_for_object in dlfcn/dlopen.c). Behind a
// hook that return address is the guard's. So the real dlopen is entered with a return
// address that lies in the caller's own object -- a return sequence there (a "gadget":
// x86-64's `ret`, aarch64's `ldp x29, x30, [sp], #16; [autiasp;] ret`) -- which returns
// into the guard: glibc sees the true caller and does its own
// search, every rule of it (docs/design.md, "dlopen as the caller"). Only where that is
// not possible (no gadget in the caller's object, a shadow stack, another architecture)
// does the hook repeat the search itself, as ld.so(8) documents it (emulate()).
#include <atomic>
#include <pthread.h>
#include <sys/syscall.h>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "interpose.h"

namespace {

// Writes dir + "/" + file into out with $ORIGIN expanded. False when it does not fit or
// uses a token we do not expand ($LIB, $PLATFORM): then the real search is used.
bool join_path(const char *dir, size_t dlen, const char *origin, const char *file, char *out) {
  size_t n = 0;
  auto put = [&](const char *s, size_t len) {
    if (n + len >= PATH_MAX) return false;
    memcpy(out + n, s, len);
    n += len;
    return true;
  };
  for (size_t i = 0; i < dlen;) {
    if (dir[i] == '$') {
      const char *rest = dir + i + 1;
      size_t skip = 0;
      if (strncmp(rest, "ORIGIN", 6) == 0) skip = 7;
      else if (strncmp(rest, "{ORIGIN}", 8) == 0) skip = 9;
      else return false;
      if (!put(origin, strlen(origin))) return false;
      i += skip;
    } else {
      if (!put(dir + i, 1)) return false;
      ++i;
    }
  }
  if (!put("/", 1) || !put(file, strlen(file) + 1)) return false;
  return true;
}

// Tries each directory of a colon-separated list; returns the handle of the first hit.
void *try_dirs(const char *list, const char *origin, const char *file, int mode, bool *gave_up) {
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ':');
    size_t len = end ? size_t(end - p) : strlen(p);
    char path[PATH_MAX];
    if (len && !join_path(p, len, origin, file, path)) {
      *gave_up = true;
      return nullptr;
    }
    if (len && access(path, F_OK) == 0) return PFG_REAL(dlopen)(path, mode);
    p = end ? end + 1 : nullptr;
  }
  return nullptr;
}

void *emulate(const char *file, int mode, void *caller) {
  if (!file || strchr(file, '/')) return PFG_REAL(dlopen)(file, mode);
  if (void *h = PFG_REAL(dlopen)(file, mode | RTLD_NOLOAD)) {  // already loaded: same object
    PFG_REAL(dlclose)(h);
    return PFG_REAL(dlopen)(file, mode);
  }
  Dl_info di;
  struct link_map *lm = nullptr;
  if (!dladdr1(caller, &di, reinterpret_cast<void **>(&lm), RTLD_DL_LINKMAP) || !lm || !lm->l_ld)
    return PFG_REAL(dlopen)(file, mode);
  const char *strtab = nullptr;
  ElfW(Xword) rpath = 0, runpath = 0;
  bool has_rpath = false, has_runpath = false;
  for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_STRTAB) strtab = reinterpret_cast<const char *>(d->d_un.d_ptr);
    if (d->d_tag == DT_RPATH) rpath = d->d_un.d_val, has_rpath = true;
    if (d->d_tag == DT_RUNPATH) runpath = d->d_un.d_val, has_runpath = true;
  }
  if (!strtab || (!has_rpath && !has_runpath)) return PFG_REAL(dlopen)(file, mode);
  if (reinterpret_cast<uintptr_t>(strtab) < lm->l_addr) strtab += lm->l_addr;
  char origin[PATH_MAX];
  const char *name = lm->l_name && *lm->l_name ? lm->l_name : nullptr;
  if (!name) {
    ssize_t n = readlink("/proc/self/exe", origin, sizeof origin - 1);
    origin[n > 0 ? n : 0] = 0;
  } else {
    strncpy(origin, name, sizeof origin - 1);
    origin[sizeof origin - 1] = 0;
  }
  if (char *slash = strrchr(origin, '/')) *slash = 0;
  bool gave_up = false;
  void *h = nullptr;
  if (has_runpath) {
    // DT_RUNPATH: LD_LIBRARY_PATH first (ignored in secure mode), then the RUNPATH.
    if (!getauxval(AT_SECURE)) h = try_dirs(getenv("LD_LIBRARY_PATH"), origin, file, mode, &gave_up);
    if (!h && !gave_up) h = try_dirs(strtab + runpath, origin, file, mode, &gave_up);
  } else {
    h = try_dirs(strtab + rpath, origin, file, mode, &gave_up);
  }
  return h ? h : PFG_REAL(dlopen)(file, mode);
}

#if defined(__x86_64__) || defined(__aarch64__)

#if defined(__x86_64__)
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
// (find_gadget), whose CFI row just before it says CFA = rsp+16, so an unwinder goes
// from the gadget's frame straight to our return address at S+16; had the row been
// CFA = rsp+8, it would reach the continuation, whose `nop` carries the row CFA = rsp+8
// (return addresses are looked up at address-1).
extern "C" void *pfg_dlopen_via(const char *file, int mode, void *gadget, void *real);
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

#else  // __aarch64__

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
extern "C" void *pfg_dlopen_via(const char *file, int mode, void *gadget, void *real, int sign);
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

#endif

struct Seg {
  uintptr_t addr;    // the caller's object (dlpi_addr), or 0 when pc is in none
  uintptr_t lo[4], hi[4];
  int n;
  const void *phdr;  // identity of the mapping, with addr
  uintptr_t eh_hdr;  // its .eh_frame_hdr (PT_GNU_EH_FRAME), 0 when it has none
};

// The FDE covering pc, found in the object's .eh_frame_hdr binary-search table as every
// unwinder finds it (libgcc's unwind-dw2-fde-dispatch.c, libunwind): 1 and its range in
// [*lo, *hi) when one covers pc, 0 when none does, -1 when the tables use an encoding
// this reader does not take (then no gadget is chosen: the caller is emulated). Only
// the encodings GNU ld and gold write are read: the table's datarel|sdata4 pairs, the
// FDE's pc_begin/pc_range in the size its CIE's 'R' augmentation gives.
int fde_range(uintptr_t hdr, uintptr_t pc, uintptr_t *lo, uintptr_t *hi) {
  const auto *h = reinterpret_cast<const unsigned char *>(hdr);
  if (!h) return 0;  // no unwind table at all: nothing covers pc
  if (h[0] != 1 || (h[1] & 0x0f) != 0x0b || h[2] != 0x03 || h[3] != 0x3b) return -1;
  uint32_t count;
  memcpy(&count, h + 8, 4);
  const auto *tab = reinterpret_cast<const int32_t *>(h + 12);
  // The last entry whose initial location is <= pc.
  size_t a = 0, b = count;
  while (a < b) {
    const size_t m = (a + b) / 2;
    if (hdr + intptr_t(tab[2 * m]) <= pc) a = m + 1;
    else b = m;
  }
  if (a == 0) return 0;
  const uintptr_t start = hdr + intptr_t(tab[2 * (a - 1)]);
  const auto *fde = reinterpret_cast<const unsigned char *>(hdr + intptr_t(tab[2 * (a - 1) + 1]));
  uint32_t len;
  int32_t cie_off;
  memcpy(&len, fde, 4);
  memcpy(&cie_off, fde + 4, 4);
  if (len == 0xffffffffu || cie_off <= 0) return -1;
  const unsigned char *cie = fde + 4 - cie_off;
  const char *aug = reinterpret_cast<const char *>(cie + 9);
  const unsigned char *p = cie + 9 + strlen(aug) + 1;
  auto uleb = [&p] {
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
      const unsigned char c = *p++;
      v |= uint64_t(c & 0x7f) << sh;
      if (!(c & 0x80)) break;
    }
    return v;
  };
  auto size_of = [](unsigned enc) -> int {
    switch (enc & 0x0f) {
      case 0x00: return 8;  // absptr
      case 0x02: case 0x0a: return 2;
      case 0x03: case 0x0b: return 4;
      case 0x04: case 0x0c: return 8;
      default: return -1;
    }
  };
  uleb();  // code alignment
  uleb();  // data alignment (sleb: only skipped)
  if (cie[8] == 1) ++p;
  else uleb();  // return address register
  unsigned enc = 0;  // DW_EH_PE_absptr unless 'R' says otherwise
  if (aug[0] == 'z') {
    uleb();  // augmentation data length
    for (const char *c = aug + 1; *c; ++c) {
      if (*c == 'R') enc = *p++;
      else if (*c == 'L') ++p;
      else if (*c == 'P') {
        const unsigned penc = *p++;
        const int n = size_of(penc);
        if (n < 0 || (penc & 0x70) == 0x50) return -1;
        p += n;
      } else if (*c != 'S' && *c != 'B') return -1;
    }
  } else if (aug[0]) {
    return -1;
  }
  const int n = size_of(enc);
  if (n < 0 || (enc & 0x70) == 0x50) return -1;
  uint64_t range = 0;
  memcpy(&range, fde + 8 + n, size_t(n));  // little-endian: the low n bytes
  *lo = start;
  *hi = start + range;
  return pc < *hi ? 1 : 0;
}

int find_seg(struct dl_phdr_info *info, size_t, void *data) {
  auto *sg = static_cast<Seg *>(data);
  const uintptr_t pc = sg->addr;
  bool in = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && pc >= lo && pc < lo + ph.p_memsz) in = true;
  }
  // The first object is the main program: glibc's caller when pc is in no object.
  if (!in && !(pc == 0 && sg->n == 0 && sg->phdr == nullptr)) return 0;
  sg->n = 0;
  sg->addr = info->dlpi_addr;
  sg->phdr = info->dlpi_phdr;
  for (int i = 0; i < info->dlpi_phnum && sg->n < 4; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_EH_FRAME) sg->eh_hdr = info->dlpi_addr + ph.p_vaddr;
    // Read as well as executable: the scan reads the bytes.
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || !(ph.p_flags & PF_R)) continue;
    sg->lo[sg->n] = info->dlpi_addr + ph.p_vaddr;
    sg->hi[sg->n++] = info->dlpi_addr + ph.p_vaddr + ph.p_filesz;
  }
  return 1;
}

#if defined(__x86_64__)

// A 0xc3 byte in the caller's executable segment: executed, it is a `ret` whatever
// instruction the compiler meant it for. Preferred, so that an unwinder walking out of
// real dlopen (a backtrace in a constructor it runs) finds its way back:
//  1. the `ret` of a `pop; ret` epilogue that ends a function (its FDE, fde_range(),
//     ends right after it): the CFI row before it says CFA = rsp+16, so an
//     unwinder goes from the gadget's frame to our return address (pfg_dlopen_via);
//  2. else a 0xc3 no FDE covers (crt1's and crti's code has none): an unwinder stops
//     there, as at the outermost frame, instead of misreading the stack.
// None: 0, and the search is emulated.
uintptr_t scan_gadget(const Seg &sg) {
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

// Still a gadget (the cache is re-checked on use); `left`: bytes from it to the segment's end.
bool is_gadget(uintptr_t g, size_t) { return *reinterpret_cast<const unsigned char *>(g) == 0xc3; }

#else  // __aarch64__

constexpr uint32_t kLdpFpLrPost16 = 0xa8c17bfd;  // ldp x29, x30, [sp], #16
constexpr uint32_t kAutiasp = 0xd50323bf;        // autiasp (hint #29)
constexpr uint32_t kRet = 0xd65f03c0;            // ret (x30)

// 0: `ldp x29, x30, [sp], #16; ret` at w, 1: the same with autiasp before the ret, -1: neither.
int gadget_kind(const uint32_t *w, size_t left) {
  if (left < 2 || w[0] != kLdpFpLrPost16) return -1;
  if (w[1] == kRet) return 0;
  return left >= 3 && w[1] == kAutiasp && w[2] == kRet ? 1 : -1;
}

// An epilogue `ldp x29, x30, [sp], #16; [autiasp;] ret` in the caller's executable
// segment, covered by an FDE (the ldp's post-index fixes the CFI row at it: CFA = sp+16,
// x29/x30 at CFA-16/-8; pfg_dlopen_via), else one no FDE covers. The authenticating form
// is returned with bit 0 set (instructions are 4-byte aligned). None: 0, and the search
// is emulated.
uintptr_t scan_gadget(const Seg &sg) {
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

bool is_gadget(uintptr_t g, size_t left) {
  return gadget_kind(reinterpret_cast<const uint32_t *>(g & ~uintptr_t(3)), left / 4) == int(g & 1);
}

#endif

// One gadget per caller object, kept while the same mapping is there (a slot is
// re-checked on every use: same base, same program headers, still a `ret`).
struct GadgetCache {
  uintptr_t addr;
  const void *phdr;
  uintptr_t gadget;  // 0: none in that object
};
GadgetCache g_gadgets[16];
pthread_mutex_t g_gadget_mu = PTHREAD_MUTEX_INITIALIZER;
unsigned g_gadget_next;

uintptr_t find_gadget(void *caller) {
  Seg sg{};
  sg.addr = reinterpret_cast<uintptr_t>(caller);
  if (!dl_iterate_phdr(find_seg, &sg)) {
    sg = Seg{};  // in no object (generated code): glibc takes the main program
    if (!dl_iterate_phdr(find_seg, &sg)) return 0;
  }
  pthread_mutex_lock(&g_gadget_mu);
  uintptr_t g = UINTPTR_MAX;
  for (auto &c : g_gadgets)
    if (c.phdr && c.addr == sg.addr && c.phdr == sg.phdr) g = c.gadget;
  if (g == UINTPTR_MAX) {
    g = scan_gadget(sg);
    g_gadgets[g_gadget_next++ % 16] = GadgetCache{sg.addr, sg.phdr, g};
  }
  pthread_mutex_unlock(&g_gadget_mu);
  for (int s = 0; s < sg.n; ++s)
    if (g >= sg.lo[s] && g < sg.hi[s]) return is_gadget(g, sg.hi[s] - (g & ~uintptr_t(3))) ? g : 0;
  return 0;
}

#endif  // __x86_64__ || __aarch64__

}  // namespace

namespace pfg {

void *dlopen_as_caller(const char *file, int mode, void *caller) {
#if defined(__x86_64__) || defined(__aarch64__)
  // 0: not asked yet, 1: off, 2: on. (A function-local static would need libstdc++'s
  // guard; racing first calls just ask twice.)
  static std::atomic<int> shstk{0};
  if (shstk.load(std::memory_order_relaxed) == 0) shstk.store(shadow_stack_on() ? 2 : 1, std::memory_order_relaxed);
  if (shstk.load(std::memory_order_relaxed) == 1) {
    if (const uintptr_t g = find_gadget(caller)) {
#if defined(__x86_64__)
      return pfg_dlopen_via(file, mode, reinterpret_cast<void *>(g), reinterpret_cast<void *>(PFG_REAL(dlopen)));
#else
      return pfg_dlopen_via(file, mode, reinterpret_cast<void *>(g & ~uintptr_t(3)),
                            reinterpret_cast<void *>(PFG_REAL(dlopen)), int(g & 1));
#endif
    }
  }
#endif
  return emulate(file, mode, caller);
}

}  // namespace pfg
