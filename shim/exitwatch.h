// A bounded exit (docs/design.md, "Exit is bounded"). A parked thread keeps every lock it
// holds, and an ended one never signals what it would have; an exit-time destructor,
// atexit handler or join that needs either would wait for ever. When the process exits
// after the guard stopped a late thread, a watch thread tells an exit that still works
// from one that waits for ever, reports the wait, and ends the process with the status
// it was exiting with.
#pragma once

namespace pfg {

// Registers the exit handler (an ordinary context: the finalizer entering Py_FinalizeEx,
// the python executable's Py_BytesMain returning). Registered after the program's static
// objects and libraries, exit() runs it before their destructors, so the watch knows the
// exit began before anything there can block. Once per process.
void exitwatch_arm();

// The same for a lifecycle hook (a thread state deleted or an interpreter ended while the
// runtime runs: its threads may park before any finalization): registers only if nothing
// is registered yet, and does not keep exitwatch_arm() from registering again later.
void exitwatch_arm_early();

// Has exit begun? (Its status is what the watch ends the process with.)
bool exit_begun();

// A late thread was stopped (park.cc, after its record): once the exit has begun, the
// watch runs (started once).
void exitwatch_late_thread();

}  // namespace pfg
