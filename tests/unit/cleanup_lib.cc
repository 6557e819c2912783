// A C++ library a C host dlopen()s (RTLD_LOCAL), as ctypes, cffi and extension modules
// are loaded: a thread holds a std::lock_guard and is ended by pthread_exit (argv "exit")
// or pthread_cancel ("cancel"). glibc's forced unwind must run the thread's C++ cleanups.
#include <pthread.h>
#include <unistd.h>

#include <cstdio>
#include <mutex>

namespace {
std::mutex mu;
struct Noisy {
  ~Noisy() { std::puts("cleanup ran"); }
};
void *worker(void *how) {
  std::lock_guard<std::mutex> g(mu);
  Noisy n;
  if (*static_cast<const char *>(how) == 'e') pthread_exit(nullptr);
  for (;;) pause();  // a cancellation point
}
}  // namespace

extern "C" int cleanup_run(const char *how) {
  pthread_t t;
  if (pthread_create(&t, nullptr, worker, const_cast<char *>(how)) != 0) return -1;
  if (*how == 'c') {
    usleep(50000);
    pthread_cancel(t);
  }
  pthread_join(t, nullptr);
  if (!mu.try_lock()) return 0;  // the unwind skipped the lock_guard: its lock is held
  mu.unlock();
  return 1;
}
