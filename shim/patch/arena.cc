// Near memory for the patcher (arena.h).
#include "arena.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "write.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace pfg::patch::impl {
namespace {

constexpr std::size_t kArenaLen = 64 * 1024;
constexpr uintptr_t kUserLow = 0x10000;     // never map below (mmap_min_addr and friends)
// Do not take address space that [heap] (brk) will want to grow into.
constexpr uintptr_t kHeapGap = uintptr_t{256} << 20;

// Reserved PROT_NONE; pages are committed (filled with kTrapByte, sealed RX) one at a time
// as slots need them. Filling all 64 KiB with int3 up front faulted in 16 pages, and callgrind
// counted 65,000 instructions of memset, for the one page a runtime's 14 patches use; a
// stray jump into a page never committed still faults at once.
struct Arena {
  uintptr_t base;
  std::size_t len;        // reserved
  std::size_t committed;  // [base, base + committed): RX pages
  std::size_t used;       // slots handed out, from base
  unsigned live;          // slots of patches not forgotten (forget(): 0 unmaps the arena)
  bool full;              // a page could not be made RW or sealed: no more slots here
};
constexpr int kMaxArenas = 256;
Arena g_arenas[kMaxArenas];
int g_narenas;
bool g_procmem_failed;  // sticky: once /proc/self/mem writes fail, every slot gets a fresh page

// Where the next slot of `a` goes (offset from base): after the last one on its sealed
// page, written through /proc/self/mem, or at the start of the next reserved page. False
// when the arena is full.
bool next_slot(const Arena &a, std::size_t &off, bool &fresh_page) {
  if (a.used < a.committed && !g_procmem_failed) {  // slots never straddle pages (4096 % 128 == 0)
    off = a.used;
    fresh_page = false;
    return true;
  }
  if (a.full || a.committed + kPage > a.len) return false;
  off = a.committed;
  fresh_page = true;
  return true;
}

// Write a slot where next_slot() said. A fresh page is made RW (never executable while
// writable), filled and sealed RX before its address is handed out.
bool write_slot(Arena &a, std::size_t off, bool fresh_page, const uint8_t *slot) {
  uintptr_t s = a.base + off;
  if (fresh_page) {
    void *pg = reinterpret_cast<void *>(s);
    if (mprotect(pg, kPage, PROT_READ | PROT_WRITE) != 0) { a.full = true; return false; }
    memset(pg, kTrapByte, kPage);  // a trap everywhere unused
    memcpy(pg, slot, kSlotLen);
    if (mprotect(pg, kPage, PROT_READ | PROT_EXEC) != 0) {
      mprotect(pg, kPage, PROT_NONE);
      a.full = true;
      return false;
    }
    a.committed += kPage;
  } else if (!procmem_write(s, slot, kSlotLen)) {
    g_procmem_failed = true;
    return false;
  }
  a.used = off + kSlotLen;
  return true;
}

bool in_reach(uintptr_t at, uintptr_t a, std::size_t len) {
  int64_t lo = static_cast<int64_t>(a) - static_cast<int64_t>(at);
  int64_t hi = static_cast<int64_t>(a + len) - static_cast<int64_t>(at);
  return lo >= -kReach && hi <= kReach;
}

// Free address ranges from /proc/self/maps, nearest first: the page-aligned start of
// a `len`-byte block in a gap, as close to `at` as the gap allows, within reach.
// Skips the gap below [stack] and keeps kHeapGap above [heap] so the host's stack and
// brk heap can still grow. Fed one mapping at a time, in address order.
struct GapFinder {
  static constexpr int kMax = kMaxGaps;
  uintptr_t at;
  std::size_t len;
  int n = 0;
  int64_t dist[kMax];
  uintptr_t out[kMax];
  uintptr_t prev_end = kUserLow;
  bool prev_heap = false;

  GapFinder(uintptr_t a, std::size_t l) : at(a), len(l) {}

