#include "parkrecord.h"

namespace pfg {

ParkRecord g_parked[kMaxParkRecords];
std::atomic<unsigned> g_parked_count{0};
std::atomic<unsigned> g_reportable_count{0};
std::atomic<int> g_reports_in_flight{0};

bool is_parked_thread(pthread_t t) {
  for (unsigned i = 0, n = described_count(); i < n; ++i)
    if (g_parked[i].tid.load(std::memory_order_acquire) != 0 && !g_parked[i].ended.load() &&
        pthread_equal(g_parked[i].thread, t))
      return true;
  return false;
}

bool is_parked_tid(int tid) {
  for (unsigned i = 0, n = described_count(); i < n; ++i)
    if (g_parked[i].tid.load(std::memory_order_acquire) == tid && !g_parked[i].ended.load()) return true;
  return false;
}

void registry_atfork_child() {
  // Only the forking thread exists in the child. Its parent's late threads are gone.
  for (unsigned i = 0; i < kMaxParkRecords; ++i) g_parked[i].tid.store(0);
  g_parked_count.store(0);
  g_reportable_count.store(0);
}

}  // namespace pfg
