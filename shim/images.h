// Which loaded image defines the CPython C API, and whether interposition reaches every
// caller of each function there. Where it does not, the entry is patched (patch.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "interpose.h"

namespace pfg {

struct Image {
  uintptr_t bias;        // load bias (0 for a non-PIE executable)
  uintptr_t dynamic;     // address of PT_DYNAMIC
  bool is_exe;           // the main program
  int ntext;
  uintptr_t text_lo[4], text_hi[4];  // executable PT_LOAD segments
  uint64_t relocated;    // bit f: the image references kFns[f] through a relocation
  char path[256];
};

constexpr int kMaxImages = 8;

// Registers the image containing addr (if new). Normal context, caller holds the
// detection mutex. Returns its index, or -1 when addr is in no loaded image.
int image_add(const void *addr, bool *is_new);
const Image &image_at(int i);

// Is pc inside the executable code of a registered Python image? Lock-free and
// async-signal-safe: images are appended, fully written before the count is published.
bool in_python_text(uintptr_t pc);

// Does the image reference f through a relocation (PLT slot or GOT entry)? Then the
// image's own calls go through the dynamic linker and reach an interposer. Computed in
// one pass over the relocation tables when the image is added.
inline bool binds_via_relocation(const Image &im, Fn f) { return im.relocated >> f & 1; }

// st_size of the exported function name defined at addr in im (0 when unknown), looked
// up through the image's GNU hash table: dladdr1(RTLD_DL_SYMENT) walks the whole symbol
// table, which cost 1.6M instructions per start-up of the static python.
size_t symbol_size(const Image &im, const char *name, const void *addr);

enum class Mech { absent, interpose, entry_patch, none };
const char *mech_name(Mech m);

struct Coverage {
  Mech mech;
  char why[480];
};
extern Coverage g_cover[fn_count];

// Makes every caller of f (defined at def in image im) reach the guard: interposition
// when it already does, else an entry patch. Fills the function's real slot and g_cover[f].
// bypass: some callers reach the definition without passing the guard's symbol -- an
// executable's definition wins lookup over ours, and a runtime loaded with dlopen is
// called through addresses its host got from dlsym(handle, ...). Then only an entry
// patch covers every caller.
// semantic: the library keeps semantic interposition (its own calls to exported
// functions go through the PLT), so a function without a relocation has no internal
// caller at all.
void cover(Fn f, void *def, const Image &im, const char *bypass, bool semantic);

}  // namespace pfg
