// install()/check() of the aarch64 patcher on synthetic functions, run under qemu by
// run_a64.py (part 2 of test_patch_a64.cc's list). Encodings are the test's own.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <initializer_list>

#include "patch.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PROT_BTI
#define PROT_BTI 0x10
#endif

int &test_pass();
int &test_fail();
#define CHECK(cond, ...)            \
  do {                              \
    if (cond) {                     \
      ++test_pass();                \
    } else {                        \
      ++test_fail();                \
      printf("FAIL: " __VA_ARGS__); \
      printf("\n");                 \
    }                               \
  } while (0)

namespace {

namespace pp = pfg::patch;
using Fn = long (*)(long);

constexpr uint32_t RET = 0xD65F03C0, NOP = 0xD503201F, BRK = 0xD4200000, BTI_C = 0xD503245F;
constexpr uint32_t PACIASP = 0xD503233F, AUTIASP = 0xD50323BF, PACIBSP = 0xD503237F, AUTIBSP = 0xD50323FF;
constexpr uint32_t STP_FP_LR = 0xA9BF7BFD, LDP_FP_LR = 0xA8C17BFD, MOV_FP_SP = 0x910003FD;
uint32_t movz(unsigned rd, unsigned imm) { return 0xD2800000 | imm << 5 | rd; }
uint32_t add_imm(unsigned rd, unsigned rn, unsigned imm) { return 0x91000000 | imm << 10 | rn << 5 | rd; }
uint32_t add_reg(unsigned rd, unsigned rn, unsigned rm) { return 0x8B000000 | rm << 16 | rn << 5 | rd; }
uint32_t ldr_x_off(unsigned rt, unsigned rn, unsigned off) { return 0xF9400000 | (off / 8) << 10 | rn << 5 | rt; }
int64_t words(uintptr_t pc, uintptr_t to) { return static_cast<int64_t>(to - pc) / 4; }
uint32_t b(uintptr_t pc, uintptr_t to) { return 0x14000000u | (words(pc, to) & 0x3FFFFFF); }
uint32_t cbz_x(uintptr_t pc, uintptr_t to, unsigned rt) { return 0xB4000000u | (words(pc, to) & 0x7FFFF) << 5 | rt; }
uint32_t adrp(uintptr_t pc, uintptr_t to, unsigned rd) {
  const uint32_t u = static_cast<uint32_t>((to >> 12) - (pc >> 12));
  return 0x90000000u | (u & 3) << 29 | ((u >> 2) & 0x7FFFF) << 5 | rd;
}

void *g_real;
std::atomic<long> g_hits;
long g_writable = 77;  // .data: never executable
long hook(long x) {
  g_hits++;
  return reinterpret_cast<Fn>(__atomic_load_n(&g_real, __ATOMIC_ACQUIRE))(x) + 1000;
}

// A code area: a data page (RW) at `base`, code pages after it, filled while RW and then
// sealed with `prot` (RX, or RX|BTI for the branch-protected functions).
struct Area {
  uintptr_t base, code, next, end;
};
Area area_at(uintptr_t base, std::size_t len) {
  mprotect(reinterpret_cast<void *>(base), len, PROT_READ | PROT_WRITE);
  return Area{base, base + 4096, base + 4096, base + len};
}
uintptr_t emit(Area &a, std::initializer_list<uint32_t> w) {
  uintptr_t at = a.next;
  memcpy(reinterpret_cast<void *>(at), w.begin(), 4 * w.size());
  a.next += (4 * w.size() + 63) & ~std::size_t{63};
  return at;
}
bool seal(const Area &a, int prot) {
  if (mprotect(reinterpret_cast<void *>(a.code), a.end - a.code, prot) != 0) return false;
  __builtin___clear_cache(reinterpret_cast<char *>(a.code), reinterpret_cast<char *>(a.end));
  return true;
}
uintptr_t map_at(uintptr_t hint, std::size_t len) {
  void *p = mmap(reinterpret_cast<void *>(hint), len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (hint ? MAP_FIXED_NOREPLACE : 0), -1, 0);
  if (p == MAP_FAILED || (hint && reinterpret_cast<uintptr_t>(p) != hint)) return 0;
  return reinterpret_cast<uintptr_t>(p);
}

// "r-xp" etc. of the mapping holding addr.
void perms_of(uintptr_t addr, char out[5]) {
  strcpy(out, "?");
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    char perm[5];
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perm) == 3 && addr >= lo && addr < hi) {
      strcpy(out, perm);
      break;
    }
  }
  fclose(f);
}

