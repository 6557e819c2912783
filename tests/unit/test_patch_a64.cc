// Unit tests of the aarch64 entry patcher (shim/patch/aarch64*.cc), cross-compiled and
// run under qemu-aarch64-static by run_a64.py. docs/patching.md ("aarch64", "Tests")
// says what each part shows.
//
// 1. relocate(): a synthetic function for every PC-relative class, its operand at the
//    edge of its range (+max, -max), moved to a trampoline on the same side (re-encoded),
//    on the other side (just out of range: the far form) and > 4 GiB away; the original
//    and the moved code are both run (in a forked child, so a bad relocation is a failed
//    case, not a dead test) and must return the expected value.
// 2. install()/check(): plain, ADRP-first, CBZ-first, tail-call, bti c, paciasp, bti c +
//    pacibsp prologues patched near (one B), and far (ADRP/ADD/BR, the function inside a
//    512 MiB reservation so no slot is within B reach); the hook and the trampoline are
//    called for real; every refusal reason; an entry patched under a calling thread.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <initializer_list>

#include "aarch64_reloc.h"
#include "patch.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PROT_BTI
#define PROT_BTI 0x10
#endif

using pfg::patch::a64::relocate;

namespace {

int g_pass, g_fail;
#define CHECK(cond, ...)                 \
  do {                                   \
    if (cond) {                          \
      ++g_pass;                          \
    } else {                             \
      ++g_fail;                          \
      printf("FAIL: " __VA_ARGS__);      \
      printf("\n");                      \
    }                                    \
  } while (0)

// Encoders of the test's own (not the relocator's), checked by running the originals.
namespace enc {
constexpr uint32_t RET = 0xD65F03C0, NOP = 0xD503201F, BRK = 0xD4200000, BTI_C = 0xD503245F;
constexpr uint32_t PACIASP = 0xD503233F, AUTIASP = 0xD50323BF, PACIBSP = 0xD503237F, AUTIBSP = 0xD50323FF;
constexpr uint32_t STP_FP_LR = 0xA9BF7BFD, LDP_FP_LR = 0xA8C17BFD, MOV_FP_SP = 0x910003FD, CMP_X0_0 = 0xF100001F;
constexpr uint32_t FMOV_X0_D0 = 0x9E660000, FMOV_W0_S0 = 0x1E260000, UMOV_X0_V0D1 = 0x4E183C00;
constexpr uint32_t LDR_W = 0x18000000, LDR_X = 0x58000000, LDRSW = 0x98000000, PRFM = 0xD8000000;
constexpr uint32_t LDR_S = 0x1C000000, LDR_D = 0x5C000000, LDR_Q = 0x9C000000;
int64_t words(uintptr_t pc, uintptr_t to) { return static_cast<int64_t>(to - pc) / 4; }
uint32_t movz(unsigned rd, unsigned imm) { return 0xD2800000 | imm << 5 | rd; }
uint32_t add_imm(unsigned rd, unsigned rn, unsigned imm) { return 0x91000000 | imm << 10 | rn << 5 | rd; }
uint32_t b(uintptr_t pc, uintptr_t to, bool link = false) {
  return (link ? 0x94000000u : 0x14000000u) | (words(pc, to) & 0x3FFFFFF);
}
uint32_t bcond(uintptr_t pc, uintptr_t to, unsigned cond) { return 0x54000000 | (words(pc, to) & 0x7FFFF) << 5 | cond; }
uint32_t cbz(uintptr_t pc, uintptr_t to, bool nz, bool x, unsigned rt) {
  return (x ? 0x80000000u : 0) | (nz ? 0x35000000u : 0x34000000u) | (words(pc, to) & 0x7FFFF) << 5 | rt;
}
uint32_t tbz(uintptr_t pc, uintptr_t to, bool nz, unsigned bit, unsigned rt) {
  return (bit >> 5) << 31 | (nz ? 0x37000000u : 0x36000000u) | (bit & 31) << 19 | (words(pc, to) & 0x3FFF) << 5 | rt;
}
uint32_t adr(uintptr_t pc, uintptr_t to, unsigned rd, bool page) {
  const int64_t imm = page ? static_cast<int64_t>((to >> 12) - (pc >> 12)) : static_cast<int64_t>(to - pc);
  const uint32_t u = static_cast<uint32_t>(imm);
  return (page ? 0x90000000u : 0x10000000u) | (u & 3) << 29 | ((u >> 2) & 0x7FFFF) << 5 | rd;
}
uint32_t ldr_lit(uint32_t op, uintptr_t pc, uintptr_t to, unsigned rt) { return op | (words(pc, to) & 0x7FFFF) << 5 | rt; }
}  // namespace enc

const std::size_t kPg = 4096;

void make_rwx(uintptr_t a, std::size_t n) {
  uintptr_t lo = a & ~(kPg - 1), hi = (a + n + kPg - 1) & ~(kPg - 1);
  if (mprotect(reinterpret_cast<void *>(lo), hi - lo, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
    printf("mprotect %lx: %s\n", lo, strerror(errno));
    _exit(1);
  }
}
void put(uintptr_t at, const uint32_t *w, unsigned n) {
  make_rwx(at, 4 * n);
  memcpy(reinterpret_cast<void *>(at), w, 4 * n);
  __builtin___clear_cache(reinterpret_cast<char *>(at), reinterpret_cast<char *>(at + 4 * n));
}
void put_data(uintptr_t at, const void *p, std::size_t n) {
  make_rwx(at, n);
  memcpy(reinterpret_cast<void *>(at), p, n);
}
uintptr_t reserve(uintptr_t hint, std::size_t len) {
  void *p = mmap(reinterpret_cast<void *>(hint), len, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (hint ? MAP_FIXED_NOREPLACE : 0), -1, 0);
  if (p == MAP_FAILED || (hint && reinterpret_cast<uintptr_t>(p) != hint)) return 0;
  return reinterpret_cast<uintptr_t>(p);
}

using Fn = long (*)(long);
long call(uintptr_t f, long a) { return reinterpret_cast<Fn>(f)(a); }

// f(a) in a child: a wrong relocation may branch anywhere. False if the child died.
bool run(uintptr_t f, long a, long &out, char *how, std::size_t howlen) {
  int fd[2];
  if (pipe(fd) != 0) return false;
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(open("/dev/null", O_WRONLY), 2);  // qemu's "uncaught target signal" line
    long v = call(f, a);
    (void)!write(fd[1], &v, sizeof v);
    _exit(0);
  }
  close(fd[1]);
  bool got = read(fd[0], &out, sizeof out) == sizeof out;
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) snprintf(how, howlen, "killed by signal %d", WTERMSIG(st));
  else if (!got) snprintf(how, howlen, "no result");
  return got && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

uintptr_t S, Dnear_plus, Dnear_minus, Dfar;

// The first nrel instructions of fn (placed at S; its targets placed by the caller) moved
// to each trampoline address; the original and each moved copy return expect[i] for
// args[i]. Out of range of a trampoline (the other side, or > 4 GiB away), the far
// form must have been used (more words than the instructions and a B back).
void reloc_case(const char *name, const uint32_t *fn, unsigned len, unsigned nrel, bool target_above,
                std::initializer_list<long> args, std::initializer_list<long> expect) {
  put(S, fn, len);
  const uintptr_t dsts[3] = {target_above ? Dnear_plus : Dnear_minus, target_above ? Dnear_minus : Dnear_plus, Dfar};
  const char *dname[3] = {"same side", "other side", "> 4 GiB away"};
  char how[64];
  for (unsigned i = 0; i < args.size(); ++i) {
    long v = 0;
    how[0] = 0;
    bool ok = run(S, args.begin()[i], v, how, sizeof how);
    CHECK(ok && v == expect.begin()[i], "%s: original(%ld) = %ld (%s), expected %ld (test encoding?)", name,
          args.begin()[i], v, how, expect.begin()[i]);
  }
  for (int d = 0; d < 3; ++d) {
    uint32_t out[64];
    unsigned nw = 0;
    char why[160] = "";
    bool ok = relocate(fn, nrel, S, dsts[d], S + 4 * nrel, out, 64, nw, why, sizeof why);
    CHECK(ok, "%s -> %s: relocate refused: %s", name, dname[d], why);
    if (!ok) continue;
    put(dsts[d], out, nw);
    const bool far_form = nw > nrel + 1;
    CHECK(far_form == (d != 0), "%s -> %s: %u words (%s form expected)", name, dname[d], nw,
          d ? "far" : "re-encoded");
    for (unsigned i = 0; i < args.size(); ++i) {
      long v = 0;
      how[0] = 0;
      ok = run(dsts[d], args.begin()[i], v, how, sizeof how);
      CHECK(ok && v == expect.begin()[i], "%s -> %s: moved(%ld) = %ld (%s), expected %ld", name, dname[d],
            args.begin()[i], v, how, expect.begin()[i]);
    }
  }
}

void relocator_tests() {
  using namespace enc;
  const int64_t M1 = 1 << 20, M128 = int64_t{1} << 27, K32 = 1 << 15;
  for (int sign = 1; sign >= -1; sign -= 2) {
    const bool up = sign > 0;
    const char *sd = up ? "+max" : "-max";
    char nm[64];
    // ADR / ADRP: the address computed.
    {
      const int64_t imm = up ? M1 - 1 : -M1;
      uint32_t f[] = {adr(S, S + imm, 0, false), RET};
      snprintf(nm, sizeof nm, "adr %s", sd);
      reloc_case(nm, f, 2, 1, up, {0}, {static_cast<long>(S + imm)});
      const int64_t pages = up ? M1 - 1 : -M1;
      const uintptr_t page = (S & ~uintptr_t{0xFFF}) + pages * 4096;
      uint32_t g[] = {adr(S, page, 0, true), RET};
      snprintf(nm, sizeof nm, "adrp %s", sd);
      reloc_case(nm, g, 2, 1, up, {0}, {static_cast<long>(page)});
    }
    // Literal loads of every size, at the edge of imm19.
    {
      const uintptr_t lit = up ? S + M1 - 4 : S - M1;
      const uint64_t q[2] = {0x8877665587654321ULL, 0x0123456789ABCDEFULL};
      put_data(lit, q, sizeof q);
      struct { const char *n; uint32_t op; uint32_t tail; long expect; } L[] = {
          {"ldr x", LDR_X, NOP, static_cast<long>(q[0])},
          {"ldr w", LDR_W, NOP, static_cast<long>(q[0] & 0xFFFFFFFF)},
          {"ldrsw", LDRSW, NOP, static_cast<long>(static_cast<int32_t>(q[0]))},
          {"ldr d", LDR_D, FMOV_X0_D0, static_cast<long>(q[0])},
          {"ldr s", LDR_S, FMOV_W0_S0, static_cast<long>(q[0] & 0xFFFFFFFF)},
          {"ldr q", LDR_Q, UMOV_X0_V0D1, static_cast<long>(q[1])},
      };
      for (auto &l : L) {
        uint32_t f[] = {ldr_lit(l.op, S, lit, 0), l.tail, RET};
        snprintf(nm, sizeof nm, "%s literal %s", l.n, sd);
        reloc_case(nm, f, 3, 1, up, {0}, {l.expect});
      }
      uint32_t p[] = {ldr_lit(PRFM, S, lit, 0), movz(0, 7), RET};
      snprintf(nm, sizeof nm, "prfm literal %s", sd);
      reloc_case(nm, p, 3, 1, up, {0}, {7});
    }
    // B / BL at the edge of imm26; the target returns 42.
    {
      const uintptr_t t = up ? S + M128 - 4 : S - M128;
      uint32_t tf[] = {movz(0, 42), RET};
      put(t, tf, 2);
      uint32_t f[] = {b(S, t), RET};
      snprintf(nm, sizeof nm, "b %s", sd);
      reloc_case(nm, f, 2, 1, up, {0}, {42});
      const uintptr_t t2 = up ? S + 4 + M128 - 4 : S + 4 - M128;
      put(t2, tf, 2);
      uint32_t g[] = {STP_FP_LR, b(S + 4, t2, true), add_imm(0, 0, 1), LDP_FP_LR, RET};
      snprintf(nm, sizeof nm, "bl %s", sd);
      reloc_case(nm, g, 5, 2, up, {0}, {43});
    }
    // Conditional branches at the edges of imm19 / imm14; the target returns 2, the
    // fall-through 1.
    uint32_t two[] = {movz(0, 2), RET};
    {
      const uintptr_t t = up ? S + 4 + M1 - 4 : S + 4 - M1;
      put(t, two, 2);
      uint32_t f[] = {CMP_X0_0, bcond(S + 4, t, 0 /* eq */), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "b.eq %s", sd);
      reloc_case(nm, f, 4, 2, up, {0, 5}, {2, 1});
      uint32_t g[] = {CMP_X0_0, bcond(S + 4, t, 1 /* ne */), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "b.ne %s", sd);
      reloc_case(nm, g, 4, 2, up, {0, 5}, {1, 2});
    }
    {
      const uintptr_t t = up ? S + M1 - 4 : S - M1;
      put(t, two, 2);
      uint32_t f[] = {cbz(S, t, false, true, 0), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "cbz x %s", sd);
      reloc_case(nm, f, 3, 1, up, {0, 5}, {2, 1});
      uint32_t g[] = {cbz(S, t, true, false, 0), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "cbnz w %s", sd);
      reloc_case(nm, g, 3, 1, up, {long{1} << 32, 5}, {1, 2});
    }
    {
      const uintptr_t t = up ? S + K32 - 4 : S - K32;
      put(t, two, 2);
      uint32_t f[] = {tbz(S, t, false, 3, 0), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "tbz #3 %s", sd);
      reloc_case(nm, f, 3, 1, up, {8, 0}, {1, 2});
      uint32_t g[] = {tbz(S, t, true, 35, 0), movz(0, 1), RET};
      snprintf(nm, sizeof nm, "tbnz #35 %s", sd);
      reloc_case(nm, g, 3, 1, up, {long{1} << 35, 8}, {2, 1});
    }
  }
  // Refusals of relocate() itself.
  uint32_t out[64];
  unsigned nw;
  char why[160] = "";
  uint32_t self[] = {enc::cbz(S, S + 8, false, true, 0), enc::NOP, enc::NOP};
  CHECK(!relocate(self, 3, S, Dfar, S + 12, out, 64, nw, why, sizeof why) &&
            strstr(why, "branch from the prologue into itself at +8"), "cbz into the window: '%s'", why);
  // x16 written by a relocated instruction, then a far jump back (through x16): refused;
  // the same near (jump back with B) is fine.
  uint32_t ip[] = {0xAA0003F0 /* mov x16, x0 */};
  CHECK(!relocate(ip, 1, S, Dfar, S + 4, out, 64, nw, why, sizeof why) && strstr(why, "x16/x17"),
        "mov x16 then a far jump back: '%s'", why);
  CHECK(relocate(ip, 1, S, Dnear_plus, S + 4, out, 64, nw, why, sizeof why), "mov x16, near: '%s'", why);
  uint32_t bad[] = {0xDC000000 /* V=1 opc=11: unallocated */};
  CHECK(!relocate(bad, 1, S, Dfar, S + 4, out, 64, nw, why, sizeof why) && strstr(why, "unallocated"),
        "unallocated literal load: '%s'", why);
}

}  // namespace

