// x86-64 entry patcher. See docs/patching.md for the design and the safety argument.
//
// Layout of one patch:
//
//   target:      [endbr64]  jmp rel32 ----------------.     (5 bytes written at `at`; straight
//                                                     |      to the hook when it is in reach)
//                <rest of the function, untouched>    |
//                                                     v
//   slot (near): stub:  jmp qword [rip+0]; .quad hook       (hook may be anywhere)
//                tramp: [endbr64] relocated prologue; jmp rel32 at+covered
//
// The slot lives in an "arena" mmap'ed within rel32 reach of the target, so the entry
// jump, the trampoline's jump back and relocated RIP-relative operands all stay rel32.
// Arenas are never writable and executable at once: an arena is reserved PROT_NONE, each
// page is filled while RW (int3, then its first slot) and sealed RX before anything can
// jump into it, and later slots on a sealed page are added through /proc/self/mem (which
// writes RX pages without changing their protection, so threads running earlier
// trampolines never fault).
//
// Nothing here allocates with malloc or throws; state is a few fixed arrays and mmap'ed
// chunks, guarded by one mutex (patching runs at load time or from dlopen).
#include "patch.h"

#include <Zydis/Zydis.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace pfg::patch {
namespace {

constexpr unsigned kJmpLen = 5;             // E9 rel32
constexpr unsigned kStubLen = 16;           // FF 25 00000000 <hook>, padded to 16
constexpr unsigned kSlotLen = 128;          // stub + worst-case trampoline (see encode())
constexpr unsigned kMaxInsns = 8;           // instructions relocated (>= 5 bytes needs <= 5)
constexpr std::size_t kArenaLen = 64 * 1024;
constexpr std::size_t kPage = 4096;
constexpr uintptr_t kUserLow = 0x10000;     // never map below (mmap_min_addr and friends)
constexpr uintptr_t kUserTop = 0x7ffffffff000ULL;
// Keep every arena byte this close to the patched entry so that the entry's rel32 and the
// trampoline's rel32s (to targets near the function) stay in range with room to spare.
constexpr int64_t kReach = (int64_t{1} << 31) - (int64_t{64} << 20);
// Do not take address space that [heap] (brk) will want to grow into.
constexpr uintptr_t kHeapGap = uintptr_t{256} << 20;

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

// fork() while another thread holds g_lock would leave it held forever in the child
// (a later dlopen of Python there would hang in install()): hold it across fork.
void atfork_lock() { pthread_mutex_lock(&g_lock); }
void atfork_unlock() { pthread_mutex_unlock(&g_lock); }

struct Locker {
  Locker() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] { pthread_atfork(atfork_lock, atfork_unlock, atfork_unlock); });
    pthread_mutex_lock(&g_lock);
  }
  ~Locker() { pthread_mutex_unlock(&g_lock); }
};

// The patches between batch_begin() and batch_end() (a runtime's entries in one image, at
// load or after a dlopen) share what a single patch would pay for on its own: one open
// /proc/self/mem, one reading of /proc/self/maps (g_snap below), one core serialization at
// the end, and the answer to "is any other thread there?". Guarded by g_lock.
struct Batch {
  bool on;
  int memfd;         // /proc/self/mem, opened on the batch's first write (-1: not open)
  int8_t alone;      // 1: the process had one task when the batch first wrote; -1: not (0: not asked)
  bool sync_due;     // entries were written; serialize at batch_end()
};
Batch g_batch = {false, -1, 0, false};

void fail(Result &r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail(Result &r, const char *fmt, ...) {
  r.ok = false;
  r.trampoline = nullptr;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.why, sizeof r.why, fmt, ap);
  va_end(ap);
}

Result fresh() {
  Result r;
  r.ok = false;
  r.trampoline = nullptr;
  r.why[0] = 0;
  return r;
}

bool fits32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// ---------------------------------------------------------------------------------------
// /proc/self/maps, read with a fixed buffer (no stdio, no malloc).

struct Mapping {
  uintptr_t start, end;
  bool r, w, x;
  bool heap, stack;  // "[heap]" grows up into the gap above it, "[stack]" down into the one below
  bool special;      // [vdso], [vsyscall], [vvar]: never patched
};

uintptr_t parse_hex(const char *&p, const char *e) {
  uintptr_t v = 0;
  while (p < e) {
    char c = *p;
    unsigned d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else break;
    v = v << 4 | d;
    ++p;
  }
  return v;
}

