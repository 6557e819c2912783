// Corpus test for the entry patcher: patch *every* exported function of a real Python
// image, then run Python through the patched entries.
//
// Built as libpfgcorpus.so, used two ways (tests/unit/test_patch_corpus.py drives both):
//  * preloaded (PFG_CORPUS_PRELOAD=1) into a real interpreter executable, e.g. Debian's
//    static /usr/bin/python3.11: the constructor runs before main(), patches the image that
//    defines Py_Initialize, and Python then runs its whole life through the patches;
//  * linked into corpus_host, which dlopen()s a libpython, calls pfg_corpus_patch_handle()
//    and then embeds that interpreter.
//
// Every exported FUNC symbol (from .dynsym, with its st_size) gets check() then install()
// with its own hook: a 16-byte thunk `lock inc qword [counter]; jmp [real]` that counts and
// tail-jumps to the trampoline, changing no register the ABI or the caller relies on (only
// flags), so any function signature works. The report (written at exit to
// $PFG_CORPUS_OUT) says how many functions were patched, why the rest were refused, whether
// check() and install() agreed, which of the functions the guard needs were patched, and
// how many patched functions were actually called through their patch.
#include "patch/patch.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

namespace {

// The functions the guard must be able to patch on every interpreter (docs/design.md,
// "Where each function is covered").
const char *const kMust[] = {
    "PyEval_SaveThread", "PyEval_RestoreThread", "PyEval_AcquireThread", "PyEval_AcquireLock",
    "PyGILState_Ensure", "PyGILState_Release",   "Py_FinalizeEx",        "Py_Finalize",
    "Py_Exit",           "Py_Initialize",        "Py_InitializeEx",      "Py_InitializeFromConfig",
    "Py_Main",           "Py_BytesMain",         "Py_RunMain",
};
constexpr int kNMust = sizeof kMust / sizeof kMust[0];
// Also counted in the report: 3.7's python.c main() calls _Py_UnixMain (the later
// Py_BytesMain), 3.6's calls Py_Main.
const char *const kAlsoCounted[] = {"_Py_UnixMain"};

struct Fn {
  const char *name;  // points into the mapped ELF file's string table
  uintptr_t addr;
  std::size_t size;
  bool ok;
  bool alias;  // same address as an earlier symbol
  char why[160];
};

struct Reason {
  char text[160];
  int count;
  char example[256];
};

struct State {
  char image[512];
  Fn *fns;
  int nfns;
  int patched, refused, aliases, disagree;
  char disagree_example[512];
  Reason reasons[64];
  int nreasons;
  int must_status[kNMust];  // 0 absent, 1 patched, -1 refused
  char must_why[kNMust][160];
  // thunks
  uint8_t *code;
  void **real;
  long *count;
  bool done;
  double install_ns;  // total time in install() of the functions that were patched
} g;  // plain zero-initialized data: a dynamic initializer could run after at_load()

// Replace digit runs (offsets, sizes) by N, so reasons group.
void normalize(const char *in, char *out, std::size_t n) {
  std::size_t j = 0;
  for (std::size_t i = 0; in[i] && j + 2 < n; ++i) {
    bool hexrun = in[i] == '0' && in[i + 1] == 'x';
    if ((in[i] >= '0' && in[i] <= '9') || hexrun) {
      if (hexrun) i += 2;
      while ((in[i] >= '0' && in[i] <= '9') || (hexrun && ((in[i] >= 'a' && in[i] <= 'f')))) ++i;
      --i;
      out[j++] = 'N';
    } else {
      out[j++] = in[i];
    }
  }
  out[j] = 0;
}

void add_reason(const char *why, const char *name) {
  char norm[160];
  normalize(why, norm, sizeof norm);
  for (int i = 0; i < g.nreasons; ++i)
    if (strcmp(g.reasons[i].text, norm) == 0) {
      ++g.reasons[i].count;
      return;
    }
  if (g.nreasons == 64) return;
  Reason &r = g.reasons[g.nreasons++];
  snprintf(r.text, sizeof r.text, "%s", norm);
  snprintf(r.example, sizeof r.example, "%.80s: %.160s", name, why);
  r.count = 1;
}

int cmp_addr(const void *a, const void *b) {
  const Fn *x = static_cast<const Fn *>(a), *y = static_cast<const Fn *>(b);
  if (x->addr != y->addr) return x->addr < y->addr ? -1 : 1;
  return strcmp(x->name, y->name);
}

// Exported, defined FUNC symbols of the ELF file at `path`, relocated by `base`.
bool read_dynsym(const char *path, uintptr_t base) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0) { close(fd); return false; }
  void *map = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return false;
  const uint8_t *f = static_cast<const uint8_t *>(map);
  const Elf64_Ehdr *eh = reinterpret_cast<const Elf64_Ehdr *>(f);
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) return false;
  const Elf64_Shdr *sh = reinterpret_cast<const Elf64_Shdr *>(f + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_DYNSYM) continue;
    const Elf64_Sym *syms = reinterpret_cast<const Elf64_Sym *>(f + sh[i].sh_offset);
    std::size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
    const char *str = reinterpret_cast<const char *>(f + sh[sh[i].sh_link].sh_offset);
    g.fns = static_cast<Fn *>(calloc(n, sizeof(Fn)));
    for (std::size_t k = 0; k < n; ++k) {
      const Elf64_Sym &s = syms[k];
      if (ELF64_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF || s.st_value == 0) continue;
      int bind = ELF64_ST_BIND(s.st_info);
      if (bind != STB_GLOBAL && bind != STB_WEAK) continue;
      Fn &fn = g.fns[g.nfns++];
      fn.name = str + s.st_name;
      fn.addr = base + s.st_value;
      fn.size = s.st_size;
    }
    qsort(g.fns, g.nfns, sizeof(Fn), cmp_addr);
    return true;
  }
  return false;
}

