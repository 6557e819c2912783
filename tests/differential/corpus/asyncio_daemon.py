# An asyncio event loop running forever in a daemon thread, with periodic tasks (sleeps,
# run_in_executor, a queue pair). The main thread submits coroutines to it with
# run_coroutine_threadsafe, prints their results, and exits with the loop still running.
import asyncio
import hashlib
import threading
from _common import exit_now

loop = asyncio.new_event_loop()
ready = threading.Event()


def run_loop():
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


async def ticker():
    while True:
        await asyncio.sleep(0.001)


async def offload():
    while True:
        try:
            d = await loop.run_in_executor(None, hashlib.sha256, b"x" * 100000)
        except RuntimeError:
            # 3.9+: the default executor refuses new work once threading's shutdown ran
            # the executors' exit hook: CPython's behavior, timing-dependent; stop quietly.
            return
        d.hexdigest()
        await asyncio.sleep(0.002)


async def ping_pong():
    a, b = asyncio.Queue(), asyncio.Queue()

    async def echo():
        while True:
            await b.put(await a.get())
    loop.create_task(echo())
    n = 0
    while True:
        await a.put(n)
        if await b.get() != n:
            raise RuntimeError("queue")
        n += 1
        await asyncio.sleep(0)


async def compute(x):
    await asyncio.sleep(0.01)
    return x * 3


t = threading.Thread(target=run_loop)
t.daemon = True
t.start()
ready.wait()
for coro in (ticker, offload, ping_pong):
    asyncio.run_coroutine_threadsafe(coro(), loop)
print("results", [asyncio.run_coroutine_threadsafe(compute(i), loop).result() for i in range(5)])
exit_now(11)
