// Thread states and interpreters that an embedder ends while the runtime runs
// (docs/design.md, "Sub-interpreters"; gaps G1 and G2 of tests/subinterp/README.md).
//
// mod_wsgi-style embedders cache one thread state per native thread and interpreter,
// delete them (PyThreadState_Clear + PyThreadState_Delete) on another thread, and end
// the sub-interpreter with Py_EndInterpreter -- all while the main runtime RUNS, so the
// generation does not move and a handle saved before that still looks current. Two
// records, neither of which ever dereferences what it names:
//
//  * Deleted thread states. PyThreadState_Delete(ts) counts a lifecycle event in g_epoch
//    (state.h) and writes {ts, that count} into a ring. A thread whose saved handle
//    predates the event takes the slow path once; its restore of exactly that ts parks
//    if the most recent event naming the address since its save is a deletion. A state
//    created again at the same address by PyThreadState_New (recorded too, when the
//    address is in the ring) lets it through: the order of events, not the address,
//    decides. More than kRing events since the save: unknown, let through (as without
//    the guard).
//  * Ended interpreters. Py_EndInterpreter(tstate) records tstate's interpreter once it
//    returned. A PyThreadState_New on a recorded address parks unless the address is
//    listed among the runtime's live interpreters again (a new interpreter there).
#pragma once
#include <cstdint>

namespace pfg {

// PyThreadState_Delete hook, before the real call (the state is still allocated).
void note_ts_deleted(void *ts);
// PyThreadState_New hook, after the real call: a state at an address deleted earlier.
void note_ts_created(void *ts);
// Was ts -- this thread's saved state (handle epoch h_epoch, same generation as e) --
// deleted since the save? Lock-free, allocation-free: runs in the slow path of a restore.
bool ts_deleted_since(void *ts, uint64_t h_epoch, uint64_t e);

// Py_EndInterpreter hook, after the real call returned.
void note_interp_ended(void *interp);
// PyThreadState_New hook: was interp ended (and not listed as a live interpreter since)?
bool interp_ended(void *interp);

}  // namespace pfg
