#include "config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sys/auxv.h>
#include <sys/utsname.h>

#include "writer.h"

namespace pfg {

// The exit timeout's default: docs/design.md, "Exit is bounded", says how it was chosen.
constexpr int64_t kDefaultExitTimeoutNs = 5000 * 1000000LL;

Config g_config = {false, false, Mode::automatic, false, true, false, false, {0},
                   Format::text, false, "/dev/log", 0, kDefaultExitTimeoutNs, {0}, {0}};

const char *mode_name(Mode m) {
  switch (m) {
    case Mode::automatic: return "auto";
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

void copy_host(const char *name) {
  size_t n = strnlen(name, sizeof g_config.host - 1);
  memcpy(g_config.host, name, n);
  g_config.host[n] = 0;
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
    if (strcmp(v, "auto") == 0) g_config.mode = Mode::automatic;
    else if (strcmp(v, "park") == 0) g_config.mode = Mode::park;
    else if (strcmp(v, "exit") == 0) g_config.mode = Mode::exit;
    else if (strcmp(v, "abort") == 0) g_config.mode = Mode::abort;
    else complain(w, "PYFINGUARD_MODE", v, "auto|park|exit|abort; using auto");
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
    g_config.log_set = true;  // stderr, a path or syslog: every park is reported
    size_t n = strlen(v);
    if (strcmp(v, "stderr") == 0) {
      // the default destination
    } else if (strcmp(v, "syslog") == 0) {
      g_config.syslog = true;  // socket created and connected on first report (sink.cc)
    } else if (n >= sizeof g_config.log_path) {
      complain(w, "PYFINGUARD_LOG", v, "path too long; using stderr");
    } else {
      memcpy(g_config.log_path, v, n + 1);
      g_config.log_file = true;  // opened on first report (sink.cc), 0600, O_NOFOLLOW
    }
  }
  if (const char *v = getenv("PYFINGUARD_SYSLOG_SOCKET"); v && *v) {
    size_t n = strlen(v);
    if (v[0] != '/' || n >= sizeof g_config.syslog_path)
      complain(w, "PYFINGUARD_SYSLOG_SOCKET", v, "an absolute path under 108 bytes; using /dev/log");
    else
      memcpy(g_config.syslog_path, v, n + 1);
  }
  if (const char *v = getenv("PYFINGUARD_REPORT_FORMAT"); v && *v) {
    if (strcmp(v, "json") == 0) g_config.format = Format::json;
    else if (strcmp(v, "text") != 0) complain(w, "PYFINGUARD_REPORT_FORMAT", v, "text|json; using text");
  }
  if (const char *v = getenv("PYFINGUARD_STRICT"); v && *v) {
    char *end = nullptr;
    errno = 0;
    long s = strtol(v, &end, 10);
    if (errno == 0 && end && *end == 0 && s >= 0 && s <= 255) g_config.strict = int(s);
    else complain(w, "PYFINGUARD_STRICT", v, "an exit status 1-255, or 0 for off; using 0");
  }
  if (const char *v = getenv("PYFINGUARD_EXIT_TIMEOUT"); v && *v) {
    // Seconds, a decimal fraction allowed ("0.5"), at most a day; "off" or 0: never.
    char *end = nullptr;
    errno = 0;
    double s = strcmp(v, "off") == 0 ? 0.0 : strtod(v, &end);
    if (strcmp(v, "off") == 0 || (errno == 0 && end && end != v && *end == 0 && s >= 0 && s <= 86400))
      g_config.exit_timeout_ns = int64_t(s * 1e9);
    else
      complain(w, "PYFINGUARD_EXIT_TIMEOUT", v, "seconds from 0 to 86400, or off; using 5");
  }
  {
    struct utsname u;
    if (uname(&u) == 0) copy_host(u.nodename);
    const char *p = program_invocation_short_name;
    size_t n = p ? strnlen(p, sizeof g_config.program - 1) : 0;
    if (n) memcpy(g_config.program, p, n);
    g_config.program[n] = 0;
  }
  if (w.len() > empty) w.chr('\n').flush();
  else w.discard();
}

}  // namespace pfg
