// One report per parked thread, text or a JSON line, with a backtrace of the caller.
// Everything here may run in a thread that is about to park, while other threads exit
// the process: no malloc, no stdio, no locks of ours (writer.h, sink.h).
#pragma once
#include <atomic>

#include "writer.h"

namespace pfg {

struct ParkRecord;

// One report per parked thread: the event and a libunwind backtrace of the caller.
void report_park(const ParkRecord &r, const char *what);

// Loads libunwind (with dlopen) for the backtraces of park reports. Called when a runtime
// is taken over, in normal context: a process without Python never maps it.
void report_prepare();

// Reports written (or attempted): the exit summary is printed only when there was one.
extern std::atomic<unsigned> g_reported;

// The fields every JSON line starts with: {"event":event,"time",...,"python" (no closing brace).
void json_head(Writer &w, const char *event);

}  // namespace pfg