// Patch fn (size bytes) and check: before = f(arg), after = f(arg) + 1000 through the hook,
// the trampoline returns the original, the entry page is not left writable.
void patch_case(const char *name, uintptr_t fn, std::size_t size, std::initializer_list<long> args) {
  long before[4];
  unsigned i = 0;
  for (long a : args) before[i++] = reinterpret_cast<Fn>(fn)(a);
  pp::Result c = pp::check(reinterpret_cast<void *>(fn), size);
  CHECK(c.ok, "%s: check refused: %s", name, c.why);
  const long h0 = g_hits;
  pp::Result r = pp::install(reinterpret_cast<void *>(fn), size, reinterpret_cast<void *>(&hook), &g_real);
  CHECK(r.ok == c.ok, "%s: install %s but check %s (%s)", name, r.ok ? "ok" : "refused", c.ok ? "ok" : "refused", r.why);
  if (!r.ok) return;
  i = 0;
  for (long a : args) {
    long v = reinterpret_cast<Fn>(fn)(a);
    CHECK(v == before[i] + 1000, "%s: patched(%ld) = %ld, expected %ld", name, a, v, before[i] + 1000);
    long t = reinterpret_cast<Fn>(r.trampoline)(a);
    CHECK(t == before[i], "%s: trampoline(%ld) = %ld, expected %ld", name, a, t, before[i]);
    ++i;
  }
  CHECK(g_hits - h0 == static_cast<long>(args.size()), "%s: hook ran %ld times", name, g_hits - h0);
  char perm[5];
  perms_of(fn, perm);
  CHECK(perm[1] == '-' && perm[2] == 'x', "%s: entry mapping is %s after patching", name, perm);
  perms_of(reinterpret_cast<uintptr_t>(r.trampoline), perm);
  CHECK(!strcmp(perm, "r-xp"), "%s: trampoline mapping is %s", name, perm);
}

// Does smaps show the "bt" VmFlag for addr's mapping (a kernel does; qemu-user's
// emulated smaps does not)? Only then can the patcher find an anonymous page's guard.
bool smaps_shows_bt(uintptr_t addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return false;
  char line[512];
  bool cur = false, bt = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) cur = addr >= lo && addr < hi;
    else if (cur && !strncmp(line, "VmFlags:", 8)) { bt = strstr(line, " bt") != nullptr; break; }
  }
  fclose(f);
  return bt;
}

// Does calling fn kill the caller (in a child)? The BTI control: a function without a
// landing pad on a guarded page, called indirectly, must raise SIGILL.
int dies_with(uintptr_t fn) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(open("/dev/null", O_WRONLY), 2);  // qemu's "uncaught target signal" line
    reinterpret_cast<Fn>(fn)(1);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

void refuse_case(const char *name, uintptr_t fn, std::size_t size, const char *why) {
  pp::Result c = pp::check(reinterpret_cast<void *>(fn), size);
  CHECK(!c.ok && strstr(c.why, why), "%s: check() gave %s '%s', expected '%s'", name, c.ok ? "ok" : "refused",
        c.why, why);
}

// One entry patched while another thread calls it: every result is the original's or
// the hook's, never a crash or a mix (entering threads; see docs/patching.md for a
// thread inside the window, which qemu-user cannot show).
struct Racer {
  uintptr_t fn;
  std::atomic<bool> stop{false};
  std::atomic<long> orig{0}, hooked{0}, wrong{0};
};
void *race_loop(void *p) {
  Racer &r = *static_cast<Racer *>(p);
  while (!r.stop) {
    long v = reinterpret_cast<Fn>(r.fn)(1);
    if (v == 7) r.orig++;
    else if (v == 1007) r.hooked++;
    else r.wrong++;
  }
  return nullptr;
}
void race(const char *name, uintptr_t region, int rounds, bool far) {
  long wrong = 0, refused = 0;
  for (int k = 0; k < rounds; ++k) {
    Racer r;
    Area a = area_at(region + k * std::size_t{0x10000}, 0x10000);
    r.fn = far ? emit(a, {add_imm(0, 0, 1), add_imm(0, 0, 2), add_imm(0, 0, 3), RET})
               : emit(a, {add_imm(0, 0, 6), RET});
    seal(a, PROT_READ | PROT_EXEC);
    pthread_t t;
    pthread_create(&t, nullptr, race_loop, &r);
    while (r.orig < 200) sched_yield();
    pp::Result res = pp::install(reinterpret_cast<void *>(r.fn), far ? 16 : 8, reinterpret_cast<void *>(&hook), &g_real);
    if (!res.ok) ++refused;
    while (res.ok && r.hooked < 200) sched_yield();
    r.stop = true;
    pthread_join(t, nullptr);
    wrong += r.wrong;
  }
  CHECK(wrong == 0 && refused == 0, "%s: %ld wrong results, %ld refused in %d rounds", name, wrong, refused, rounds);
  printf("race %s: %d entries patched under a calling thread, %ld wrong results\n", name, rounds, wrong);
}

}  // namespace

