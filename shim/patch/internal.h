// What the patcher's files share, and nothing else includes: the page size, the slot
// size and the reach of a patch on this architecture, and fail(). The interface the rest
// of the shim includes is patch.h; docs/patching.md has the design and the safety
// argument; README.md here says which files are arch-neutral and which per architecture.
//
// This header includes no other file of the folder, so every file may include it without
// closing a circle (tests/unit/check_layers.py checks the includes inside the folder too).
//
// All state lives in the patcher's fixed arrays and mmap'ed chunks, guarded by one mutex
// that the interface takes (Locker, in x86_64.cc and aarch64.cc); nothing allocates with
// malloc or throws.
#pragma once
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <cstddef>

#include "patch.h"

namespace pfg::patch::impl {

constexpr std::size_t kPage = 4096;

// What the arch-neutral files (arena.cc, write.cc) need to know of the architecture.
#if defined(__x86_64__)
// One slot: the stub (jmp qword [rip+0]; .quad hook, padded to 16) and the worst-case
// trampoline (x86_64_plan.cc, encode()).
constexpr unsigned kSlotLen = 128;
// Every arena byte stays this close to the patched entry, so that the entry's rel32 and
// the trampoline's rel32s (to targets near the function) stay in range with room to spare.
constexpr int64_t kReach = (int64_t{1} << 31) - (int64_t{64} << 20);
constexpr const char *kReachText = "+-2 GiB";
constexpr uint8_t kTrapByte = 0xCC;  // int3: what fills the unused bytes of an arena page
constexpr uintptr_t kUserTop = 0x7ffffffff000ULL;  // end of the 47-bit user address space
static_assert(kPage % kSlotLen == 0, "slots never straddle pages (arena.cc, next_slot())");
#endif

// r.ok = false and a one-line reason.
__attribute__((format(printf, 2, 3))) inline void fail(Result &r, const char *fmt, ...) {
  r.ok = false;
  r.trampoline = nullptr;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r.why, sizeof r.why, fmt, ap);
  va_end(ap);
}

// The patcher's one mutex, taken by every entry point of the interface. fork() while
// another thread holds it would leave it held forever in the child (a later dlopen of
// Python there would hang in install()): it is held across fork.
inline pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
inline void atfork_lock() { pthread_mutex_lock(&g_lock); }
inline void atfork_unlock() { pthread_mutex_unlock(&g_lock); }

struct Locker {
  Locker() {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] { pthread_atfork(atfork_lock, atfork_unlock, atfork_unlock); });
    pthread_mutex_lock(&g_lock);
  }
  ~Locker() { pthread_mutex_unlock(&g_lock); }
};

}  // namespace pfg::patch::impl
