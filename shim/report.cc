#include "report.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "config.h"
#include "park.h"
#include "runtime.h"
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

Writer::Writer(int fd, const char *head) : fd_(fd), dgram_(true) {
  str(head);
  head_ = n_;
}

Writer &Writer::chr(char c) {
  if (n_ >= cap_) {
    if (line_) {  // a JSON line is never split over two writes: the caller truncates
      over_ = true;
      return *this;
    }
    flush();
  }
  buf_[n_++] = c;
  return *this;
}

Writer &Writer::json(const char *s, size_t max) {
  static const char hexd[] = "0123456789abcdef";
  const auto *p = reinterpret_cast<const unsigned char *>(s);
  size_t i = 0;
  chr('"');
  while (i < max && p[i]) {
    const unsigned c = p[i];
    if (c == '"' || c == '\\') {
      chr('\\').chr(char(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      str("\\u00").chr(hexd[c >> 4]).chr(hexd[c & 15]);
      ++i;
    } else if (c < 0x80) {
      chr(char(c));
      ++i;
    } else {
      // Pass a well-formed UTF-8 sequence through (RFC 3629: no overlong forms, no
      // surrogates, nothing past U+10FFFF); any other byte becomes U+FFFD. The loop
      // stops at the first byte that is not a continuation byte, NUL included.
      const size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
      bool ok = len && i + len <= max;
      for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
      if (ok && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) ||
                 (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90)))
        ok = false;
      if (!ok) {
        str("\\ufffd");
        ++i;
        continue;
      }
      for (size_t k = 0; k < len; ++k) chr(char(p[i + k]));
      i += len;
    }
  }
  if (i == max && p[i]) str("...");
  chr('"');
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
  if (dgram_) {
    // One datagram, the syslog prefix first, without the final line end (the daemon
    // ends the record). MSG_DONTWAIT: a daemon that does not read must not hang a
    // process at exit; a full queue is retried for at most 50 ms, then the message is
    // dropped. MSG_NOSIGNAL: never SIGPIPE.
    size_t n = n_;
    if (n > head_ && buf_[n - 1] == '\n') --n;
    for (int tries = 0; fd_ >= 0 && n > head_ && tries < 50; ++tries) {
      if (send(fd_, buf_, n, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) break;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != ENOBUFS) break;
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
    n_ = head_;
    return;
  }
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

// PYFINGUARD_LOG=syslog. Done by hand with socket(2), connect(2) and send(2), which are
// async-signal-safe, rather than with syslog(3): glibc's syslog() takes a process-wide
// lock (syslog_lock) and formats with localtime/stdio, which may allocate -- from a
// thread about to park, a lock another thread holds (or held when the process forked or
// was interrupted) would hang the report, and malloc is off limits here. Created on
// first use, like the log file; a race opens two and closes the loser.
int syslog_fd() {
  if (g_config.secure || !g_config.syslog) return -1;
  static std::atomic<int> fd{-1};
  int cur = fd.load();
  if (cur >= 0) return cur;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, g_config.syslog_path, strnlen(g_config.syslog_path, sizeof a.sun_path - 1));
  if (connect(s, reinterpret_cast<struct sockaddr *>(&a), sizeof a) != 0) {
    close(s);
    return -1;  // no daemon listening: the report goes to stderr (and says so)
  }
  if (!fd.compare_exchange_strong(cur, s)) {
    close(s);
    return cur;
  }
  return s;
}

namespace {

// "<PRI>pyfinguard[PID]: ", RFC 3164 as the local socket takes it (what glibc's syslog()
// sends, less the timestamp and hostname: rsyslog's imuxsock and journald stamp a local
// message on receipt, and the local time a timestamp should carry needs localtime(),
// which takes a lock; JSON reports carry their own UTC "time"). Facility user (1).
void syslog_head(char *out, int severity) {  // out: at least 40 bytes
  char *p = out;
  const int pri = 8 + severity;  // 12 (warning) or 13 (notice): two digits
  *p++ = '<';
  *p++ = char('0' + pri / 10);
  *p++ = char('0' + pri % 10);
  for (const char *t = ">pyfinguard["; *t;) *p++ = *t++;
  char d[12];
  int k = 0;
  for (unsigned v = unsigned(getpid()); v; v /= 10) d[k++] = char('0' + v % 10);
  while (k) *p++ = d[--k];
  for (const char *t = "]: "; *t;) *p++ = *t++;
  *p = 0;
}

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

// One stack frame of a report. sym: the function's name when something believable names
// it (null: not named); module: the file (null: no object maps the address).
struct Frame {
  uintptr_t ip;
  const char *module;
  uintptr_t base;            // its ELF header (dladdr's dli_fbase)
  const struct link_map *lm; // its load bias is lm->l_addr (null: unknown)
  const char *sym;
  uintptr_t symoff;
};

// Walks the calling thread's stack with libunwind and calls emit(frame, depth) for each
// frame outside the guard, at most 24. Symbols come from libunwind's unw_get_proc_name,
// which reads the module's own symbol table (static functions included) from the file
// with mmap: no malloc. Module names come from dladdr.
template <class Emit>
void walk_frames(Emit &emit) {
  unw_context_t uc;
  unw_cursor_t cur;
  if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0) return;
  Dl_info self{};
  dladdr(reinterpret_cast<void *>(&report_park), &self);
  int depth = 0;
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
    bool unw = unw_get_proc_name(&cur, sym, sizeof sym, &off) == 0;
    // libunwind, too, names the nearest preceding symbol; believe it only when that
    // symbol starts where the unwind info says this function starts.
    unw_proc_info_t pi;
    if (unw && unw_get_proc_info(&cur, &pi) == 0 && pi.start_ip && pi.start_ip != ip - off) unw = false;
    Frame f;
    f.ip = ip;
    f.module = known && di.dli_fname && *di.dli_fname ? di.dli_fname : nullptr;
    f.base = reinterpret_cast<uintptr_t>(di.dli_fbase);
    f.lm = lm;
    f.sym = dyn_covers ? di.dli_sname : unw ? sym : nullptr;
    f.symoff = dyn_covers ? doff : off;
    emit(f, depth++);
  }
}

