// Near memory for the patcher: arenas of trampoline slots within reach (kReach) of
// their targets, and the survey of /proc/self/maps that a patch needs.
#pragma once
#include <stdint.h>

#include <cstddef>

#include "maps.h"
#include "patch.h"

namespace pfg::patch::impl {

constexpr int kMaxGaps = 8;  // candidate places for a new arena, nearest first

// Everything a patch needs to know from /proc/self/maps, in one read of it (reading it is
// most of the cost of a patch): the extent holding the target, whether the whole function
// is readable and executable, and where a new arena could go.
struct Survey {
  bool found;
  Mapping ext;   // see find_extent()
  bool fn_rx;    // [target, target + fn_size) readable and executable
  int ngaps;
  uintptr_t gaps[kMaxGaps];
};
bool survey(uintptr_t target, std::size_t fn_size, Survey &sv);

bool is_arena_addr(uintptr_t p);

// Where would the next slot for a patch at `at` go? Does not map anything (check()).
bool peek_slot(uintptr_t at, const Survey &sv, uintptr_t &slot);

// Take the next slot in reach of `at` (an arena with room, else a new one in a gap the
// survey found), let fill() encode its kSlotLen bytes for that address, and write them,
// so the slot is executable when this returns. 0 on failure, with r.why set (by fill()
// when it refused). The slot counts as live until slot_release().
using SlotFill = bool (*)(uintptr_t slot, uint8_t *buf, void *ctx, Result &r);
uintptr_t place_slot(uintptr_t at, const Survey &sv, SlotFill fill, void *ctx, Result &r);
void slot_release(uintptr_t slot);

// Unmap the arenas whose every slot was released (forget()).
void unmap_released_arenas();

}  // namespace pfg::patch::impl
