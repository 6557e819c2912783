// Synthetic hard cases for the x86-64 entry patcher (shim/patch/x86_64.cc).
//
// Each case is machine code assembled as bytes (the listing next to it is what `as`
// produced for them) in an mmap'ed buffer that is then made read+exec only, like real
// text. For every accepted case: call it unpatched, patch it with a hook that counts and
// calls the trampoline, call it through the entry again and compare. Refusals are checked
// for their reason. The whole set runs three times: in a buffer near the test binary, in
// one more than 4 GiB away from it (the hook is then only reachable through the stub's
// absolute jump), and at 0x400000 where a non-PIE executable (Debian's python3.11) sits.
#include "patch/patch.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <initializer_list>

#include "expect.h"

namespace {

using Fn = long (*)(long, long);

// ---- hooks: count, then call the original through the trampoline ----
constexpr int kHooks = 64;
void *g_real[kHooks];
long g_count[kHooks];

template <int I>
long hook(long a, long b) {
  ++g_count[I];
  return reinterpret_cast<Fn>(g_real[I])(a, b);
}
#define H(i) reinterpret_cast<void *>(&hook<i>)
void *const g_hooks[kHooks] = {
    H(0),  H(1),  H(2),  H(3),  H(4),  H(5),  H(6),  H(7),  H(8),  H(9),  H(10), H(11), H(12),
    H(13), H(14), H(15), H(16), H(17), H(18), H(19), H(20), H(21), H(22), H(23), H(24), H(25),
    H(26), H(27), H(28), H(29), H(30), H(31), H(32), H(33), H(34), H(35), H(36), H(37), H(38),
    H(39), H(40), H(41), H(42), H(43), H(44), H(45), H(46), H(47), H(48), H(49), H(50), H(51),
    H(52), H(53), H(54), H(55), H(56), H(57), H(58), H(59), H(60), H(61), H(62), H(63)};
#undef H
int g_next_hook;

}  // namespace

// A hook that preserves the flags (lea, mov and jmp do not write them): for the case
// whose first instruction is a jcc that consumes the caller's flags.
extern "C" long g_flag_count;
extern "C" void *g_flag_real;
long g_flag_count;
void *g_flag_real;
extern "C" long flaghook(long, long);
asm(R"(
  .text
  .p2align 4
  .globl flaghook
  .type flaghook, @function
flaghook:
  movq g_flag_count(%rip), %r11
  leaq 1(%r11), %r11
  movq %r11, g_flag_count(%rip)
  jmpq *g_flag_real(%rip)
  .size flaghook, .-flaghook
)");

namespace {

// ---- code buffers ----
struct Code {
  uint8_t *base = nullptr;
  std::size_t len = 0;
  std::size_t pos = 0;
  const char *where = "";

  uintptr_t addr(std::size_t off) const { return reinterpret_cast<uintptr_t>(base) + off; }
  void at(std::size_t off) { pos = off; }
  void b(std::initializer_list<int> bytes) {
    for (int x : bytes) base[pos++] = static_cast<uint8_t>(x);
  }
  void i32(int64_t v) {
    int32_t x = static_cast<int32_t>(v);
    memcpy(base + pos, &x, 4);
    pos += 4;
  }
  void u64(uint64_t v) {
    memcpy(base + pos, &v, 8);
    pos += 8;
  }
  // rel32/disp32 to `dest`, for an instruction ending `tail` bytes after the field.
  void rel(uintptr_t dest, int tail = 0) { i32(static_cast<int64_t>(dest) - static_cast<int64_t>(addr(pos) + 4 + tail)); }
};

bool map_code(Code &c, uintptr_t hint, bool fixed, const char *where) {
  c.len = 64 * 1024;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED_NOREPLACE : 0);
  void *p = mmap(reinterpret_cast<void *>(hint), c.len, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return false;
  if (fixed && reinterpret_cast<uintptr_t>(p) != hint) {
    munmap(p, c.len);
    return false;
  }
  c.base = static_cast<uint8_t *>(p);
  memset(c.base, 0xCC, c.len);
  c.where = where;
  return true;
}

void seal(Code &c) { mprotect(c.base, c.len, PROT_READ | PROT_EXEC); }

// perms of the mapping holding p, from /proc/self/maps ("r-xp" ...), or "" if unmapped
void perms_of(const void *p, char out[5]) {
  out[0] = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return;
  char line[512];
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char pr[5];
    if (sscanf(line, "%lx-%lx %4s", &s, &e, pr) == 3 && a >= s && a < e) {
      memcpy(out, pr, 5);
      break;
    }
  }
  fclose(f);
}

