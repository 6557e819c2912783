// Writing code for the patcher (write.h). Preferred path for slots:
// pwrite() to /proc/self/mem, which the kernel performs with FOLL_FORCE on read-only text
// without changing the mapping's protection.
#include "write.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "internal.h"

namespace pfg::patch::impl {
namespace {

// The writes of a batch share what a single patch would pay for on its own: one open
// /proc/self/mem, one answer to "is any other thread there?", one core serialization at
// the end. Guarded by the patcher's lock.
struct Batch {
  bool on;
  int memfd;         // /proc/self/mem, opened on the batch's first write (-1: not open)
  int8_t alone;      // 1: the process had one task when the batch first wrote; -1: not (0: not asked)
  bool sync_due;     // entries were written; serialize at writes_batch_end()
};
Batch g_batch = {false, -1, 0, false};

// Store into writable code: one aligned 8-byte atomic store when atomic8 (the bytes are
// a whole aligned qword), so a thread fetching them sees all old or all new; else a copy.
void store_code(uintptr_t addr, const void *src, std::size_t n, bool atomic8) {
  if (atomic8) {
    uint64_t v;
    memcpy(&v, src, 8);
    __atomic_store_n(reinterpret_cast<uint64_t *>(addr), v, __ATOMIC_SEQ_CST);
  } else {
    memcpy(reinterpret_cast<void *>(addr), src, n);
  }
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
  store_code(addr, src, n, atomic8);
  mprotect(reinterpret_cast<void *>(p0), p1 - p0, prot_of(m));
  return memcmp(reinterpret_cast<void *>(addr), src, n) == 0;
}

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
// thread between this answer and writes_batch_end() (see write_entry()).
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

// Make every thread of the process execute a core-serializing instruction before it
// next runs user code, so none keeps executing stale prefetched bytes of the old entry
// (Intel SDM, cross-modifying code). Best effort: older kernels lack the command.
// With other_threads false (a process of one task, see write_entry()) there is no other
// thread to serialize: membarrier is skipped, registration included.
void sync_cores(bool other_threads) {
  static int registered;  // 0 unknown, 1 yes, -1 unavailable; guarded by the lock
  if (other_threads && registered == 0) {
    long rc = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
    registered = rc == 0 ? 1 : -1;
  }
  if (other_threads && registered == 1) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0);
  // Serialize this thread too: the one instruction of this file that is per architecture.
#if defined(__x86_64__)
  unsigned a, b, c, d;
  __cpuid(0, a, b, c, d);
  (void)a; (void)b; (void)c; (void)d;
#else
#error "sync_cores(): this architecture's context-synchronizing instruction"
#endif
}

}  // namespace

// Inside a batch the descriptor stays open until writes_batch_end(): open and close were
// two of the seven system calls each patch made.
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

//  1. mapping already writable (JIT-style RWX memory): one aligned 8-byte atomic store
//     when the bytes fit one qword;
//  1b. a batch in a process of one task: /proc/self/mem. The page swap exists for other
//     threads that may be fetching the entry while it changes; with no other task there
//     is none, and our own thread is in this function, not in the entry, so the write is
//     as atomic as the swap for every thread that exists, in one system call instead of
//     three (mmap, mprotect and an mremap that splits the text mapping). The answer holds until writes_batch_end(): nothing between installs
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
    if (fits_qword) store_code(q, word, 8, true);
    else store_code(at, bytes, n, false);
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


// A page swap serializes every core running this process by itself (the TLB-flush IPIs),
// and a process of one task has no other core to serialize: in a batch both wait for
// one sync_cores() at writes_batch_end(). An in-place write among other threads is
// serialized at once.
void entry_written(WriteHow how) {
  if (g_batch.on && (how == WriteHow::swap || batch_alone())) g_batch.sync_due = true;
  else sync_cores(true);
}

void writes_batch_begin() { g_batch = Batch{true, -1, 0, false}; }

void writes_batch_end() {
  if (g_batch.sync_due) sync_cores(g_batch.alone != 1);
  if (g_batch.memfd >= 0) close(g_batch.memfd);
  g_batch = Batch{false, -1, 0, false};
}

}  // namespace pfg::patch::impl
