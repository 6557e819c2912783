// Async-signal-safe formatting into a stack buffer, written with write(2) (or sent as one
// datagram). Everything here may run in a thread that is about to park, while other
// threads exit the process: no malloc, no stdio, no locks of ours.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pfg {

class Writer {
 public:
  static constexpr size_t kBuf = 4096;  // == PIPE_BUF on Linux
  explicit Writer(int fd) : fd_(fd) {}
  // A connected datagram socket (PYFINGUARD_LOG=syslog): each flush() is one datagram,
  // sent without blocking, starting with head (the syslog "<PRI>TAG[PID]: " prefix).
  Writer(int fd, const char *head);
  ~Writer() { flush(); }
  Writer &str(const char *s);
  // Like str(), at most max bytes, non-printable bytes shown as '?' and "..." when cut:
  // for text from the environment, which must not garble a terminal or forge lines.
  Writer &safe(const char *s, size_t max);
  Writer &chr(char c);
  Writer &dec(int64_t v);
  Writer &hex(uint64_t v);  // 0x-prefixed
  Writer &ms(int64_t ns);   // "12.3"
  // A JSON string, quotes included: '"' and '\\' escaped, control bytes and invalid
  // UTF-8 as \u escapes (invalid bytes as U+FFFD), so any bytes give valid JSON.
  Writer &json(const char *s, size_t max = 4096);
  size_t len() const { return n_; }
  void flush();  // writes what is buffered (retrying on EINTR/short writes)
  void discard() { n_ = head_; }
  // Line mode (JSON): nothing is written before flush(); bytes past `cap` are dropped and
  // overflowed() says so, and truncate() goes back to an earlier len(). The caller keeps
  // a line within one buffer, i.e. one write(2).
  void limit(size_t cap) { cap_ = cap < sizeof buf_ ? cap : sizeof buf_; line_ = true; }
  bool overflowed() const { return over_; }
  void truncate(size_t n) { if (n < n_) n_ = n; over_ = false; }

 private:
  int fd_;
  size_t n_ = 0;
  size_t head_ = 0;  // bytes of datagram prefix kept at the start of buf_
  size_t cap_ = sizeof buf_;
  bool line_ = false, over_ = false, dgram_ = false;
  // One report fits, so it reaches a pipe or an O_APPEND file in one write(2) (atomic
  // up to PIPE_BUF) and reports of threads parking together do not interleave.
  char buf_[kBuf];
};

// One line on stderr, then abort(): for what the guard cannot go on without.
[[noreturn]] void report_fatal(const char *a, const char *b = "", const char *c = "");

}  // namespace pfg