  void consider(uintptr_t g0, uintptr_t g1) {
    if (g1 > kUserTop) g1 = kUserTop;
    if (g0 < kUserLow) g0 = kUserLow;
    g0 = (g0 + kPage - 1) & ~(kPage - 1);
    g1 &= ~(kPage - 1);
    if (g1 <= g0 || g1 - g0 < len) return;
    uintptr_t c;
    if (g1 <= at) c = g1 - len;         // gap below: take its top
    else if (g0 >= at) c = g0;          // gap above: take its bottom
    else return;                        // cannot happen: `at` is mapped
    if (!in_reach(at, c, len)) return;
    int64_t d = static_cast<int64_t>(c) - static_cast<int64_t>(at);
    if (d < 0) d = -d;
    int i;  // keep the kMax nearest, sorted by distance
    if (n < kMax) i = n++;
    else if (d < dist[kMax - 1]) i = kMax - 1;
    else return;
    while (i > 0 && dist[i - 1] > d) { dist[i] = dist[i - 1]; out[i] = out[i - 1]; --i; }
    dist[i] = d;
    out[i] = c;
  }
  void feed(const Mapping &m) {
    if (m.start >= kUserTop) return;
    if (m.start > prev_end && !m.stack) consider(prev_heap ? prev_end + kHeapGap : prev_end, m.start);
    if (m.end > prev_end) prev_end = m.end;
    prev_heap = m.heap;
  }
  void finish() { consider(prev_heap ? prev_end + kHeapGap : prev_end, kUserTop); }
};

// Everything a patch needs to know from /proc/self/maps, in one read of it (reading it is

// An arena in reach of `at` with room, and where its next slot goes.
Arena *find_arena(uintptr_t at, std::size_t &off, bool &fresh) {
  for (int i = 0; i < g_narenas; ++i) {
    Arena &a = g_arenas[i];
    if (in_reach(at, a.base, a.len) && next_slot(a, off, fresh)) return &a;
  }
  return nullptr;
}

// Reserve a new arena near `at` at one of the candidates (from a survey), else look
// again. Never MAP_FIXED over anything: MAP_FIXED_NOREPLACE fails on an occupied range,
// and kernels older than 4.17 treat it as a hint, which is checked afterwards.
Arena *new_arena(uintptr_t at, const uintptr_t *cand0, int n0) {
  if (g_narenas == kMaxArenas) return nullptr;
  std::size_t len = kArenaLen;
  uintptr_t cand[GapFinder::kMax];
  int n = n0;
  for (int i = 0; i < n0; ++i) cand[i] = cand0[i];
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < n; ++i) {
      void *p = mmap(reinterpret_cast<void *>(cand[i]), len, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) continue;
      uintptr_t a = reinterpret_cast<uintptr_t>(p);
      if (!in_reach(at, a, len)) { munmap(p, len); continue; }
      snapshot_add(a, len);  // a gap is gone
      Arena &ar = g_arenas[g_narenas++];
      ar = Arena{a, len, 0, 0, 0, false};
      return &ar;
    }
    // Another thread may have mapped our candidates meanwhile: look again.
    GapFinder gf(at, len);
    for_each_mapping([&](const Mapping &m) { gf.feed(m); return true; });
    gf.finish();
    n = gf.n;
    for (int i = 0; i < n; ++i) cand[i] = gf.out[i];
  }
  return nullptr;
}

}  // namespace

bool is_arena_addr(uintptr_t p) {
  for (int i = 0; i < g_narenas; ++i)
    if (p >= g_arenas[i].base && p < g_arenas[i].base + g_arenas[i].len) return true;
  return false;
}

bool survey(uintptr_t target, std::size_t fn_size, Survey &sv) {
  GapFinder gf(target, kArenaLen);
  bool ext_open = true;
  uintptr_t cur = target, end = target + fn_size;
  bool rx_bad = false, rx_done = fn_size == 0;
  sv.found = false;
  bool ok = for_each_mapping_batched([&](const Mapping &m) {
    gf.feed(m);
    if (!sv.found) {
      if (target >= m.start && target < m.end) { sv.ext = m; sv.found = true; }
    } else if (ext_open) {
      if (continues(sv.ext, m))
        sv.ext.end = m.end;
      else
        ext_open = false;
    }
    if (!rx_done && !rx_bad && m.end > cur) {
      if (m.start > cur || !m.r || !m.x) rx_bad = true;
      else if ((cur = m.end) >= end) rx_done = true;
    }
    return true;
  });
  gf.finish();
  sv.fn_rx = rx_done && !rx_bad;
  sv.ngaps = gf.n;
  for (int i = 0; i < gf.n; ++i) sv.gaps[i] = gf.out[i];
  return ok;
}

bool peek_slot(uintptr_t at, const Survey &sv, uintptr_t &slot) {
  std::size_t off;
  bool fresh;
  if (const Arena *a = find_arena(at, off, fresh)) {
    slot = a->base + off;
    return true;
  }
  if (sv.ngaps < 1) return false;
  slot = sv.gaps[0];
  return true;
}

uintptr_t place_slot(uintptr_t at, const Survey &sv, SlotFill fill, void *ctx, Result &r) {
  uint8_t buf[kSlotLen];
  // Up to two attempts: a sealed page (written through /proc/self/mem), then a fresh page
  // (written while RW) if that write failed.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::size_t off = 0;
    bool fresh = false;
    Arena *arena = find_arena(at, off, fresh);
    if (!arena && (arena = new_arena(at, sv.gaps, sv.ngaps))) next_slot(*arena, off, fresh);
    if (!arena) {
      fail(r, "no free address range within %s of the target", kReachText);
      return 0;
    }
    const uintptr_t s = arena->base + off;
    memset(buf, kTrapByte, sizeof buf);
    if (!fill(s, buf, ctx, r)) return 0;
    if (write_slot(*arena, off, fresh, buf)) {
      arena->live++;
      return s;
    }
    if (fresh) {
      fail(r, "mprotect of a trampoline page failed (errno %d)", errno);
      return 0;
    }
    // /proc/self/mem refused: the next attempt takes a fresh page
  }
  fail(r, "could not write the trampoline");
  return 0;
}

void slot_release(uintptr_t slot) {
  for (int a = 0; a < g_narenas; ++a)
    if (slot >= g_arenas[a].base && slot < g_arenas[a].base + g_arenas[a].len && g_arenas[a].live)
      g_arenas[a].live--;
}

// Nothing can run in such an arena any more (every way in was an entry of an unmapped
// image or a real-function slot that forget()'s caller reset first), and the address range
// is free for the next mapping of the library.
void unmap_released_arenas() {
  for (int a = 0; a < g_narenas;) {
    Arena &ar = g_arenas[a];
    if (ar.live == 0 && ar.used > 0) {
      munmap(reinterpret_cast<void *>(ar.base), ar.len);
      ar = g_arenas[--g_narenas];
      continue;
    }
    ++a;
  }
}

}  // namespace pfg::patch::impl
