// Memory for the aarch64 patcher: arenas of trampoline slots near their targets, and
// writing code so that every core, and qemu-user's translation cache, sees it.
// docs/patching.md, "aarch64", has the protocol and why it is safe.
#pragma once
#include <stdint.h>

#include <cstddef>

#include "patch.h"

namespace pfg::patch::a64 {

constexpr unsigned kSlotLen = 256;     // bytes: a 32-byte stub, then the trampoline
constexpr unsigned kStubLen = 32;
constexpr std::size_t kPage = 4096;    // the smallest arm64 page; also right for 16/64 KiB
                                       // kernels, where mprotect rounds to the real page
// Every byte of a "near" arena is this close to the patched entry: a B (+-128 MiB) from
// the entry reaches the stub and one from the trampoline reaches back, with 1 MiB to
// spare for relocated branches to the rest of the function. "Far" arenas are reached by
// ADRP (+-4 GiB).
constexpr int64_t kNearReach = (int64_t{128} << 20) - (int64_t{1} << 20);
constexpr int64_t kFarReach = (int64_t{4} << 30) - (int64_t{64} << 20);

// The free address ranges near `at` and what the target's mapping allows, read from one
// /proc/self/maps reading (the batch's, when there is one).
struct Survey {
  bool found;
  uintptr_t ext_end;   // the executable extent holding the target ends here
  bool r, w, x, special;
  int ngaps;
  uintptr_t gaps[8];   // candidate arena bases, nearest first, within kFarReach
};
bool survey(uintptr_t target, Survey &sv);

// The slot the next patch at `at` would get (check()); reach is kNearReach or kFarReach.
bool peek_slot(uintptr_t at, int64_t reach, const Survey &sv, uintptr_t &slot);

// Take a slot within reach of `at`, let fill() encode its kSlotLen bytes for that
// address, write them and make them executable. 0 with r.why on failure.
using SlotFill = bool (*)(uintptr_t slot, uint32_t *words, void *ctx, Result &r);
uintptr_t place_slot(uintptr_t at, int64_t reach, const Survey &sv, SlotFill fill, void *ctx, Result &r);
void slot_release(uintptr_t slot);
void unmap_released_arenas();

// Write n instruction words at `at` in an executable mapping whose protection is prot
// (PROT_*). One word: a single aligned 4-byte store. Several: the first becomes `b .`
// (entering threads wait there), then the others, then the first, each step followed by
// cache maintenance and a core synchronization. False (nothing changed) when the page
// could not be made writable.
bool write_entry(uintptr_t at, const uint32_t *words, unsigned n, int prot);

// Is the page holding `at` mapped with PROT_BTI? From the ELF property note of the image
// holding it (the loader's own rule), else smaps's VmFlags. write_entry() keeps the flag,
// and a far patch is refused on such a page (its trampoline returns with BR x16).
bool bti_guarded(uintptr_t at);

// DC CVAU / DSB ISH / IC IVAU / DSB ISH / ISB over [p, p+n) on this core, and
// membarrier(SYNC_CORE) for the others (deferred to batch_end() inside a batch).
void sync_code(uintptr_t p, std::size_t n);
void sync_other_cores();
void writes_batch(bool on);

}  // namespace pfg::patch::a64
