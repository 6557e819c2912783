// Where reports go: stderr, the PYFINGUARD_LOG file, or datagrams to the syslog socket.
// Each destination is opened on first use, from whichever thread reports first, with
// async-signal-safe calls only (a thread about to park may be the first).
#pragma once

namespace pfg {

// File descriptor for reports: 2, or PYFINGUARD_LOG opened on first use with
// O_WRONLY|O_CREAT|O_APPEND|O_NOFOLLOW|O_CLOEXEC, mode 0600. -1 in secure mode.
// With PYFINGUARD_LOG=syslog: 2 (syslog_fd() is the reports' destination then).
int log_fd();

// PYFINGUARD_LOG=syslog: a SOCK_DGRAM AF_UNIX socket connected to PYFINGUARD_SYSLOG_SOCKET
// (/dev/log), created on first use; -1 when it cannot be (the report goes to stderr).
int syslog_fd();

// Writes "<PRI>pyfinguard[PID]: " for severity (4 warning, 5 notice) into out, at least
// 40 bytes: the head of a syslog datagram (Writer(fd, head)).
void syslog_head(char *out, int severity);

}  // namespace pfg
