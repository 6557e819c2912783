#include "runtime.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <pthread.h>

#include "backtrace.h"
#include "config.h"
#include "gilwait.h"
#include "images.h"
#include "interpose.h"
#include "patch/patch.h"
#include "probes.h"
#include "report.h"
#include "sink.h"
#include "state.h"
#include "window.h"
#include "writer.h"

namespace pfg {

namespace {

// What detection knows of the runtime it took over (the probes are in probes.cc).
// Detection mutex.
struct Runtime {
  int image;
  bool semantic;
  bool late;  // taken over from a dlopen handle
  bool free_threaded;  // stepped aside (take_over)
  bool names_visible;  // dlsym finds the guard's CPython names (interpose.h)
  char ignored[256];  // a second runtime we did not take over (reported)
};
Runtime g_rt;

// Images come and go (dlclose unmaps, dlopen maps again elsewhere): what was seen, for
// describe(). Detection mutex.
struct History {
  unsigned takeovers;        // runtimes taken over (each mapping counts)
  unsigned unloads;          // of those, unmapped again
  unsigned long long subs;   // dl_iterate_phdr's dlpi_subs at the last check
  char last[400];            // the last runtime unmapped, one line
};
History g_hist;

// Detection runs at load and from the dlopen/dlclose hooks, in normal context.
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
  if (probes_present()) {
    snprintf(g_rt.ignored, sizeof g_rt.ignored, "%s", im.path);
    return;
  }
  g_rt.ignored[0] = 0;
  config_load();
  // A free-threaded build (3.13t, 3.14t: no GIL; threads attach and detach, and shutdown
  // stops the world instead) breaks the drain's argument -- "no other thread can hold
  // the GIL" -- and none can be obtained here to test against. Do no harm: patch
  // nothing and never leave RUNNING, so every hook passes straight through, and say so
  // once (docs/design.md, "Free-threaded builds").
  auto version_fn = reinterpret_cast<const char *(*)(void)>(lookup(scope, "Py_GetVersion"));
  if (const char *v = version_fn ? version_fn() : nullptr; v && strstr(v, "free-threading")) {
    probes_set_version(v);
    g_rt.free_threaded = true;
    state_step_aside();
    const int fd = log_fd();
    if (fd >= 0)
      Writer(fd).str("pyfinguard: CPython ").str(runtime_version()).str(" (").safe(im.path, 200)
          .str(") is a free-threaded build, which pyfinguard does not support: it stays inactive in this process\n");
    return;
  }
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
  uint64_t defined = 0;
  for (int i = 0; i < fn_count; ++i) {
    if (!kFns[i].python) continue;
    void *def = lookup(scope, kFns[i].name);
    if (!def || !in_python_text(reinterpret_cast<uintptr_t>(def))) {
      g_cover[i].mech = Mech::absent;
      snprintf(g_cover[i].why, sizeof g_cover[i].why, "not defined by this CPython");
      continue;
    }
    defined |= uint64_t(1) << i;
    cover(Fn(i), def, im, bypass, g_rt.semantic);
  }
  patch::batch_end();
  probes_fill(lookup, scope, version_fn);
  g_rt.image = idx;
  g_rt.late = scope != RTLD_DEFAULT && scope != RTLD_NEXT;
  // From now on dlsym answers with the guard's definitions of what this runtime defines,
  // as relocations always bind to them: a host that takes a C API address with dlsym
  // reaches the guard as before. A name it does not define (_Py_UnixMain after 3.7)
  // stays hidden, so that dlsym says what it says without the guard.
  g_rt.names_visible = python_names_visible(defined);
  window_init();
  ++g_hist.takeovers;
  probes_publish();
}

// The runtime's image was unmapped. Order matters: first the probes (the only calls the
// guard makes into the image on its own, from hooks of *other* images' code and libc:
// probes.h),
// then the real-function slots (interpose.cc says why the hot paths may read them
// meanwhile), then what only detection and reports read. A runtime that was running
// ends with its image: its generation is FINALIZED from now on, so a thread that used
// it parks instead of calling into nothing, and the next Py_Initialize* (of a new
// mapping) starts a new generation.
void drop_runtime(const char *why) {
  const Image &im = image_at(g_rt.image);
  backtrace_prepare();  // its threads park from now on (backtrace.h)
  probes_clear();
  // No runtime: dlsym answers as without the guard again.
  python_names_visible(0);
  g_rt.names_visible = false;
  reset_python_slots();
  const int forgotten = patch::forget(im.map_lo, im.map_hi);
  gilwait_forget_range(im.map_lo, im.map_hi);
  for (int i = 0; i < fn_count; ++i) {
    if (!kFns[i].python) continue;
    g_cover[i].mech = Mech::absent;
    snprintf(g_cover[i].why, sizeof g_cover[i].why, "its image was unmapped; not yet loaded again");
  }
  if (phase_of(g_epoch.load()) != kFinalized) end_finalizing();
  ++g_hist.unloads;
  snprintf(g_hist.last, sizeof g_hist.last, "CPython %s, %s, mapping %u at %#lx, %s; %d entry patch%s dropped",
           runtime_version(), im.path, im.mapping, (unsigned long)im.bias, why, forgotten, forgotten == 1 ? "" : "es");
  image_drop(g_rt.image);
}

// Has an image we registered been unmapped since the last check? dlpi_subs (objects
// unloaded) tells cheaply whether anything was; only then is each image looked for.
// Detection mutex held.
void check_unloads() {
  unsigned long long adds, subs;
  loader_counters(&adds, &subs);
  if (subs == g_hist.subs) return;
  g_hist.subs = subs;
  for (int i = 0; i < kMaxImages; ++i) {
    const Image &im = image_at(i);
    if (!im.live || image_check_mapped(i)) continue;
    if (probes_present() && i == g_rt.image) drop_runtime("unmapped by dlclose");
    else image_drop(i);
  }
}

}  // namespace

