#include "threadscan.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pfg {

namespace {

// Reads a small /proc file into buf (NUL-terminated). -1 on error.
long read_small(const char *path, char *buf, long cap) {
  int fd = int(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return -1;
  long n = syscall(SYS_read, fd, buf, cap - 1);
  syscall(SYS_close, fd);
  if (n < 0) return -1;
  buf[n] = 0;
  return n;
}

// Parses one unsigned number (decimal, or hex after "0x") at *p and moves past it and
// the blank after it.
uint64_t number(const char *&p) {
  uint64_t v = 0;
  if (p[0] == '0' && p[1] == 'x') {
    for (p += 2;; ++p) {
      int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
      if (d < 0) break;
      v = v * 16 + uint64_t(d);
    }
  } else {
    for (; *p >= '0' && *p <= '9'; ++p) v = v * 10 + uint64_t(*p - '0');
  }
  while (*p == ' ') ++p;
  return v;
}

// /proc/self/task/<tid>/syscall: "nr arg1 ... arg6 sp pc", or "running", or "-1 sp pc"
// (not in a syscall). A futex wait whose timeout argument (arg4) is null.
bool futex_untimed(const char *text) {
  if (text[0] < '0' || text[0] > '9') return false;
  const char *p = text;
  uint64_t nr = number(p);
  if (nr != SYS_futex) return false;
  number(p);                       // uaddr
  const uint64_t op = number(p) & FUTEX_CMD_MASK;
  number(p);                       // val
  const uint64_t timeout = number(p);
  const bool waits = op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET || op == FUTEX_LOCK_PI ||
                     op == FUTEX_WAIT_REQUEUE_PI || op == FUTEX_LOCK_PI2;
  return waits && timeout == 0;
}

void path_of(char *out, int tid, const char *leaf) {
  const char *pre = "/proc/self/task/";
  int n = 0;
  while (*pre) out[n++] = *pre++;
  char d[12];
  int k = 0;
  for (unsigned v = unsigned(tid); v; v /= 10) d[k++] = char('0' + v % 10);
  while (k) out[n++] = d[--k];
  out[n++] = '/';
  while (*leaf) out[n++] = *leaf++;
  out[n] = 0;
}

}  // namespace

bool thread_present(int tid) {
  char path[64];
  path_of(path, tid, "");
  return syscall(SYS_faccessat, AT_FDCWD, path, F_OK) == 0;
}

bool scan_threads(bool (*skip)(int tid), ThreadScan &out) {
  out = ThreadScan{0, 0, 0, 0};
  int dir = int(syscall(SYS_openat, AT_FDCWD, "/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir < 0) return false;
  const int self = int(syscall(SYS_gettid));
  alignas(8) char ents[2048];
  bool ok = true;
  for (;;) {
    long n = syscall(SYS_getdents64, dir, ents, sizeof ents);
    if (n < 0) ok = false;
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      auto *d = reinterpret_cast<struct dirent64 *>(ents + off);
      off += d->d_reclen;
      if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
      const char *p = d->d_name;
      const int tid = int(number(p));
      if (tid == self || skip(tid)) continue;
      char path[64], buf[256];
      ++out.threads;
      path_of(path, tid, "schedstat");  // "<ns on cpu> <ns waiting> <slices>"
      if (read_small(path, buf, sizeof buf) > 0) {
        const char *q = buf;
        out.runtime_ns += number(q);
      }
      path_of(path, tid, "stat");  // "tid (comm) S ...": comm may hold ") ", the last one ends it
      if (long len = read_small(path, buf, sizeof buf); len > 0) {
        const char *state = nullptr;
        for (long k = 0; k + 2 < len; ++k)
          if (buf[k] == ')' && buf[k + 1] == ' ') state = buf + k + 2;
        if (state && *state == 'D') ++out.in_io;
      }
      path_of(path, tid, "syscall");
      if (read_small(path, buf, sizeof buf) > 0 && futex_untimed(buf)) ++out.futex_untimed;
    }
  }
  syscall(SYS_close, dir);
  return ok;
}

}  // namespace pfg
