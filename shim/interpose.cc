#include "interpose.h"

#include <dlfcn.h>
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

}  // namespace pfg
