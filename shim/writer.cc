#include "writer.h"

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <sys/socket.h>
#include <unistd.h>

namespace pfg {

Writer &Writer::str(const char *s) {
  while (*s) chr(*s++);
  return *this;
}

Writer &Writer::safe(const char *s, size_t max) {
  size_t i = 0;
  for (; s[i] && i < max; ++i) chr(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?');
  if (s[i]) str("...");
  return *this;
}

Writer::Writer(int fd, const char *head) : fd_(fd), dgram_(true) {
  str(head);
  head_ = n_;
}

Writer &Writer::chr(char c) {
  if (n_ >= cap_) {
    if (line_) {  // a JSON line is never split over two writes: the caller truncates
      over_ = true;
      return *this;
    }
    flush();
  }
  buf_[n_++] = c;
  return *this;
}

Writer &Writer::json(const char *s, size_t max) {
  static const char hexd[] = "0123456789abcdef";
  const auto *p = reinterpret_cast<const unsigned char *>(s);
  size_t i = 0;
  chr('"');
  while (i < max && p[i]) {
    const unsigned c = p[i];
    if (c == '"' || c == '\\') {
      chr('\\').chr(char(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      str("\\u00").chr(hexd[c >> 4]).chr(hexd[c & 15]);
      ++i;
    } else if (c < 0x80) {
      chr(char(c));
      ++i;
    } else {
      // Pass a well-formed UTF-8 sequence through (RFC 3629: no overlong forms, no
      // surrogates, nothing past U+10FFFF); any other byte becomes U+FFFD. The loop
      // stops at the first byte that is not a continuation byte, NUL included.
      const size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
      bool ok = len && i + len <= max;
      for (size_t k = 1; ok && k < len; ++k) ok = (p[i + k] & 0xc0) == 0x80;
      if (ok && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0) ||
                 (c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90)))
        ok = false;
      if (!ok) {
        str("\\ufffd");
        ++i;
        continue;
      }
      for (size_t k = 0; k < len; ++k) chr(char(p[i + k]));
      i += len;
    }
  }
  if (i == max && p[i]) str("...");
  chr('"');
  return *this;
}

Writer &Writer::dec(int64_t v) {
  char tmp[24];
  int i = 0;
  uint64_t u = v < 0 ? uint64_t(-(v + 1)) + 1 : uint64_t(v);
  do tmp[i++] = char('0' + u % 10); while (u /= 10);
  if (v < 0) chr('-');
  while (i) chr(tmp[--i]);
  return *this;
}

Writer &Writer::hex(uint64_t v) {
  char tmp[16];
  int i = 0;
  do tmp[i++] = "0123456789abcdef"[v & 15]; while (v >>= 4);
  str("0x");
  while (i) chr(tmp[--i]);
  return *this;
}

Writer &Writer::ms(int64_t ns) {
  if (ns < 0) ns = 0;
  dec(ns / 1000000).chr('.').dec(ns / 100000 % 10);
  return *this;
}

void Writer::flush() {
  if (dgram_) {
    // One datagram, the syslog prefix first, without the final line end (the daemon
    // ends the record). MSG_DONTWAIT: a daemon that does not read must not hang a
    // process at exit; a full queue is retried for at most 50 ms, then the message is
    // dropped. MSG_NOSIGNAL: never SIGPIPE.
    size_t n = n_;
    if (n > head_ && buf_[n - 1] == '\n') --n;
    for (int tries = 0; fd_ >= 0 && n > head_ && tries < 50; ++tries) {
      if (send(fd_, buf_, n, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) break;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != ENOBUFS) break;
      struct timespec ms = {0, 1000000};
      nanosleep(&ms, nullptr);
    }
    n_ = head_;
    return;
  }
  size_t off = 0;
  while (fd_ >= 0 && off < n_) {
    ssize_t w = write(fd_, buf_ + off, n_ - off);
    if (w > 0) off += size_t(w);
    else if (w < 0 && errno == EINTR) continue;
    else break;  // a broken log must never stop the thread from parking
  }
  n_ = 0;
}

void report_fatal(const char *a, const char *b, const char *c) {
  Writer(2).str("pyfinguard: fatal: ").str(a).str(b).str(c).chr('\n');
  abort();
}

}  // namespace pfg
