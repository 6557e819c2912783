// Memory for the aarch64 patcher (aarch64_mem.h): arenas of slots, and writing code.
//
// Code is written with mprotect() and ordinary stores, never through /proc/self/mem as
// the x86-64 patcher writes slots: qemu-user does not see /proc/self/mem writes in its
// translation cache (the tests run there), while a store to a page it has made writable
// invalidates the translations of that page. On hardware both work; stores need the
// cache maintenance that sync_code() does either way.
#include "aarch64_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <elf.h>
#include <link.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "aarch64_reloc.h"
#include "maps.h"

#ifndef PROT_BTI
#define PROT_BTI 0x10
#endif
#ifndef HWCAP2_BTI
#define HWCAP2_BTI (1 << 17)
#endif
#ifndef PT_GNU_PROPERTY
#define PT_GNU_PROPERTY 0x6474e553
#endif
#ifndef GNU_PROPERTY_AARCH64_FEATURE_1_AND
#define GNU_PROPERTY_AARCH64_FEATURE_1_AND 0xc0000000
#define GNU_PROPERTY_AARCH64_FEATURE_1_BTI 1u
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace pfg::patch::a64 {
namespace {

using impl::Mapping;  // maps.{h,cc} parse /proc/self/maps for both patchers

constexpr std::size_t kArenaLen = 64 * 1024;
constexpr uintptr_t kUserLow = 0x10000;
constexpr uintptr_t kUserTop = 0xfffffffff000ULL;  // 48-bit VA; mmap fails above a smaller one
constexpr uintptr_t kHeapGap = uintptr_t{256} << 20;

std::size_t g_page;  // not a function-local static: its guard would need libstdc++
std::size_t page() {
  if (!g_page) g_page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return g_page;
}

struct Arena {
  uintptr_t base;
  std::size_t committed, used;  // RX pages from base; slots handed out from base
  unsigned live;
  bool full;
};
constexpr int kMaxArenas = 64;
Arena g_arenas[kMaxArenas];
int g_narenas;
bool g_rwx_failed;  // sticky: an executable page could not be made RWX to add a slot

bool in_reach(uintptr_t at, uintptr_t a, std::size_t len, int64_t reach) {
  const int64_t lo = static_cast<int64_t>(a - at), hi = static_cast<int64_t>(a + len - at);
  return lo >= -reach && hi <= reach;
}

bool next_slot(const Arena &a, std::size_t &off, bool &fresh) {
  if (a.used < a.committed && !g_rwx_failed) {  // kSlotLen divides every page size
    off = a.used;
    fresh = false;
    return true;
  }
  if (a.full || a.committed + page() > kArenaLen) return false;
  off = a.committed;
  fresh = true;
  return true;
}

// A fresh page is filled while RW (BRK everywhere else) and sealed RX before its address
// is handed out. A page already sealed may be running other trampolines: it becomes
// RWX for the stores (executable throughout, so those threads never fault), then RX.
bool write_slot(Arena &a, std::size_t off, bool fresh, const uint32_t *slot) {
  const uintptr_t s = a.base + off;
  const std::size_t pg = page();
  void *p = reinterpret_cast<void *>(s & ~(pg - 1));
  if (fresh) {
    if (mprotect(p, pg, PROT_READ | PROT_WRITE) != 0) { a.full = true; return false; }
    uint32_t *w = static_cast<uint32_t *>(p);
    for (std::size_t i = 0; i < pg / 4; ++i) w[i] = kBrk;
  } else if (mprotect(p, pg, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
    g_rwx_failed = true;
    return false;
  }
  memcpy(reinterpret_cast<void *>(s), slot, kSlotLen);
  sync_code(s, kSlotLen);
  if (mprotect(p, pg, PROT_READ | PROT_EXEC) != 0 && fresh) {
    mprotect(p, pg, PROT_NONE);
    a.full = true;
    return false;
  }
  if (fresh) a.committed += pg;
  a.used = off + kSlotLen;
  return true;
}

Arena *find_arena(uintptr_t at, int64_t reach, std::size_t &off, bool &fresh) {
  for (int i = 0; i < g_narenas; ++i)
    if (in_reach(at, g_arenas[i].base, kArenaLen, reach) && next_slot(g_arenas[i], off, fresh))
      return &g_arenas[i];
  return nullptr;
}

// MAP_FIXED_NOREPLACE never maps over anything; kernels before 4.17 (and some emulators)
// take it as a hint, so the address is checked. Last, a plain hint at `at`.
Arena *new_arena(uintptr_t at, int64_t reach, const Survey &sv) {
  if (g_narenas == kMaxArenas) return nullptr;
  for (int i = 0; i <= sv.ngaps; ++i) {
    const bool hint = i == sv.ngaps;
    uintptr_t c = hint ? (at & ~(page() - 1)) : sv.gaps[i];
    if (!hint && !in_reach(at, c, kArenaLen, reach)) continue;
    void *p = mmap(reinterpret_cast<void *>(c), kArenaLen, PROT_NONE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (hint ? 0 : MAP_FIXED_NOREPLACE), -1, 0);
    if (p == MAP_FAILED) continue;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    if (!in_reach(at, a, kArenaLen, reach)) { munmap(p, kArenaLen); continue; }
    impl::snapshot_add(a, kArenaLen);
    g_arenas[g_narenas] = Arena{a, 0, 0, 0, false};
    return &g_arenas[g_narenas++];
  }
  return nullptr;
}

int g_membarrier;  // 0: not registered yet, 1: registered, -1: unavailable
bool g_batch, g_batch_pending;

void membarrier_now() {
  if (g_membarrier == 0)
    g_membarrier = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0) == 0 ? 1 : -1;
  if (g_membarrier == 1) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
}

}  // namespace

bool survey(uintptr_t target, Survey &sv) {
  sv = Survey{};
  const std::size_t len = kArenaLen;
  int64_t dist[8];
  auto consider = [&](uintptr_t g0, uintptr_t g1) {
    if (g1 > kUserTop) g1 = kUserTop;
    if (g0 < kUserLow) g0 = kUserLow;
    g0 = (g0 + page() - 1) & ~(page() - 1);
    g1 &= ~(page() - 1);
    if (g1 <= g0 || g1 - g0 < len) return;
    const uintptr_t c = g1 <= target ? g1 - len : g0;  // the end of the gap nearest the target
    if (!in_reach(target, c, len, kFarReach)) return;
    int64_t d = static_cast<int64_t>(c - target);
    if (d < 0) d = -d;
    int i;
    if (sv.ngaps < 8) i = sv.ngaps++;
    else if (d < dist[7]) i = 7;
    else return;
    for (; i > 0 && dist[i - 1] > d; --i) { dist[i] = dist[i - 1]; sv.gaps[i] = sv.gaps[i - 1]; }
    dist[i] = d;
    sv.gaps[i] = c;
  };
  uintptr_t prev_end = kUserLow;
  bool prev_heap = false, open = false;
  Mapping ext{};
  const bool ok = impl::for_each_mapping_batched([&](const Mapping &m) {
    if (m.start < kUserTop) {
      if (m.start > prev_end && !m.stack) consider(prev_heap ? prev_end + kHeapGap : prev_end, m.start);
      if (m.end > prev_end) prev_end = m.end;
      prev_heap = m.heap;
    }
    if (!sv.found && target >= m.start && target < m.end) {
      sv.found = open = true;
      ext = m;
    } else if (open) {
      if (impl::continues(ext, m)) ext.end = m.end;
      else open = false;
    }
    return true;
  });
  consider(prev_heap ? prev_end + kHeapGap : prev_end, kUserTop);
  sv.ext_end = ext.end;
  sv.r = ext.r;
  sv.w = ext.w;
  sv.x = ext.x;
  sv.special = ext.special;
  return ok;
}

bool peek_slot(uintptr_t at, int64_t reach, const Survey &sv, uintptr_t &slot) {
  std::size_t off;
  bool fresh;
  if (const Arena *a = find_arena(at, reach, off, fresh)) {
    slot = a->base + off;
    return true;
  }
  for (int i = 0; i < sv.ngaps; ++i)
    if (in_reach(at, sv.gaps[i], kArenaLen, reach)) {
      slot = sv.gaps[i];
      return true;
    }
  return false;
}

uintptr_t place_slot(uintptr_t at, int64_t reach, const Survey &sv, SlotFill fill, void *ctx, Result &r) {
  uint32_t buf[kSlotLen / 4];
  for (int attempt = 0; attempt < 2; ++attempt) {  // a sealed page, then a fresh one
    std::size_t off = 0;
    bool fresh = false;
    Arena *a = find_arena(at, reach, off, fresh);
    if (!a && (a = new_arena(at, reach, sv))) next_slot(*a, off, fresh);
    if (!a) {
      snprintf(r.why, sizeof r.why, "no free address range within +-%s of the target",
               reach == kNearReach ? "128 MiB" : "4 GiB");
      return 0;
    }
    const uintptr_t s = a->base + off;
    for (unsigned i = 0; i < kSlotLen / 4; ++i) buf[i] = kBrk;
    if (!fill(s, buf, ctx, r)) return 0;
    if (write_slot(*a, off, fresh, buf)) {
      a->live++;
      return s;
    }
    if (fresh) {
      snprintf(r.why, sizeof r.why, "mprotect of a trampoline page failed (errno %d)", errno);
      return 0;
    }
  }
  snprintf(r.why, sizeof r.why, "could not write the trampoline");
  return 0;
}

void slot_release(uintptr_t slot) {
  for (int i = 0; i < g_narenas; ++i)
    if (slot >= g_arenas[i].base && slot < g_arenas[i].base + kArenaLen && g_arenas[i].live)
      g_arenas[i].live--;
}

void unmap_released_arenas() {
  for (int i = 0; i < g_narenas;) {
    if (g_arenas[i].live == 0 && g_arenas[i].used > 0) {
      munmap(reinterpret_cast<void *>(g_arenas[i].base), kArenaLen);
      g_arenas[i] = g_arenas[--g_narenas];
      continue;
    }
    ++i;
  }
}

// What __builtin___clear_cache does on aarch64, written out: libgcc's __clear_cache
// would make the shared library need libgcc_s (the guard needs no C++ or GCC runtime).
// DC CVAU per data-cache line unless CTR_EL0.IDC says the data cache need not be cleaned
// to the point of unification, DSB ISH; IC IVAU per instruction-cache line unless
// CTR_EL0.DIC, DSB ISH; ISB. DC/IC by address are broadcast to the inner shareable
// domain; the ISB is this core's only (other cores: sync_other_cores()).
void sync_code(uintptr_t p, std::size_t n) {
#if defined(__aarch64__)
  uint64_t ctr;
  asm volatile("mrs %0, ctr_el0" : "=r"(ctr));
  const uintptr_t dline = uintptr_t{4} << ((ctr >> 16) & 0xF), iline = uintptr_t{4} << (ctr & 0xF);
  const uintptr_t end = p + n;
  if (!(ctr & (uint64_t{1} << 28)))
    for (uintptr_t a = p & ~(dline - 1); a < end; a += dline) asm volatile("dc cvau, %0" : : "r"(a) : "memory");
  asm volatile("dsb ish" : : : "memory");
  if (!(ctr & (uint64_t{1} << 29))) {
    for (uintptr_t a = p & ~(iline - 1); a < end; a += iline) asm volatile("ic ivau, %0" : : "r"(a) : "memory");
    asm volatile("dsb ish" : : : "memory");
  }
  asm volatile("isb" : : : "memory");
#else
  __builtin___clear_cache(reinterpret_cast<char *>(p), reinterpret_cast<char *>(p + n));
#endif
}

// Does the ELF image whose PT_LOAD holds `at` carry GNU_PROPERTY_AARCH64_FEATURE_1_BTI?
// The kernel (executable, interpreter) and ld.so (everything else) map the text of such
// an image with PROT_BTI on a CPU with BTI: the same rule, applied from the same note.
namespace {
struct BtiQuery {
  uintptr_t at;
  int marked;  // -1: no image holds `at`
};
int image_bti(dl_phdr_info *info, std::size_t, void *ctx) {
  BtiQuery &q = *static_cast<BtiQuery *>(ctx);
  bool holds = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && q.at >= info->dlpi_addr + ph.p_vaddr && q.at < info->dlpi_addr + ph.p_vaddr + ph.p_memsz)
      holds = true;
  }
  if (!holds) return 0;
  q.marked = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_GNU_PROPERTY) continue;
    // One note: namesz 4 ("GNU\0"), descsz, type NT_GNU_PROPERTY_TYPE_0, then properties
    // (type, datasz, data padded to 8).
    const uint8_t *n = reinterpret_cast<const uint8_t *>(info->dlpi_addr + ph.p_vaddr);
    uint32_t hdr[3];
    memcpy(hdr, n, 12);
    if (hdr[0] != 4 || hdr[2] != NT_GNU_PROPERTY_TYPE_0 || memcmp(n + 12, "GNU", 4) != 0) break;
    const uint8_t *d = n + 16, *e = d + hdr[1];
    while (d + 8 <= e) {
      uint32_t pr[2], bits = 0;
      memcpy(pr, d, 8);
      if (pr[0] == GNU_PROPERTY_AARCH64_FEATURE_1_AND && pr[1] >= 4) {
        memcpy(&bits, d + 8, 4);
        q.marked = (bits & GNU_PROPERTY_AARCH64_FEATURE_1_BTI) != 0;
      }
      d += 8 + ((pr[1] + 7) & ~7u);
    }
  }
  return 1;
}

}  // namespace

