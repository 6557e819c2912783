// Admission while Python finalizes. docs/design.md ("Finalizing: the gate").
//
// Between Py_FinalizeEx's start and CPython's point of no return, threads may still
// need the GIL (non-daemon threads being joined, atexit handlers waiting for workers),
// so they cannot simply be parked. But a thread let into CPython's acquisition code
// then can be pre-empted there while the finalizer crosses the point of no return and
// frees the thread states, the TSS key and the interpreter under it (CPython gh-124619;
// tests/scenarios/storm.c hits it in most runs). The gate closes that window: during
// FINALIZING a thread enters the real acquisition only while the finalizer itself waits
// with the GIL released (between its PyEval_SaveThread and PyEval_RestoreThread), and
// the finalizer takes the GIL back only when every thread admitted so far has come out
// of the real call. So no admitted thread is inside CPython's acquisition code when the
// finalizer -- holding the GIL -- reaches the point of no return. Threads not admitted
// wait on a futex and re-check; once CPython is past the point they park.
//
// A thread that passed the RUNNING check just before FINALIZING was stored is in the
// same danger (it may be pre-empted inside CPython's acquisition code for the whole of
// finalization). So the acquiring hooks mark the real call with a per-thread window
// word -- two plain TLS stores on the fast path, no fence -- and the finalizer, after
// storing FINALIZING, issues a process-wide barrier (membarrier(2)) and lets every open
// window close before it goes on. The barrier makes the pair asymmetric Dekker: either
// the finalizer sees a thread's window open, or that thread's load of g_epoch sees
// FINALIZING and takes the gate.
#pragma once
#include <cstdint>

#include "interpose.h"
#include "state.h"

namespace pfg {

// A non-finalizer thread that wants the GIL during FINALIZING. Returns once admitted
// (the caller must call gate_leave() after the real call returns); parks if CPython
// passes its point of no return or the generation ends while it waits.
void gate_admit(Fn api, uint64_t e);
void gate_leave();

// The finalizer: after its real PyEval_SaveThread (the GIL is free) / before it takes
// the GIL back (waits until admitted threads are out of the real call).
void gate_finalizer_released();
void gate_finalizer_reacquiring();

// FINALIZING ended (FINALIZED or a new generation): wake waiting threads to re-decide.
void gate_phase_changed();

// park(): a thread that parks (or exits) inside an admitted call leaves the gate.
void gate_forget_this_thread();

// Registers this thread's window word (t_pt.window) so that the finalizer sees it.
void window_register_slow();  // cold
inline void window_register() {
  if (__builtin_expect(!(t_pt.mode & 1), 0)) window_register_slow();
}

// The finalizer, right after storing FINALIZING, holding the GIL: waits until every
// window opened before that store has closed, releasing the GIL meanwhile if any is open.
void gate_drain_windows(void *(*save)(void), void (*restore)(void *));

// Once, when a runtime is detected (registers for membarrier's expedited command).
// grace: the finalizer may release the GIL where the guard cannot see it (3.13+ detach
// paths; LTO-inlined PyEval_SaveThread in builds without semantic interposition), so a
// waiting thread is let in after a grace period rather than hanging a normal shutdown
// (docs/model.md F8 shows what that costs; with every release visible there is none).
void gate_init(bool grace);

// fork(): only the forking thread survives in the child.
void gate_atfork_child();

}  // namespace pfg
