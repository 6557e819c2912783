// PYFINGUARD_* configuration, read once when a Python runtime is first detected (never
// in a process without Python, so such a process sees no output from the guard).
#pragma once
#include <climits>

namespace pfg {

enum class Mode { park, exit, abort };

struct Config {
  bool loaded;
  bool secure;     // AT_SECURE: setuid/setgid/capabilities. Env ignored, nothing written.
  Mode mode;       // PYFINGUARD_MODE=park|exit|abort
  bool quiet;      // PYFINGUARD_QUIET=1: no exit summary
  bool patch;      // PYFINGUARD_PATCH=auto|off
  bool log_file;   // PYFINGUARD_LOG=<path> (else stderr)
  bool log_set;    // PYFINGUARD_LOG given at all (stderr or a path): report every park
  char log_path[PATH_MAX];
};

extern Config g_config;

// Idempotent. Prints at most one warning line listing every problem.
void config_load();

const char *mode_name(Mode m);

}  // namespace pfg