// Text: one line per frame.
struct TextFrames {
  Writer &w;
  // Modules whose build-id this report already gave (on their first unnamed frame).
  uintptr_t ided[8] = {};
  int nided = 0;
  void operator()(const Frame &f, int depth) {
    w.str("pyfinguard:   #").dec(depth).chr(' ').hex(f.ip).chr(' ');
    if (f.sym) w.str(f.sym).str("+").hex(f.symoff);
    else w.str("??");
    if (f.module) {
      w.str(" (").str(f.module);
      // No name: the module and the offset from its load bias -- what addr2line or
      // eu-addr2line -e <module> take -- and, once per module, its build-id, which
      // finds the matching debug file (debuginfod, /usr/lib/debug/.build-id/).
      if (!f.sym && f.lm) {
        w.str("+").hex(f.ip - f.lm->l_addr);
        bool seen = false;
        for (int k = 0; k < nided; ++k) seen |= ided[k] == f.base;
        char id[2 * 64 + 1];
        if (!seen && build_id(f.base, f.lm->l_addr, id, sizeof id)) {
          w.str(" build-id ").str(id);
          if (nided < 8) ided[nided++] = f.base;
        }
      }
      w.str(")");
    }
    w.chr('\n');
  }
};

// JSON: one object per frame, {"module", "offset", "build_id", "symbol", "symbol_offset"},
// unknown values null. The writer is in line mode: a frame that does not fit in the
// line is taken back and counted, as is every frame after it.
struct JsonFrames {
  Writer &w;
  int n = 0, omitted = 0;
  void operator()(const Frame &f, int) {
    if (omitted) {
      ++omitted;
      return;
    }
    const size_t mark = w.len();
    if (n) w.chr(',');
    w.str("{\"module\":");
    if (f.module) w.json(f.module);
    else w.str("null");
    w.str(",\"offset\":\"").hex(f.module && f.lm ? f.ip - f.lm->l_addr : f.ip).str("\",\"build_id\":");
    char id[2 * 64 + 1];
    if (f.module && f.lm && build_id(f.base, f.lm->l_addr, id, sizeof id)) w.chr('"').str(id).chr('"');
    else w.str("null");
    w.str(",\"symbol\":");
    if (f.sym) w.json(f.sym).str(",\"symbol_offset\":\"").hex(f.symoff).str("\"}");
    else w.str("null,\"symbol_offset\":null}");
    if (w.overflowed()) {
      w.truncate(mark);
      ++omitted;
      return;
    }
    ++n;
  }
};

void pad(Writer &w, int64_t v, int width) {
  char d[20];
  int k = 0;
  for (; k < width || v; v /= 10) d[k++] = char('0' + v % 10);
  while (k) w.chr(d[--k]);
}