int64_t dist(uintptr_t a, uintptr_t b) { return a > b ? static_cast<int64_t>(a - b) : static_cast<int64_t>(b - a); }

struct Case {
  const char *name;
  std::size_t off;      // entry offset in the buffer
  std::size_t size;     // st_size to pass (0 = unknown)
  uintptr_t call_via;   // call this address (a driver) instead of the entry; 0 = entry
  bool flag_hook;       // use the flags-preserving asm hook
  long args[3][2];      // argument pairs to compare
  long expect[3];       // expected results (known semantics)
};

// Install `c` from `code` and compare before/after.
void run_accepted(Code &code, const Case &c) {
  void *entry = code.base + c.off;
  Fn f = reinterpret_cast<Fn>(c.call_via ? c.call_via : reinterpret_cast<uintptr_t>(entry));
  long before[3];
  for (int i = 0; i < 3; ++i) {
    before[i] = f(c.args[i][0], c.args[i][1]);
    EXPECT(before[i] == c.expect[i], "[%s] %s unpatched f(%ld,%ld)=%ld want %ld", code.where, c.name,
           c.args[i][0], c.args[i][1], before[i], c.expect[i]);
  }
  pfg::patch::Result chk = pfg::patch::check(entry, c.size);
  EXPECT(chk.ok, "[%s] %s check refused: %s", code.where, c.name, chk.why);
  if (!chk.ok) return;
  int h = c.flag_hook ? -1 : g_next_hook++;
  void *hookfn = c.flag_hook ? reinterpret_cast<void *>(&flaghook) : g_hooks[h];
  void **real = c.flag_hook ? &g_flag_real : &g_real[h];
  long *count = c.flag_hook ? &g_flag_count : &g_count[h];
  long count0 = *count;
  uint8_t orig4[4];
  memcpy(orig4, entry, 4);
  pfg::patch::Result r = pfg::patch::install(entry, c.size, hookfn, real);
  EXPECT(r.ok, "[%s] %s install refused: %s", code.where, c.name, r.why);
  if (!r.ok) return;
  EXPECT(*real == r.trampoline, "[%s] %s real_out not published", code.where, c.name);
  for (int i = 0; i < 3; ++i) {
    long after = f(c.args[i][0], c.args[i][1]);
    EXPECT(after == before[i], "[%s] %s patched f(%ld,%ld)=%ld, unpatched %ld", code.where, c.name,
           c.args[i][0], c.args[i][1], after, before[i]);
  }
  EXPECT(*count - count0 == 3, "[%s] %s hook ran %ld times, want 3", code.where, c.name, *count - count0);
  // W^X: the entry keeps its protection (written through /proc/self/mem), the
  // trampoline is r-x, never writable.
  char pe[5], pt[5];
  perms_of(entry, pe);
  perms_of(r.trampoline, pt);
  EXPECT(strcmp(pe, "r-xp") == 0, "[%s] %s entry mapping is %s", code.where, c.name, pe);
  EXPECT(strcmp(pt, "r-xp") == 0, "[%s] %s trampoline mapping is %s", code.where, c.name, pt);
  const uint8_t *e = static_cast<const uint8_t *>(entry);
  bool endbr = orig4[0] == 0xF3 && orig4[1] == 0x0F && orig4[2] == 0x1E && orig4[3] == 0xFA;
  if (endbr) {
    EXPECT(memcmp(e, orig4, 4) == 0 && e[4] == 0xE9, "[%s] %s endbr64 not kept at the entry", code.where, c.name);
    EXPECT(memcmp(r.trampoline, orig4, 4) == 0, "[%s] %s trampoline does not start with endbr64", code.where,
           c.name);
  } else {
    EXPECT(e[0] == 0xE9, "[%s] %s entry is not a jmp rel32", code.where, c.name);
  }
  // the stub is within rel32 of the entry by construction; the trampoline should be too
  EXPECT(dist(reinterpret_cast<uintptr_t>(r.trampoline), reinterpret_cast<uintptr_t>(entry)) < (int64_t{1} << 31),
         "[%s] %s trampoline %p too far from %p", code.where, c.name, r.trampoline, entry);
  // a second patch of the same entry is refused, by check() and install() alike
  pfg::patch::Result again = pfg::patch::check(entry, c.size);
  EXPECT(!again.ok && strstr(again.why, "already patched"), "[%s] %s second check: %s", code.where, c.name,
         again.why);
  void *dummy = nullptr;
  pfg::patch::Result again2 = pfg::patch::install(entry, c.size, hookfn, &dummy);
  EXPECT(!again2.ok && strstr(again2.why, "already patched") && !dummy, "[%s] %s second install: %s", code.where,
         c.name, again2.why);
  printf("  ok   %-44s patched, trampoline %p (%+.1f MiB)\n", c.name, r.trampoline,
         (static_cast<double>(reinterpret_cast<uintptr_t>(r.trampoline)) -
          static_cast<double>(reinterpret_cast<uintptr_t>(entry))) / 1048576.0);
}

