// A C++ program that never loads Python and uses what the guard intercepts in every
// process: condition variables with a deadline (pthread_cond_timedwait), plain waits,
// joins, pthread_mutex/cond destruction, dlopen/dlclose (tests/nopython/README.md).
// Deterministic output: run without and with the guard, it must print the same.
#include <dlfcn.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// Two threads hand a token back and forth, each wait bounded by a system_clock deadline
// (libstdc++ implements wait_until(system_clock) with pthread_cond_timedwait).
long ping_pong(int rounds) {
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  long sum = 0;
  auto player = [&](int me) {
    for (int i = 0; i < rounds; ++i) {
      std::unique_lock<std::mutex> lk(mu);
      while (turn != me)
        cv.wait_until(lk, std::chrono::system_clock::now() + std::chrono::seconds(5));
      sum += i * (me + 1);
      turn = 1 - me;
      cv.notify_all();
    }
  };
  std::thread a(player, 0), b(player, 1);
  a.join();
  b.join();
  return sum;
}

// Workers that finish at different times, joined in order; a plain condition wait.
long joins(int n) {
  std::vector<std::thread> ts;
  std::vector<long> out(n);
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  for (int i = 0; i < n; ++i)
    ts.emplace_back([&, i] {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return go; });
      lk.unlock();
      long v = 0;
      for (int k = 0; k <= i * 1000; ++k) v += k % 7;
      out[i] = v;
    });
  {
    std::lock_guard<std::mutex> lk(mu);
    go = true;
  }
  cv.notify_all();
  long sum = 0;
  for (int i = 0; i < n; ++i) {
    ts[i].join();
    sum += out[i];
  }
  return sum;
}

int load_and_use() {
  int ok = 0;
  for (int i = 0; i < 50; ++i) {
    void *h = dlopen("libm.so.6", RTLD_NOW | RTLD_LOCAL);
    if (!h) return -1;
    auto f = reinterpret_cast<double (*)(double)>(dlsym(h, "sqrt"));
    ok += f && f(49.0) == 7.0;
    dlclose(h);
  }
  // A name no search finds: dlerror's text must be the same.
  void *none = dlopen("libpfg-nopython-missing.so", RTLD_NOW);
  std::printf("missing: %s\n", none ? "loaded?" : dlerror());
  return ok;
}

}  // namespace

int main() {
  std::printf("ping-pong %ld\n", ping_pong(2000));
  std::printf("joins %ld\n", joins(16));
  std::printf("dlopen %d\n", load_and_use());
  // A timed wait that times out.
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lk(mu);
  bool timed_out = cv.wait_until(lk, std::chrono::system_clock::now() + std::chrono::milliseconds(20)) ==
                   std::cv_status::timeout;
  std::printf("timeout %d\n", timed_out);
  return 3;  // a status of its own, compared too
}