void runtime_detect_at_load() {
  pthread_mutex_lock(&g_detect_mu);
  unsigned long long adds;
  loader_counters(&adds, &g_hist.subs);
  // dlsym passes over the guard's own definitions (interpose.h, python_names_visible), so
  // RTLD_DEFAULT finds a library after us too: only a definition that comes before ours
  // (the executable's, or an object preloaded before us) is RTLD_DEFAULT's own.
  void *n = lookup(RTLD_NEXT, "Py_FinalizeEx");
  if (void *d = lookup(RTLD_DEFAULT, "Py_FinalizeEx"); d && d != n) take_over(RTLD_DEFAULT, d);
  if (n) take_over(RTLD_NEXT, n);
  pthread_mutex_unlock(&g_detect_mu);
}

void runtime_detect_in(void *handle) {
  if (!handle) return;
  void *d = lookup(handle, "Py_FinalizeEx");
  if (!d) return;
  pthread_mutex_lock(&g_detect_mu);
  // An unload since the last check (by a dlclose the hook did not see return yet, on
  // another thread) must be noticed before this mapping -- perhaps at the same address
  // -- is taken for the old one.
  check_unloads();
  take_over(handle, d);
  pthread_mutex_unlock(&g_detect_mu);
}

void runtime_after_dlclose() {
  pthread_mutex_lock(&g_detect_mu);
  check_unloads();
  pthread_mutex_unlock(&g_detect_mu);
}

int runtime_describe(char *buf, size_t size) {
  // Formats into a local buffer first so the return value is the full length. Under the
  // detection mutex: images come and go (dlopen/dlclose hooks) while we read them.
  static char text[8192];
  static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  pthread_mutex_lock(&g_detect_mu);
  int n = 0;
  // fmt is always a literal here; without arguments it is printed through "%s" so that
  // -Werror=format-security (Debian's default build flags) accepts the call.
  auto add = [&](const char *fmt, auto... a) {
    if (n >= int(sizeof text)) return;
    if constexpr (sizeof...(a) == 0) n += snprintf(text + n, sizeof text - n, "%s", fmt);
    else n += snprintf(text + n, sizeof text - n, fmt, a...);
  };
  uint64_t e = g_epoch.load();
  static const char *const phases[] = {"running", "finalizing", "finalized", "?"};
  add("version: %s\n", PFG_VERSION);
  if (probes_present()) {
    const Image &im = image_at(g_rt.image);
    add("runtime: CPython %s\n", runtime_version());
    add("image: %s\n", im.path);
    add("mapping: %u of this path, base %#lx, %s\n", im.mapping, (unsigned long)im.bias,
        im.cookie_at ? "identified by a cookie in its data segment"
                     : "no room for an identity cookie (an unload and reload at the same address "
                       "while a dlopen runs on another thread can go unseen)");
    if (im.is_exe) add("build: static executable (the C API is defined by the executable)\n");
    else if (g_rt.late) add("build: shared libpython loaded with dlopen\n");
    else add("build: shared libpython, semantic interposition %s\n",
             g_rt.semantic ? "on (its own calls go through the PLT)" : "off (its own calls are direct)");
    add("probe: %s%s\n", probes_have_initialized() ? "Py_IsInitialized, " : "", probes_name());
    add("dlsym: %s\n", g_rt.names_visible ? "answers with the guard's definitions"
                                           : "answers with the runtime's own definitions (the symbol "
                                             "version table could not be written)");
    if (g_rt.ignored[0]) add("ignored: second runtime %s\n", g_rt.ignored);
  } else if (g_rt.free_threaded) {
    add("runtime: CPython %s, a free-threaded build: not supported, the guard is inactive\n", runtime_version());
  } else if (g_hist.unloads) {
    add("runtime: none mapped now (its image was unmapped)\n");
  } else {
    add("runtime: none detected\n");
  }
  add("loads: %u runtime mapping%s taken over, %u unmapped again\n", g_hist.takeovers,
      g_hist.takeovers == 1 ? "" : "s", g_hist.unloads);
  if (g_hist.unloads) add("last unmapped: %s\n", g_hist.last);
  add("patching: %s, %s\n", g_config.patch ? "auto" : "off", patch::describe());
  add("mode: %s\n", mode_name(g_config.mode));
  add("generation: %llu\n", (unsigned long long)gen_of(e));
  add("phase: %s\n", phases[phase_of(e)]);
  for (int i = 0; i < fn_count; ++i) {
    if (kFns[i].python) {
      if (!probes_present() && !g_hist.unloads) continue;
      add("cover %s %s %s\n", kFns[i].name, mech_name(g_cover[i].mech), g_cover[i].why);
    } else {
      add("cover %s interpose libc, called through the PLT by every image\n", kFns[i].name);
    }
  }
  pthread_mutex_unlock(&g_detect_mu);
  if (size) snprintf(buf, size, "%s", text);
  pthread_mutex_unlock(&mu);
  return n;
}

}  // namespace pfg
