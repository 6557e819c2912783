// x86-64 entry patcher: the interface (patch.h) and the table of installed patches. See
// docs/patching.md for the design and the safety argument, README.md here for the other
// pieces.
//
// Layout of one patch:
//
//   target:      [endbr64]  jmp rel32 ----------------.     (5 bytes written at `at`; straight
//                                                     |      to the hook when it is in reach)
//                <rest of the function, untouched>    |
//                                                     v
//   slot (near): stub:  jmp qword [rip+0]; .quad hook       (hook may be anywhere)
//                tramp: [endbr64] relocated prologue; jmp rel32 at+covered
//
// The slot lives in an "arena" mmap'ed within rel32 reach of the target, so the entry
// jump, the trampoline's jump back and relocated RIP-relative operands all stay rel32.
// Arenas are never writable and executable at once: an arena is reserved PROT_NONE, each
// page is filled while RW (int3, then its first slot) and sealed RX before anything can
// jump into it, and later slots on a sealed page are added through /proc/self/mem (which
// writes RX pages without changing their protection, so threads running earlier
// trampolines never fault).
//
// Every entry point takes one mutex (patching runs at load time or from dlopen), which
// guards the state of all the patcher's files.
#include "patch.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "internal.h"
#include "maps.h"
#include "write.h"
#include "x86_64_plan.h"
#include "zydis.h"

namespace pfg::patch {
namespace impl {
namespace {

Result fresh() {
  Result r;
  r.ok = false;
  r.trampoline = nullptr;
  r.why[0] = 0;
  return r;
}

// ---------------------------------------------------------------------------------------
// The table of installed patches: mmap'ed chunks, never freed. A record whose image was
// unmapped (forget()) becomes a tombstone (target 0) and is reused.

struct Installed {
  uintptr_t target, at;
  void *trampoline;
  uint8_t covered;
  uint8_t orig[23];
};
struct Chunk {
  Chunk *next;
  unsigned n;
  Installed e[(65536 - 16) / sizeof(Installed)];
};
Chunk *g_chunks;
std::size_t g_installed;

const Installed *find_installed(uintptr_t target) {
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i)
      if (c->e[i].target && (c->e[i].target == target || c->e[i].at == target)) return &c->e[i];
  return nullptr;
}

// A claimed record is filled by install() only on success; until then (and if install
// fails: unclaim) it is a tombstone, with `claimed` keeping it from being handed out twice.
Installed *g_pending;

void unclaim(Installed *rec) {
  rec->target = rec->at = 0;
  rec->trampoline = nullptr;
  g_pending = nullptr;
}

Installed *new_installed() {
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i)
      if (!c->e[i].target && &c->e[i] != g_pending) return g_pending = &c->e[i];
  constexpr unsigned cap = sizeof(Chunk::e) / sizeof(Installed);
  if (!g_chunks || g_chunks->n == cap) {
    void *p = mmap(nullptr, sizeof(Chunk), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    Chunk *c = static_cast<Chunk *>(p);
    c->next = g_chunks;
    c->n = 0;
    g_chunks = c;
  }
  g_chunks->e[g_chunks->n].target = 0;
  return g_pending = &g_chunks->e[g_chunks->n++];
}

// What install() has done so far, undone in reverse order unless commit() is called: the
// one place where a failed install rolls back (the published original, the trampoline
// slot, the claimed record).
class Rollback {
 public:
  explicit Rollback(Installed *rec) : rec_(rec) {}
  Rollback(const Rollback &) = delete;
  Rollback &operator=(const Rollback &) = delete;
  ~Rollback() {
    if (committed_) return;
    if (real_out_) __atomic_store_n(real_out_, prev_, __ATOMIC_SEQ_CST);
    if (slot_) slot_release(slot_);
    unclaim(rec_);
  }
  void took_slot(uintptr_t slot) { slot_ = slot; }
  void published(void **real_out, void *prev) { real_out_ = real_out; prev_ = prev; }
  void commit() {
    committed_ = true;
    g_pending = nullptr;
  }

 private:
  Installed *rec_;
  uintptr_t slot_ = 0;
  void **real_out_ = nullptr;
  void *prev_ = nullptr;
  bool committed_ = false;
};

bool check_locked(const void *target, std::size_t fn_size, Plan &p, Result &r) {
  if (find_installed(reinterpret_cast<uintptr_t>(target))) {
    fail(r, "already patched");
    return false;
  }
  return plan(target, fn_size, p, r);
}

// The slot's bytes for place_slot(): the stub (jmp qword [rip+0]; .quad hook), then the
// trampoline encoded for its address.
struct SlotArgs {
  const Plan *p;
  void *hook;
};
bool fill_slot(uintptr_t slot, uint8_t *buf, void *ctx, Result &r) {
  const SlotArgs &a = *static_cast<const SlotArgs *>(ctx);
  static const uint8_t j[6] = {0xFF, 0x25, 0, 0, 0, 0};
  memcpy(buf, j, 6);
  memcpy(buf + 6, &a.hook, 8);
  unsigned tlen;
  return encode(*a.p, slot + kStubLen, buf + kStubLen, tlen, r);
}

}  // namespace
}  // namespace impl