// Is the page holding `at` guarded by BTI? /proc/self/maps does not say. Without this,
// the mprotect() pair around an entry write would drop the guard: the image's property
// note when the page is an image's, else smaps's VmFlags ("bt"; qemu-user's emulated
// smaps does not show it).
bool bti_guarded(uintptr_t at) {
  if (!(getauxval(AT_HWCAP2) & HWCAP2_BTI)) return false;  // no page is guarded
  BtiQuery q{at, -1};
  dl_iterate_phdr(image_bti, &q);
  if (q.marked >= 0) return q.marked == 1;
  const int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  std::size_t have = 0;
  bool cur = false, found = false, done = false;
  while (!done) {
    const ssize_t k = read(fd, buf + have, sizeof buf - have);
    if (k <= 0) break;
    have += static_cast<std::size_t>(k);
    std::size_t pos = 0;
    while (!done) {
      char *nl = static_cast<char *>(memchr(buf + pos, '\n', have - pos));
      if (!nl) break;
      *nl = 0;
      const char *l = buf + pos;
      pos = static_cast<std::size_t>(nl - buf) + 1;
      if (!strncmp(l, "VmFlags:", 8)) {
        if (cur) {
          found = strstr(l, " bt") != nullptr;
          done = true;
        }
      } else if ((*l >= '0' && *l <= '9') || (*l >= 'a' && *l <= 'f')) {  // "lo-hi perms ..."
        char *e;
        const uintptr_t lo = strtoul(l, &e, 16);
        const uintptr_t hi = *e == '-' ? strtoul(e + 1, nullptr, 16) : 0;
        cur = at >= lo && at < hi;
      }
    }
    if (pos == 0 && have == sizeof buf) break;  // absurd line length
    memmove(buf, buf + pos, have - pos);
    have -= pos;
  }
  close(fd);
  return found;
}

