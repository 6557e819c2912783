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

// The thread being ended (park.h) reached std::terminate in its unwind and parks: one
// line, by the same rules as its report.
void report_unwind_parked(const ParkRecord &r);

// Reports written (or attempted): the exit summary is printed only when there was one.
extern std::atomic<unsigned> g_reported;

// The fields every JSON line starts with: {"event":event,"time",...,"python" (no closing brace).
void json_head(Writer &w, const char *event);

}  // namespace pfg
