// /proc/self/maps for the patcher: read with a fixed buffer (no stdio, no malloc),
// once per batch of patches, and the rule for where a mapping "ends".
#pragma once
#include <stdint.h>

#include <cstddef>
#include <type_traits>

namespace pfg::patch::impl {

struct Mapping {
  uintptr_t start, end;
  bool r, w, x;
  bool heap, stack;  // "[heap]" grows up into the gap above it, "[stack]" down into the one below
  bool special;      // [vdso], [vsyscall], [vvar]: never patched
};

int prot_of(const Mapping &m);  // PROT_* of the mapping

// Does `next` continue the extent `ext` (directly adjacent, same protection)? Entry
// patches split text into several mappings (a page swap replaces whole pages; a write
// through /proc/self/mem makes an anonymous copy of one), so "the end of the mapping"
// must look past those seams. The one place this rule is written.
bool continues(const Mapping &ext, const Mapping &next);

using MappingFn = bool (*)(const Mapping &, void *ctx);  // false: stop

// Each mapping in address order until fn returns false. False if the file could not be
// read.
bool read_maps(MappingFn fn, void *ctx);

// Inside a batch (maps_batch()), the batch's one reading, made now if needed: true with
// its n mappings in address order. False outside a batch, or when it could not be made.
bool maps_snapshot(const Mapping *&m, int &n);

template <class F>
bool for_each_mapping(F &&f) {
  using L = std::remove_reference_t<F>;
  return read_maps([](const Mapping &m, void *c) -> bool { return (*static_cast<L *>(c))(m); }, &f);
}
// The same, from the batch's reading when there is one (inline: a survey walks it once
// per patch, and a call per mapping was 20,000 instructions of a static python's start).
template <class F>
bool for_each_mapping_batched(F &&f) {
  const Mapping *m;
  int n;
  if (!maps_snapshot(m, n)) return for_each_mapping(f);
  for (int i = 0; i < n; ++i)
    if (!f(m[i])) break;
  return true;
}

// The mapping holding addr, extended over the mappings that continue it.
bool find_extent(uintptr_t addr, Mapping &out);

// Between maps_batch(true) and maps_batch(false), read_maps_batched() reads the file once.
void maps_batch(bool on);
// A mapping of our own (an arena), recorded in the batch's reading instead of reading the
// file again; and forgetting the reading (something was unmapped).
void snapshot_add(uintptr_t start, std::size_t len);
void snapshot_drop();

}  // namespace pfg::patch::impl
