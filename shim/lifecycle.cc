#include "lifecycle.h"

#include <atomic>

#include "probes.h"
#include "state.h"

namespace pfg {

namespace {

// One event: key = g_epoch after counting it, with the kind in the phase bits (the key is
// never a g_epoch value itself, only compared with one rebuilt the same way). Written and
// read like a seqlock: key cleared, address stored, key published; a reader accepts the
// address only if it read the same key before and after.
enum Kind : uint64_t { kDeleted = 1, kCreated = 2 };
struct Event {
  std::atomic<uint64_t> key;
  std::atomic<void *> addr;
};
constexpr uint32_t kRing = 256;
Event g_ring[kRing];

inline uint64_t key_of(uint64_t e, Kind k) { return (e & ~uint64_t(3)) | k; }

void write_event(uint64_t e, void *addr, Kind k) {
  Event &s = g_ring[events_of(e) % kRing];
  s.key.store(0);
  s.addr.store(addr);
  s.key.store(key_of(e, k));
}

// The most recent event naming addr among events (from, to] of generation gen of e:
// kDeleted, kCreated, or 0 (none, or not knowable).
uint64_t last_event(void *addr, uint32_t from, uint64_t e) {
  const uint32_t to = events_of(e);
  uint32_t n = (to - from) & kEventsMask;
  if (n > kRing) n = kRing;  // older ones are overwritten: unknown, treated as none
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t m = (to - k) & kEventsMask;
    const Event &s = g_ring[m % kRing];
    const uint64_t key = s.key.load();
    void *a = s.addr.load();
    // Same key before and after (not rewritten meanwhile), and the event of this count in
    // this generation (not an older one the ring has not overwritten yet).
    if (s.key.load() != key || (key & ~uint64_t(3)) != (make_epoch(gen_of(e), 0) | uint64_t(m) << 2)) continue;
    if (a == addr) return key & 3;
  }
  return 0;
}

// Ended interpreters of the current generation: a small ring, scanned only by
// PyThreadState_New (thread creation, not the GIL hot path).
struct Ended {
  std::atomic<uint64_t> gen;
  std::atomic<void *> interp;
};
constexpr unsigned kEnded = 64;
Ended g_ended[kEnded];
std::atomic<unsigned> g_ended_next{0};

}  // namespace

void note_ts_deleted(void *ts) {
  if (ts) write_event(count_event(), ts, kDeleted);
}

void note_ts_created(void *ts) {
  const uint64_t e = g_epoch.load();
  if (!ts || events_of(e) == 0) return;  // nothing deleted in this generation (the common case)
  if (last_event(ts, events_of(e) - kRing, e) == kDeleted) write_event(count_event(), ts, kCreated);
}

bool ts_deleted_since(void *ts, uint64_t h_epoch, uint64_t e) {
  if (gen_of(h_epoch) != gen_of(e) || events_of(h_epoch) == events_of(e)) return false;
  return last_event(ts, events_of(h_epoch), e) == kDeleted;
}

void note_interp_ended(void *interp) {
  if (!interp) return;
  Ended &s = g_ended[g_ended_next.fetch_add(1) % kEnded];
  s.gen.store(0);
  s.interp.store(interp);
  s.gen.store(gen_of(g_epoch.load()));
}

bool interp_ended(void *interp) {
  const uint64_t gen = gen_of(g_epoch.load());
  const unsigned n = g_ended_next.load();
  if (n == 0) return false;  // no interpreter ended: the common case, one load
  for (unsigned i = 0; i < kEnded && i < n; ++i) {
    const Ended &s = g_ended[i];
    if (s.gen.load() == gen && s.interp.load() == interp)
      return !runtime_interp_listed(interp);  // a new interpreter at that address: live
  }
  return false;
}

}  // namespace pfg
