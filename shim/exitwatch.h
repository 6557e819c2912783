// A bounded exit (docs/design.md, "Exit is bounded"). A parked thread keeps every lock it
// holds; an exit-time destructor, atexit handler or join that needs one would wait for
// ever. When the process exits while threads are parked, one parked thread becomes the
// watch: it tells an exit that still works from one that waits for ever, reports the
// wait, and ends the process with the status it was exiting with.
#pragma once

namespace pfg {

// Registers the exit handler, once per process (an ordinary context: the finalizer
// entering Py_FinalizeEx). Registered after the program's static objects and libraries,
// exit() runs it before their destructors, so the watch knows the exit began before
// anything there can block.
void exitwatch_arm();

// Has exit begun? (Its status is what the watch ends the process with.)
bool exit_begun();

// What a parked thread does for ever (park.cc): sleep, and, once exit began, become the
// watch if no other thread is. Only raw syscalls and the async-signal-safe writers.
[[noreturn]] void exitwatch_park_wait();

}  // namespace pfg
