#include "images.h"

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include "config.h"
#include "patch/patch.h"

namespace pfg {

namespace {
Image g_images[kMaxImages];  // written under the detection mutex only
std::atomic<int> g_nimages{0};  // high-water mark of used slots

// What in_python_text() reads, per slot: the text ranges under a sequence count (odd
// while the slot is being rewritten). Separate from Image so that the hot path reads
// only atomics.
struct TextSlot {
  std::atomic<unsigned> seq;
  std::atomic<int> n;
  std::atomic<uintptr_t> lo[4], hi[4];
};
TextSlot g_text[kMaxImages];

// Mappings seen per path, for Image::mapping. Detection mutex.
struct PathCount {
  char path[256];
  unsigned n;
};
PathCount g_paths[kMaxImages];
uint64_t g_cookie_seq;

struct Lookup {
  uintptr_t addr;
  Image out;
  bool found;
  int index;  // position in dl_iterate_phdr order: 0 is the main program
};

int find_image(struct dl_phdr_info *info, size_t, void *data) {
  auto *lk = static_cast<Lookup *>(data);
  int idx = lk->index++;
  bool hit = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && lk->addr >= lo && lk->addr < lo + ph.p_memsz) hit = true;
  }
  if (!hit) return 0;
  Image &im = lk->out;
  im.bias = info->dlpi_addr;
  im.is_exe = idx == 0;
  uintptr_t wr_end = 0, relro_end = 0;
  im.map_lo = UINTPTR_MAX;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr, hi = lo + ph.p_memsz;
    if (ph.p_type == PT_DYNAMIC) im.dynamic = lo;
    if (ph.p_type == PT_GNU_RELRO) relro_end = hi;
    if (ph.p_type != PT_LOAD) continue;
    if (lo < im.map_lo) im.map_lo = lo;
    if (hi > im.map_hi) im.map_hi = hi;
    if ((ph.p_flags & PF_W) && hi > wr_end) wr_end = hi;
    if ((ph.p_flags & PF_X) && im.ntext < 4) {
      im.text_lo[im.ntext] = lo;
      im.text_hi[im.ntext++] = hi;
    }
  }
  // The cookie goes into the last 8 bytes of the page holding the end of the last
  // writable segment, if that is past the segment's end and not made read-only by RELRO
  // (which protects whole pages below its end).
  const uintptr_t page = uintptr_t(getpagesize());
  const uintptr_t tail = (wr_end + page - 1) & ~(page - 1);
  if (wr_end && tail - wr_end >= 8 && tail - page >= (relro_end & ~(page - 1)))
    im.cookie_at = tail - 8;
  const char *name = info->dlpi_name;
  if (im.is_exe || !name || !*name) {
    ssize_t n = readlink("/proc/self/exe", im.path, sizeof im.path - 1);
    im.path[n > 0 ? n : 0] = 0;
  } else {
    snprintf(im.path, sizeof im.path, "%s", name);
  }
  lk->found = true;
  return 1;
}

// glibc rewrites the d_ptr of most tags to absolute addresses when it loads an object;
// be correct either way.
uintptr_t dyn_ptr(const Image &im, uintptr_t v) { return v < im.bias ? v + im.bias : v; }
uint64_t relocated_fns(const Image &im);

void publish_text(int i, const Image &im) {
  TextSlot &t = g_text[i];
  t.seq.fetch_add(1);  // odd: readers match nothing here
  t.n.store(0, std::memory_order_relaxed);
  for (int s = 0; s < im.ntext && im.live; ++s) {
    t.lo[s].store(im.text_lo[s], std::memory_order_relaxed);
    t.hi[s].store(im.text_hi[s], std::memory_order_relaxed);
  }
  t.n.store(im.live ? im.ntext : 0, std::memory_order_relaxed);
  t.seq.fetch_add(1);  // even again (seq_cst: ordered after the stores above)
}

unsigned count_mapping(const char *path) {
  for (auto &p : g_paths)
    if (p.n && strcmp(p.path, path) == 0) return ++p.n;
  for (auto &p : g_paths)
    if (!p.n) {
      snprintf(p.path, sizeof p.path, "%s", path);
      return p.n = 1;
    }
  return 0;  // more distinct paths than slots: not counted
}

struct Presence {
  const Image *im;
  bool found;
};

// Runs inside dl_iterate_phdr, which holds the loader lock that dlclose takes to unmap
// and unlink an object: an object a callback sees stays mapped until the callback
// returns (dlpi_phdr itself points into it). So the cookie is read here, never after
// dl_iterate_phdr returned -- by then another thread's dlclose may have unmapped the
// page. (k-reload-churn crashed once in 15 runs on 3.8 when it was read afterwards, in
// a run where one thread's dlclose of libz can run this check while main's dlclose
// unmaps libpython; no backtrace was caught, and the crash was not seen again in the
// 75 runs after this change.)
int find_same(struct dl_phdr_info *info, size_t, void *data) {
  auto *pr = static_cast<Presence *>(data);
  if (info->dlpi_addr != pr->im->bias) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) && info->dlpi_addr + ph.p_vaddr == pr->im->text_lo[0]) {
      // Mapped at the same place; the cookie tells this mapping from a new one of the
      // same file there.
      pr->found = !pr->im->cookie_at ||
                  __atomic_load_n(reinterpret_cast<uint64_t *>(pr->im->cookie_at), __ATOMIC_RELAXED) == pr->im->cookie;
      return 1;
    }
  }
  return 0;
}