void run_refused(Code &code, const char *name, std::size_t off, std::size_t size, const char *reason) {
  void *entry = code.base + off;
  uint8_t before[16];
  memcpy(before, entry, 16);
  pfg::patch::Result chk = pfg::patch::check(entry, size);
  void *real = nullptr;
  pfg::patch::Result r = pfg::patch::install(entry, size, g_hooks[0], &real);
  EXPECT(!chk.ok && !r.ok, "[%s] %s should be refused (check %d install %d)", code.where, name, chk.ok, r.ok);
  EXPECT(strstr(r.why, reason) != nullptr, "[%s] %s reason '%s' lacks '%s'", code.where, name, r.why, reason);
  EXPECT(strcmp(chk.why, r.why) == 0, "[%s] %s check/install disagree: '%s' vs '%s'", code.where, name, chk.why,
         r.why);
  EXPECT(memcmp(before, entry, 16) == 0 && real == nullptr, "[%s] %s refused but something was written", code.where,
         name);
  printf("  ok   %-44s refused: %s\n", name, r.why);
}

// Assemble every case into `code` and run them.
void run_all(Code &code) {
  printf("%s: buffer at %p\n", code.where, static_cast<void *>(code.base));
  const std::size_t D = 0x8000;  // data
  const std::size_t HLP = 0x4000;
  code.at(D);
  code.u64(0x1122334455667788ULL);  // D+0
  code.u64(7);                      // D+8
  code.u64(8);                      // D+16

  // helpers
  code.at(HLP);  // lea rax,[rdi+rsi*2]; ret
  code.b({0x48, 0x8D, 0x04, 0x77, 0xC3});
  code.at(HLP + 0x40);  // mov rax,rsi; ret
  code.b({0x48, 0x89, 0xF0, 0xC3});

  // A: jl rel8 at +0, consuming the caller's flags; driver: cmp rdi,rsi; jmp A
  code.at(0x000);
  code.b({0x7C, 0x04, 0x48, 0x89, 0xF8, 0xC3, 0x48, 0x89, 0xF0, 0xC3});
  code.at(0x3000);
  code.b({0x48, 0x39, 0xF7, 0xE9});
  code.rel(code.addr(0x000));
  // B: jmp rel8 at +0 over padding: jmp +3; int3 x3; lea rax,[rdi+rsi]; ret
  code.at(0x040);
  code.b({0xEB, 0x03, 0xCC, 0xCC, 0xCC, 0x48, 0x8D, 0x04, 0x37, 0xC3});
  // C: test rdi,rdi; je +5; lea rax,[rdi+rsi]; ret; mov eax,42; ret
  code.at(0x080);
  code.b({0x48, 0x85, 0xFF, 0x74, 0x05, 0x48, 0x8D, 0x04, 0x37, 0xC3, 0xB8, 0x2A, 0, 0, 0, 0xC3});
  // D: jmp rel32 at +0 (a tail call) to lea rax,[rdi+rsi*2]
  code.at(0x0C0);
  code.b({0xE9});
  code.rel(code.addr(HLP));
  // E: call rel32 at +0; add rax,rdi; ret   (helper returns rsi)
  code.at(0x100);
  code.b({0xE8});
  code.rel(code.addr(HLP + 0x40));
  code.b({0x48, 0x01, 0xF8, 0xC3});
  // F: mov rax,[rip+D]; add rax,rdi; ret
  code.at(0x140);
  code.b({0x48, 0x8B, 0x05});
  code.rel(code.addr(D));
  code.b({0x48, 0x01, 0xF8, 0xC3});
  // G: cmp qword [rip+D+8],7 (disp32 followed by imm8); je +4; mov rax,rsi; ret; mov rax,rdi; ret
  code.at(0x180);
  code.b({0x48, 0x83, 0x3D});
  code.rel(code.addr(D + 8), 1);
  code.b({0x07, 0x74, 0x04, 0x48, 0x89, 0xF0, 0xC3, 0x48, 0x89, 0xF8, 0xC3});
  // H: lea rax,[rip+D]; mov rax,[rax]; ret
  code.at(0x1C0);
  code.b({0x48, 0x8D, 0x05});
  code.rel(code.addr(D));
  code.b({0x48, 0x8B, 0x00, 0xC3});
  // I: endbr64; push rbx; mov rbx,rdi; lea rax,[rbx+rsi]; pop rbx; ret
  code.at(0x200);
  code.b({0xF3, 0x0F, 0x1E, 0xFA, 0x53, 0x48, 0x89, 0xFB, 0x48, 0x8D, 0x04, 0x33, 0x5B, 0xC3});
  // J: movabs rax,imm64; add rax,rdi; ret
  code.at(0x240);
  code.b({0x48, 0xB8});
  code.u64(0x1122334455667788ULL);
  code.b({0x48, 0x01, 0xF8, 0xC3});
  // K: jcc rel8 whose target is past the patch: test rdi,rdi; jne +0x20 -> mov eax,5;ret
  //    (rel8 at +3 converted to a near jcc in the trampoline)
  code.at(0x280);
  code.b({0x48, 0x85, 0xFF, 0x75, 0x20, 0x31, 0xC0, 0xC3});
  code.at(0x280 + 5 + 0x20);
  code.b({0xB8, 0x05, 0, 0, 0, 0xC3});

  // refused
  code.at(0x400);  // xor eax,eax; ret
  code.b({0x31, 0xC0, 0xC3});
  code.at(0x440);  // mov rax,rdi; L: dec rax; jnz L; ret   (branch to +3)
  code.b({0x48, 0x89, 0xF8, 0x48, 0xFF, 0xC8, 0x75, 0xFB, 0xC3});
  code.at(0x480);  // loop +3; nop x3; ret
  code.b({0xE2, 0x03, 0x90, 0x90, 0x90, 0xC3});
  code.at(0x4C0);  // jrcxz +3; nop x3; ret
  code.b({0xE3, 0x03, 0x90, 0x90, 0x90, 0xC3});
  code.at(0x500);  // int3; ret
  code.b({0xCC, 0xC3, 0x90, 0x90, 0x90, 0x90});
  code.at(0x540);  // mov rax,[rip+0x7fffff00]; mov rcx,[rip-0x7fffff00]: no place reaches both
  code.b({0x48, 0x8B, 0x05});
  code.i32(0x7fffff00);
  code.b({0x48, 0x8B, 0x0D});
  code.i32(-0x7fffff00);
  code.b({0xC3});
  code.at(0x580);  // xbegin rel32 (relative, not a branch the relocator handles)
  code.b({0xC7, 0xF8, 0, 0, 0, 0, 0x90, 0xC3});
  seal(code);

  const uintptr_t drvA = code.addr(0x3000);
  Case acc[] = {
      {"A: jl rel8 at +0 (flags from caller)", 0x000, 10, drvA, true, {{1, 2}, {5, 3}, {-7, -9}}, {2, 5, -7}},
      {"B: jmp rel8 at +0 over padding", 0x040, 10, 0, false, {{1, 2}, {5, 3}, {-7, 9}}, {3, 8, 2}},
      {"C: jcc rel8 at +3, both paths", 0x080, 16, 0, false, {{0, 2}, {5, 3}, {0, 9}}, {42, 8, 42}},
      {"C0: same, symbol size unknown", 0x080, 0, 0, false, {{0, 2}, {5, 3}, {0, 9}}, {42, 8, 42}},
      {"D: jmp rel32 at +0 (tail call)", 0x0C0, 5, 0, false, {{1, 2}, {5, 3}, {0, 9}}, {5, 11, 18}},
      {"E: call rel32 at +0", 0x100, 9, 0, false, {{1, 2}, {5, 3}, {0, 9}}, {3, 8, 9}},
      {"F: mov rax,[rip+X] in prologue", 0x140, 11, 0, false,
       {{1, 2}, {5, 3}, {0, 9}}, {0x1122334455667789, 0x112233445566778D, 0x1122334455667788}},
      {"G: cmp [rip+X],imm8 (disp before imm)", 0x180, 18, 0, false, {{1, 2}, {5, 3}, {0, 9}}, {1, 5, 0}},
      {"H: lea rax,[rip+X]", 0x1C0, 11, 0, false,
       {{1, 2}, {5, 3}, {0, 9}}, {0x1122334455667788, 0x1122334455667788, 0x1122334455667788}},
      {"I: endbr64 first", 0x200, 14, 0, false, {{1, 2}, {5, 3}, {0, 9}}, {3, 8, 9}},
      {"J: movabs (10-byte first instruction)", 0x240, 17, 0, false,
       {{1, 2}, {5, 3}, {0, 9}}, {0x1122334455667789, 0x112233445566778D, 0x1122334455667788}},
      {"K: jne rel8 at +3 to beyond the patch", 0x280, 0x20 + 11, 0, false, {{1, 2}, {0, 3}, {7, 9}}, {5, 0, 5}},
  };
  // C0 reuses C's entry, so it must come out as "already patched": run it separately.
  for (const Case &c : acc) {
    if (c.name[1] == '0') continue;
    run_accepted(code, c);
  }
  run_refused(code, "C0: same entry again", 0x080, 0, "already patched");

  run_refused(code, "R1: xor;ret, size 3", 0x400, 3, "too short");
  run_refused(code, "R1b: xor;ret, size unknown", 0x400, 0, "too short");
  run_refused(code, "R1c: xor;ret, size 4", 0x400, 4, "too short");
  run_refused(code, "R2: loop back into patched range", 0x440, 9, "branch into patched range at +3");
  run_refused(code, "R3: loop rel8 at +0", 0x480, 6, "'loop'");
  run_refused(code, "R4: jrcxz rel8 at +0", 0x4C0, 6, "'jrcxz'");
  run_refused(code, "R5: int3 at entry", 0x500, 6, "int3");
  // R6: only the first instruction (7 bytes) is relocated, so whether its operand, 2 GiB
  // away, is in reach depends on which side of the code the trampoline arena lands
  // (ASLR): refused, or patched with the trampoline on the operand's side. Both are right.
  {
    void *entry = code.base + 0x540;
    pfg::patch::Result chk = pfg::patch::check(entry, 15);
    if (chk.ok) {
      void *real = nullptr;
      pfg::patch::Result r = pfg::patch::install(entry, 15, g_hooks[0], &real);
      uintptr_t target = reinterpret_cast<uintptr_t>(entry) + 7 + 0x7fffff00;
      EXPECT(r.ok && real == r.trampoline, "R6: check said yes, install said '%s'", r.why);
      EXPECT(r.ok && dist(reinterpret_cast<uintptr_t>(r.trampoline), target) < (int64_t{1} << 31),
             "R6: patched but the trampoline %p cannot reach the operand", r.trampoline);
      printf("  ok   %-44s patched (arena on the operand's side)\n", "R6: RIP-relative operand 2 GiB away");
    } else {
      run_refused(code, "R6: RIP-relative operand 2 GiB away", 0x540, 15, "out of rel32 reach");
    }
  }
  run_refused(code, "R7: xbegin rel32", 0x580, 8, "xbegin");
  // Without a symbol size the scan cannot see the backward branch: documented limit.
  pfg::patch::Result lim = pfg::patch::check(code.base + 0x440, 0);
  EXPECT(lim.ok, "[%s] R2 with unknown size: %s", code.where, lim.why);
}

