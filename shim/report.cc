#include "report.h"

#include <cerrno>
#include <climits>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "config.h"
#include "park.h"
#include "state.h"

namespace pfg {

Writer &Writer::str(const char *s) {
  while (*s) chr(*s++);
  return *this;
}

Writer &Writer::safe(const char *s, size_t max) {
  size_t i = 0;
  for (; s[i] && i < max; ++i) chr(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
  if (s[i]) str("...");
  return *this;
}

Writer &Writer::chr(char c) {
  if (n_ == sizeof buf_) flush();
  buf_[n_++] = c;
  return *this;
}

Writer &Writer::dec(int64_t v) {
  char tmp[24];
  int i = 0;
  uint64_t u = v < 0 ? uint64_t(-(v + 1)) + 1 : uint64_t(v);
  do tmp[i++] = char('0' + u % 10); while (u /= 10);
  if (v < 0) chr('-');
  while (i) chr(tmp[--i]);
  return *this;
}

Writer &Writer::hex(uint64_t v) {
  char tmp[16];
  int i = 0;
  do tmp[i++] = "0123456789abcdef"[v & 15]; while (v >>= 4);
  str("0x");
  while (i) chr(tmp[--i]);
  return *this;
}

Writer &Writer::ms(int64_t ns) {
  if (ns < 0) ns = 0;
  dec(ns / 1000000).chr('.').dec(ns / 100000 % 10);
  return *this;
}

void Writer::flush() {
  size_t off = 0;
  while (fd_ >= 0 && off < n_) {
    ssize_t w = write(fd_, buf_ + off, n_ - off);
    if (w > 0) off += size_t(w);
    else if (w < 0 && errno == EINTR) continue;
    else break;  // a broken log must never stop the thread from parking
  }
  n_ = 0;
}

int log_fd() {
  if (g_config.secure) return -1;
  if (!g_config.log_file) return 2;
  // Opened once, by whichever thread reports first; open(2) is async-signal-safe. A
  // second thread racing here opens its own descriptor and closes it if it lost.
  static std::atomic<int> fd{-1};
  int cur = fd.load();
  if (cur >= 0) return cur;
  int nfd = open(g_config.log_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (nfd < 0) return 2;  // the report goes to stderr instead (and says why below)
  if (!fd.compare_exchange_strong(cur, nfd)) {
    close(nfd);
    return cur;
  }
  return nfd;
}

namespace {

// The GNU build-id of the object loaded at bias with its ELF header at base (both from
// dladdr/link_map), as lowercase hex into out (at least 2 * 20 + 1 bytes). Reads the
// object's own program headers and notes in memory: no file access, no malloc, no lock.
// False when there is none (or the header is not mapped where expected).
bool build_id(uintptr_t base, uintptr_t bias, char *out, size_t cap) {
  const auto *eh = reinterpret_cast<const ElfW(Ehdr) *>(base);
  if (!base || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_phentsize != sizeof(ElfW(Phdr)))
    return false;
  const auto *ph = reinterpret_cast<const ElfW(Phdr) *>(base + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; ++i) {
    if (ph[i].p_type != PT_NOTE) continue;
    uintptr_t p = bias + ph[i].p_vaddr, end = p + ph[i].p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const auto *nh = reinterpret_cast<const ElfW(Nhdr) *>(p);
      const uintptr_t name = p + sizeof *nh, desc = name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(reinterpret_cast<const void *>(name), "GNU", 4) == 0 &&
          desc + nh->n_descsz <= end && 2 * nh->n_descsz < cap) {
        const auto *d = reinterpret_cast<const uint8_t *>(desc);
        for (unsigned k = 0; k < nh->n_descsz; ++k) {
          out[2 * k] = "0123456789abcdef"[d[k] >> 4];
          out[2 * k + 1] = "0123456789abcdef"[d[k] & 15];
        }
        out[2 * nh->n_descsz] = 0;
        return true;
      }
      p = desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
  return false;
}

// One backtrace line per frame, symbolized with libunwind's unw_get_proc_name, which
// reads the module's own symbol table (static functions included) from the file with
// mmap: no malloc. Module names come from dladdr.
void backtrace(Writer &w) {
  unw_context_t uc;
  unw_cursor_t cur;
  if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0) return;
  Dl_info self{};
  dladdr(reinterpret_cast<void *>(&report_park), &self);
  int depth = 0;
  // Modules whose build-id this report already gave (on their first unnamed frame).
  uintptr_t ided[8];
  int nided = 0;
  while (unw_step(&cur) > 0 && depth < 24) {
    unw_word_t ip = 0, off = 0;
    unw_get_reg(&cur, UNW_REG_IP, &ip);
    Dl_info di{};
    void *ent = nullptr;
    bool known = dladdr1(reinterpret_cast<void *>(ip - 1), &di, &ent, RTLD_DL_SYMENT) != 0;
    struct link_map *lm = nullptr;
    if (known) dladdr1(reinterpret_cast<void *>(ip - 1), &di, reinterpret_cast<void **>(&lm), RTLD_DL_LINKMAP);
    if (known && di.dli_fbase == self.dli_fbase) continue;  // the guard's own frames
    // dladdr knows exported symbols only; libunwind also reads .symtab (static
    // functions) when the file has one. In a stripped library both fall back to the
    // nearest exported symbol, which is a lie when ip is past that symbol's end.
    auto *dsym = static_cast<const ElfW(Sym) *>(ent);
    uintptr_t doff = known && di.dli_saddr ? ip - uintptr_t(di.dli_saddr) : 0;
    bool dyn_covers = dsym && di.dli_sname && doff < dsym->st_size;
    char sym[160];
    w.str("pyfinguard:   #").dec(depth++).chr(' ').hex(ip).chr(' ');
    bool unw = unw_get_proc_name(&cur, sym, sizeof sym, &off) == 0;
    // libunwind, too, names the nearest preceding symbol; believe it only when that
    // symbol starts where the unwind info says this function starts.
    unw_proc_info_t pi;
    if (unw && unw_get_proc_info(&cur, &pi) == 0 && pi.start_ip && pi.start_ip != ip - off) unw = false;
    const bool named = dyn_covers || unw;
    if (dyn_covers) w.str(di.dli_sname).str("+").hex(doff);
    else if (unw) w.str(sym).str("+").hex(off);
    else w.str("??");
    if (known && di.dli_fname && *di.dli_fname) {
      w.str(" (").str(di.dli_fname);
      // No name: the module and the offset from its load bias -- what addr2line or
      // eu-addr2line -e <module> take -- and, once per module, its build-id, which
      // finds the matching debug file (debuginfod, /usr/lib/debug/.build-id/).
      if (!named && lm) {
        w.str("+").hex(ip - lm->l_addr);
        const uintptr_t base = reinterpret_cast<uintptr_t>(di.dli_fbase);
        bool seen = false;
        for (int k = 0; k < nided; ++k) seen |= ided[k] == base;
        char id[2 * 64 + 1];
        if (!seen && build_id(base, lm->l_addr, id, sizeof id)) {
          w.str(" build-id ").str(id);
          if (nided < 8) ided[nided++] = base;
        }
      }
      w.str(")");
    }
    w.chr('\n');
  }
}

}  // namespace

// Reports written (or attempted): the exit summary is printed only when there was one.
std::atomic<unsigned> g_reported{0};

void report_park(const ParkRecord &r, const char *what) {
  if (r.routine && !g_config.log_set && g_config.mode != Mode::abort) return;
  g_reported.fetch_add(1);
  int fd = log_fd();
  if (fd < 0) return;
  Writer w(fd);
  int64_t start = g_finalize_start_ns.load();
  w.str("pyfinguard: parked thread ").dec(r.tid.load()).str(" '").str(r.name).str("' in ")
      .str(kFns[r.api].name).str(" (generation ").dec(int64_t(r.generation)).str(", ")
      .str(what).str(", ");
  if (start) w.ms(r.when_ns - start).str(" ms after finalization began)");
  else w.str("no finalization seen)");
  if (g_config.mode != Mode::park) w.str(" mode=").str(mode_name(g_config.mode));
  w.chr('\n');
  if (g_config.log_file && fd == 2) w.str("pyfinguard:   (PYFINGUARD_LOG could not be opened)\n");
  backtrace(w);
}

void report_exit_summary() {
  if (g_parked_count.load() == 0) return;
  // Let threads that are parking right now finish their reports (bounded: 250 ms).
  for (int i = 0; i < 250 && g_reports_in_flight.load() > 0; ++i) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, nullptr);
  }
  unsigned n = g_parked_count.load();
  if (g_config.quiet || g_config.secure) return;
  // Only routine parks (CPython's own shutdown of its threads) and no PYFINGUARD_LOG:
  // nothing was reported, and a program's stderr stays exactly as without the guard.
  if (g_reported.load() == 0) return;
  unsigned present = 0, routine = 0, described = n < kMaxParkRecords ? n : kMaxParkRecords;
  for (unsigned i = 0; i < described; ++i) {
    int tid = g_parked[i].tid.load();
    if (tid == 0) continue;
    routine += g_parked[i].routine;
    char path[40];  // "/proc/self/task/<tid>": a thread that parked never exits
    int len = 0;
    const char *pre = "/proc/self/task/";
    while (*pre) path[len++] = *pre++;
    char digits[12];
    int d = 0;
    for (unsigned v = unsigned(tid); v; v /= 10) digits[d++] = char('0' + v % 10);
    while (d) path[len++] = digits[--d];
    path[len] = 0;
    if (access(path, F_OK) == 0) ++present;
  }
  Writer w(2);
  // Parks happen from the moment CPython passes its point of no return inside
  // Py_FinalizeEx (and, for threads of an earlier runtime, later): "after finalization
  // began" is what is measured.
  const unsigned reported = g_reported.load();
  w.str("pyfinguard: ").dec(n).str(n == 1 ? " thread" : " threads")
      .str(" parked after Python finalization began, ").dec(present).str(" still present at exit; ")
      .dec(reported).str(" reported");
  if (g_config.log_file) w.str(" in ").safe(g_config.log_path, 200);
  w.str(", ").dec(routine).str(" routine");
  // Routine parks are reported only with PYFINGUARD_LOG set (docs/diagnostics.md).
  if (reported < n) w.str(" (not reported; PYFINGUARD_LOG=stderr reports them too)");
  w.chr('\n');
}

void report_fatal(const char *a, const char *b, const char *c) {
  Writer(2).str("pyfinguard: fatal: ").str(a).str(b).str(c).chr('\n');
  abort();
}

}  // namespace pfg