void install_tests();  // test_patch_a64_install.cc

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  const struct rlimit no_core = {0, 0};  // a badly relocated child dies: no core files
  setrlimit(RLIMIT_CORE, &no_core);
  // A 260 MiB reservation with S in the middle: every edge target lies inside it.
  const std::size_t span = (std::size_t{260} << 20);
  uintptr_t R = reserve(0, span);
  uintptr_t F = R ? reserve(R + (uintptr_t{8} << 30), 1 << 20) : 0;
  if (!R || !F) {
    printf("cannot reserve the test's address ranges\n");
    return 1;
  }
  S = R + (span / 2) + 0x40;  // not page-aligned, so ADRP's page rounding matters
  Dnear_plus = S + 0x1000;  // within TBZ reach (+-32 KiB) of a target on its side
  Dnear_minus = S - 0x1000;
  Dfar = F + 0x1000;
  relocator_tests();
  printf("relocator: %d checks passed, %d failed\n", g_pass, g_fail);
  const int rp = g_pass, rf = g_fail;
  install_tests();
  printf("install/check: %d checks passed, %d failed\n", g_pass - rp, g_fail - rf);
  printf("%s\n", g_fail ? "FAILED" : "all passed");
  return g_fail ? 1 : 0;
}

// Shared with the install tests.
int &test_pass() { return g_pass; }
int &test_fail() { return g_fail; }