bool parse_line(const char *p, const char *e, Mapping &m) {
  m.start = parse_hex(p, e);
  if (p >= e || *p != '-') return false;
  ++p;
  m.end = parse_hex(p, e);
  if (p + 5 > e || *p != ' ') return false;
  m.r = p[1] == 'r';
  m.w = p[2] == 'w';
  m.x = p[3] == 'x';
  // The path is the last field; only pseudo-paths ("[heap]", "[vdso]") matter here.
  m.heap = m.stack = m.special = false;
  if (e[-1] == ']') {
    const char *q = e - 1;
    while (q > p && *q != '[') --q;
    m.heap = e - q == 6 && memcmp(q, "[heap]", 6) == 0;
    m.stack = e - q == 7 && memcmp(q, "[stack]", 7) == 0;
    m.special = q[1] == 'v';  // [vdso] [vvar] [vsyscall]
  }
  return true;
}

// Calls f(const Mapping&) for each mapping in address order until f returns false.
template <class F>
bool for_each_mapping(F &&f) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  std::size_t have = 0;
  bool go = true, ok = true;
  while (go) {
    ssize_t n = read(fd, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { ok = false; break; }
    have += static_cast<std::size_t>(n);
    std::size_t pos = 0;
    for (;;) {
      char *nl = static_cast<char *>(memchr(buf + pos, '\n', have - pos));
      if (!nl) break;
      Mapping m;
      if (parse_line(buf + pos, nl, m) && !f(m)) { go = false; break; }
      pos = static_cast<std::size_t>(nl - buf) + 1;
    }
    if (n == 0) break;
    if (pos == 0 && have == sizeof buf) { ok = false; break; }  // absurd line length
    memmove(buf, buf + pos, have - pos);
    have -= pos;
  }
  close(fd);
  return ok;
}

// The mapping holding addr, extended over directly adjacent mappings with the same
// protection. Entry patches split text into several mappings (swap_write replaces whole
// pages), so "the end of the mapping" must look past those seams.
bool find_extent(uintptr_t addr, Mapping &out) {
  bool found = false;
  for_each_mapping([&](const Mapping &m) {
    if (!found) {
      if (addr < m.start) return false;
      if (addr < m.end) { out = m; found = true; }
      return true;
    }
    if (m.start != out.end || m.r != out.r || m.w != out.w || m.x != out.x || m.special) return false;
    out.end = m.end;
    return true;
  });
  return found;
}

// ---------------------------------------------------------------------------------------
// Writing code. Preferred path: pwrite() to /proc/self/mem, which the kernel performs
// with FOLL_FORCE on read-only text without changing the mapping's protection.

// Inside a batch the descriptor stays open until batch_end(): open and close were two of
// the seven system calls each patch made.
bool procmem_write(uintptr_t addr, const void *src, std::size_t n) {
  int fd = g_batch.on ? g_batch.memfd : -1;
  if (fd < 0) {
    fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    if (fd < 0) return false;
    if (g_batch.on) g_batch.memfd = fd;
  }
  ssize_t w;
  do {
    w = pwrite(fd, src, n, static_cast<off_t>(addr));
  } while (w < 0 && errno == EINTR);
  if (!g_batch.on) close(fd);
  return w == static_cast<ssize_t>(n) && memcmp(reinterpret_cast<void *>(addr), src, n) == 0;
}

int prot_of(const Mapping &m) {
  return (m.r ? PROT_READ : 0) | (m.w ? PROT_WRITE : 0) | (m.x ? PROT_EXEC : 0);
}

