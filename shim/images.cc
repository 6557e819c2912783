#include "images.h"

#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <unistd.h>

#include "config.h"
#include "patch.h"

namespace pfg {

namespace {
Image g_images[kMaxImages];
std::atomic<int> g_nimages{0};

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
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_DYNAMIC) im.dynamic = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && (ph.p_flags & PF_X) && im.ntext < 4) {
      im.text_lo[im.ntext] = info->dlpi_addr + ph.p_vaddr;
      im.text_hi[im.ntext++] = info->dlpi_addr + ph.p_vaddr + ph.p_memsz;
    }
  }
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
}  // namespace

Coverage g_cover[fn_count];

int image_add(const void *addr, bool *is_new) {
  *is_new = false;
  Lookup lk{reinterpret_cast<uintptr_t>(addr), {}, false, 0};
  dl_iterate_phdr(find_image, &lk);
  if (!lk.found) return -1;
  int n = g_nimages.load();
  for (int i = 0; i < n; ++i)
    if (g_images[i].bias == lk.out.bias && g_images[i].text_lo[0] == lk.out.text_lo[0]) return i;
  if (n == kMaxImages) return -1;
  g_images[n] = lk.out;
  g_nimages.store(n + 1, std::memory_order_release);
  *is_new = true;
  return n;
}

const Image &image_at(int i) { return g_images[i]; }

bool in_python_text(uintptr_t pc) {
  int n = g_nimages.load(std::memory_order_acquire);
  for (int i = 0; i < n; ++i)
    for (int s = 0; s < g_images[i].ntext; ++s)
      if (pc >= g_images[i].text_lo[s] && pc < g_images[i].text_hi[s]) return true;
  return false;
}

bool binds_via_relocation(const Image &im, const char *sym) {
  if (!im.dynamic) return false;
  const ElfW(Sym) *symtab = nullptr;
  const char *strtab = nullptr;
  uintptr_t rela[2] = {0, 0}, relasz[2] = {0, 0};
  for (auto *d = reinterpret_cast<const ElfW(Dyn) *>(im.dynamic); d->d_tag != DT_NULL; ++d) {
    switch (d->d_tag) {
      case DT_SYMTAB: symtab = reinterpret_cast<const ElfW(Sym) *>(dyn_ptr(im, d->d_un.d_ptr)); break;
      case DT_STRTAB: strtab = reinterpret_cast<const char *>(dyn_ptr(im, d->d_un.d_ptr)); break;
      case DT_JMPREL: rela[0] = dyn_ptr(im, d->d_un.d_ptr); break;
      case DT_PLTRELSZ: relasz[0] = d->d_un.d_val; break;
      case DT_RELA: rela[1] = dyn_ptr(im, d->d_un.d_ptr); break;
      case DT_RELASZ: relasz[1] = d->d_un.d_val; break;
    }
  }
  if (!symtab || !strtab) return false;
  for (int t = 0; t < 2; ++t) {
    auto *r = reinterpret_cast<const ElfW(Rela) *>(rela[t]);
    for (size_t i = 0; r && i < relasz[t] / sizeof(ElfW(Rela)); ++i) {
      size_t s = ELF64_R_SYM(r[i].r_info);
      if (s && strcmp(strtab + symtab[s].st_name, sym) == 0) return true;
    }
  }
  return false;
}

size_t symbol_size(const void *addr) {
  Dl_info di;
  void *ent = nullptr;
  if (!dladdr1(addr, &di, &ent, RTLD_DL_SYMENT) || !ent) return 0;
  const auto *sym = static_cast<const ElfW(Sym) *>(ent);
  return di.dli_saddr == addr ? sym->st_size : 0;
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

void cover(Fn f, void *def, const Image &im, bool precedes_us, bool semantic) {
  Coverage &c = g_cover[f];
  const char *base = strrchr(im.path, '/') ? strrchr(im.path, '/') + 1 : im.path;
  if (!precedes_us && (semantic || binds_via_relocation(im, kFns[f].name))) {
    set_real(f, def);
    c.mech = Mech::interpose;
    snprintf(c.why, sizeof c.why, "%s %s", base,
             binds_via_relocation(im, kFns[f].name)
                 ? "calls it through a relocation, the guard's definition wins"
                 : "never calls it itself (semantic interposition on), callers bind to the guard");
    return;
  }
  const char *who = precedes_us ? "defined by the executable: every caller binds to it"
                                : "no relocation: the library's own calls are direct";
  if (!g_config.patch) {
    set_real(f, def);
    c.mech = Mech::none;
    snprintf(c.why, sizeof c.why, "%s (%s); PYFINGUARD_PATCH=off", base, who);
    return;
  }
  patch::Result r = patch::install(def, symbol_size(def), kFns[f].hook,
                                   reinterpret_cast<void **>(&g_real[f]));
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
