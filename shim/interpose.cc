#include "interpose.h"

#include <dlfcn.h>
#include <unistd.h>

#include "report.h"

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

std::atomic<void *> g_real[fn_count];

void *set_real(Fn f, void *p) {
  void *expected = nullptr;
  if (p && g_real[f].compare_exchange_strong(expected, p)) return p;
  return g_real[f].load();
}

void resolve_libc() {
  for (int i = 0; i < fn_count; ++i)
    if (!kFns[i].python) set_real(Fn(i), dlsym(RTLD_NEXT, kFns[i].name));
}

void *resolve_missing(Fn f) {
  void *p = dlsym(RTLD_NEXT, kFns[f].name);
  if (p && p != kFns[f].hook) return set_real(f, p);
  report_fatal("no definition of ", kFns[f].name, " after the guard's own");
}

}  // namespace pfg