#if defined(__aarch64__)
// aarch64 thunk (48 bytes): count with an LSE atomic add and jump to the trampoline,
// clobbering only x16/x17 (IP0/IP1, free at a function entry). STADD needs ARMv8.1
// (qemu's default CPU has it; this variant runs under qemu-aarch64-static).
constexpr std::size_t kThunk = 48;
void write_thunk(uint8_t *t, int i) {
  const uint32_t w[8] = {
      0x58000000u | 8u << 5 | 16,  // ldr x16, t+32 (&count[i])
      0xD2800031u,                 // movz x17, #1
      0xF831021Fu,                 // stadd x17, [x16]
      0x58000000u | 7u << 5 | 16,  // ldr x16, t+40 (&real[i])
      0xF9400210u,                 // ldr x16, [x16]
      0xD61F0200u,                 // br x16
      0xD4200000u, 0xD4200000u,    // brk #0
  };
  memcpy(t, w, sizeof w);
  void *cnt = &g.count[i], *real = &g.real[i];
  memcpy(t + 32, &cnt, 8);
  memcpy(t + 40, &real, 8);
}
#else
constexpr std::size_t kThunk = 16;
void write_thunk(uint8_t *t, int i) {
  uintptr_t ti = reinterpret_cast<uintptr_t>(t);
  // lock inc qword [rip+count_i]   F0 48 FF 05 rel32   (8 bytes)
  int32_t rc = static_cast<int32_t>(reinterpret_cast<intptr_t>(&g.count[i]) - static_cast<intptr_t>(ti + 8));
  const uint8_t inc[4] = {0xF0, 0x48, 0xFF, 0x05};
  memcpy(t, inc, 4);
  memcpy(t + 4, &rc, 4);
  // jmp qword [rip+real_i]          FF 25 rel32          (6 bytes)
  int32_t rr = static_cast<int32_t>(reinterpret_cast<intptr_t>(&g.real[i]) - static_cast<intptr_t>(ti + 14));
  t[8] = 0xFF;
  t[9] = 0x25;
  memcpy(t + 10, &rr, 4);
  t[14] = t[15] = 0xCC;
}
#endif

