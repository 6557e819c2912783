# Sockets and select on 127.0.0.1: a daemon echo server in a select() loop, daemon
# clients that keep chatting through it, one daemon blocked in accept() on a listener
# nobody connects to. The main thread checks a few echoes, then exits.
import select
import socket
import threading
from _common import Started, daemon, exit_now

started = Started()


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def server(lsock):
    conns = [lsock]
    started.add()
    while True:
        readable, _, _ = select.select(conns, [], [], 0.05)
        for s in readable:
            if s is lsock:
                c, _ = lsock.accept()
                conns.append(c)
                continue
            data = s.recv(4096)
            if not data:
                conns.remove(s)
                s.close()
            else:
                s.sendall(data)


def recv_exactly(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    return buf


def chatter(port, i):
    c = socket.create_connection(("127.0.0.1", port))
    started.add()
    msg = ("message %d " % i).encode() * 20
    while True:
        c.sendall(msg)
        if recv_exactly(c, len(msg)) != msg:
            raise RuntimeError("echo mismatch")


def acceptor(lsock):
    started.add()
    lsock.accept()
    raise RuntimeError("nobody should connect")


lsock = listener()
port = lsock.getsockname()[1]
daemon(server, lsock)
idle = listener()
daemon(acceptor, idle)
started.wait(2)

c = socket.create_connection(("127.0.0.1", port))
for word in ("alpha", "beta", "gamma"):
    c.sendall(word.encode())
    print("echo:", recv_exactly(c, len(word)).decode())
c.close()

for i in range(4):
    daemon(chatter, port, i)
started.wait(6)
print("server, acceptor and 4 clients running")
exit_now(4)
