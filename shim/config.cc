#include "config.h"

#include <cstdlib>
#include <cstring>
#include <sys/auxv.h>

#include "report.h"

namespace pfg {

Config g_config = {false, false, Mode::park, false, true, false, false, {0}};

const char *mode_name(Mode m) {
  switch (m) {
    case Mode::park: return "park";
    case Mode::exit: return "exit";
    case Mode::abort: return "abort";
  }
  return "?";
}

namespace {

// Appends "NAME='value' (expected)" to the warning, with the value shortened and
// non-printable bytes shown as '?', so garbage cannot garble the terminal.
void complain(Writer &w, const char *name, const char *value, const char *expected) {
  if (w.len() > sizeof("pyfinguard: warning: ") - 1) w.str("; ");
  w.str(name).str("='").safe(value, 40).str("' ignored (").str(expected).str(")");
}

bool one_of(const char *v, const char *const *words) {
  for (; *words; ++words)
    if (strcmp(v, *words) == 0) return true;
  return false;
}

}  // namespace

void config_load() {
  if (g_config.loaded) return;
  g_config.loaded = true;
  // In secure-execution processes the environment is the attacker's: read nothing,
  // write nothing (no log, no summary), keep the defaults.
  if (getauxval(AT_SECURE)) {
    g_config.secure = true;
    return;
  }
  Writer w(2);
  w.str("pyfinguard: warning: ");
  const size_t empty = w.len();

  if (const char *v = getenv("PYFINGUARD_MODE"); v && *v) {
    if (strcmp(v, "park") == 0) g_config.mode = Mode::park;
    else if (strcmp(v, "exit") == 0) g_config.mode = Mode::exit;
    else if (strcmp(v, "abort") == 0) g_config.mode = Mode::abort;
    else complain(w, "PYFINGUARD_MODE", v, "park|exit|abort; using park");
  }
  if (const char *v = getenv("PYFINGUARD_QUIET"); v && *v) {
    static const char *const yes[] = {"1", "yes", "true", "on", nullptr};
    static const char *const no[] = {"0", "no", "false", "off", nullptr};
    if (one_of(v, yes)) g_config.quiet = true;
    else if (!one_of(v, no)) complain(w, "PYFINGUARD_QUIET", v, "1|0; using 0");
  }
  if (const char *v = getenv("PYFINGUARD_PATCH"); v && *v) {
    if (strcmp(v, "off") == 0) g_config.patch = false;
    else if (strcmp(v, "auto") != 0) complain(w, "PYFINGUARD_PATCH", v, "auto|off; using auto");
  }
  if (const char *v = getenv("PYFINGUARD_LOG"); v && *v) {
    g_config.log_set = true;  // stderr or a path: every park is reported
    size_t n = strlen(v);
    if (strcmp(v, "stderr") == 0) {
      // the default destination
    } else if (n >= sizeof g_config.log_path) {
      complain(w, "PYFINGUARD_LOG", v, "path too long; using stderr");
    } else {
      memcpy(g_config.log_path, v, n + 1);
      g_config.log_file = true;  // opened on first report (report.cc), 0600, O_NOFOLLOW
    }
  }
  if (w.len() > empty) w.chr('\n').flush();
  else w.discard();
}

}  // namespace pfg
