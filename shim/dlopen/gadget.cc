// Finding a return gadget in the caller's object (gadget.h; docs/design.md, "dlopen as
// the caller"): the object by dl_iterate_phdr, the FDE covering a candidate as every
// unwinder finds it, one gadget cached per object.
#include "dlopen/gadget.h"

#include <cstring>
#include <link.h>
#include <pthread.h>

namespace pfg::gadget {

// The FDE covering pc, found in the object's .eh_frame_hdr binary-search table as every
// unwinder finds it (libgcc's unwind-dw2-fde-dispatch.c, libunwind): 1 and its range in
// [*lo, *hi) when one covers pc, 0 when none does, -1 when the tables use an encoding
// this reader does not take (then no gadget is chosen: the caller is emulated). Only
// the encodings GNU ld and gold write are read: the table's datarel|sdata4 pairs, the
// FDE's pc_begin/pc_range in the size its CIE's 'R' augmentation gives.
int fde_range(uintptr_t hdr, uintptr_t pc, uintptr_t *lo, uintptr_t *hi) {
  const auto *h = reinterpret_cast<const unsigned char *>(hdr);
  if (!h) return 0;  // no unwind table at all: nothing covers pc
  if (h[0] != 1 || (h[1] & 0x0f) != 0x0b || h[2] != 0x03 || h[3] != 0x3b) return -1;
  uint32_t count;
  memcpy(&count, h + 8, 4);
  const auto *tab = reinterpret_cast<const int32_t *>(h + 12);
  // The last entry whose initial location is <= pc.
  size_t a = 0, b = count;
  while (a < b) {
    const size_t m = (a + b) / 2;
    if (hdr + intptr_t(tab[2 * m]) <= pc) a = m + 1;
    else b = m;
  }
  if (a == 0) return 0;
  const uintptr_t start = hdr + intptr_t(tab[2 * (a - 1)]);
  const auto *fde = reinterpret_cast<const unsigned char *>(hdr + intptr_t(tab[2 * (a - 1) + 1]));
  uint32_t len;
  int32_t cie_off;
  memcpy(&len, fde, 4);
  memcpy(&cie_off, fde + 4, 4);
  if (len == 0xffffffffu || cie_off <= 0) return -1;
  const unsigned char *cie = fde + 4 - cie_off;
  const char *aug = reinterpret_cast<const char *>(cie + 9);
  const unsigned char *p = cie + 9 + strlen(aug) + 1;
  auto uleb = [&p] {
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
      const unsigned char c = *p++;
      v |= uint64_t(c & 0x7f) << sh;
      if (!(c & 0x80)) break;
    }
    return v;
  };
  auto size_of = [](unsigned enc) -> int {
    switch (enc & 0x0f) {
      case 0x00: return 8;  // absptr
      case 0x02: case 0x0a: return 2;
      case 0x03: case 0x0b: return 4;
      case 0x04: case 0x0c: return 8;
      default: return -1;
    }
  };
  uleb();  // code alignment
  uleb();  // data alignment (sleb: only skipped)
  if (cie[8] == 1) ++p;
  else uleb();  // return address register
  unsigned enc = 0;  // DW_EH_PE_absptr unless 'R' says otherwise
  if (aug[0] == 'z') {
    uleb();  // augmentation data length
    for (const char *c = aug + 1; *c; ++c) {
      if (*c == 'R') enc = *p++;
      else if (*c == 'L') ++p;
      else if (*c == 'P') {
        const unsigned penc = *p++;
        const int n = size_of(penc);
        if (n < 0 || (penc & 0x70) == 0x50) return -1;
        p += n;
      } else if (*c != 'S' && *c != 'B') return -1;
    }
  } else if (aug[0]) {
    return -1;
  }
  const int n = size_of(enc);
  if (n < 0 || (enc & 0x70) == 0x50) return -1;
  uint64_t range = 0;
  memcpy(&range, fde + 8 + n, size_t(n));  // little-endian: the low n bytes
  *lo = start;
  *hi = start + range;
  return pc < *hi ? 1 : 0;
}

namespace {

int find_seg(struct dl_phdr_info *info, size_t, void *data) {
  auto *sg = static_cast<Seg *>(data);
  const uintptr_t pc = sg->addr;
  bool in = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && pc >= lo && pc < lo + ph.p_memsz) in = true;
  }
  // The first object is the main program: glibc's caller when pc is in no object.
  if (!in && !(pc == 0 && sg->n == 0 && sg->phdr == nullptr)) return 0;
  sg->n = 0;
  sg->addr = info->dlpi_addr;
  sg->phdr = info->dlpi_phdr;
  for (int i = 0; i < info->dlpi_phnum && sg->n < 4; ++i) {
    const ElfW(Phdr) &ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_GNU_EH_FRAME) sg->eh_hdr = info->dlpi_addr + ph.p_vaddr;
    // Read as well as executable: the scan reads the bytes.
    if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X) || !(ph.p_flags & PF_R)) continue;
    sg->lo[sg->n] = info->dlpi_addr + ph.p_vaddr;
    sg->hi[sg->n++] = info->dlpi_addr + ph.p_vaddr + ph.p_filesz;
  }
  return 1;
}

// One gadget per caller object, kept while the same mapping is there (a slot is
// re-checked on every use: same base, same program headers, still the gadget).
struct GadgetCache {
  uintptr_t addr;
  const void *phdr;
  uintptr_t gadget;  // 0: none in that object
};
GadgetCache g_gadgets[16];
pthread_mutex_t g_gadget_mu = PTHREAD_MUTEX_INITIALIZER;
unsigned g_gadget_next;

}  // namespace

uintptr_t find(void *caller) {
  Seg sg{};
  sg.addr = reinterpret_cast<uintptr_t>(caller);
  if (!dl_iterate_phdr(find_seg, &sg)) {
    sg = Seg{};  // in no object (generated code): glibc takes the main program
    if (!dl_iterate_phdr(find_seg, &sg)) return 0;
  }
  pthread_mutex_lock(&g_gadget_mu);
  uintptr_t g = UINTPTR_MAX;
  for (auto &c : g_gadgets)
    if (c.phdr && c.addr == sg.addr && c.phdr == sg.phdr) g = c.gadget;
  if (g == UINTPTR_MAX) {
    g = scan(sg);
    g_gadgets[g_gadget_next++ % 16] = GadgetCache{sg.addr, sg.phdr, g};
  }
  pthread_mutex_unlock(&g_gadget_mu);
  for (int s = 0; s < sg.n; ++s)
    if (g >= sg.lo[s] && g < sg.hi[s]) return still_there(g, sg.hi[s]) ? g : 0;
  return 0;
}

}  // namespace pfg::gadget
