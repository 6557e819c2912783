// PYFINGUARD_* configuration, read once when a Python runtime is first detected (never
// in a process without Python, so such a process sees no output from the guard).
#pragma once
#include <climits>
#include <cstdint>

namespace pfg {

// auto: end a late thread where this CPython ends it (pthread_exit, <= 3.13.7), park it
// where CPython would use freed memory or hang it (docs/design.md, "Ending or parking").
enum class Mode { automatic, park, exit, abort };
enum class Format { text, json };

struct Config {
  bool loaded;
  bool secure;     // AT_SECURE: setuid/setgid/capabilities. Env ignored, nothing written.
  Mode mode;       // PYFINGUARD_MODE=auto|park|exit|abort
  bool quiet;      // PYFINGUARD_QUIET=1: no exit summary
  bool patch;      // PYFINGUARD_PATCH=auto|off
  bool log_file;   // PYFINGUARD_LOG=<path> (else stderr)
  bool log_set;    // PYFINGUARD_LOG given at all (stderr, a path, syslog): report every park
  char log_path[PATH_MAX];
  Format format;   // PYFINGUARD_REPORT_FORMAT=text|json
  bool syslog;     // PYFINGUARD_LOG=syslog: reports are datagrams to syslog_path
  char syslog_path[108];  // PYFINGUARD_SYSLOG_SOCKET (sizeof sockaddr_un::sun_path), /dev/log
  int strict;      // PYFINGUARD_STRICT=1..255: the exit status when a reported park happened; 0 off
  // PYFINGUARD_EXIT_TIMEOUT (seconds): how long an exit may make no progress while
  // threads are parked before the guard ends it (exitwatch.h); 0: never (off).
  int64_t exit_timeout_ns;
  // For JSON reports, captured here (normal context) so reports only copy them.
  char host[65];   // uname() nodename
  char program[64];  // program_invocation_short_name
};

extern Config g_config;

// Idempotent. Prints at most one warning line listing every problem.
void config_load();

const char *mode_name(Mode m);

}  // namespace pfg