// CLOCK_REALTIME as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC), by arithmetic only: gmtime_r is
// not on the async-signal-safe list. Days to civil date: H. Hinnant's algorithm.
void iso_time(Writer &w) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);  // vDSO, async-signal-safe
  int64_t days = ts.tv_sec / 86400, sec = ts.tv_sec % 86400;
  if (sec < 0) sec += 86400, --days;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
  const int64_t year = yoe + era * 400 + (month <= 2);
  w.chr('"');
  pad(w, year, 4);
  w.chr('-');
  pad(w, month, 2);
  w.chr('-');
  pad(w, day, 2);
  w.chr('T');
  pad(w, sec / 3600, 2);
  w.chr(':');
  pad(w, sec / 60 % 60, 2);
  w.chr(':');
  pad(w, sec % 60, 2);
  w.chr('.');
  pad(w, ts.tv_nsec / 1000000, 3);
  w.str("Z\"");
}

// The fields every JSON line starts with.
void json_head(Writer &w, const char *event) {
  w.str("{\"event\":\"").str(event).str("\",\"time\":");
  iso_time(w);
  w.str(",\"host\":").json(g_config.host, sizeof g_config.host).str(",\"program\":")
      .json(g_config.program, sizeof g_config.program).str(",\"pid\":").dec(getpid())
      .str(",\"python\":").json(runtime_version(), 32);
}

const char *phase_name(uint64_t epoch) {
  switch (phase_of(epoch)) {
    case kRunning: return "running";
    case kFinalizing: return "finalizing";
    case kFinalized: return "finalized";
  }
  return "?";
}

// Room kept at the end of a JSON report line for `],"frames_omitted":NN}` and the newline.
constexpr size_t kJsonTail = 40;

void write_report(Writer &w, const ParkRecord &r, const char *what, const char *log_error) {
  const int64_t start = g_finalize_start_ns.load();
  if (g_config.format == Format::json) {
    // One line, at most Writer::kBuf (4096 = PIPE_BUF) bytes, one write(2): a write of
    // up to PIPE_BUF bytes to a pipe is atomic (POSIX), and each write to an O_APPEND
    // file lands whole at the end (Linux holds the inode lock for the write), so lines
    // of threads parking together never interleave. Frames that do not fit are counted
    // in frames_omitted instead of splitting the line.
    w.limit(Writer::kBuf - kJsonTail);
    json_head(w, "park");
    w.str(",\"tid\":").dec(r.tid.load()).str(",\"thread\":").json(r.name, sizeof r.name)
        .str(",\"api\":\"").str(kFns[r.api].name).str("\",\"reason\":\"").str(what)
        .str("\",\"generation\":").dec(int64_t(r.generation)).str(",\"phase\":\"")
        .str(phase_name(r.epoch)).str("\",\"ms_since_finalization\":");
    if (start) w.ms(r.when_ns - start);
    else w.str("null");
    w.str(",\"routine\":").str(r.routine ? "true" : "false").str(",\"mode\":\"")
        .str(mode_name(g_config.mode)).chr('"');
    if (log_error) w.str(",\"log_error\":").json(log_error);
    w.str(",\"frames\":[");
    JsonFrames jf{w};
    walk_frames(jf);
    w.limit(Writer::kBuf);
    w.str("],\"frames_omitted\":").dec(jf.omitted).str("}\n");
    return;
  }
  w.str("pyfinguard: parked thread ").dec(r.tid.load()).str(" '").str(r.name).str("' in ")
      .str(kFns[r.api].name).str(" (generation ").dec(int64_t(r.generation)).str(", ")
      .str(what).str(", ");
  if (start) w.ms(r.when_ns - start).str(" ms after finalization began)");
  else w.str("no finalization seen)");
  if (g_config.mode != Mode::park) w.str(" mode=").str(mode_name(g_config.mode));
  w.chr('\n');
  if (log_error) w.str("pyfinguard:   (").str(log_error).str(")\n");
  TextFrames tf{w};
  walk_frames(tf);
}

}  // namespace

// Reports written (or attempted): the exit summary is printed only when there was one.
std::atomic<unsigned> g_reported{0};

