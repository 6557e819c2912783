// Writing code for the patcher: trampoline slots through /proc/self/mem, the entry
// jump as atomically as the platform allows, and serializing the cores afterwards.
#pragma once
#include <stdint.h>

#include <cstddef>

#include "maps.h"

namespace pfg::patch::impl {

// pwrite() to /proc/self/mem: the kernel writes read-only (and r-x) pages with FOLL_FORCE
// without changing their protection. True when the bytes read back.
bool procmem_write(uintptr_t addr, const void *src, std::size_t n);

enum class WriteHow { none, swap, direct, procmem, mprotect };

// Write n bytes at `at`, which lies in the extent m (see write_entry() for the order).
WriteHow write_entry(const Mapping &m, uintptr_t at, const uint8_t *bytes, unsigned n);

// After an entry was written `how`: serialize the cores now, or at writes_batch_end().
void entry_written(WriteHow how);

// A batch (patch::batch_begin/batch_end): one /proc/self/mem descriptor, one question
// "is any other thread there?", one core serialization at the end.
void writes_batch_begin();
void writes_batch_end();

}  // namespace pfg::patch::impl
