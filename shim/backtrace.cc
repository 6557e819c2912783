#include "backtrace.h"

#include <atomic>
#include <dlfcn.h>
#include <sys/stat.h>

#include "interpose.h"

#ifndef PFG_LIBUNWIND_SONAME
#define PFG_LIBUNWIND_SONAME "libunwind.so.8"
#endif
#define PFG_STR2(x) #x
#define PFG_STR(x) PFG_STR2(x)

namespace pfg {

namespace {

Unwinder g_unw;
std::atomic<const Unwinder *> g_ready{nullptr};
std::atomic<bool> g_tried{false};

template <typename F>
bool sym(void *h, const char *name, F &out) {
  out = reinterpret_cast<F>(dlsym(h, name));
  return out != nullptr;
}

// One task: /proc/self/task has ".", ".." and one entry per task, which its link count
// says (procfs: 2 + the number of threads) in one stat. Unknown (no /proc): not alone.
bool alone() {
  struct stat st;
  return stat("/proc/self/task", &st) == 0 && st.st_nlink == 3;
}

}  // namespace

void backtrace_prepare(bool only_if_threads) {
  if (g_tried.load(std::memory_order_relaxed)) return;
  if (only_if_threads && alone()) return;
  if (g_tried.exchange(true)) return;
  // RTLD_LOCAL: none of its _Unwind_* may become visible to anyone else (backtrace.h).
  // The real dlopen: the guard's own hook would only look for a runtime in it.
  void *h = PFG_REAL(dlopen)(PFG_LIBUNWIND_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  // The library's real names: unw_init_local is a macro for _ULx86_64_init_local (or
  // _ULaarch64_init_local, ...), chosen by the header for UNW_LOCAL_ONLY.
  bool ok = sym(h, PFG_STR(unw_init_local), g_unw.init_local) && sym(h, PFG_STR(unw_step), g_unw.step) &&
            sym(h, PFG_STR(unw_get_reg), g_unw.get_reg) &&
            sym(h, PFG_STR(unw_get_proc_name), g_unw.get_proc_name) &&
            sym(h, PFG_STR(unw_get_proc_info), g_unw.get_proc_info);
#ifdef __x86_64__
  ok = ok && sym(h, PFG_STR(unw_tdep_getcontext), g_unw.getcontext);
#endif
  if (ok) g_ready.store(&g_unw, std::memory_order_release);
}

const Unwinder *backtrace_unwinder() { return g_ready.load(std::memory_order_acquire); }

}  // namespace pfg
