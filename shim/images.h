// Which loaded image defines the CPython C API, and whether interposition reaches every
// caller of each function there. Where it does not, the entry is patched (patch.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "interpose.h"

namespace pfg {

// One mapping of an image: a dlclose that unmaps it and a dlopen that maps the same file
// again (at the same address or another) make two Image records, never one.
struct Image {
  uintptr_t bias;        // load bias (0 for a non-PIE executable)
  uintptr_t dynamic;     // address of PT_DYNAMIC
  bool is_exe;           // the main program
  bool live;             // mapped, as far as the last image_check_mapped() knows
  int ntext;
  uintptr_t text_lo[4], text_hi[4];  // executable PT_LOAD segments
  uintptr_t map_lo, map_hi;          // all PT_LOAD segments (code and data)
  // Identity of this mapping: a value the guard wrote into the unused tail of the page
  // that holds the end of the image's last writable segment (past .bss, zero-filled by
  // the loader and used by nothing). A new mapping of the file, even at the same
  // address, has a zero there. 0: no room for it (the segment ends on a page boundary).
  uintptr_t cookie_at;
  uint64_t cookie;
  unsigned mapping;      // 1 for the first mapping of this path seen, 2 for the next...
  uint64_t relocated;    // bit f: the image references kFns[f] through a relocation
  char path[256];
};

constexpr int kMaxImages = 8;

// Registers the image containing addr (if new). Normal context, caller holds the
// detection mutex. Returns its index, or -1 when addr is in no loaded image. A slot
// whose image was unmapped (image_drop) is reused.
int image_add(const void *addr, bool *is_new);
const Image &image_at(int i);

// Is the mapping that image i describes still there? Walks the loaded objects
// (dl_iterate_phdr: the loader lock) and compares base, text and cookie. Detection mutex.
bool image_check_mapped(int i);

// Forget image i: it was unmapped. Its text no longer counts as Python's (in_python_text)
// from the moment this returns; the record stays readable for describe() until reused.
void image_drop(int i);

// The loader's counters (dl_iterate_phdr's dlpi_adds/dlpi_subs): objects loaded and
// unloaded since the process started. Cheap: stops at the first object.
void loader_counters(unsigned long long *adds, unsigned long long *subs);

// Is pc inside the executable code of a registered, mapped Python image? Lock-free,
// wait-free and async-signal-safe: each slot's ranges are read under a sequence count
// (a slot being rewritten, because its image was unmapped or a new one is being added,
// matches nothing). The hot path of every pthread_cond_timedwait in the process.
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
