#include "sink.h"

#include <atomic>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"

namespace pfg {

int log_fd() {
  if (g_config.secure) return -1;
  if (!g_config.log_file) return 2;
  // Opened once, by whichever thread reports first; open(2) is async-signal-safe. A
  // second thread racing here opens its own descriptor and closes it if it lost.
  static std::atomic<int> fd{-1};
  int cur = fd.load();
  if (cur >= 0) return cur;
  int nfd = open(g_config.log_path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (nfd < 0) return 2;  // the report goes to stderr instead (and says why below)
  if (!fd.compare_exchange_strong(cur, nfd)) {
    close(nfd);
    return cur;
  }
  return nfd;
}

// PYFINGUARD_LOG=syslog. Done by hand with socket(2), connect(2) and send(2), which are
// async-signal-safe, rather than with syslog(3): glibc's syslog() takes a process-wide
// lock (syslog_lock) and formats with localtime/stdio, which may allocate -- from a
// thread about to park, a lock another thread holds (or held when the process forked or
// was interrupted) would hang the report, and malloc is off limits here. Created on
// first use, like the log file; a race opens two and closes the loser.
int syslog_fd() {
  if (g_config.secure || !g_config.syslog) return -1;
  static std::atomic<int> fd{-1};
  int cur = fd.load();
  if (cur >= 0) return cur;
  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, g_config.syslog_path, strnlen(g_config.syslog_path, sizeof a.sun_path - 1));
  if (connect(s, reinterpret_cast<struct sockaddr *>(&a), sizeof a) != 0) {
    close(s);
    return -1;  // no daemon listening: the report goes to stderr (and says so)
  }
  if (!fd.compare_exchange_strong(cur, s)) {
    close(s);
    return cur;
  }
  return s;
}

// "<PRI>pyfinguard[PID]: ", RFC 3164 as the local socket takes it (what glibc's syslog()
// sends, less the timestamp and hostname: rsyslog's imuxsock and journald stamp a local
// message on receipt, and the local time a timestamp should carry needs localtime(),
// which takes a lock; JSON reports carry their own UTC "time"). Facility user (1).
void syslog_head(char *out, int severity) {  // out: at least 40 bytes
  char *p = out;
  const int pri = 8 + severity;  // 12 (warning) or 13 (notice): two digits
  *p++ = '<';
  *p++ = char('0' + pri / 10);
  *p++ = char('0' + pri % 10);
  for (const char *t = ">pyfinguard["; *t;) *p++ = *t++;
  char d[12];
  int k = 0;
  for (unsigned v = unsigned(getpid()); v; v /= 10) d[k++] = char('0' + v % 10);
  while (k) *p++ = d[--k];
  for (const char *t = "]: "; *t;) *p++ = *t++;
  *p = 0;
}

}  // namespace pfg
