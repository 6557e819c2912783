#include "report.h"

#include <atomic>
#include <cstring>
#include <ctime>
#include <dlfcn.h>
#include <link.h>
#include <unistd.h>
#include "backtrace.h"
#include "config.h"
#include "interpose.h"
#include "parkrecord.h"
#include "probes.h"
#include "sink.h"
#include "state.h"

namespace pfg {

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

// Walks the calling thread's stack with libunwind (backtrace.h: loaded before any park,
// never by a parking thread; no frames if it could not be) and calls emit(frame, depth)
// for each frame outside the guard, at most 24. Symbols come from libunwind's unw_get_proc_name,
// which reads the module's own symbol table (static functions included) from the file
// with mmap: no malloc. Module names come from dladdr.
template <class Emit>
void walk_frames(Emit &emit) {
  const Unwinder *u = backtrace_unwinder();
  if (!u) return;
  unw_context_t uc;
  unw_cursor_t cur;
#ifdef __x86_64__
  if (u->getcontext(&uc) != 0) return;
#else
  if (unw_getcontext(&uc) != 0) return;  // inline assembly on this architecture
#endif
  if (u->init_local(&cur, &uc) != 0) return;
  Dl_info self{};
  dladdr(reinterpret_cast<void *>(&report_park), &self);
  int depth = 0;
  while (u->step(&cur) > 0 && depth < 24) {
    unw_word_t ip = 0, off = 0;
    u->get_reg(&cur, UNW_REG_IP, &ip);
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
    bool unw = u->get_proc_name(&cur, sym, sizeof sym, &off) == 0;
    // libunwind, too, names the nearest preceding symbol; believe it only when that
    // symbol starts where the unwind info says this function starts.
    unw_proc_info_t pi;
    if (unw && u->get_proc_info(&cur, &pi) == 0 && pi.start_ip && pi.start_ip != ip - off) unw = false;
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

// The start routine of a thread: the outermost frame outside the C and C++ runtimes
// (start_thread, clone3, std::thread's trampoline), i.e. the function pthread_create ran.
struct StartRoutine {
  Frame found{};
  char sym[160] = {0};  // the walk's own buffer is gone once it returns
  void operator()(const Frame &f, int) {
    if (f.module && (strstr(f.module, "/libc.so") || strstr(f.module, "/libstdc++.so"))) return;
    found = f;
    found.sym = nullptr;
    if (f.sym) {
      size_t n = strnlen(f.sym, sizeof sym - 1);
      memcpy(sym, f.sym, n);
      sym[n] = 0;
      found.sym = sym;
    }
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
    json_head(w, "park");  // ended or parked: the "ended" field says which
    w.str(",\"tid\":").dec(r.tid.load()).str(",\"thread\":").json(r.name, sizeof r.name)
        .str(",\"api\":\"").str(kFns[r.api].name).str("\",\"reason\":\"").str(what)
        .str("\",\"generation\":").dec(int64_t(r.generation)).str(",\"phase\":\"")
        .str(phase_name(r.epoch)).str("\",\"ms_since_finalization\":");
    if (start) w.ms(r.when_ns - start);
    else w.str("null");
    w.str(",\"routine\":").str(r.routine ? "true" : "false").str(",\"ended\":")
        .str(r.ended.load() ? "true" : "false").str(",\"native\":").str(r.native ? "true" : "false")
        .str(",\"mode\":\"")
        .str(mode_name(g_config.mode)).chr('"');
    if (log_error) w.str(",\"log_error\":").json(log_error);
    w.str(",\"frames\":[");
    JsonFrames jf{w};
    walk_frames(jf);
    w.limit(Writer::kBuf);
    w.str("],\"frames_omitted\":").dec(jf.omitted).str("}\n");
    return;
  }
  const bool ended = r.ended.load();
  w.str(ended ? "pyfinguard: ended thread " : "pyfinguard: parked thread ").dec(r.tid.load())
      .str(" '").str(r.name).str("' in ").str(kFns[r.api].name).str(" (generation ")
      .dec(int64_t(r.generation)).str(", ").str(what).str(", ");
  if (start) w.ms(r.when_ns - start).str(" ms after finalization began)");
  else w.str("no finalization seen)");
  if (g_config.mode != Mode::automatic) w.str(" mode=").str(mode_name(g_config.mode));
  w.chr('\n');
  if (ended) w.str("pyfinguard:   (pthread_exit, as this CPython ends such a thread: its C++ destructors run)\n");
  if (r.native || strncmp(r.name, g_config.program, sizeof r.name - 1) == 0) {
    StartRoutine sr;
    walk_frames(sr);
    // Unnamed (its name is the program's) or native: say what it is and where it began.
    w.str(r.native ? "pyfinguard:   (a thread the guard never saw hold the GIL -- a native thread; started at "
                   : "pyfinguard:   (an unnamed thread; started at ");
    if (sr.found.sym) w.str(sr.found.sym);
    else w.hex(sr.found.ip);
    if (sr.found.module) w.str(" in ").str(sr.found.module);
    w.str(")\n");
  }
  if (log_error) w.str("pyfinguard:   (").str(log_error).str(")\n");
  TextFrames tf{w};
  walk_frames(tf);
}

}  // namespace

// The fields every JSON line starts with.
void json_head(Writer &w, const char *event) {
  w.str("{\"event\":\"").str(event).str("\",\"time\":");
  iso_time(w);
  w.str(",\"host\":").json(g_config.host, sizeof g_config.host).str(",\"program\":")
      .json(g_config.program, sizeof g_config.program).str(",\"pid\":").dec(getpid())
      .str(",\"python\":").json(runtime_version(), 32);
}

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

void report_unwind_parked(const ParkRecord &r) {
  if (r.routine && !g_config.log_set) return;
  int fd = log_fd();
  if (fd < 0) return;
  Writer w(fd);
  if (g_config.format == Format::json) {
    json_head(w, "end_parked");
    w.str(",\"tid\":").dec(r.tid.load()).str(",\"reason\":\"std::terminate during the unwind\"}\n");
    return;
  }
  w.str("pyfinguard: thread ").dec(r.tid.load()).str(" '").str(r.name)
      .str("': its unwind reached a frame that may not throw (std::terminate would abort the process): parked there instead\n");
}

}  // namespace pfg
