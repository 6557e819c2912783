// Reports: async-signal-safe formatting into a stack buffer, written with write(2).
// Everything here may run in a thread that is about to park, while other threads exit
// the process: no malloc, no stdio, no locks of ours.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pfg {

struct ParkRecord;

class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) {}
  ~Writer() { flush(); }
  Writer &str(const char *s);
  // Like str(), at most max bytes, non-printable bytes shown as '?' and "..." when cut:
  // for text from the environment, which must not garble a terminal or forge lines.
  Writer &safe(const char *s, size_t max);
  Writer &chr(char c);
  Writer &dec(int64_t v);
  Writer &hex(uint64_t v);  // 0x-prefixed
  Writer &ms(int64_t ns);   // "12.3"
  size_t len() const { return n_; }
  void flush();  // writes what is buffered (retrying on EINTR/short writes)
  void discard() { n_ = 0; }

 private:
  int fd_;
  size_t n_ = 0;
  // One report fits, so it reaches a pipe or an O_APPEND file in one write(2) (atomic
  // up to PIPE_BUF) and reports of threads parking together do not interleave.
  char buf_[4096];
};

// File descriptor for reports: 2, or PYFINGUARD_LOG opened on first use with
// O_WRONLY|O_CREAT|O_APPEND|O_NOFOLLOW|O_CLOEXEC, mode 0600. -1 in secure mode.
int log_fd();

// One report per parked thread: the event and a libunwind backtrace of the caller.
void report_park(const ParkRecord &r, const char *what);

// At exit (library destructor): one summary line when anything was parked.
void report_exit_summary();

[[noreturn]] void report_fatal(const char *a, const char *b = "", const char *c = "");

}  // namespace pfg