// Thunks: data (real pointers, counters) and code in one mapping, so rel32 reaches.
bool make_thunks(int n) {
  std::size_t data = ((n * 16) + 4095) & ~std::size_t{4095};
  std::size_t code = ((n * kThunk) + 4095) & ~std::size_t{4095};
  uint8_t *m = static_cast<uint8_t *>(
      mmap(nullptr, data + code, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (m == MAP_FAILED) return false;
  g.real = reinterpret_cast<void **>(m);
  g.count = reinterpret_cast<long *>(m + n * 8);
  g.code = m + data;
  for (int i = 0; i < n; ++i) write_thunk(g.code + i * kThunk, i);
  if (mprotect(g.code, code, PROT_READ | PROT_EXEC) != 0) return false;
  __builtin___clear_cache(reinterpret_cast<char *>(g.code), reinterpret_cast<char *>(g.code + code));
  return true;
}

void patch_all() {
  for (int i = 0; i < kNMust; ++i) g.must_status[i] = 0;
  if (!make_thunks(g.nfns)) {
    fprintf(stderr, "corpus: cannot map thunks\n");
    return;
  }
  for (int i = 0; i < g.nfns; ++i) {
    Fn &fn = g.fns[i];
    if (i > 0 && g.fns[i - 1].addr == fn.addr) {
      // an alias: the patcher must say "already patched" (or repeat the earlier refusal)
      fn.alias = true;
      ++g.aliases;
      pfg::patch::Result c = pfg::patch::check(reinterpret_cast<void *>(fn.addr), fn.size);
      fn.ok = g.fns[i - 1].ok;
      snprintf(fn.why, sizeof fn.why, "%s", g.fns[i - 1].ok ? "alias (patched)" : g.fns[i - 1].why);
      if (c.ok || (g.fns[i - 1].ok && !strstr(c.why, "already patched"))) {
        ++g.disagree;
        snprintf(g.disagree_example, sizeof g.disagree_example, "%.100s (alias): check says '%.160s'", fn.name,
                 c.ok ? "ok" : c.why);
      }
    } else {
      pfg::patch::Result c = pfg::patch::check(reinterpret_cast<void *>(fn.addr), fn.size);
      struct timespec t0, t1;
      clock_gettime(CLOCK_MONOTONIC, &t0);
      pfg::patch::Result r = pfg::patch::install(reinterpret_cast<void *>(fn.addr), fn.size, g.code + i * kThunk,
                                                 &g.real[i]);
      clock_gettime(CLOCK_MONOTONIC, &t1);
      if (r.ok) g.install_ns += (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
      fn.ok = r.ok;
      snprintf(fn.why, sizeof fn.why, "%s", r.ok ? "" : r.why);
      if (c.ok != r.ok) {
        ++g.disagree;
        snprintf(g.disagree_example, sizeof g.disagree_example, "%.100s: check '%.160s' install '%.160s'", fn.name,
                 c.ok ? "ok" : c.why, r.ok ? "ok" : r.why);
      }
      if (r.ok) ++g.patched;
      else {
        ++g.refused;
        add_reason(r.why, fn.name);
      }
    }
    for (int k = 0; k < kNMust; ++k)
      if (strcmp(kMust[k], fn.name) == 0) {
        g.must_status[k] = fn.ok ? 1 : -1;
        snprintf(g.must_why[k], sizeof g.must_why[k], "%s", fn.why);
      }
  }
  g.done = true;
}

void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; ++s) {
    if (*s == '"' || *s == '\\') fputc('\\', f);
    if (static_cast<unsigned char>(*s) < 0x20) continue;
    fputc(*s, f);
  }
  fputc('"', f);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) void pfg_corpus_report() {
  const char *out = getenv("PFG_CORPUS_OUT");
  if (!out || !g.done) return;
  FILE *f = fopen(out, "w");
  if (!f) return;
  int called = 0;
  long calls = 0;
  for (int i = 0; i < g.nfns; ++i) {
    if (g.fns[i].alias || !g.fns[i].ok) continue;
    if (g.count[i] > 0) ++called;
    calls += g.count[i];
  }
  fprintf(f, "{\"image\": ");
  json_str(f, g.image);
  fprintf(f, ", \"patcher\": ");
  json_str(f, pfg::patch::describe());
  fprintf(f, ", \"functions\": %d, \"aliases\": %d, \"patched\": %d, \"refused\": %d, \"disagree\": %d",
          g.nfns - g.aliases, g.aliases, g.patched, g.refused, g.disagree);
  fprintf(f, ", \"disagree_example\": ");
  json_str(f, g.disagree ? g.disagree_example : "");
  fprintf(f, ", \"install_us\": %.1f", g.patched ? g.install_ns / g.patched / 1000.0 : 0.0);
  fprintf(f, ", \"called_patched\": %d, \"calls_through_patches\": %ld, \"reasons\": [", called, calls);
  for (int i = 0; i < g.nreasons; ++i) {
    fprintf(f, "%s{\"reason\": ", i ? ", " : "");
    json_str(f, g.reasons[i].text);
    fprintf(f, ", \"count\": %d, \"example\": ", g.reasons[i].count);
    json_str(f, g.reasons[i].example);
    fprintf(f, "}");
  }
  fprintf(f, "], \"must\": {");
  for (int k = 0; k < kNMust; ++k) {
    fprintf(f, "%s\"%s\": ", k ? ", " : "", kMust[k]);
    const char *st = g.must_status[k] == 1 ? "patched" : g.must_status[k] == 0 ? "absent" : g.must_why[k];
    json_str(f, st);
  }
  fprintf(f, "}, \"calls\": {");
  // the guard's functions: how often each was entered through its patch
  bool first = true;
  for (int i = 0; i < g.nfns; ++i) {
    if (g.fns[i].alias || !g.fns[i].ok) continue;
    bool counted = strcmp(kAlsoCounted[0], g.fns[i].name) == 0;
    for (int k = 0; k < kNMust; ++k) counted |= strcmp(kMust[k], g.fns[i].name) == 0;
    if (!counted) continue;
    fprintf(f, "%s\"%s\": %ld", first ? "" : ", ", g.fns[i].name, g.count[i]);
    first = false;
  }
  fprintf(f, "}}\n");
  fclose(f);
}

// Patch every exported function of the image `lm` (a link_map).
extern "C" __attribute__((visibility("default"))) bool pfg_corpus_patch_linkmap(const struct link_map *lm) {
  const char *path = lm->l_name && lm->l_name[0] ? lm->l_name : "/proc/self/exe";
  if (path[0] == '/' && strcmp(path, "/proc/self/exe") == 0) {
    ssize_t n = readlink("/proc/self/exe", g.image, sizeof g.image - 1);
    g.image[n > 0 ? n : 0] = 0;
  } else {
    snprintf(g.image, sizeof g.image, "%s", path);
  }
  if (!read_dynsym(path, lm->l_addr)) {
    fprintf(stderr, "corpus: cannot read .dynsym of %s\n", path);
    return false;
  }
  patch_all();
  return true;
}

namespace {

__attribute__((destructor)) void at_unload() {
  if (getenv("PFG_CORPUS_DEBUG")) fprintf(stderr, "corpus: unload done=%d\n", g.done);
  pfg_corpus_report();
}

__attribute__((constructor)) void at_load() {
  const char *pre = getenv("PFG_CORPUS_PRELOAD");
  if (!pre || strcmp(pre, "1") != 0) return;
  unsetenv("LD_PRELOAD");  // not into subprocesses the script may start
  void *sym = dlsym(RTLD_DEFAULT, "Py_Initialize");
  Dl_info info;
  struct link_map *lm = nullptr;
  if (!sym || !dladdr1(sym, &info, reinterpret_cast<void **>(&lm), RTLD_DL_LINKMAP) || !lm) {
    fprintf(stderr, "corpus: no Python image in this process\n");
    return;
  }
  if (getenv("PFG_CORPUS_PATCH") && strcmp(getenv("PFG_CORPUS_PATCH"), "0") == 0) return;
  // As the guard patches at load: one batch in a process of one task, so the entries are
  // written in place through /proc/self/mem (docs/patching.md). corpus_host patches
  // outside a batch: page swaps, one /proc/self/maps reading per patch.
  pfg::patch::batch_begin();
  pfg_corpus_patch_linkmap(lm);
  pfg::patch::batch_end();
}

}  // namespace
