// Real-function resolution: one slot per intercepted function (intercepted.def), filled
// once. Mechanics only; the policy lives in hooks.cc.
#pragma once
#include <atomic>
#include <ctime>
#include <pthread.h>
#include <wchar.h>

#include "state.h"

namespace pfg {

enum Fn : int {
#define PFG_PY(ret, name, params, args) fn_##name,
#define PFG_LIBC(ret, name, params, args) fn_##name,
#include "intercepted.def"
  fn_count
};

// Function pointer types: pfg::name##_fn.
#define PFG_PY(ret, name, params, args) using name##_fn = ret(*) params;
#define PFG_LIBC(ret, name, params, args) using name##_fn = ret(*) params;
#include "intercepted.def"

struct FnInfo {
  const char *name;
  bool python;  // CPython C API (may need an entry patch) or libc
  void *hook;   // our hidden definition (never the exported alias: see hooks.cc)
};
extern const FnInfo kFns[fn_count];

// The original function: the next definition after ours (interposition), or the
// trampoline of an entry patch. Published before the patch is written and never
// changed afterwards, so hooks read it with a plain acquire load.
extern std::atomic<void *> g_real[fn_count];

// Cold path: resolve a slot that detection did not fill (e.g. a function first called
// before its image was seen). Aborts with a message when there is no definition at all,
// since a hook cannot invent the function it stands for.
void *resolve_missing(Fn f);

inline void *real_ptr(Fn f) {
  void *p = g_real[f].load(std::memory_order_acquire);
  return __builtin_expect(p != nullptr, 1) ? p : resolve_missing(f);
}

#define PFG_REAL(name) (reinterpret_cast<::pfg::name##_fn>(::pfg::real_ptr(::pfg::fn_##name)))

// At load: resolve the libc functions with dlsym(RTLD_NEXT). They are needed on paths
// that run in dying threads (pthread_exit), where dlsym (loader lock) must not run.
void resolve_libc();

// dlopen(file, mode) as if called from caller (dlopen.cc).
void *dlopen_as_caller(const char *file, int mode, void *caller);

// Set a slot if still empty (first definition wins). Returns the value now in the slot.
void *set_real(Fn f, void *p);

}  // namespace pfg
