// The LD_PRELOAD entry. Does little at load time: resolve libc's functions, look for a
// Python runtime (nothing more happens in a process without one), register the fork
// handler. Everything else is done by the pieces named in docs/design.md.
#include <pthread.h>

#include "gilwait.h"
#include "park.h"
#include "runtime.h"
#include "state.h"
#include "summary.h"
#include "window.h"
#include "../include/pyfinguard.h"

#define PFG_API extern "C" __attribute__((visibility("default")))

namespace {

// fork(): only the forking thread exists in the child. Each mechanism forgets the other
// threads it knew (orchestrated here, from the top, so that no mechanism calls another's).
void atfork_child() {
  pfg::park_atfork_child();
  pfg::window_atfork_child();
  pfg::gilwait_atfork_child();
}

__attribute__((constructor)) void pfg_load() {
  pfg::resolve_libc();
  pfg::runtime_detect_at_load();
  pthread_atfork(nullptr, nullptr, atfork_child);
  pfg::strict_register_at_load();  // nothing unless PYFINGUARD_STRICT is set
}

__attribute__((destructor)) void pfg_unload() { pfg::report_exit_summary(); }

}  // namespace

PFG_API const char *pyfinguard_version(void) { return PFG_VERSION; }

PFG_API unsigned pyfinguard_generation(void) { return unsigned(pfg::gen_of(pfg::g_epoch.load())); }

PFG_API unsigned pyfinguard_parked_count(void) { return pfg::g_parked_count.load(); }

PFG_API int pyfinguard_is_parked(int tid) { return pfg::is_parked_tid(tid) ? 1 : 0; }

PFG_API int pyfinguard_describe(char *buf, unsigned long size) {
  return pfg::runtime_describe(buf, size);
}
