// Entry patching: make every caller of a function reach a hook, even callers that bind
// to the function directly (static executables, -fno-semantic-interposition libraries).
//
// The one header of shim/patch/ that the rest of the shim includes. Platform mechanics
// only; which functions get patched is decided in images.cc. x86-64 implementation:
// x86_64.cc (Zydis). Elsewhere: none.cc, where supported() is false and install() always
// refuses, so the guard falls back to interposition and says so. README.md in this folder
// lists the pieces, arch-neutral and per architecture.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pfg::patch {

struct Result {
  bool ok;            // true: patched (install) or patchable (check)
  void *trampoline;   // install: calls the original function; nullptr otherwise
  char why[160];      // when !ok, a one-line reason ("branch into patched range at +3")
};

// Is entry patching implemented for this architecture?
bool supported();

// Would install() succeed? Decodes and plans the relocation, writes nothing.
// fn_size is the function's size from the symbol table (0 when unknown); it is used to
// look for branches back into the bytes the patch would overwrite.
Result check(const void *target, std::size_t fn_size);

// Redirect target's entry to hook. On success *real_out holds the trampoline (the
// original function) before the entry is rewritten, so a hook that runs at once on
// another thread already finds it. Never crashes the host: anything it cannot relocate
// is refused with a reason and nothing is written.
Result install(void *target, std::size_t fn_size, void *hook, void **real_out);

// Patches installed between batch_begin() and batch_end() share one reading of
// /proc/self/maps (most of a patch's cost). For the entries of one image, taken over at
// load time or after a dlopen; nothing else may change that image's mappings meanwhile.
void batch_begin();
void batch_end();

// The image holding [lo, hi) was unmapped: drop the records of its patches (so that a
// new mapping of the same file at the same address is patched afresh) and unmap the
// trampoline arenas that served only it. Returns how many patches were forgotten.
// The caller must first have stopped every path of the guard's own into those
// trampolines (the real-function slots). Normal context.
int forget(std::uintptr_t lo, std::uintptr_t hi);

// Architecture name and decoder, for reports ("x86-64 (Zydis 4.0)").
const char *describe();

}  // namespace pfg::patch
