// libunwind, for the backtraces of reports, loaded on demand into a namespace of its own.
//
// Why not DT_NEEDED: libunwind.so.8 exports the whole _Unwind_* API (_Unwind_GetIP,
// _Unwind_SetGR, _Unwind_RaiseException, ...) under the same names as libgcc_s. As a
// dependency of a preloaded library it sits in the global scope ahead of libgcc_s
// whenever a C++ library is dlopen'ed later (ctypes, cffi, extension modules), and
// libstdc++'s personality routine then binds to libunwind's accessors while glibc's
// pthread_exit/pthread_cancel unwind with libgcc_s's _Unwind_ForcedUnwind: two
// unwinders' contexts mixed, the personality reads a garbage IP, and the thread's C++
// cleanups (a std::lock_guard's unlock) are skipped -- in every guarded process, Python
// or not. dlopen(RTLD_LOCAL) keeps its symbols out of the global scope.
#pragma once
#define UNW_LOCAL_ONLY
#include <libunwind.h>

namespace pfg {

struct Unwinder {
  int (*init_local)(unw_cursor_t *, unw_context_t *);
  int (*step)(unw_cursor_t *);
  int (*get_reg)(unw_cursor_t *, unw_regnum_t, unw_word_t *);
  int (*get_proc_name)(unw_cursor_t *, char *, size_t, unw_word_t *);
  int (*get_proc_info)(unw_cursor_t *, unw_proc_info_t *);
#ifdef __x86_64__
  int (*getcontext)(unw_context_t *);  // a function on x86-64; inline asm elsewhere
#endif
};

// Loads libunwind (once; later calls cost one load). Takes the dynamic loader's lock, so
// it is called only from the ordinary contexts that come before any park, never from a
// thread that is about to park (another thread may hold the loader lock for ever): a
// thread's first PyEval_AcquireThread while the runtime runs (CPython's thread
// bootstrap: from then on a thread exists that could park, and a program's exit does not
// pay for the load), the start of a finalization and the python executable's return
// (park_prepare(), park.h), a lifecycle hook that deletes a thread state or ends an
// interpreter (hooks.cc), and the unmapping of a runtime (runtime.cc). Not at a runtime's
// take-over: nothing can park before one of these, and a process that never gets there
// (python -c pass with no other thread) never maps libunwind and liblzma. At a
// finalization the caller holds the GIL: a thread that held the loader lock while it
// waited for the GIL would deadlock this dlopen as it would CPython's own imports of
// extension modules (dlopen with the GIL held) and park_prepare()'s dlsym at the same
// point.
//
// only_if_threads: load only if this process has another task now (the python
// executable's own runtime, whose only threads that park are its own or a native thread
// it started: they exist at its finalization, or at its return for one started by an
// atexit callback). A thread created after both, by a C atexit handler or an exit-time
// destructor, that parks reports no frames. An embedder's finalization loads always: its
// host may start threads later that call into the finalized runtime.
void backtrace_prepare(bool only_if_threads = false);

// The loaded functions, or nullptr when backtrace_prepare() has not (or could not) run:
// a report then has no frames. Lock-free, async-signal-safe.
const Unwinder *backtrace_unwinder();

}  // namespace pfg
