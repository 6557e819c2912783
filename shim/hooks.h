// How a hook is defined (hooks.cc: CPython's C API; libc_hooks.cc: libc). Each hook is
// defined once, hidden, as pfg_hook_<name>; the exported <name> is an alias (made at the
// end of the file that defines it: an alias must name a definition in its own
// translation unit). Inside the library we only ever use the hidden address, which is
// what an entry patch jumps to even when an executable's definition of <name> wins lookup.
#pragma once
#include <cstdint>

#include "images.h"

#define PFG_LIKELY(x) __builtin_expect(!!(x), 1)
#define PFG_UNLIKELY(x) __builtin_expect(!!(x), 0)
// The hook's caller is CPython's own code (libpython, or a static python executable).
// A macro: __builtin_return_address(0) must be the hook's own return address.
#define PFG_CALLED_FROM_PYTHON() in_python_text(reinterpret_cast<uintptr_t>(__builtin_return_address(0)))
#define PFG_EXPORT_ALIAS(ret, name, params) \
  extern "C" __attribute__((visibility("default"), alias("pfg_hook_" #name))) ret name params;
// A CPython name is exported as name@PYFINGUARD_PYTHON, a non-default ("hidden") version
// (pyfinguard.map): relocations -- unversioned references, as every Python image makes
// -- bind to it, dlsym() passes over it until a runtime is taken over (interpose.h,
// python_names_visible; docs/design.md, "Invisible where Python is absent"). The
// pfg_export_ name itself is made local by the version script.
#define PFG_EXPORT_PY_ALIAS(ret, name, params)                                              \
  extern "C" __attribute__((visibility("default"), alias("pfg_hook_" #name))) ret pfg_export_##name params; \
  __asm__(".symver pfg_export_" #name ", " #name "@PYFINGUARD_PYTHON");
// A libc name exported as name@@ver, the default version glibc itself gives it. For the
// condition variables on x86: an unversioned definition would also take the references of
// programs built against the pre-2.3.2 ABI (name@GLIBC_2.2.5, a pointer-sized object), and
// hand their objects to today's implementation, while their pthread_cond_signal still
// reached the old one (a crash at once). With a version, those references pass us by.
#define PFG_EXPORT_LIBC_VERSIONED_ALIAS(ret, name, params, ver)                              \
  extern "C" __attribute__((visibility("default"), alias("pfg_hook_" #name))) ret pfg_export_##name params; \
  __asm__(".symver pfg_export_" #name ", " #name "@@" ver);
