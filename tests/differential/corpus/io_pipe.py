# Daemon threads blocked in os.read on pipes: half on pipes nobody writes, half woken
# every millisecond by a feeder thread, so some return from os.read during finalization.
# A non-daemon thread echoes one message through a pipe first.
import os
import threading
from _common import Started, daemon, exit_now, feeder

started = Started()


def reader(fd):
    started.add()
    while True:
        if not os.read(fd, 64):
            raise RuntimeError("unexpected EOF")


quiet, fed = [], []
for i in range(8):
    r, w = os.pipe()
    (fed if i % 2 else quiet).append(w)
    daemon(reader, r)
started.wait(8)
feeder(fed)

r, w = os.pipe()
got = []
t = threading.Thread(target=lambda: got.append(os.read(r, 100)))
t.start()
os.write(w, b"hello through a pipe")
t.join()
print(got[0].decode())
print("8 readers blocked in os.read")
exit_now(3)