void install_tests() {
  CHECK(pp::supported(), "supported() is false");
  // Near: a 1 MiB area just below the static test binary (0x400000) if free, so that the
  // hook is in B reach; else anywhere (the arena then comes near it, the stub reaches the hook).
  uintptr_t nb = map_at(0x300000, 1 << 20);
  const bool by_binary = nb != 0;
  if (!nb) nb = map_at(0, 1 << 20);
  Area n = area_at(nb, 1 << 19), g = area_at(nb + (1 << 19), 1 << 19);  // plain, BTI-guarded
  static const long k77 = 77;
  memcpy(reinterpret_cast<void *>(n.base + 0x7f8), &k77, 8);
  const uintptr_t data = n.base + 0x7f8;
  uintptr_t plain = emit(n, {add_imm(0, 0, 5), RET});
  uintptr_t f_adrp = n.next;
  emit(n, {adrp(f_adrp, data, 1), ldr_x_off(1, 1, data & 0xFFF), add_reg(0, 0, 1), RET});
  uintptr_t f_cbz = n.next;
  emit(n, {cbz_x(f_cbz, f_cbz + 12, 0), add_imm(0, 0, 5), RET, movz(0, 100), RET});
  uintptr_t other = emit(n, {add_imm(0, 0, 7), RET});
  uintptr_t f_tail = n.next;
  emit(n, {b(f_tail, other)});
  uintptr_t f_brk = emit(n, {BRK, RET});
  uintptr_t f_ret = emit(n, {RET});
  uintptr_t b_bti = emit(g, {BTI_C, add_imm(0, 0, 5), RET});
  uintptr_t b_pac = emit(g, {PACIASP, STP_FP_LR, MOV_FP_SP, add_imm(0, 0, 5), LDP_FP_LR, AUTIASP, RET});
  uintptr_t b_both = emit(g, {BTI_C, PACIBSP, STP_FP_LR, MOV_FP_SP, add_imm(0, 0, 5), LDP_FP_LR, AUTIBSP, RET});
  uintptr_t b_loop = g.next;
  emit(g, {PACIASP, NOP, cbz_x(b_loop + 8, b_loop + 4, 0), AUTIASP, RET});
  uintptr_t b_short = emit(g, {BTI_C, RET});
  uintptr_t b_nolp = emit(g, {add_imm(0, 0, 5), RET});  // no landing pad: BTI control
  bool ok = seal(n, PROT_READ | PROT_EXEC);
  const bool bti = seal(g, PROT_READ | PROT_EXEC | PROT_BTI);
  if (!bti) ok = ok && seal(g, PROT_READ | PROT_EXEC);
  CHECK(ok, "cannot seal the near areas");
  printf("near area at %#lx (%s), BTI-guarded page: %s\n", static_cast<unsigned long>(nb),
         by_binary ? "by the test binary, hook in B reach" : "hook out of B reach", bti ? "yes" : "no (PROT_BTI refused)");

  if (bti) {
    const int sig = dies_with(b_nolp);
    CHECK(sig == SIGILL, "BTI control: no landing pad gave signal %d before patching, not SIGILL", sig);
    if (sig == SIGILL) printf("BTI control: a function without a landing pad on the guarded page dies with SIGILL\n");
  }
  const bool bt_visible = bti && smaps_shows_bt(b_nolp);
  patch_case("plain", plain, 8, {1});
  patch_case("adrp first", f_adrp, 16, {1});
  patch_case("cbz first", f_cbz, 20, {0, 1});
  patch_case("b first (tail call)", f_tail, 4, {1});
  patch_case("ret only (4 bytes)", f_ret, 4, {3});
  patch_case("bti c", b_bti, 12, {1});
  patch_case("paciasp", b_pac, 28, {1});
  patch_case("bti c; pacibsp", b_both, 32, {1});
  // The guard survives the entry writes (the page's PROT_BTI is restored), where the
  // patcher can see it on an anonymous page.
  if (bti && bt_visible) CHECK(dies_with(b_nolp) == SIGILL, "BTI control: the page lost PROT_BTI after patching");
  else if (bti) printf("not checked: PROT_BTI kept on an anonymous page (this smaps does not show 'bt')\n");
  refuse_case("already patched", plain, 8, "already patched");
  refuse_case("brk", f_brk, 8, "brk at entry");
  refuse_case("bti c, 4 bytes", b_short, 4, "function too short (4 bytes, patch needs 8)");
  refuse_case("branch after paciasp", b_loop, 20, "branch to +4, after the kept paciasp (cbz/cbnz at +8)");
  refuse_case("unaligned", plain + 2, 8, "not 4-byte aligned");
  refuse_case("unmapped", 0x1000, 8, "is not mapped");
  refuse_case("data", reinterpret_cast<uintptr_t>(&g_writable), 8, "not in an executable mapping");
  // The entry word: the hook straight from the entry when in reach and nothing to undo,
  // through the stub otherwise.
  uint32_t e;
  memcpy(&e, reinterpret_cast<void *>(plain), 4);
  const uintptr_t dest = plain + (static_cast<int64_t>(static_cast<int32_t>(e << 6)) >> 4);
  CHECK((e & 0xFC000000) == 0x14000000, "plain: entry word %08x is not a B", e);
  CHECK((dest == reinterpret_cast<uintptr_t>(&hook)) == by_binary, "plain: entry B goes to %#lx (hook %p)",
        static_cast<unsigned long>(dest), reinterpret_cast<void *>(&hook));

  // Batch: two entries, one core synchronization at the end.
  uintptr_t bn = map_at(0, 1 << 16);
  Area nb2 = area_at(bn, 1 << 16);
  uintptr_t q1 = emit(nb2, {add_imm(0, 0, 9), RET}), q2 = emit(nb2, {add_imm(0, 0, 11), RET});
  seal(nb2, PROT_READ | PROT_EXEC);
  pp::batch_begin();
  pp::Result r1 = pp::install(reinterpret_cast<void *>(q1), 8, reinterpret_cast<void *>(&hook), &g_real);
  void *real1 = g_real;
  pp::Result r2 = pp::install(reinterpret_cast<void *>(q2), 8, reinterpret_cast<void *>(&hook), &g_real);
  pp::batch_end();
  CHECK(r1.ok && r2.ok, "batch: %s / %s", r1.why, r2.why);
  if (r1.ok && r2.ok) {
    CHECK(reinterpret_cast<Fn>(q2)(1) == 1012, "batch: second entry");
    g_real = real1;
    CHECK(reinterpret_cast<Fn>(q1)(1) == 1010, "batch: first entry");
  }

  // Far: the function in the middle of a 512 MiB reservation, so no slot can be placed
  // within B reach: the entry becomes adrp x16; add x16; br x16 (3 instructions relocated).
  const std::size_t span = std::size_t{512} << 20;
  uintptr_t fr = map_at(0, span);
  CHECK(fr != 0, "cannot reserve 512 MiB");
  if (!fr) return;
  Area f = area_at(fr + span / 2 - 4096, 1 << 16);
  memcpy(reinterpret_cast<void *>(f.base + 0x10), &k77, 8);
  const uintptr_t fdata = f.base + 0x10;
  uintptr_t far_plain = emit(f, {add_imm(0, 0, 1), add_imm(0, 0, 2), add_imm(0, 0, 3), RET});
  uintptr_t far_mix = f.next;
  emit(f, {cbz_x(far_mix, far_mix + 20, 0), adrp(far_mix + 4, fdata, 1), ldr_x_off(1, 1, fdata & 0xFFF),
           add_reg(0, 0, 1), RET, movz(0, 100), RET});
  uintptr_t far_back = f.next;
  emit(f, {add_imm(0, 0, 1), add_imm(0, 0, 1), add_imm(0, 0, 1), cbz_x(far_back + 12, far_back + 4, 1), RET});
  uintptr_t far_self = f.next;
  emit(f, {cbz_x(far_self, far_self + 8, 0), NOP, NOP, RET});
  uintptr_t far_bti = emit(f, {BTI_C, add_imm(0, 0, 1), NOP, NOP, RET});
  uintptr_t far_ret = emit(f, {RET, NOP, NOP, NOP});
  seal(f, PROT_READ | PROT_EXEC);
  patch_case("far plain", far_plain, 16, {1});
  patch_case("far cbz, adrp, ldr", far_mix, 28, {0, 1});
  refuse_case("far branch back", far_back, 20, "branch into patched range at +4 (cbz/cbnz at +12)");
  refuse_case("far branch within", far_self, 16, "branch from the prologue into itself at +8");
  refuse_case("far bti", far_bti, 20, "no free address range within +-128 MiB of a function built for BTI");
  refuse_case("far ret, size unknown", far_ret, 0, "function too short: the instruction at +0 ends it");
  memcpy(&e, reinterpret_cast<void *>(far_plain), 4);
  CHECK((e & 0x9F00001F) == 0x90000010, "far plain: entry word %08x is not adrp x16", e);

  constexpr int kRounds = 20;
  uintptr_t rn = map_at(0, kRounds * std::size_t{0x10000});
  if (rn) race("near", rn, kRounds, false);
  race("far", fr + span / 2 + 0x10000, kRounds, true);
}
