#include "probes.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace pfg {

namespace {

// The probes are read lock-free on hot paths (decide(), the pthread_exit and GIL-wait
// hooks) and cleared when the image is unmapped: atomics, each loaded once per use.
struct Probes {
  std::atomic<bool> present;
  std::atomic<int (*)(void)> probe_fn;
  std::atomic<void *const *> probe_var;
  const char *probe_name;
  const char *(*get_version)(void);
  std::atomic<int (*)(void)> is_initialized;
  std::atomic<void *(*)(void)> this_thread_state;
  std::atomic<void *(*)(void *)> ts_interp;     // PyThreadState_GetInterpreter (3.9+)
  std::atomic<void *(*)(void)> interp_head;     // PyInterpreterState_Head
  std::atomic<void *(*)(void *)> interp_next;   // PyInterpreterState_Next
  std::atomic<int> minor;  // 3.<minor>, from Py_GetVersion() at detection (safe before Py_Initialize)
  char version[32];   // "3.11.7", copied at take-over: describe() must not call an unmapped image
};
Probes g_rt;

}  // namespace

void probes_set_version(const char *v) {
  snprintf(g_rt.version, sizeof g_rt.version, "%.*s", int(strcspn(v, " ")), v);
}

void probes_fill(void *(*lookup)(void *scope, const char *name), void *scope, const char *(*version_fn)(void)) {
  g_rt.probe_fn.store(nullptr);
  g_rt.probe_var.store(nullptr);
  if (auto f = lookup(scope, "Py_IsFinalizing")) {
    g_rt.probe_fn.store(reinterpret_cast<int (*)(void)>(f));
    g_rt.probe_name = "Py_IsFinalizing";
  } else if (auto g = lookup(scope, "_Py_IsFinalizing")) {
    g_rt.probe_fn.store(reinterpret_cast<int (*)(void)>(g));
    g_rt.probe_name = "_Py_IsFinalizing";
  } else if (auto v = lookup(scope, "_Py_Finalizing")) {
    g_rt.probe_var.store(static_cast<void *const *>(v));
    g_rt.probe_name = "_Py_Finalizing";
  } else {
    g_rt.probe_name = "none (phase only)";
  }
  g_rt.get_version = version_fn;
  g_rt.is_initialized.store(reinterpret_cast<int (*)(void)>(lookup(scope, "Py_IsInitialized")));
  g_rt.this_thread_state.store(reinterpret_cast<void *(*)(void)>(lookup(scope, "PyGILState_GetThisThreadState")));
  g_rt.ts_interp.store(reinterpret_cast<void *(*)(void *)>(lookup(scope, "PyThreadState_GetInterpreter")));
  g_rt.interp_head.store(reinterpret_cast<void *(*)(void)>(lookup(scope, "PyInterpreterState_Head")));
  g_rt.interp_next.store(reinterpret_cast<void *(*)(void *)>(lookup(scope, "PyInterpreterState_Next")));
  g_rt.minor.store(0);
  snprintf(g_rt.version, sizeof g_rt.version, "unknown");
  if (g_rt.get_version) {
    const char *v = g_rt.get_version();
    if (v[0] == '3' && v[1] == '.') g_rt.minor.store(atoi(v + 2));
    probes_set_version(v);
  }
}

void probes_publish() { g_rt.present.store(true); }

// The probes are the only calls the guard makes into the image on its own (from hooks of
// *other* images' code and libc): cleared first when it is unmapped (runtime.cc).
void probes_clear() {
  g_rt.present.store(false);
  g_rt.probe_fn.store(nullptr);
  g_rt.probe_var.store(nullptr);
  g_rt.is_initialized.store(nullptr);
  g_rt.this_thread_state.store(nullptr);
  g_rt.ts_interp.store(nullptr);
  g_rt.interp_head.store(nullptr);
  g_rt.interp_next.store(nullptr);
  g_rt.get_version = nullptr;
}

bool probes_present() { return g_rt.present.load(); }
const char *probes_name() { return g_rt.probe_name; }
bool probes_have_initialized() { return g_rt.is_initialized.load() != nullptr; }

bool runtime_thread_ending_normally() {
  auto tts = g_rt.this_thread_state.load();
  if (g_rt.minor.load() >= 10 || !tts) return false;
  // Reads the runtime's TSS slot for this thread (static data, pthread_getspecific):
  // NULL once the thread deleted its state (and once the runtime dropped its TSS key).
  return tts() == nullptr;
}

bool runtime_finalization_over() {
  if (!g_rt.present.load()) return true;
  auto init = g_rt.is_initialized.load();
  if (!init || init()) return false;
  if (auto f = g_rt.probe_fn.load()) return f() == 0;
  return false;  // 3.6's _Py_Finalizing stays set
}

void *runtime_interp_of(void *ts) {
  if (!ts || !g_rt.present.load()) return nullptr;
  if (auto f = g_rt.ts_interp.load()) return f(ts);
  return static_cast<void **>(ts)[2];  // 3.6-3.8: struct _ts { prev, next, interp, ... }
}

bool runtime_interp_listed(void *interp) {
  auto head = g_rt.interp_head.load();
  auto next = g_rt.interp_next.load();
  if (!head || !next) return true;  // cannot tell: treat as live (let the call through)
  int steps = 0;
  for (void *i = head(); i; i = next(i))
    if (i == interp || ++steps > 4096) return true;
  return false;
}

bool runtime_is_finalizing() {
  // Py_FinalizeEx clears "initialized" at its point of no return, in the same step that
  // sets the finalizing flag (3.6-3.13), and -- unlike that flag, which it resets again
  // on its way out (_PyRuntimeState_Fini) -- leaves it cleared until a new runtime
  // starts. Without this, a thread arriving between that reset and the FINALIZED store
  // of our hook was let into a destroyed runtime (tests/scenarios/storm.c found it).
  //
  // Each probe is loaded once: an unmapped image's probes are cleared (drop_runtime), and
  // a runtime whose image is gone is past any point of no return.
  if (!g_rt.present.load()) return true;
  auto init = g_rt.is_initialized.load();
  if (init && !init()) return true;
  if (auto f = g_rt.probe_fn.load()) return f() != 0;
  if (auto v = g_rt.probe_var.load()) return *static_cast<void *const volatile *>(v) != nullptr;
  return false;
}

const char *runtime_version() { return g_rt.version[0] ? g_rt.version : "unknown"; }

bool runtime_ends_late_threads() {
  // "3.X.Y...": 3.6-3.12 and 3.13.0-3.13.7 end a late thread (PyThread_exit_thread ->
  // pthread_exit); 3.13.8 (the gh-87135 backport) and 3.14+ hang it. Unknown: no.
  const char *v = g_rt.version;
  if (v[0] != '3' || v[1] != '.') return false;
  int minor = 0, micro = 0;
  const char *p = v + 2;
  for (; *p >= '0' && *p <= '9'; ++p) minor = minor * 10 + (*p - '0');
  if (*p == '.')
    for (++p; *p >= '0' && *p <= '9'; ++p) micro = micro * 10 + (*p - '0');
  return minor < 13 || (minor == 13 && micro <= 7);
}

}  // namespace pfg
