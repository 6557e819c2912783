// /proc/self/maps for the patcher (maps.h).
#include "maps.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

namespace pfg::patch::impl {
namespace {

uintptr_t parse_hex(const char *&p, const char *e) {
  uintptr_t v = 0;
  while (p < e) {
    char c = *p;
    unsigned d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else break;
    v = v << 4 | d;
    ++p;
  }
  return v;
}

bool parse_line(const char *p, const char *e, Mapping &m) {
  m.start = parse_hex(p, e);
  if (p >= e || *p != '-') return false;
  ++p;
  m.end = parse_hex(p, e);
  if (p + 5 > e || *p != ' ') return false;
  m.r = p[1] == 'r';
  m.w = p[2] == 'w';
  m.x = p[3] == 'x';
  // The path is the last field; only pseudo-paths ("[heap]", "[vdso]") matter here.
  m.heap = m.stack = m.special = false;
  if (e[-1] == ']') {
    const char *q = e - 1;
    while (q > p && *q != '[') --q;
    m.heap = e - q == 6 && memcmp(q, "[heap]", 6) == 0;
    m.stack = e - q == 7 && memcmp(q, "[stack]", 7) == 0;
    m.special = q[1] == 'v';  // [vdso] [vvar] [vsyscall]
  }
  return true;
}

// One reading of /proc/self/maps shared by the patches of a batch (patch::batch_begin):
// a runtime's 14 entries in one image see the same mappings, and parsing the file 14
// times was ~300,000 instructions of every static python's start-up. What the survey
// takes from it does not go stale within a batch: the target's extent and protection
// belong to a loaded image (entry writes keep r-x), and a gap another thread takes
// meanwhile only makes new_arena()'s MAP_FIXED_NOREPLACE fail and look again. An arena
// we map is added to it (snapshot_add) rather than read back. Guarded by the patcher's
// lock, like all its state.
struct MapsSnapshot {
  static constexpr int kMax = 4096;
  bool batch;  // inside maps_batch(true) / maps_batch(false)
  bool valid;
  int n;
  Mapping m[kMax];
};
MapsSnapshot g_snap;

}  // namespace

int prot_of(const Mapping &m) {
  return (m.r ? PROT_READ : 0) | (m.w ? PROT_WRITE : 0) | (m.x ? PROT_EXEC : 0);
}

bool continues(const Mapping &ext, const Mapping &next) {
  return next.start == ext.end && next.r == ext.r && next.w == ext.w && next.x == ext.x && !next.special;
}

bool read_maps(MappingFn fn, void *ctx) {
  int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[8192];
  std::size_t have = 0;
  bool go = true, ok = true;
  while (go) {
    ssize_t n = read(fd, buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { ok = false; break; }
    have += static_cast<std::size_t>(n);
    std::size_t pos = 0;
    for (;;) {
      char *nl = static_cast<char *>(memchr(buf + pos, '\n', have - pos));
      if (!nl) break;
      Mapping m;
      if (parse_line(buf + pos, nl, m) && !fn(m, ctx)) { go = false; break; }
      pos = static_cast<std::size_t>(nl - buf) + 1;
    }
    if (n == 0) break;
    if (pos == 0 && have == sizeof buf) { ok = false; break; }  // absurd line length
    memmove(buf, buf + pos, have - pos);
    have -= pos;
  }
  close(fd);
  return ok;
}

bool maps_snapshot(const Mapping *&m, int &n) {
  if (!g_snap.batch) return false;
  if (!g_snap.valid) {
    int k = 0;
    bool fits = true;
    if (!for_each_mapping([&](const Mapping &mm) {
          if (k == MapsSnapshot::kMax) { fits = false; return false; }
          g_snap.m[k++] = mm;
          return true;
        }) || !fits)
      return false;
    g_snap.n = k;
    g_snap.valid = true;
  }
  m = g_snap.m;
  n = g_snap.n;
  return true;
}

bool find_extent(uintptr_t addr, Mapping &out) {
  bool found = false;
  for_each_mapping([&](const Mapping &m) {
    if (!found) {
      if (addr < m.start) return false;
      if (addr < m.end) { out = m; found = true; }
      return true;
    }
    if (!continues(out, m)) return false;
    out.end = m.end;
    return true;
  });
  return found;
}

void maps_batch(bool on) {
  g_snap.batch = on;
  g_snap.valid = false;
}

// In address order, so the next survey of the batch sees the gap taken without reading
// /proc/self/maps again (a second reading was ~10 system calls).
void snapshot_add(uintptr_t start, std::size_t len) {
  if (!g_snap.valid) return;
  if (g_snap.n == MapsSnapshot::kMax) { g_snap.valid = false; return; }
  int i = g_snap.n++;
  for (; i > 0 && g_snap.m[i - 1].start > start; --i) g_snap.m[i] = g_snap.m[i - 1];
  Mapping &m = g_snap.m[i];
  m = Mapping{};
  m.start = start;
  m.end = start + len;  // ---p as reserved; pages become r-x later, which no survey of a target depends on
}

void snapshot_drop() { g_snap.valid = false; }

}  // namespace pfg::patch::impl