int first_object(struct dl_phdr_info *info, size_t, void *data) {
  auto *c = static_cast<unsigned long long *>(data);
  c[0] = info->dlpi_adds;
  c[1] = info->dlpi_subs;
  return 1;
}
}  // namespace

Coverage g_cover[fn_count];

int image_add(const void *addr, bool *is_new) {
  *is_new = false;
  Lookup lk{reinterpret_cast<uintptr_t>(addr), {}, false, 0};
  dl_iterate_phdr(find_image, &lk);
  if (!lk.found) return -1;
  int n = g_nimages.load();
  int free_slot = -1;
  for (int i = 0; i < n; ++i) {
    if (!g_images[i].live) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    if (g_images[i].bias == lk.out.bias && g_images[i].text_lo[0] == lk.out.text_lo[0]) return i;
  }
  if (free_slot < 0 && n == kMaxImages) return -1;
  const int i = free_slot >= 0 ? free_slot : n;
  Image &im = g_images[i];
  im = lk.out;
  im.live = true;
  im.relocated = relocated_fns(im);
  im.mapping = count_mapping(im.path);
  if (im.cookie_at) {
    im.cookie = 0x7066670000000000ULL | ++g_cookie_seq;  // "pfg", never 0
    __atomic_store_n(reinterpret_cast<uint64_t *>(im.cookie_at), im.cookie, __ATOMIC_RELAXED);
  }
  publish_text(i, im);
  if (i == n) g_nimages.store(n + 1, std::memory_order_release);
  *is_new = true;
  return i;
}

const Image &image_at(int i) { return g_images[i]; }

bool image_check_mapped(int i) {
  Image &im = g_images[i];
  if (!im.live) return false;
  Presence pr{&im, false};
  dl_iterate_phdr(find_same, &pr);
  return pr.found;
}

void image_drop(int i) {
  g_images[i].live = false;
  publish_text(i, g_images[i]);
}

void loader_counters(unsigned long long *adds, unsigned long long *subs) {
  unsigned long long c[2] = {0, 0};
  dl_iterate_phdr(first_object, c);
  *adds = c[0];
  *subs = c[1];
}

bool in_python_text(uintptr_t pc) {
  int n = g_nimages.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i) {
    const TextSlot &t = g_text[i];
    const unsigned s0 = t.seq.load(std::memory_order_acquire);
    if (s0 & 1) continue;
    bool hit = false;
    const int nt = t.n.load(std::memory_order_relaxed);
    for (int s = 0; s < nt && s < 4; ++s)
      if (pc >= t.lo[s].load(std::memory_order_relaxed) && pc < t.hi[s].load(std::memory_order_relaxed)) hit = true;
    std::atomic_thread_fence(std::memory_order_acquire);
    if (hit && t.seq.load(std::memory_order_relaxed) == s0) return true;
  }
  return false;
}

namespace {

struct DynInfo {
  const ElfW(Sym) *symtab = nullptr;
  const char *strtab = nullptr;
  const uint32_t *gnu_hash = nullptr;
  uintptr_t rela[2] = {0, 0}, relasz[2] = {0, 0};
  size_t relacount = 0;  // leading R_*_RELATIVE entries of DT_RELA: no symbol, skipped
};

DynInfo dyn_info(const Image &im) {
  DynInfo di;
  if (!im.dynamic) return di;
  for (auto *d = reinterpret_cast<const ElfW(Dyn) *>(im.dynamic); d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB: di.symtab = reinterpret_cast<const ElfW(Sym) *>(dyn_ptr(im, d->d_un.d_ptr)); break;
      case DT_STRTAB: di.strtab = reinterpret_cast<const char *>(dyn_ptr(im, d->d_un.d_ptr)); break;
      case DT_GNU_HASH: di.gnu_hash = reinterpret_cast<const uint32_t *>(dyn_ptr(im, d->d_un.d_ptr)); break;
      case DT_JMPREL: di.rela[0] = dyn_ptr(im, d->d_un.d_ptr); break;
      case DT_PLTRELSZ: di.relasz[0] = d->d_un.d_val; break;
      case DT_RELA: di.rela[1] = dyn_ptr(im, d->d_un.d_ptr); break;
      case DT_RELASZ: di.relasz[1] = d->d_un.d_val; break;
      case DT_RELACOUNT: di.relacount = d->d_un.d_val; break;
    }
  }
  return di;
}

uint32_t gnu_hash(const char *s) {
  uint32_t h = 5381;
  for (; *s; ++s) h = h * 33 + uint8_t(*s);
  return h;
}

