#include "runtime.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <pthread.h>

#include "config.h"
#include "window.h"
#include "images.h"
#include "interpose.h"
#include "patch.h"
#include "state.h"

namespace pfg {

namespace {

struct Runtime {
  std::atomic<bool> present;
  int image;
  int (*probe_fn)(void);
  void *const *probe_var;
  const char *probe_name;
  const char *(*get_version)(void);
  int (*is_initialized)(void);
  void *(*this_thread_state)(void);
  int minor;  // 3.<minor>, from Py_GetVersion() at detection (safe before Py_Initialize)
  bool semantic;
  bool late;  // taken over from a dlopen handle
  char ignored[256];  // a second runtime we did not take over (reported)
};
Runtime g_rt;

// Detection runs at load and from the dlopen hook, in normal context.
pthread_mutex_t g_detect_mu = PTHREAD_MUTEX_INITIALIZER;

// The scope a definition is looked up in: the whole process at load (RTLD_DEFAULT,
// which finds an executable's definitions before ours; RTLD_NEXT, a library after us),
// or the object a dlopen returned.
void *lookup(void *scope, const char *name) {
  void *p = dlsym(scope, name);
  for (int i = 0; i < fn_count; ++i)
    if (p == kFns[i].hook) return nullptr;  // that is us, not Python
  return p;
}

void take_over(void *scope, void *anchor) {
  bool is_new = false;
  int idx = image_add(anchor, &is_new);
  if (idx < 0 || !is_new) return;
  const Image &im = image_at(idx);
  if (g_rt.present.load()) {
    snprintf(g_rt.ignored, sizeof g_rt.ignored, "%s", im.path);
    return;
  }
  config_load();
  // An executable that defines the C API wins over our definitions for every caller;
  // so does anything found first in RTLD_DEFAULT.
  const char *bypass = im.is_exe || scope == RTLD_DEFAULT
                           ? "defined by the executable: every caller binds to it"
                       : scope != RTLD_NEXT ? "loaded with dlopen: its host calls dlsym'd addresses"
                                            : nullptr;
  // PyEval_RestoreThread is called from inside every libpython (os.read, time.sleep,
  // PyGILState_Ensure): a relocation for it means the library was built with semantic
  // interposition; none means -fno-semantic-interposition (Debian, Fedora, Docker).
  g_rt.semantic = !bypass && binds_via_relocation(im, fn_PyEval_RestoreThread);
  patch::batch_begin();
  for (int i = 0; i < fn_count; ++i) {
    if (!kFns[i].python) continue;
    void *def = lookup(scope, kFns[i].name);
    if (!def || !in_python_text(reinterpret_cast<uintptr_t>(def))) {
      g_cover[i].mech = Mech::absent;
      snprintf(g_cover[i].why, sizeof g_cover[i].why, "not defined by this CPython");
      continue;
    }
    cover(Fn(i), def, im, bypass, g_rt.semantic);
  }
  patch::batch_end();
  if (auto f = lookup(scope, "Py_IsFinalizing")) {
    g_rt.probe_fn = reinterpret_cast<int (*)(void)>(f);
    g_rt.probe_name = "Py_IsFinalizing";
  } else if (auto g = lookup(scope, "_Py_IsFinalizing")) {
    g_rt.probe_fn = reinterpret_cast<int (*)(void)>(g);
    g_rt.probe_name = "_Py_IsFinalizing";
  } else if (auto v = lookup(scope, "_Py_Finalizing")) {
    g_rt.probe_var = static_cast<void *const *>(v);
    g_rt.probe_name = "_Py_Finalizing";
  } else {
    g_rt.probe_name = "none (phase only)";
  }
  g_rt.get_version = reinterpret_cast<const char *(*)(void)>(lookup(scope, "Py_GetVersion"));
  g_rt.is_initialized = reinterpret_cast<int (*)(void)>(lookup(scope, "Py_IsInitialized"));
  g_rt.this_thread_state = reinterpret_cast<void *(*)(void)>(lookup(scope, "PyGILState_GetThisThreadState"));
  if (g_rt.get_version) {
    const char *v = g_rt.get_version();
    if (v[0] == '3' && v[1] == '.') g_rt.minor = atoi(v + 2);
  }
  g_rt.image = idx;
  g_rt.late = scope != RTLD_DEFAULT && scope != RTLD_NEXT;
  window_init();
  g_rt.present.store(true);
}

}  // namespace

void runtime_detect_at_load() {
  pthread_mutex_lock(&g_detect_mu);
  if (void *d = lookup(RTLD_DEFAULT, "Py_FinalizeEx")) take_over(RTLD_DEFAULT, d);
  if (void *n = lookup(RTLD_NEXT, "Py_FinalizeEx")) take_over(RTLD_NEXT, n);
  pthread_mutex_unlock(&g_detect_mu);
}

void runtime_detect_in(void *handle) {
  if (!handle) return;
  void *d = lookup(handle, "Py_FinalizeEx");
  if (!d) return;
  pthread_mutex_lock(&g_detect_mu);
  take_over(handle, d);
  pthread_mutex_unlock(&g_detect_mu);
}

bool runtime_thread_ending_normally() {
  if (g_rt.minor >= 10 || !g_rt.this_thread_state) return false;
  // Reads the runtime's TSS slot for this thread (static data, pthread_getspecific):
  // NULL once the thread deleted its state (and once the runtime dropped its TSS key).
  return g_rt.this_thread_state() == nullptr;
}

bool runtime_is_finalizing() {
  // Py_FinalizeEx clears "initialized" at its point of no return, in the same step that
  // sets the finalizing flag (3.6-3.13), and -- unlike that flag, which it resets again
  // on its way out (_PyRuntimeState_Fini) -- leaves it cleared until a new runtime
  // starts. Without this, a thread arriving between that reset and the FINALIZED store
  // of our hook was let into a destroyed runtime (tests/scenarios/storm.c found it).
  if (g_rt.is_initialized && !g_rt.is_initialized()) return true;
  if (g_rt.probe_fn) return g_rt.probe_fn() != 0;
  if (g_rt.probe_var) return *static_cast<void *const volatile *>(g_rt.probe_var) != nullptr;
  return false;
}

int runtime_describe(char *buf, size_t size) {
  // Formats into a local buffer first so the return value is the full length.
  static char text[8192];
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  int n = 0;
  auto add = [&](const char *fmt, auto... a) {
    if (n < int(sizeof text)) n += snprintf(text + n, sizeof text - n, fmt, a...);
  };
  uint64_t e = g_epoch.load();
  static const char *const phases[] = {"running", "finalizing", "finalized", "?"};
  add("version: %s\n", PFG_VERSION);
  if (g_rt.present.load()) {
    const Image &im = image_at(g_rt.image);
    const char *v = g_rt.get_version ? g_rt.get_version() : "unknown";
    add("runtime: CPython %.*s\n", int(strcspn(v, " ")), v);
    add("image: %s\n", im.path);
    if (im.is_exe) add("build: static executable (the C API is defined by the executable)\n");
    else if (g_rt.late) add("build: shared libpython loaded with dlopen\n");
    else add("build: shared libpython, semantic interposition %s\n",
             g_rt.semantic ? "on (its own calls go through the PLT)" : "off (its own calls are direct)");
    add("probe: %s%s\n", g_rt.is_initialized ? "Py_IsInitialized, " : "", g_rt.probe_name);
    if (g_rt.ignored[0]) add("ignored: second runtime %s\n", g_rt.ignored);
  } else {
    add("runtime: none detected\n");
  }
  add("patching: %s, %s\n", g_config.patch ? "auto" : "off", patch::describe());
  add("mode: %s\n", mode_name(g_config.mode));
  add("generation: %llu\n", (unsigned long long)gen_of(e));
  add("phase: %s\n", phases[phase_of(e)]);
  for (int i = 0; i < fn_count; ++i) {
    if (kFns[i].python) {
      if (!g_rt.present.load()) continue;
      add("cover %s %s %s\n", kFns[i].name, mech_name(g_cover[i].mech), g_cover[i].why);
    } else {
      add("cover %s interpose libc, called through the PLT by every image\n", kFns[i].name);
    }
  }
  if (size) snprintf(buf, size, "%s", text);
  pthread_mutex_unlock(&mu);
  return n;
}

}  // namespace pfg