// A fresh copy of case B (jmp rel8 at +0) whose size is unknown: refused, because the
// bytes after the jmp might be another function's.
void run_b_unknown(Code &code) {
  code.at(0x5C0);
  mprotect(code.base, code.len, PROT_READ | PROT_WRITE);
  code.b({0xEB, 0x03, 0xCC, 0xCC, 0xCC, 0x48, 0x8D, 0x04, 0x37, 0xC3});
  seal(code);
  run_refused(code, "B1: jmp rel8 at +0, size unknown", 0x5C0, 0, "too short");
}

void run_bad_addresses() {
  static long data_word = 42;
  pfg::patch::Result r1 = pfg::patch::check(&data_word, 8);
  EXPECT(!r1.ok && strstr(r1.why, "not in an executable mapping"), "data: %s", r1.why);
  void *p = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(p, 4096);
  pfg::patch::Result r2 = pfg::patch::check(p, 16);
  EXPECT(!r2.ok && strstr(r2.why, "not mapped"), "unmapped: %s", r2.why);
  void *real = nullptr;
  pfg::patch::Result r3 = pfg::patch::install(p, 16, g_hooks[0], &real);
  EXPECT(!r3.ok && real == nullptr, "unmapped install: %s", r3.why);
  pfg::patch::Result r4 = pfg::patch::check(nullptr, 0);
  EXPECT(!r4.ok, "null: %s", r4.why);
  // a function whose symbol size runs past its mapping
  void *q = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  munmap(static_cast<char *>(q) + 4096, 4096);
  memset(q, 0x90, 4096);
  mprotect(q, 4096, PROT_READ | PROT_EXEC);
  pfg::patch::Result r5 = pfg::patch::check(static_cast<char *>(q) + 4096 - 16, 64);
  EXPECT(!r5.ok && strstr(r5.why, "past its executable mapping"), "past end: %s", r5.why);
  printf("  ok   bad addresses refused: '%s' / '%s' / '%s'\n", r1.why, r2.why, r5.why);
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  printf("patcher: %s, supported=%d\n", pfg::patch::describe(), pfg::patch::supported());
  EXPECT(pfg::patch::supported(), "x86-64 build must support patching");
  EXPECT(strstr(pfg::patch::describe(), "Zydis 4.") != nullptr, "describe: %s", pfg::patch::describe());

  uintptr_t self = reinterpret_cast<uintptr_t>(&main);
  // near: 64 MiB above this binary's text (a hint; falls back to anywhere)
  Code near_;
  bool got_near = false;
  for (int k = 1; k <= 16 && !got_near; ++k)
    got_near = map_code(near_, (self & ~uintptr_t{0xFFFF}) + uintptr_t{64} * k * (1u << 20), true, "near") ||
               map_code(near_, (self & ~uintptr_t{0xFFFF}) - uintptr_t{64} * k * (1u << 20), true, "near");
  EXPECT(got_near, "could not map a buffer within 1 GiB of the test binary");
  if (got_near) {
    EXPECT(dist(near_.addr(0), self) < (int64_t{1} << 31), "near buffer is %p, binary %p", near_.base,
           reinterpret_cast<void *>(self));
    run_all(near_);
    run_b_unknown(near_);
  }
  // far: more than 4 GiB from this binary and from the libraries
  Code far_;
  bool got_far = false;
  for (uintptr_t h = uintptr_t{0x200000000}; h < uintptr_t{0x4000000000} && !got_far; h += uintptr_t{0x100000000})
    got_far = map_code(far_, h, true, "far") && dist(far_.addr(0), self) > (int64_t{4} << 30);
  EXPECT(got_far, "could not map a far buffer");
  if (got_far) run_all(far_);
  // 0x400000: where a non-PIE executable's text starts; near memory must come from the
  // gaps around it (mostly above), as for Debian's /usr/bin/python3.11.
  Code low;
  if (map_code(low, 0x400000, true, "0x400000")) {
    run_all(low);
  } else {
    printf("0x400000 is taken in this process: skipped that placement\n");
  }
  run_bad_addresses();

  return EXPECT_SUMMARY();
}