// Index of the defined symbol name in the image's .dynsym (GNU hash table), or 0.
uint32_t gnu_lookup(const DynInfo &di, const char *name) {
  if (!di.gnu_hash || !di.symtab || !di.strtab || !di.gnu_hash[0]) return 0;
  const uint32_t nbuckets = di.gnu_hash[0], symoffset = di.gnu_hash[1];
  const uint32_t bloom_size = di.gnu_hash[2];
  const auto *bloom = reinterpret_cast<const ElfW(Addr) *>(di.gnu_hash + 4);
  const uint32_t *buckets = reinterpret_cast<const uint32_t *>(bloom + bloom_size);
  const uint32_t *chain = buckets + nbuckets;
  const uint32_t h = gnu_hash(name);
  for (uint32_t i = buckets[h % nbuckets]; i >= symoffset && i != 0; ++i) {
    const uint32_t ch = chain[i - symoffset];
    if ((ch | 1) == (h | 1) && strcmp(di.strtab + di.symtab[i].st_name, name) == 0) return i;
    if (ch & 1) break;
  }
  return 0;
}

// One pass over the relocations, comparing symbol indices with those of the C API
// functions we intercept (found through the hash table): no string compares per
// relocation. A function the image calls itself through its PLT is defined by it, so
// it is in its hash table.
uint64_t relocated_fns(const Image &im) {
  DynInfo di = dyn_info(im);
  // Symbol index -> function, for the functions the image defines (at most a few
  // dozen indices), so each relocation costs one array probe.
  constexpr uint32_t kSlots = 1 << 16;
  static uint8_t which[kSlots];  // 0: none, else f + 1. Detection runs under a mutex.
  uint32_t index[fn_count];
  for (int f = 0; f < fn_count; ++f) {
    index[f] = kFns[f].python ? gnu_lookup(di, kFns[f].name) : 0;
    if (index[f] && index[f] < kSlots) which[index[f]] = uint8_t(f + 1);
  }
  uint64_t bits = 0;
  for (int t = 0; t < 2; ++t) {
    auto *r = reinterpret_cast<const ElfW(Rela) *>(di.rela[t]);
    // The linker sorts relative relocations first and counts them in DT_RELACOUNT
    // (-z combreloc, the default): most of a libpython's entries.
    const size_t n = di.relasz[t] / sizeof(ElfW(Rela));
    for (size_t i = t == 1 && di.relacount <= n ? di.relacount : 0; r && i < n; ++i) {
      uint32_t s = uint32_t(ELF64_R_SYM(r[i].r_info));
      if (s && s < kSlots) {
        if (which[s]) bits |= uint64_t(1) << (which[s] - 1);
      } else if (s) {
        for (int f = 0; f < fn_count; ++f)
          if (index[f] == s) bits |= uint64_t(1) << f;
      }
    }
  }
  for (int f = 0; f < fn_count; ++f)
    if (index[f] < kSlots) which[index[f]] = 0;
  return bits;
}

}  // namespace

size_t symbol_size(const Image &im, const char *name, const void *addr) {
  DynInfo di = dyn_info(im);
  uint32_t i = gnu_lookup(di, name);
  if (!i || im.bias + di.symtab[i].st_value != reinterpret_cast<uintptr_t>(addr)) return 0;
  return di.symtab[i].st_size;
}

const char *mech_name(Mech m) {
  switch (m) {
    case Mech::absent: return "absent";
    case Mech::interpose: return "interpose";
    case Mech::entry_patch: return "entry-patch";
    case Mech::none: return "none";
  }
  return "?";
}

void cover(Fn f, void *def, const Image &im, const char *bypass, bool semantic) {
  Coverage &c = g_cover[f];
  const char *base = strrchr(im.path, '/') ? strrchr(im.path, '/') + 1 : im.path;
  if (!bypass && (semantic || binds_via_relocation(im, f))) {
    set_real(f, def);
    c.mech = Mech::interpose;
    snprintf(c.why, sizeof c.why, "%s %s", base,
             binds_via_relocation(im, f)
                 ? "calls it through a relocation, the guard's definition wins"
                 : "never calls it itself (semantic interposition on), callers bind to the guard");
    return;
  }
  const char *who = bypass ? bypass : "no relocation: the library's own calls are direct";
  if (!g_config.patch) {
    set_real(f, def);
    c.mech = Mech::none;
    snprintf(c.why, sizeof c.why, "%s (%s); PYFINGUARD_PATCH=off", base, who);
    return;
  }
  patch::Result r = patch::install(def, symbol_size(im, kFns[f].name, def), kFns[f].hook,
                                   reinterpret_cast<void **>(&real_slot(f)));
  if (r.ok) {
    c.mech = Mech::entry_patch;
    snprintf(c.why, sizeof c.why, "%s (%s)", base, who);
  } else {
    set_real(f, def);
    c.mech = Mech::none;
    snprintf(c.why, sizeof c.why, "%.200s (%s); patch refused: %.160s", base, who, r.why);
  }
}

}  // namespace pfg
