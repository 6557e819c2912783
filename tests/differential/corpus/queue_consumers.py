# queue.Queue consumers: 4 daemon consumers and a producer that never stops. The main
# thread waits for a first batch with Queue.join(), prints its total, and exits while the
# consumers are in Queue.get() or computing.
import queue
import threading
from _common import Started, daemon, exit_now

tasks = queue.Queue(maxsize=50)
results = queue.Queue()
started = Started()


def consumer():
    started.add()
    while True:
        n = tasks.get()
        results.put(sum(i * i for i in range(n)))
        tasks.task_done()


def producer():
    n = 0
    while True:
        tasks.put(n % 300)
        n += 1


for _ in range(4):
    daemon(consumer)
started.wait(4)
for n in range(200):
    tasks.put(n)
tasks.join()
total = 0
for _ in range(200):
    total += results.get()
print("first batch total", total)
daemon(producer)
# A consumer blocked in a timed get() (Condition.wait with a timeout) too.
idle = queue.Queue()
daemon(lambda: [idle.get(timeout=30) for _ in iter(int, 1)])
print("consumers busy")
exit_now(5)
