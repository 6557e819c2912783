# hashlib and zlib release the GIL on large buffers: busy daemon threads hash, compress
# and decompress 1 MiB blocks (checking every result) when the program exits.
import hashlib
import zlib
from _common import Started, daemon, exit_now

started = Started()
BLOCK = bytes(range(256)) * 4096
DIGEST = hashlib.sha256(BLOCK).hexdigest()


def hasher():
    started.add()
    while True:
        if hashlib.sha256(BLOCK).hexdigest() != DIGEST:
            raise RuntimeError("digest")
        hashlib.blake2b(BLOCK).digest()


def compressor():
    started.add()
    while True:
        if zlib.decompress(zlib.compress(BLOCK, 6)) != BLOCK:
            raise RuntimeError("zlib")


for i in range(6):
    daemon(hasher if i % 2 else compressor)
started.wait(6)
print("sha256", DIGEST[:16])
print("crc32", zlib.crc32(BLOCK))
exit_now(8)
