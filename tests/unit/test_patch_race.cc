// Patching an entry while another thread keeps calling it.
//
// What the patcher promises (docs/patching.md): when the 5 bytes it writes lie inside one
// aligned qword, a thread that *enters* the function while the entry is rewritten executes
// either the old or the new instruction, never a mix. This test hammers exactly that: a
// thread calls f(1, 0) in a tight loop and checks every result while the main thread
// patches f, for many fresh copies of f, on both cores of the machine. A torn entry shows
// up as a wrong result, SIGILL or SIGSEGV.
//
// The first version of the patcher wrote the entry through /proc/self/mem and this test
// caught it: the kernel copies with `rep movsb` on CPUs with FSRM, and a thread executed
// the new E9 opcode followed by the old bytes. The entry is now swapped in as a whole page.
//
// f's first instruction is a 10-byte movabs, so the thread is never *inside* the patched
// bytes between two of its instructions (that case is unsafe by construction and is
// documented, not tested).
#include "patch/patch.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

using Fn = long (*)(long, long);
constexpr uint64_t kImm = 0x1122334455667788ULL;

void *g_real;
long g_hooked;
long hook(long a, long b) {
  __atomic_add_fetch(&g_hooked, 1, __ATOMIC_RELAXED);
  return reinterpret_cast<Fn>(__atomic_load_n(&g_real, __ATOMIC_ACQUIRE))(a, b);
}

struct Shared {
  Fn f;
  volatile bool stop;
  volatile bool started;
  long calls;
  long bad;
};

void *caller(void *arg) {
  Shared *s = static_cast<Shared *>(arg);
  s->started = true;
  long calls = 0, bad = 0;
  while (!s->stop) {
    if (s->f(1, 0) != static_cast<long>(kImm + 1)) ++bad;
    ++calls;
  }
  s->calls = calls;
  s->bad = bad;
  return nullptr;
}

// Starts thread t calling f in a loop (see caller) and, once it runs, lets it run a random
// while (1-201 us) so that the entry write lands at varying points of its loop.
void start_caller(Shared *s, Fn f, pthread_t *t) {
  s->f = f;
  s->stop = false;
  s->started = false;
  s->calls = s->bad = 0;
  pthread_create(t, nullptr, caller, s);
  while (!s->started) sched_yield();
  struct timespec d = {0, 1000 + rand() % 200000};
  nanosleep(&d, nullptr);
}

}  // namespace

// The control: the same race with the entry written the way the first version did, one
// pwrite() of the aligned qword to /proc/self/mem, in a child process. It shows the test
// can see a torn entry on this machine (prints after how many rounds the child died or
// got a wrong result). Informational: whether a tear shows up depends on the CPU.
void control_write(uint8_t *entry) {
  uint8_t word[8];
  memcpy(word, entry, 8);
  word[0] = 0xE9;  // jmp rel32 to the `add rax,rdi; ret` after the movabs: returns 1+rax?
  int32_t rel = 10 - 5;  // lands on `add rax,rdi`: wrong rax if taken, so it is visible
  memcpy(word + 1, &rel, 4);
  int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  if (pwrite(fd, word, 8, static_cast<off_t>(reinterpret_cast<uintptr_t>(entry))) != 8) _exit(3);
  close(fd);
}

