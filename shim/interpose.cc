#include "interpose.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include "writer.h"

// The hidden definitions in hooks.cc.
#define PFG_PY(ret, name, params, args) extern "C" ret pfg_hook_##name params;
#define PFG_LIBC(ret, name, params, args) extern "C" ret pfg_hook_##name params;
#include "intercepted.def"

namespace pfg {

const FnInfo kFns[fn_count] = {
#define PFG_PY(ret, name, params, args) {#name, true, reinterpret_cast<void *>(&pfg_hook_##name)},
#define PFG_LIBC(ret, name, params, args) {#name, false, reinterpret_cast<void *>(&pfg_hook_##name)},
#include "intercepted.def"
};

// Resolver stubs and the slots they initialize (constant initialization: no static
// constructor can run after ours and undo what detection stored).
#define PFG_PY(ret, name, params, args)                                          \
  ret stub_##name params { return reinterpret_cast<name##_fn>(resolve_missing(fn_##name)) args; } \
  std::atomic<name##_fn> real_##name{&stub_##name};
#define PFG_LIBC(ret, name, params, args) PFG_PY(ret, name, params, args)
#include "intercepted.def"

static_assert(sizeof(std::atomic<void *>) == sizeof(std::atomic<void (*)()>), "slot layout");

// The slots are std::atomic<fn-pointer>; detection and patching treat them as
// std::atomic<void *> (same size and representation), only on cold paths.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-aliasing"
std::atomic<void *> &real_slot(Fn f) {
  switch (f) {
#define PFG_PY(ret, name, params, args) \
  case fn_##name: return *reinterpret_cast<std::atomic<void *> *>(&real_##name);
#define PFG_LIBC(ret, name, params, args) PFG_PY(ret, name, params, args)
#include "intercepted.def"
    default: break;
  }
  __builtin_trap();
}
#pragma GCC diagnostic pop

static void *stub_address(Fn f) {
  switch (f) {
#define PFG_PY(ret, name, params, args) \
  case fn_##name: return reinterpret_cast<void *>(&stub_##name);
#define PFG_LIBC(ret, name, params, args) PFG_PY(ret, name, params, args)
#include "intercepted.def"
    default: return nullptr;
  }
}

bool is_stub(Fn f, void *p) {
  switch (f) {
#define PFG_PY(ret, name, params, args) \
  case fn_##name: return p == reinterpret_cast<void *>(&stub_##name);
#define PFG_LIBC(ret, name, params, args) PFG_PY(ret, name, params, args)
#include "intercepted.def"
    default: return false;
  }
}

void *set_real(Fn f, void *p) {
  std::atomic<void *> &slot = real_slot(f);
  void *cur = slot.load();
  if (p && is_stub(f, cur) && slot.compare_exchange_strong(cur, p)) return p;
  return slot.load();
}

// Why the hot paths may read the slots without a lock while this runs on another thread
// (the slots are single atomic words; a hook loads one once and calls it):
//  * A hook for a CPython function runs only because its caller called that function of
//    the image being unloaded -- through a PLT slot bound to the guard or through the
//    image's own patched entry. A caller that does so while dlclose unmaps the image is
//    using a library after unloading it, and crashes without the guard in the same way;
//    the guard cannot make that call safe, only not make it worse.
//  * Every other thread either loaded the slot before this store -- and then called into
//    the old mapping as its own caller asked -- or loads the stub afterwards, whose
//    resolver finds the next definition with dlsym or stops with a message: never an
//    address in an unmapped image. Calls the guard makes on its own (the runtime's
//    probes) are cleared before this runs (runtime.cc).
//  * This runs after the real dlclose returned and before the dlopen hook takes over a
//    new mapping, under the detection mutex: the new mapping's first call, which cannot
//    come before its dlopen returns, finds the new values.
void reset_python_slots() {
  for (int i = 0; i < fn_count; ++i)
    if (kFns[i].python) real_slot(Fn(i)).store(stub_address(Fn(i)));
}

void resolve_libc() {
  for (int i = 0; i < fn_count; ++i)
    if (!kFns[i].python) set_real(Fn(i), dlsym(RTLD_NEXT, kFns[i].name));
}

void *resolve_missing(Fn f) {
  void *cur = real_slot(f).load();
  if (!is_stub(f, cur)) return cur;
  void *p = dlsym(RTLD_NEXT, kFns[f].name);
  if (p && p != kFns[f].hook) return set_real(f, p);
  report_fatal("no definition of ", kFns[f].name, " after the guard's own");
}

// Our own .gnu.version entries for the CPython names (found once: dladdr1 gives each
// exported definition's symbol table entry, whose index is its .gnu.version index), and
// the protection of the segment that holds them, to restore after writing. glibc reads
// the table on every lookup (check_match in elf/dl-lookup.c): a flip takes effect for
// the next dlsym. A 16-bit aligned store: a lookup on another thread sees the old or
// the new value, and either is a consistent answer.
bool python_names_visible(uint64_t defined) {
  static ElfW(Half) *entry[fn_count];
  static uintptr_t lo = UINTPTR_MAX, hi;
  static int prot;
  static int state;  // 0: not looked up, 1: ready, -1: cannot
  if (state == 0) {
    state = -1;
    Dl_info di;
    struct link_map *lm = nullptr;
    if (!dladdr1(reinterpret_cast<void *>(&python_names_visible), &di, reinterpret_cast<void **>(&lm),
                 RTLD_DL_LINKMAP) || !lm)
      return false;
    const ElfW(Sym) *symtab = nullptr;
    ElfW(Half) *versym = nullptr;
    for (const ElfW(Dyn) *d = lm->l_ld; d->d_tag != DT_NULL; ++d) {
      const uintptr_t v = d->d_un.d_ptr < lm->l_addr ? d->d_un.d_ptr + lm->l_addr : d->d_un.d_ptr;
      if (d->d_tag == DT_SYMTAB) symtab = reinterpret_cast<const ElfW(Sym) *>(v);
      if (d->d_tag == DT_VERSYM) versym = reinterpret_cast<ElfW(Half) *>(v);
    }
    if (!symtab || !versym) return false;
    for (int i = 0; i < fn_count; ++i) {
      if (!kFns[i].python) continue;
      Dl_info si;
      ElfW(Sym) *sym = nullptr;
      if (!dladdr1(kFns[i].hook, &si, reinterpret_cast<void **>(&sym), RTLD_DL_SYMENT) || !sym) return false;
      entry[i] = versym + (sym - symtab);
      const uintptr_t a = reinterpret_cast<uintptr_t>(entry[i]);
      if (a < lo) lo = a;
      if (a + sizeof(ElfW(Half)) > hi) hi = a + sizeof(ElfW(Half));
    }
    const auto *eh = reinterpret_cast<const ElfW(Ehdr) *>(di.dli_fbase);
    const auto *ph = reinterpret_cast<const ElfW(Phdr) *>(reinterpret_cast<uintptr_t>(eh) + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; ++i) {
      const uintptr_t s = lm->l_addr + ph[i].p_vaddr;
      if (ph[i].p_type == PT_LOAD && lo >= s && hi <= s + ph[i].p_memsz)
        prot = (ph[i].p_flags & PF_R ? PROT_READ : 0) | (ph[i].p_flags & PF_W ? PROT_WRITE : 0) |
               (ph[i].p_flags & PF_X ? PROT_EXEC : 0);
    }
    if (!prot) return false;
    state = 1;
  }
  if (state < 0) return false;
  const uintptr_t page = uintptr_t(getpagesize());
  void *start = reinterpret_cast<void *>(lo & ~(page - 1));
  const size_t len = ((hi + page - 1) & ~(page - 1)) - (lo & ~(page - 1));
  if (!(prot & PROT_WRITE) && mprotect(start, len, prot | PROT_WRITE) != 0) return false;
  for (int i = 0; i < fn_count; ++i) {
    if (!entry[i]) continue;
    const ElfW(Half) v = __atomic_load_n(entry[i], __ATOMIC_RELAXED);
    __atomic_store_n(entry[i], ElfW(Half)(defined >> i & 1 ? v & 0x7fff : v | 0x8000), __ATOMIC_RELAXED);
  }
  if (!(prot & PROT_WRITE)) mprotect(start, len, prot);
  return true;
}

}  // namespace pfg