void report_park(const ParkRecord &r, const char *what) {
  if (r.routine && !g_config.log_set && g_config.mode != Mode::abort) return;
  g_reported.fetch_add(1);
  if (g_config.syslog) {
    if (int s = syslog_fd(); s >= 0) {
      char head[40];
      syslog_head(head, 4);  // warning
      Writer w(s, head);
      write_report(w, r, what, nullptr);
      return;
    }
  }
  int fd = log_fd();
  if (fd < 0) return;
  Writer w(fd);
  const char *err = g_config.syslog ? "PYFINGUARD_LOG=syslog: could not connect to PYFINGUARD_SYSLOG_SOCKET"
                    : g_config.log_file && fd == 2 ? "PYFINGUARD_LOG could not be opened"
                                                   : nullptr;
  write_report(w, r, what, err);
}

namespace {

// The exit summary, in either format.
void write_summary(Writer &w, unsigned n, unsigned present, unsigned reported, unsigned routine) {
  if (g_config.format == Format::json) {
    json_head(w, "exit");
    w.str(",\"parked\":").dec(n).str(",\"present\":").dec(present).str(",\"reported\":")
        .dec(reported).str(",\"routine\":").dec(routine).str(",\"log\":");
    if (g_config.syslog) w.str("\"syslog\",\"log_path\":").json(g_config.syslog_path, sizeof g_config.syslog_path);
    else if (g_config.log_file) w.str("\"file\",\"log_path\":").json(g_config.log_path, 200);
    else w.str("\"stderr\",\"log_path\":null");
    w.str("}\n");
    return;
  }
  w.str("pyfinguard: ").dec(n).str(n == 1 ? " thread" : " threads")
      .str(" parked after Python finalization began, ").dec(present).str(" still present at exit; ")
      .dec(reported).str(" reported");
  if (g_config.log_file) w.str(" in ").safe(g_config.log_path, 200);
  else if (g_config.syslog) w.str(" to syslog at ").safe(g_config.syslog_path, 108);
  w.str(", ").dec(routine).str(" routine");
  // Routine parks are reported only with PYFINGUARD_LOG set (docs/diagnostics.md).
  if (reported < n) w.str(" (not reported; PYFINGUARD_LOG=stderr reports them too)");
  w.chr('\n');
}

}  // namespace

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
  // Parks happen from the moment CPython passes its point of no return inside
  // Py_FinalizeEx (and, for threads of an earlier runtime, later): "after finalization
  // began" is what is measured.
  const unsigned reported = g_reported.load();
  {
    Writer w(2);
    write_summary(w, n, present, reported, routine);
  }
  // With syslog, the summary goes there too: a log pipeline sees how many parks were
  // only counted (routine ones are reported there anyway: PYFINGUARD_LOG is set).
  if (int s = syslog_fd(); s >= 0) {
    char head[40];
    syslog_head(head, 5);  // notice
    Writer w(s, head);
    write_summary(w, n, present, reported, routine);
  }
}

// PYFINGUARD_STRICT=N. An on_exit handler registered by the library's constructor, i.e.
// before __libc_start_main registered the loader's destructor pass (_dl_fini): exit()
// runs its handlers last-registered first, so this one runs after every atexit handler
// of the program, after _dl_fini (every library's destructors, ours with the summary
// included) -- and only before exit()'s own last step, flushing stdio. The status
// cannot be changed from here; _exit(N) can end the process instead, and all that is
// skipped is that flush, which fflush(NULL) does first. (A library that registers an
// exit handler from its constructor before ours would be skipped too: glibc's and
// libstdc++'s register theirs against their own DSO handle, run by _dl_fini.)
void report_strict_at_exit(int status, void *) {
  if (!g_config.loaded || g_config.secure || g_config.strict == 0) return;
  const unsigned n = g_reportable_count.load();
  if (n == 0) return;
  if (!g_config.quiet) {
    Writer w(2);
    if (g_config.format == Format::json) {
      json_head(w, "strict");
      w.str(",\"status\":").dec(g_config.strict).str(",\"exit_status\":").dec(status)
          .str(",\"reported_parks\":").dec(n).str("}\n");
    } else {
      w.str("pyfinguard: strict: exit status ").dec(g_config.strict).str(" instead of ").dec(status)
          .str(": ").dec(n).str(n == 1 ? " thread" : " threads")
          .str(" parked that the rules report (PYFINGUARD_STRICT=").dec(g_config.strict).str(")\n");
    }
  }
  fflush(nullptr);
  _exit(g_config.strict);
}

void report_fatal(const char *a, const char *b, const char *c) {
  Writer(2).str("pyfinguard: fatal: ").str(a).str(b).str(c).chr('\n');
  abort();
}

}  // namespace pfg