int run_control(int rounds) {
  pid_t pid = fork();
  if (pid == 0) {
    const std::size_t page = 4096;
    uint8_t *region = static_cast<uint8_t *>(
        mmap(nullptr, page * rounds, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    const uint8_t code[] = {0x48, 0xB8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x48, 0x01, 0xF8, 0xC3};
    for (int i = 0; i < rounds; ++i) memcpy(region + i * page, code, sizeof code);
    mprotect(region, page * rounds, PROT_READ | PROT_EXEC);
    for (int i = 0; i < rounds; ++i) {
      Shared s;
      pthread_t t;
      start_caller(&s, reinterpret_cast<Fn>(region + i * page), &t);
      control_write(region + i * page);
      s.stop = true;
      pthread_join(t, nullptr);
      // after the write f(1,0) = garbage rax + 1, so "bad" counts post-write calls too;
      // a tear is a crash (SIGSEGV/SIGILL) -- the only outcome reported here
    }
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) {
    printf("control: a plain /proc/self/mem entry write tore under a calling thread (child killed by signal %d "
           "within %d rounds)\n", WTERMSIG(st), rounds);
    return 1;
  }
  printf("control: no tear seen in %d rounds of plain /proc/self/mem writes\n", rounds);
  return 0;
}

// --toggle METHOD N: a harsher measurement of an entry-write technique itself. In a child,
// f's first 8 bytes are flipped N times between `movabs rax,imm` and `jmp g` (g returns
// another known value) while a thread calls f; any other result, or a crash, is a torn
// entry. METHOD is procmem (one 8-byte pwrite to /proc/self/mem) or swap (copy the page,
// patch the copy, mremap it over the original: what the patcher does).
constexpr uint64_t kImm2 = 0x0102030405060708ULL;
struct Toggle {
  uint8_t *page;
  volatile bool stop;
  long calls, bad;
};
void *toggle_caller(void *arg) {
  Toggle *t = static_cast<Toggle *>(arg);
  Fn f = reinterpret_cast<Fn>(t->page);
  long calls = 0, bad = 0;
  while (!t->stop) {
    long v = f(1, 0);
    if (v != static_cast<long>(kImm + 1) && v != static_cast<long>(kImm2 + 1)) ++bad;
    ++calls;
  }
  t->calls = calls;
  t->bad = bad;
  return nullptr;
}
bool write_swap(uint8_t *page, const uint8_t *word) {
  void *nw = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memcpy(nw, page, 4096);
  memcpy(nw, word, 8);
  mprotect(nw, 4096, PROT_READ | PROT_EXEC);
  return mremap(nw, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED, page) == page;
}
int run_toggle(const char *method, long n) {
  pid_t pid = fork();
  if (pid == 0) {
    uint8_t *page = static_cast<uint8_t *>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    memset(page, 0xCC, 4096);
    const uint8_t f[] = {0x48, 0xB8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x48, 0x01, 0xF8, 0xC3};
    const uint8_t g[] = {0x48, 0xB8, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x48, 0x01, 0xF8, 0xC3};
    memcpy(page, f, sizeof f);
    memcpy(page + 64, g, sizeof g);
    mprotect(page, 4096, PROT_READ | PROT_EXEC);
    uint8_t w_old[8], w_new[8];
    memcpy(w_old, f, 8);
    memcpy(w_new, f, 8);
    w_new[0] = 0xE9;
    int32_t rel = 64 - 5;
    memcpy(w_new + 1, &rel, 4);
    Toggle t{page, false, 0, 0};
    pthread_t th;
    pthread_create(&th, nullptr, toggle_caller, &t);
    int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    bool swap = strcmp(method, "swap") == 0;
    for (long i = 0; i < n; ++i) {
      const uint8_t *w = (i & 1) ? w_old : w_new;
      bool ok = swap ? write_swap(page, w)
                     : pwrite(fd, w, 8, static_cast<off_t>(reinterpret_cast<uintptr_t>(page))) == 8;
      if (!ok) _exit(3);
    }
    t.stop = true;
    pthread_join(th, nullptr);
    printf("toggle %s: %ld entry rewrites under a calling thread, %ld calls, %ld wrong results\n", method, n,
           t.calls, t.bad);
    fflush(stdout);
    _exit(t.bad ? 1 : 0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st))
    printf("toggle %s: the calling thread crashed (signal %d): torn entry\n", method, WTERMSIG(st));
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc > 2 && strcmp(argv[1], "--control") == 0) {
    run_control(atoi(argv[2]));
    return 0;
  }
  if (argc > 3 && strcmp(argv[1], "--toggle") == 0) return run_toggle(argv[2], atol(argv[3]));
  int rounds = argc > 1 ? atoi(argv[1]) : 300;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  // Two pages per copy, all in one region so the copies share trampoline arenas. The
  // entry sits at offset 0 (the jmp fits one aligned qword), 6 (it straddles two qwords)
  // or 4093 (it straddles two pages), in turn.
  const std::size_t page = 8192;
  const std::size_t offs[3] = {0, 6, 4093};
  uint8_t *region = static_cast<uint8_t *>(
      mmap(nullptr, page * rounds, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (region == MAP_FAILED) return 2;
  memset(region, 0xCC, page * rounds);
  for (int i = 0; i < rounds; ++i) {
    uint8_t *c = region + i * page + offs[i % 3];
    const uint8_t code[] = {0x48, 0xB8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
                            0x48, 0x01, 0xF8, 0xC3};  // movabs rax,kImm; add rax,rdi; ret
    memcpy(c, code, sizeof code);
  }
  mprotect(region, page * rounds, PROT_READ | PROT_EXEC);

  long total_calls = 0, total_bad = 0, refused = 0, unobserved = 0;
  struct timespec ts0;
  clock_gettime(CLOCK_MONOTONIC, &ts0);
  srand(static_cast<unsigned>(ts0.tv_nsec));
  for (int i = 0; i < rounds; ++i) {
    Shared s;
    pthread_t t;
    start_caller(&s, reinterpret_cast<Fn>(region + i * page + offs[i % 3]), &t);
    long h0 = __atomic_load_n(&g_hooked, __ATOMIC_RELAXED);
    // Every other round inside a batch, as the guard patches: with the caller thread
    // present the batch must still swap the page, and its core serialization comes at
    // batch_end().
    if (i % 2) pfg::patch::batch_begin();
    pfg::patch::Result r = pfg::patch::install(reinterpret_cast<void *>(s.f), 14, reinterpret_cast<void *>(&hook),
                                               &g_real);
    if (i % 2) pfg::patch::batch_end();
    if (!r.ok) {
      printf("round %d: refused: %s\n", i, r.why);
      ++refused;
    }
    // wait until the caller has gone through the hook at least a few times
    // (bounded by time, not by a spin count, so a loaded CI machine only makes it slower)
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    for (;;) {
      long seen = __atomic_load_n(&g_hooked, __ATOMIC_RELAXED) - h0;
      clock_gettime(CLOCK_MONOTONIC, &w1);
      double waited = (w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
      if (seen >= 1000 || (seen >= 1 && waited > 0.5) || waited > 20) break;
      sched_yield();
    }
    if (__atomic_load_n(&g_hooked, __ATOMIC_RELAXED) == h0) ++unobserved;
    s.stop = true;
    pthread_join(t, nullptr);
    total_calls += s.calls;
    total_bad += s.bad;
  }
  printf("race: %d entries patched under a calling thread, %ld calls (%ld through the hook), %ld wrong results, "
         "%ld refused\n",
         rounds, total_calls, g_hooked, total_bad, refused);
  // every round must have seen the caller go through the hook at least once
  bool ok = total_bad == 0 && refused == 0 && unobserved == 0;
  if (unobserved) printf("%ld rounds never saw a call through the hook\n", unobserved);
  printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
  return ok ? 0 : 1;
}
