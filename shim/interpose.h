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

// The original function of each intercepted name: the next definition after ours
// (interposition), or the trampoline of an entry patch. One typed atomic per function,
// constant-initialized to a resolver stub (interpose.cc), so it is never null -- even
// for a call that arrives before our constructor has run -- and the hot paths carry no
// check. Published before a patch is written. It changes again only when the image it
// points into is unmapped (reset_python_slots, then a new take-over fills it from the
// new mapping): see there for why the hot paths may keep reading it without a lock.
#define PFG_PY(ret, name, params, args) \
  ret stub_##name params;                \
  extern std::atomic<name##_fn> real_##name __attribute__((visibility("hidden")));
#define PFG_LIBC(ret, name, params, args) PFG_PY(ret, name, params, args)
#include "intercepted.def"

#define PFG_REAL(name) (::pfg::real_##name.load(std::memory_order_acquire))

// The same for the hot pair's calls: on x86-64 a plain read of the slot, which the
// compiler folds into the call (`call *slot(%rip)`: one instruction; it never folds an
// atomic load, which costs a `mov` and a `call *%rax`). An aligned 8-byte load is
// single-copy atomic on x86-64 and, under TSO, has acquire ordering, so it reads what
// PFG_REAL reads; the slot is read once, by the call. Elsewhere the atomic load.
#if defined(__x86_64__)
#define PFG_REAL_HOT(name) (*reinterpret_cast<::pfg::name##_fn *>(&::pfg::real_##name))
#else
#define PFG_REAL_HOT(name) PFG_REAL(name)
#endif

// Generic access by index (detection, patching): the slot as a void * cell.
std::atomic<void *> &real_slot(Fn f);
bool is_stub(Fn f, void *p);

// Cold path of the stubs: resolve a slot that detection did not fill (a function
// called before its image was seen). Aborts with a message when there is no definition
// at all, since a hook cannot invent the function it stands for.
void *resolve_missing(Fn f);

// At load: resolve the libc functions with dlsym(RTLD_NEXT). They are needed on paths
// that run in dying threads (pthread_exit), where dlsym (loader lock) must not run.
void resolve_libc();

// dlopen(file, mode) as if called from caller (dlopen/search.cc).
void *dlopen_as_caller(const char *file, int mode, void *caller);

// The runtime's image was unmapped (dlclose): put every CPython slot back to its resolver
// stub, so that nothing of the guard's calls into the old mapping, and the next take-over
// (of a new mapping, perhaps elsewhere) fills them afresh. libc slots are untouched.
void reset_python_slots();

// dlsym() and the CPython names: each is exported as name@PYFINGUARD_PYTHON, a
// non-default version, which the dynamic linker binds unversioned references to
// (relocations: every Python image's) but which dlsym(RTLD_DEFAULT / RTLD_NEXT / a
// handle, name) passes over while the symbol's "hidden" bit is set in our .gnu.version
// -- as it is in the file. So a process without Python gets from dlsym exactly what it
// gets without the guard (docs/design.md, "Invisible where Python is absent"). While a
// runtime is taken over the bit is cleared for the names it defines (bit f of `defined`
// for kFns[f]; 0 hides them all again), and dlsym answers with the guard's definition
// for those, as interposition does for relocations. False when the table could not be
// written (then dlsym keeps answering with the runtime's own definitions).
// Detection mutex.
bool python_names_visible(uint64_t defined);

// Set a slot if it still holds its resolver stub (first definition wins). Returns the
// value now in the slot.
void *set_real(Fn f, void *p);

}  // namespace pfg
