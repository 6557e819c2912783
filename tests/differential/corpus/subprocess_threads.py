# subprocess in threads: daemon threads loop Popen('cat') + communicate(); at exit they
# are in fork/exec, in waitpid or reading a pipe. The children's stdin comes from this
# process, so each one ends when it does. The main thread runs one child and prints.
import subprocess
import sys
from _common import Started, daemon, exit_now

started = Started()


def worker(i):
    data = ("line %d\n" % i).encode() * 500
    started.add()
    while True:
        p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = p.communicate(data)
        if out != data or p.returncode != 0:
            raise RuntimeError("cat returned %r" % p.returncode)


for i in range(3):
    daemon(worker, i)
started.wait(3)
r = subprocess.run([sys.executable, "-c", "print(6 * 7)"], stdout=subprocess.PIPE)
print("child said", r.stdout.decode().strip(), "status", r.returncode)
exit_now(6)