void sync_other_cores() {
  if (g_batch) g_batch_pending = true;
  else membarrier_now();
}

void writes_batch(bool on) {
  if (!on && g_batch_pending) membarrier_now();
  g_batch = on;
  g_batch_pending = false;
}

bool write_entry(uintptr_t at, const uint32_t *words, unsigned n, int prot) {
  const std::size_t pg = page();
  const uintptr_t lo = at & ~(pg - 1), hi = (at + 4 * n + pg - 1) & ~(pg - 1);
  const bool flip = !(prot & PROT_WRITE);
  if (flip && bti_guarded(at)) prot |= PROT_BTI;
  if (flip && mprotect(reinterpret_cast<void *>(lo), hi - lo, prot | PROT_WRITE) != 0) return false;
  uint32_t *p = reinterpret_cast<uint32_t *>(at);
  if (n > 1) {
    // `b .` first: a thread entering from now on waits at the entry instead of running
    // the old first instruction into the new ones. Every core must see it (membarrier)
    // before the rest changes, and the rest before the first word lets them through.
    __atomic_store_n(p, 0x14000000u, __ATOMIC_RELEASE);
    sync_code(at, 4);
    membarrier_now();
    for (unsigned i = 1; i < n; ++i) __atomic_store_n(p + i, words[i], __ATOMIC_RELAXED);
    sync_code(at + 4, 4 * (n - 1));
    membarrier_now();
  }
  // Release: the trampoline's publication (a seq_cst store before this call) and the
  // slot's bytes are visible before the branch that leads to them.
  __atomic_store_n(p, words[0], __ATOMIC_RELEASE);
  sync_code(at, 4);
  if (flip) mprotect(reinterpret_cast<void *>(lo), hi - lo, prot);
  sync_other_cores();
  return true;
}

}  // namespace pfg::patch::a64