// Fallback when /proc/self/mem is unavailable (e.g. kernels booted with
// proc_mem.force_override=never, or a seccomp/LSM policy): briefly make the page(s)
// RWX. Executable throughout, so threads running on the page never fault; writable and
// executable for the duration of one store, which is the W^X trade-off this costs.
bool mprotect_write(uintptr_t addr, const void *src, std::size_t n, bool atomic8) {
  Mapping m;
  if (!find_extent(addr, m)) return false;
  uintptr_t p0 = addr & ~(kPage - 1);
  uintptr_t p1 = (addr + n + kPage - 1) & ~(kPage - 1);
  if (p1 > m.end) return false;  // spans mappings with different protections: do not guess
  if (mprotect(reinterpret_cast<void *>(p0), p1 - p0, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
    return false;
  if (atomic8) {
    uint64_t v;
    memcpy(&v, src, 8);
    __atomic_store_n(reinterpret_cast<uint64_t *>(addr), v, __ATOMIC_SEQ_CST);
  } else {
    memcpy(reinterpret_cast<void *>(addr), src, n);
  }
  mprotect(reinterpret_cast<void *>(p0), p1 - p0, prot_of(m));
  return memcmp(reinterpret_cast<void *>(addr), src, n) == 0;
}

enum class WriteHow { none, swap, direct, procmem, mprotect };

// Atomic replacement of whole pages: build a copy of the page(s) holding [addr, addr+n)
// with the new bytes in a fresh RW mapping, make it read+exec like the original, and
// mremap() it over the original. The kernel swaps the page-table entries under the mm
// lock: another thread executing there runs either the old page or the new one (a fetch
// in between faults, waits for the lock, and then sees the new page), never a mix, and no
// mapping is ever writable and executable. Only for mappings that are not writable (text):
// a concurrent store to a writable page between our copy and the swap would be lost.
// Cost: the page(s) become anonymous memory (as after any copy-on-write of text).
bool swap_write(const Mapping &m, uintptr_t addr, const void *src, std::size_t n) {
  uintptr_t p0 = addr & ~(kPage - 1);
  uintptr_t p1 = (addr + n + kPage - 1) & ~(kPage - 1);
  if (p0 < m.start || p1 > m.end || m.w) return false;
  std::size_t len = p1 - p0;
  void *nw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (nw == MAP_FAILED) return false;
  memcpy(nw, reinterpret_cast<const void *>(p0), len);
  memcpy(static_cast<uint8_t *>(nw) + (addr - p0), src, n);
  if (mprotect(nw, len, prot_of(m)) != 0) {
    munmap(nw, len);
    return false;
  }
  void *r = mremap(nw, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void *>(p0));
  if (r != reinterpret_cast<void *>(p0)) {
    munmap(nw, len);
    return false;
  }
  return memcmp(reinterpret_cast<void *>(addr), src, n) == 0;
}

// Is this process's thread group one task? (/proc/self/task: ".", ".." and one tid.)
// False when it cannot tell. Used only inside a batch, where our own code creates no
// thread between this answer and batch_end() (see write_entry()).
bool one_task() {
  int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  struct Dirent64 {  // the kernel's linux_dirent64
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[1];
  };
  alignas(8) char buf[1024];
  int tasks = 0;
  long got;
  while (tasks < 2 && (got = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
    for (long off = 0; off < got;) {
      const Dirent64 *d = reinterpret_cast<const Dirent64 *>(buf + off);
      if (d->name[0] != '.') ++tasks;
      off += d->reclen;
    }
  close(fd);
  return tasks == 1;
}

bool batch_alone() {
  if (!g_batch.on) return false;
  if (g_batch.alone == 0) g_batch.alone = one_task() ? 1 : -1;
  return g_batch.alone == 1;
}

// Writes the entry jump, as atomically as the platform allows (docs/patching.md):
//  1. mapping already writable (JIT-style RWX memory): one aligned 8-byte atomic store
//     when the bytes fit one qword;
//  1b. a batch in a process of one task: /proc/self/mem. The page swap exists for other
//     threads that may be fetching the entry while it changes; with no other task there
//     is none, and our own thread is in this function, not in the entry, so the write is
//     as atomic as the swap for every thread that exists -- at a tenth of its cost
//     (mmap, mprotect and an mremap that splits the text mapping, ~20 us, against one
//     pwrite, ~2 us). The answer holds until batch_end(): nothing between installs
//     creates a thread (images.cc looks symbols up and records coverage).
//  2. page swap (swap_write): atomic for threads entering the function, W^X kept;
//  3. /proc/self/mem: W^X kept, protection unchanged, but the kernel copies byte-wise on
//     CPUs with fast short rep movsb, so an entering thread can see a torn entry;
//  4. mprotect(RWX) + aligned 8-byte atomic store: atomic when the bytes fit one qword,
//     but the page is writable and executable for the duration of one store.
WriteHow write_entry(const Mapping &m, uintptr_t at, const uint8_t *bytes, unsigned n) {
  uintptr_t q = at & ~uintptr_t{7};
  bool fits_qword = at + n <= q + 8;
  uint8_t word[8];
  if (fits_qword) {
    memcpy(word, reinterpret_cast<const void *>(q), 8);
    memcpy(word + (at - q), bytes, n);
  }
  if (m.w) {
    if (fits_qword) {
      uint64_t v;
      memcpy(&v, word, 8);
      __atomic_store_n(reinterpret_cast<uint64_t *>(q), v, __ATOMIC_SEQ_CST);
    } else {
      memcpy(reinterpret_cast<void *>(at), bytes, n);
    }
    return WriteHow::direct;
  }
  if (batch_alone() && procmem_write(at, bytes, n)) return WriteHow::procmem;
  if (swap_write(m, at, bytes, n)) return WriteHow::swap;
  if (fits_qword) {
    if (procmem_write(q, word, 8)) return WriteHow::procmem;
    if (mprotect_write(q, word, 8, true)) return WriteHow::mprotect;
    return WriteHow::none;
  }
  if (procmem_write(at, bytes, n)) return WriteHow::procmem;
  if (mprotect_write(at, bytes, n, false)) return WriteHow::mprotect;
  return WriteHow::none;
}

// Make every thread of the process execute a core-serializing instruction before it
// next runs user code, so none keeps executing stale prefetched bytes of the old entry
// (Intel SDM, cross-modifying code). Best effort: older kernels lack the command.
// With other_threads false (a process of one task, see write_entry()) there is no other
// thread to serialize: membarrier is skipped, registration included (up to ~60 us here).
void sync_cores(bool other_threads = true) {
  static int registered;  // 0 unknown, 1 yes, -1 unavailable; guarded by g_lock
  if (other_threads && registered == 0) {
    long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
    registered = rc == 0 ? 1 : -1;
  }
  if (other_threads && registered == 1) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
  unsigned a, b, c, d;
  __cpuid(0, a, b, c, d);  // serialize this thread too
  (void)a; (void)b; (void)c; (void)d;
}

// ---------------------------------------------------------------------------------------
// Near memory: arenas of trampolines within rel32 reach of their targets.

// Reserved PROT_NONE; pages are committed (int3-filled, sealed RX) one at a time as slots
// need them. Filling all 64 KiB with int3 up front faulted in 16 pages, and callgrind
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
    memset(pg, 0xCC, kPage);  // int3 everywhere unused
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

bool is_arena_addr(uintptr_t p) {
  for (int i = 0; i < g_narenas; ++i)
    if (p >= g_arenas[i].base && p < g_arenas[i].base + g_arenas[i].len) return true;
  return false;
}

// Free address ranges from /proc/self/maps, nearest first: the page-aligned start of
// a `len`-byte block in a gap, as close to `at` as the gap allows, within reach.
// Skips the gap below [stack] and keeps kHeapGap above [heap] so the host's stack and
// brk heap can still grow. Fed one mapping at a time, in address order.
struct GapFinder {
  static constexpr int kMax = 8;
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
// most of the cost of a patch): the extent holding the target, whether the whole function
// is readable and executable, and where a new arena could go.
struct Survey {
  bool found;
  Mapping ext;   // see find_extent()
  bool fn_rx;    // [target, target + fn_size) readable and executable
  int ngaps;
  uintptr_t gaps[GapFinder::kMax];
};

// One reading of /proc/self/maps shared by the patches of a batch (patch::batch_begin):
// a runtime's 14 entries in one image see the same mappings, and parsing the file 14
// times was ~300,000 instructions of every static python's start-up. What the survey
// takes from it does not go stale within a batch: the target's extent and protection
// belong to a loaded image (page swaps keep r-x), and a gap another thread takes
// meanwhile only makes new_arena()'s MAP_FIXED_NOREPLACE fail and look again. An arena
// we map is added to it (snapshot_add) rather than read back. Guarded by g_lock, like
// all patcher state.
struct MapsSnapshot {
  static constexpr int kMax = 4096;
  bool valid;
  int n;
  Mapping m[kMax];
};
MapsSnapshot g_snap;

template <class F>
bool for_each_mapping_batched(F &&f) {
  if (!g_batch.on) return for_each_mapping(f);
  if (!g_snap.valid) {
    int n = 0;
    bool fits = true;
    if (!for_each_mapping([&](const Mapping &m) {
          if (n == MapsSnapshot::kMax) { fits = false; return false; }
          g_snap.m[n++] = m;
          return true;
        }))
      return false;
    if (!fits) return for_each_mapping(f);
    g_snap.n = n;
    g_snap.valid = true;
  }
  for (int i = 0; i < g_snap.n; ++i)
    if (!f(static_cast<const Mapping &>(g_snap.m[i]))) break;
  return true;
}

// Our own new mapping, in address order, so the next survey of the batch sees the gap
// taken without reading /proc/self/maps again (a second reading was ~10 system calls).
void snapshot_add(uintptr_t start, std::size_t len) {
  if (!g_snap.valid) return;
  if (g_snap.n == MapsSnapshot::kMax) { g_snap.valid = false; return; }
  int i = g_snap.n++;
  for (; i > 0 && g_snap.m[i - 1].start > start; --i) g_snap.m[i] = g_snap.m[i - 1];
  Mapping &m = g_snap.m[i];
  m = Mapping{};
  m.start = start;
  m.end = start + len;
  // ---p as reserved; pages become r-x later, which no survey of a target depends on
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
      if (m.start == sv.ext.end && m.r == sv.ext.r && m.w == sv.ext.w && m.x == sv.ext.x && !m.special)
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

// Where would the next slot for `at` go? Existing arena with room, else a gap.
// Does not map anything (used by check()).
bool peek_slot(uintptr_t at, const Survey &sv, uintptr_t &slot) {
  for (int i = 0; i < g_narenas; ++i) {
    const Arena &a = g_arenas[i];
    std::size_t off;
    bool fresh;
    if (!in_reach(at, a.base, a.len) || !next_slot(a, off, fresh)) continue;
    slot = a.base + off;
    return true;
  }
  if (sv.ngaps < 1) return false;
  slot = sv.gaps[0];
  return true;
}

// ---------------------------------------------------------------------------------------
// Planning: decode the prologue, classify each instruction, scan the function.

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

// Zydis, loaded on first use (meson.build says why). Header types, dlsym'd functions.
#ifndef PFG_ZYDIS_SONAME
#define PFG_ZYDIS_SONAME "libZydis.so"
#endif
struct ZydisApi {
  decltype(&ZydisDecoderInit) init;
  decltype(&ZydisDecoderDecodeInstruction) decode;
  decltype(&ZydisDecoderDecodeFull) decode_full;
  decltype(&ZydisMnemonicGetString) mnemonic;
  decltype(&ZydisGetVersion) version;
  ZydisDecoder decoder;
  char error[144];  // why it could not be loaded ("" when it was)
};
ZydisApi g_zydis;

// Runs once, under pthread_once: at load time or from a dlopen of a runtime, never in a
// dying thread. The libc dlopen, not the guard's exported one (which would re-enter
// runtime detection, whose mutex our caller may hold).
void load_zydis() {
  using dlopen_fn = void *(*)(const char *, int);
  auto real_dlopen = reinterpret_cast<dlopen_fn>(dlsym(RTLD_NEXT, "dlopen"));
  void *h = nullptr;
#ifdef PFG_ZYDIS_DIR
  if (real_dlopen) h = real_dlopen(PFG_ZYDIS_DIR "/" PFG_ZYDIS_SONAME, RTLD_NOW | RTLD_LOCAL);
#endif
  if (!h && real_dlopen) h = real_dlopen(PFG_ZYDIS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(g_zydis.error, sizeof g_zydis.error, "cannot load %s: %s", PFG_ZYDIS_SONAME, e ? e : "no dlopen");
    return;
  }
  g_zydis.init = reinterpret_cast<decltype(g_zydis.init)>(dlsym(h, "ZydisDecoderInit"));
  g_zydis.decode = reinterpret_cast<decltype(g_zydis.decode)>(dlsym(h, "ZydisDecoderDecodeInstruction"));
  g_zydis.decode_full = reinterpret_cast<decltype(g_zydis.decode_full)>(dlsym(h, "ZydisDecoderDecodeFull"));
  g_zydis.mnemonic = reinterpret_cast<decltype(g_zydis.mnemonic)>(dlsym(h, "ZydisMnemonicGetString"));
  g_zydis.version = reinterpret_cast<decltype(g_zydis.version)>(dlsym(h, "ZydisGetVersion"));
  if (!g_zydis.init || !g_zydis.decode || !g_zydis.decode_full || !g_zydis.mnemonic || !g_zydis.version ||
      !ZYAN_SUCCESS(g_zydis.init(&g_zydis.decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))) {
    snprintf(g_zydis.error, sizeof g_zydis.error, "%s lacks the Zydis 4 decoder API", PFG_ZYDIS_SONAME);
    g_zydis.init = nullptr;
  }
}

// The decoder, or nullptr (then g_zydis.error says why).
const ZydisApi *zydis() {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, load_zydis);
  return g_zydis.init ? &g_zydis : nullptr;
}

int64_t rel_imm(const ZydisDecodedInstruction &in, int i) {
  int64_t v = static_cast<int64_t>(in.raw.imm[i].value.u);
  switch (in.raw.imm[i].size) {
    case 8: return static_cast<int8_t>(v);
    case 16: return static_cast<int16_t>(v);
    case 32: return static_cast<int32_t>(v);
    default: return v;
  }
}

bool is_jcc(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JL:
    case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNB: case ZYDIS_MNEMONIC_JNBE:
    case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JNLE: case ZYDIS_MNEMONIC_JNO:
    case ZYDIS_MNEMONIC_JNP: case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_JNZ:
    case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JS:
    case ZYDIS_MNEMONIC_JZ:
      return true;
    default:
      return false;
  }
}

// Scan the whole function for relative branches into bytes 1..covered-1 of the patch.
// Linear sweep: x86-64 compilers keep jump tables in .rodata, so text decodes cleanly;
// undecodable bytes are skipped one at a time (conservative: more branches seen, not fewer).
//
// A byte-pattern prefilter runs first: every relative branch has its opcode byte at some
// offset with its displacement right after it, so checking *every* offset for those
// patterns finds a superset of the branches into the range. Only when it finds a
// candidate does the (ten times slower) decode run to confirm. This keeps load-time
// patching cheap: Zydis costs ~400 instructions per decoded instruction.
bool may_branch_into(const uint8_t *b, std::size_t n, uintptr_t ip0, uintptr_t lo, uintptr_t hi) {
  auto hit = [&](std::size_t end, int64_t rel) {
    uintptr_t d = ip0 + end + static_cast<uintptr_t>(rel);
    return d >= lo && d < hi;
  };
  auto rel32 = [&](std::size_t at) { int32_t v; memcpy(&v, b + at, 4); return static_cast<int64_t>(v); };
  auto rel16 = [&](std::size_t at) { int16_t v; memcpy(&v, b + at, 2); return static_cast<int64_t>(v); };
  for (std::size_t q = 0; q + 2 <= n; ++q) {
    uint8_t c = b[q];
    // jcc rel8, jmp rel8, loop/loopcc/jrcxz rel8
    if (((c & 0xF0) == 0x70 || c == 0xEB || (c >= 0xE0 && c <= 0xE3)) && hit(q + 2, static_cast<int8_t>(b[q + 1])))
      return true;
    if ((c == 0xE8 || c == 0xE9) && q + 5 <= n && hit(q + 5, rel32(q + 1))) return true;  // call/jmp rel32
    if (c == 0x0F && q + 6 <= n && (b[q + 1] & 0xF0) == 0x80 && hit(q + 6, rel32(q + 2))) return true;  // jcc rel32
    if (c == 0xC7 && q + 6 <= n && b[q + 1] == 0xF8 && hit(q + 6, rel32(q + 2))) return true;  // xbegin
    if (c == 0x66 && q + 4 <= n && (b[q + 1] == 0xE8 || b[q + 1] == 0xE9) && hit(q + 4, rel16(q + 2)))
      return true;  // operand-size-prefixed rel16 forms
  }
  return false;
}

bool scan_function(const Plan &p, std::size_t fn_size, Result &r) {
  const ZydisApi *z = zydis();
  if (!z) { fail(r, "%s", g_zydis.error); return false; }
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
  if (!z) { fail(r, "%s", g_zydis.error); return false; }
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
        int32_t x = static_cast<int32_t>(d);
#ifndef PFG_PATCH_MUTANT_NO_DISP_FIXUP  // tests/unit builds a mutant without it: the corpus must fail
        memcpy(out + pos - pi.len + pi.disp_off, &x, 4);
#else
        (void)x;
#endif
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

// ---------------------------------------------------------------------------------------
// The table of installed patches: mmap'ed chunks, never freed. A record whose image was
// unmapped (forget()) becomes a tombstone (target 0) and is reused.

struct Installed {
  uintptr_t target, at;
  void *trampoline;
  uint8_t covered;
  uint8_t orig[23];
};
struct Chunk {
  Chunk *next;
  unsigned n;
  Installed e[(65536 - 16) / sizeof(Installed)];
};
Chunk *g_chunks;
std::size_t g_installed;

const Installed *find_installed(uintptr_t target) {
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i)
      if (c->e[i].target && (c->e[i].target == target || c->e[i].at == target)) return &c->e[i];
  return nullptr;
}

// A claimed record is filled by install() only on success; until then (and if install
// fails: unclaim) it is a tombstone, with `claimed` keeping it from being handed out twice.
Installed *g_pending;

void unclaim(Installed *rec) {
  rec->target = rec->at = 0;
  rec->trampoline = nullptr;
  g_pending = nullptr;
}

Installed *new_installed() {
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i)
      if (!c->e[i].target && &c->e[i] != g_pending) return g_pending = &c->e[i];
  constexpr unsigned cap = sizeof(Chunk::e) / sizeof(Installed);
  if (!g_chunks || g_chunks->n == cap) {
    void *p = mmap(nullptr, sizeof(Chunk), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    Chunk *c = static_cast<Chunk *>(p);
    c->next = g_chunks;
    c->n = 0;
    g_chunks = c;
  }
  g_chunks->e[g_chunks->n].target = 0;
  return g_pending = &g_chunks->e[g_chunks->n++];
}

bool check_locked(const void *target, std::size_t fn_size, Plan &p, Result &r) {
  if (const Installed *e = find_installed(reinterpret_cast<uintptr_t>(target))) {
    (void)e;
    fail(r, "already patched");
    return false;
  }
  return plan(target, fn_size, p, r);
}

}  // namespace

bool supported() { return true; }

void batch_begin() {
  Locker lock;
  g_batch = Batch{true, -1, 0, false};
  g_snap.valid = false;
}

void batch_end() {
  Locker lock;
  if (g_batch.sync_due) sync_cores(g_batch.alone != 1);
  if (g_batch.memfd >= 0) close(g_batch.memfd);
  g_batch = Batch{false, -1, 0, false};
  g_snap.valid = false;
}

Result check(const void *target, std::size_t fn_size) {
  Result r = fresh();
  Locker lock;
  Plan p;
  if (!check_locked(target, fn_size, p, r)) return r;
  uintptr_t slot;
  if (!peek_slot(p.at, p.sv, slot)) {
    fail(r, "no free address range within +-2 GiB of the target");
    return r;
  }
  uint8_t buf[kSlotLen];
  unsigned len;
  if (!encode(p, slot + kStubLen, buf, len, r)) return r;
  r.ok = true;
  return r;
}

Result install(void *target, std::size_t fn_size, void *hook, void **real_out) {
  Result r = fresh();
  if (!hook || !real_out) { fail(r, "null hook or real_out"); return r; }
  Locker lock;
  Plan p;
  if (!check_locked(target, fn_size, p, r)) return r;
  Installed *rec = new_installed();
  if (!rec) { fail(r, "out of memory for the patch table"); return r; }

  uint8_t slotbuf[kSlotLen];
  uintptr_t slot = 0;
  Arena *arena = nullptr;
  // Up to two attempts: a sealed page (written through /proc/self/mem), then a fresh page
  // (written while RW) if that write failed.
  for (int attempt = 0; attempt < 2 && !slot; ++attempt) {
    arena = nullptr;
    std::size_t off = 0;
    bool fresh = false;
    for (int i = 0; i < g_narenas; ++i) {
      Arena &a = g_arenas[i];
      if (in_reach(p.at, a.base, a.len) && next_slot(a, off, fresh)) { arena = &a; break; }
    }
    if (!arena && (arena = new_arena(p.at, p.sv.gaps, p.sv.ngaps))) next_slot(*arena, off, fresh);
    if (!arena) { unclaim(rec); fail(r, "no free address range within +-2 GiB of the target"); return r; }
    uintptr_t s = arena->base + off;
    // stub: jmp qword [rip+0]; .quad hook
    memset(slotbuf, 0xCC, sizeof slotbuf);
    static const uint8_t j[6] = {0xFF, 0x25, 0, 0, 0, 0};
    memcpy(slotbuf, j, 6);
    memcpy(slotbuf + 6, &hook, 8);
    unsigned tlen;
    if (!encode(p, s + kStubLen, slotbuf + kStubLen, tlen, r)) { unclaim(rec); return r; }
    if (!write_slot(*arena, off, fresh, slotbuf)) {
      if (fresh) {
        unclaim(rec);
        fail(r, "mprotect of a trampoline page failed (errno %d)", errno);
        return r;
      }
      continue;  // /proc/self/mem refused: the next attempt takes a fresh page
    }
    slot = s;
  }
  if (!slot) { unclaim(rec); fail(r, "could not write the trampoline"); return r; }
  arena->live++;
  __builtin___clear_cache(reinterpret_cast<char *>(slot), reinterpret_cast<char *>(slot + kSlotLen));

  void *tramp = reinterpret_cast<void *>(slot + kStubLen);
  rec->target = p.target;
  rec->at = p.at;
  rec->trampoline = tramp;
  rec->covered = static_cast<uint8_t>(p.covered);
  memcpy(rec->orig, p.code, p.covered < sizeof rec->orig ? p.covered : sizeof rec->orig);

  // Publish the original before any caller can reach the hook.
  void *prev = __atomic_load_n(real_out, __ATOMIC_ACQUIRE);
  __atomic_store_n(real_out, tramp, __ATOMIC_SEQ_CST);

  uint8_t jmp[kJmpLen];
  jmp[0] = 0xE9;
  // Straight to the hook when it is within rel32 reach (a library patched by a library
  // loaded near it): one indirect jump less per call. Otherwise through the stub.
  int64_t dh = static_cast<int64_t>(reinterpret_cast<uintptr_t>(hook)) - static_cast<int64_t>(p.at + kJmpLen);
  int64_t d = fits32(dh) ? dh : static_cast<int64_t>(slot) - static_cast<int64_t>(p.at + kJmpLen);
  int32_t d32 = static_cast<int32_t>(d);  // the stub is in reach by construction of the arena
  memcpy(jmp + 1, &d32, 4);
  const WriteHow how = fits32(d) ? write_entry(p.sv.ext, p.at, jmp, kJmpLen) : WriteHow::none;
  if (how == WriteHow::none) {
    __atomic_store_n(real_out, prev, __ATOMIC_SEQ_CST);
    arena->live--;
    unclaim(rec);
    fail(r, "could not write the entry (/proc/self/mem and mprotect both failed)");
    return r;
  }
  __builtin___clear_cache(reinterpret_cast<char *>(p.at), reinterpret_cast<char *>(p.at + kJmpLen));
  // A page swap serializes every core running this process by itself (the TLB-flush
  // IPIs), and a process of one task has no other core to serialize: in a batch both
  // wait for one sync_cores() at batch_end(). An in-place write among other threads is
  // serialized at once.
  if (g_batch.on && (how == WriteHow::swap || batch_alone())) g_batch.sync_due = true;
  else sync_cores();
  g_pending = nullptr;
  ++g_installed;
  r.ok = true;
  r.trampoline = tramp;
  return r;
}

int forget(uintptr_t lo, uintptr_t hi) {
  Locker lock;
  int n = 0;
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i) {
      Installed &e = c->e[i];
      if (!e.target || e.target < lo || e.target >= hi) continue;
      const uintptr_t t = reinterpret_cast<uintptr_t>(e.trampoline);
      for (int a = 0; a < g_narenas; ++a)
        if (t >= g_arenas[a].base && t < g_arenas[a].base + g_arenas[a].len && g_arenas[a].live) g_arenas[a].live--;
      e.target = e.at = 0;
      e.trampoline = nullptr;
      --g_installed;
      ++n;
    }
  // Unmap the arenas that only held the image's trampolines: nothing can run there any
  // more (every way in was an entry of the unmapped image or a real-function slot that
  // the caller reset before calling us), and the address range is free for the next
  // mapping of the library.
  for (int a = 0; a < g_narenas;) {
    Arena &ar = g_arenas[a];
    if (ar.live == 0 && ar.used > 0) {
      munmap(reinterpret_cast<void *>(ar.base), ar.len);
      ar = g_arenas[--g_narenas];
      continue;
    }
    ++a;
  }
  g_snap.valid = false;
  return n;
}

const char *describe() {
  static char buf[224];
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] {
    const ZydisApi *z = zydis();
    if (!z) {
      snprintf(buf, sizeof buf, "x86-64 (no decoder: %s)", g_zydis.error);
      return;
    }
    ZyanU64 v = z->version();
    snprintf(buf, sizeof buf, "x86-64 (Zydis %u.%u.%u, %s)", static_cast<unsigned>(v >> 48),
             static_cast<unsigned>((v >> 32) & 0xFFFF), static_cast<unsigned>((v >> 16) & 0xFFFF),
             PFG_ZYDIS_SONAME);
  });
  return buf;
}

}  // namespace pfg::patch
