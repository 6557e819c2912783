// Acquisition windows and the drain at CPython's point of no return.
// docs/design.md ("Finalizing: windows and the drain") is the reference.
//
// Up to CPython's point of no return the guard changes nothing a thread can observe
// (docs/design.md, "The principle"): no thread waits in the guard, nobody releases or takes the GIL for anyone.
// Past it, a thread that *passed* its check before and is still inside CPython's
// acquisition code (PyGILState_Ensure creating and binding a thread state, take_gil) can
// be pre-empted there while the finalizer frees what that code uses (CPython gh-124619;
// tests/scenarios/storm.c crashed in most runs on 3.10-3.13). So each acquiring hook
// marks the real call with a per-thread window count -- a plain TLS increment before it
// and decrement after it, no fence --
// and the finalizer, after CPython has crossed its point of no return and before CPython
// frees the first thread state, issues a process-wide barrier (membarrier(2)) and waits,
// holding the GIL, until every open window has closed or its thread has parked.
//
// The barrier makes the pair asymmetric Dekker: a thread stores its window, then reads
// g_epoch and (while FINALIZING) CPython's flag; the finalizer's CPython stored that flag
// before the barrier, and the scan reads the windows after it. Either the scan sees the
// window, or the thread sees the flag and parks without entering CPython.
//
// Why the wait ends: past the point of no return, with the finalizer holding the GIL, a
// thread inside a real acquisition can only go forward into take_gil, where CPython
// itself stops it through a function the guard intercepts -- pthread_exit (3.9-3.13),
// pause() in PyThread_hang_thread (3.14+, gh-87135), or the timed GIL wait (every
// version; gilwait.h) -- and parks it, which closes its window. No other thread can hold
// that GIL, so no window belongs to a thread the finalizer would need to run. Bounded all
// the same (kDrainLimitNs): a thread stuck elsewhere must not hang the exit.
#pragma once
#include <atomic>
#include <cstdint>

#include "state.h"

namespace pfg {

// Registers this thread's window word (t_pt.window) so that the drain sees it.
void window_register_slow();  // cold
inline void window_register() {
  if (__builtin_expect(!is_registered(), 0)) window_register_slow();
}

// The window around a real acquiring call: opened before g_epoch is read, closed when
// the call returns. Windows nest: tracemalloc's raw allocator hook calls
// PyGILState_Ensure from inside PyThreadState_New, i.e. inside an outer Ensure's real
// call, and CPython's own PyEval_RestoreThread runs inside PyGILState_Ensure. Closing the
// inner one must leave the outer one open, or the drain frees the outer call's thread
// state under it (found by the model: docs/model.md, gap-nested-window). So the word
// counts open windows. Only its own thread writes it, so a plain increment -- one
// `add` on the %fs-relative word, as cheap as the store it replaces -- is enough; the
// drain reads it with an atomic load, the finalizer's membarrier supplies the fence, and
// the signal fence keeps the compiler from moving the g_epoch load above the increment.
inline void window_open() {
  ++t_pt.window;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}
//
// Closing is a release store on arm64: a thread of a sub-interpreter with a GIL of its own
// (3.12+) can return from its call while the finalizer drains, and a drain that reads the
// word back to 0 must then see the thread's last writes inside CPython (docs/patching.md,
// "the window/drain protocol on arm64"). x86-64 stores are ordered after earlier ones
// anyway: there it stays the one `sub` on the %fs-relative word.
inline void window_close() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
#if defined(__aarch64__)
  __atomic_store_n(&t_pt.window, t_pt.window - 1, __ATOMIC_RELEASE);
#else
  --t_pt.window;
#endif
}

// The finalizer, past CPython's point of no return, before CPython frees a thread state:
// once per finalization (of generation gen), waits until every other window is closed.
// Never releases or takes the GIL.
void drain_windows_once(uint64_t gen);

// Once, when a runtime is detected (registers for membarrier's expedited command).
void window_init();

// fork(): only the forking thread survives in the child.
void window_atfork_child();

}  // namespace pfg