using namespace impl;

bool supported() { return true; }

// The patches between batch_begin() and batch_end() (a runtime's entries in one image, at
// load or after a dlopen) share what a single patch would pay for on its own: one reading
// of /proc/self/maps (maps.cc), one open /proc/self/mem, one answer to "is any
// other thread there?" and one core serialization at the end (write.cc).
void batch_begin() {
  Locker lock;
  maps_batch(true);
  writes_batch_begin();
}

void batch_end() {
  Locker lock;
  writes_batch_end();
  maps_batch(false);
}

Result check(const void *target, std::size_t fn_size) {
  Result r = fresh();
  Locker lock;
  Plan p;
  if (!check_locked(target, fn_size, p, r)) return r;
  uintptr_t slot;
  if (!peek_slot(p.at, p.sv, slot)) {
    fail(r, "no free address range within %s of the target", kReachText);
    return r;
  }
  uint8_t buf[kSlotLen];
  unsigned len;
  if (!encode(p, slot + kStubLen, buf, len, r)) return r;
  r.ok = true;
  return r;
}

Result install(void *target, std::size_t fn_size, void *hook, void **real_out) {
  Result r = fresh();
  if (!hook || !real_out) { fail(r, "null hook or real_out"); return r; }
  Locker lock;
  Plan p;
  if (!check_locked(target, fn_size, p, r)) return r;
  Installed *rec = new_installed();
  if (!rec) { fail(r, "out of memory for the patch table"); return r; }
  Rollback undo(rec);

  SlotArgs args{&p, hook};
  const uintptr_t slot = place_slot(p.at, p.sv, fill_slot, &args, r);
  if (!slot) return r;
  undo.took_slot(slot);
  __builtin___clear_cache(reinterpret_cast<char *>(slot), reinterpret_cast<char *>(slot + kSlotLen));

  void *tramp = reinterpret_cast<void *>(slot + kStubLen);
  rec->target = p.target;
  rec->at = p.at;
  rec->trampoline = tramp;
  rec->covered = static_cast<uint8_t>(p.covered);
  memcpy(rec->orig, p.code, p.covered < sizeof rec->orig ? p.covered : sizeof rec->orig);

  // Publish the original before any caller can reach the hook.
  undo.published(real_out, __atomic_load_n(real_out, __ATOMIC_ACQUIRE));
  __atomic_store_n(real_out, tramp, __ATOMIC_SEQ_CST);

  uint8_t jmp[kJmpLen];
  jmp[0] = 0xE9;
  // Straight to the hook when it is within rel32 reach (a library patched by a library
  // loaded near it): one indirect jump less per call. Otherwise through the stub.
  int64_t dh = static_cast<int64_t>(reinterpret_cast<uintptr_t>(hook)) - static_cast<int64_t>(p.at + kJmpLen);
  int64_t d = fits32(dh) ? dh : static_cast<int64_t>(slot) - static_cast<int64_t>(p.at + kJmpLen);
  int32_t d32 = static_cast<int32_t>(d);  // the stub is in reach by construction of the arena
  memcpy(jmp + 1, &d32, 4);
  const WriteHow how = fits32(d) ? write_entry(p.sv.ext, p.at, jmp, kJmpLen) : WriteHow::none;
  if (how == WriteHow::none) {
    fail(r, "could not write the entry (/proc/self/mem and mprotect both failed)");
    return r;
  }
  __builtin___clear_cache(reinterpret_cast<char *>(p.at), reinterpret_cast<char *>(p.at + kJmpLen));
  entry_written(how);
  undo.commit();
  ++g_installed;
  r.ok = true;
  r.trampoline = tramp;
  return r;
}

int forget(uintptr_t lo, uintptr_t hi) {
  Locker lock;
  int n = 0;
  for (Chunk *c = g_chunks; c; c = c->next)
    for (unsigned i = 0; i < c->n; ++i) {
      Installed &e = c->e[i];
      if (!e.target || e.target < lo || e.target >= hi) continue;
      slot_release(reinterpret_cast<uintptr_t>(e.trampoline) - kStubLen);
      e.target = e.at = 0;
      e.trampoline = nullptr;
      --g_installed;
      ++n;
    }
  unmap_released_arenas();
  snapshot_drop();
  return n;
}

const char *describe() {
  static char buf[224];
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] {
    char z[192];
    snprintf(buf, sizeof buf, "x86-64 (%s)", zydis_describe(z, sizeof z));
  });
  return buf;
}

}  // namespace pfg::patch
