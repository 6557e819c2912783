// The dlopen hook: a Python runtime loaded after start-up is taken over before dlopen
// returns to its caller.
//
// Mechanics: glibc's dlopen searches a slash-less name with the *caller's* DT_RPATH /
// DT_RUNPATH (and picks the caller's namespace), taking the caller from its own return
// address (RETURN_ADDRESS(0) -> _dl_find_dso_for_object in dlfcn/dlopen.c). Behind a
// hook that return address is the guard's. So the real dlopen is entered with a return
// address that lies in the caller's own object -- a return sequence there (a "gadget":
// x86-64's `ret`, aarch64's `ldp x29, x30, [sp], #16; [autiasp;] ret`) -- which returns
// into the guard: glibc sees the true caller and does its own search, every rule of it
// (docs/design.md, "dlopen as the caller"; the gadgets: gadget.h). Only where that is not
// possible (no gadget in the caller's object, a shadow stack, another architecture) does
// the hook repeat the search itself, as ld.so(8) documents it (emulate()).
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/auxv.h>
#include <unistd.h>

#include "dlopen/gadget.h"
#include "interpose.h"

namespace {

// Writes dir + "/" + file into out with $ORIGIN expanded. False when it does not fit or
// uses a token we do not expand ($LIB, $PLATFORM): then the real search is used.
bool join_path(const char *dir, size_t dlen, const char *origin, const char *file, char *out) {
  size_t n = 0;
  auto put = [&](const char *s, size_t len) {
    if (n + len >= PATH_MAX) return false;
    memcpy(out + n, s, len);
    n += len;
    return true;
  };
  for (size_t i = 0; i < dlen;) {
    if (dir[i] == '$') {
      const char *rest = dir + i + 1;
      size_t skip = 0;
      if (strncmp(rest, "ORIGIN", 6) == 0) skip = 7;
      else if (strncmp(rest, "{ORIGIN}", 8) == 0) skip = 9;
      else return false;
      if (!put(origin, strlen(origin))) return false;
      i += skip;
    } else {
      if (!put(dir + i, 1)) return false;
      ++i;
    }
  }
  if (!put("/", 1) || !put(file, strlen(file) + 1)) return false;
  return true;
}

// Tries each directory of a colon-separated list; returns the handle of the first hit.
void *try_dirs(const char *list, const char *origin, const char *file, int mode, bool *gave_up) {
  for (const char *p = list; p && *p;) {
    const char *end = strchr(p, ':');
    size_t len = end ? size_t(end - p) : strlen(p);
    char path[PATH_MAX];
    if (len && !join_path(p, len, origin, file, path)) {
      *gave_up = true;
      return nullptr;
    }
    if (len && access(path, F_OK) == 0) return PFG_REAL(dlopen)(path, mode);
    p = end ? end + 1 : nullptr;
  }
  return nullptr;
}

void *emulate(const char *file, int mode, void *caller) {
  if (!file || strchr(file, '/')) return PFG_REAL(dlopen)(file, mode);
  if (void *h = PFG_REAL(dlopen)(file, mode | RTLD_NOLOAD)) {  // already loaded: same object
    PFG_REAL(dlclose)(h);
    return PFG_REAL(dlopen)(file, mode);
  }
  Dl_info di;
  struct link_map *lm = nullptr;
  if (!dladdr1(caller, &di, reinterpret_cast<void **>(&lm), RTLD_DL_LINKMAP) || !lm || !lm->l_ld)
    return PFG_REAL(dlopen)(file, mode);
  const char *strtab = nullptr;
  ElfW(Xword) rpath = 0, runpath = 0;
  bool has_rpath = false, has_runpath = false;
  for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_STRTAB) strtab = reinterpret_cast<const char *>(d->d_un.d_ptr);
    if (d->d_tag == DT_RPATH) rpath = d->d_un.d_val, has_rpath = true;
    if (d->d_tag == DT_RUNPATH) runpath = d->d_un.d_val, has_runpath = true;
  }
  if (!strtab || (!has_rpath && !has_runpath)) return PFG_REAL(dlopen)(file, mode);
  if (reinterpret_cast<uintptr_t>(strtab) < lm->l_addr) strtab += lm->l_addr;
  char origin[PATH_MAX];
  const char *name = lm->l_name && *lm->l_name ? lm->l_name : nullptr;
  if (!name) {
    ssize_t n = readlink("/proc/self/exe", origin, sizeof origin - 1);
    origin[n > 0 ? n : 0] = 0;
  } else {
    strncpy(origin, name, sizeof origin - 1);
    origin[sizeof origin - 1] = 0;
  }
  if (char *slash = strrchr(origin, '/')) *slash = 0;
  bool gave_up = false;
  void *h = nullptr;
  if (has_runpath) {
    // DT_RUNPATH: LD_LIBRARY_PATH first (ignored in secure mode), then the RUNPATH.
    if (!getauxval(AT_SECURE)) h = try_dirs(getenv("LD_LIBRARY_PATH"), origin, file, mode, &gave_up);
    if (!h && !gave_up) h = try_dirs(strtab + runpath, origin, file, mode, &gave_up);
  } else {
    h = try_dirs(strtab + rpath, origin, file, mode, &gave_up);
  }
  return h ? h : PFG_REAL(dlopen)(file, mode);
}

}  // namespace

namespace pfg {

void *dlopen_as_caller(const char *file, int mode, void *caller) {
#if defined(__x86_64__) || defined(__aarch64__)
  // 0: not asked yet, 1: off, 2: on. (A function-local static would need libstdc++'s
  // guard; racing first calls just ask twice.)
  static std::atomic<int> shstk{0};
  if (shstk.load(std::memory_order_relaxed) == 0)
    shstk.store(gadget::shadow_stack_on() ? 2 : 1, std::memory_order_relaxed);
  if (shstk.load(std::memory_order_relaxed) == 1) {
    if (const uintptr_t g = gadget::find(caller))
      return gadget::call_via(g, file, mode, reinterpret_cast<void *>(PFG_REAL(dlopen)));
  }
#endif
  return emulate(file, mode, caller);
}

}  // namespace pfg
