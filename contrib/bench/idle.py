#!/usr/bin/env python3
"""Memory per idle client connection, for contrib/bench/bench.sh.

idle.py PROXY_PORT N URL PID [PID...]

Opens N connections to the proxy on 127.0.0.1, sends one keep-alive GET URL
on each and reads the answer, so every connection has done a request and now
sits idle in keep-alive (the common state of a browser's connections).  It
reports the growth of the resident memory of PID and all their descendants
(threads share one RSS) divided by the connections still open at the end: a
proxy that closes idle clients is visible in still_open.  Prints one RESULT
line.
"""
import socket
import sys
import time


def tree(pid):
    out = {pid}
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for c in f.read().split():
                out |= tree(int(c))
    except OSError:
        pass
    return out


def rss_kib(roots):
    pids = set()
    for p in roots:
        pids |= tree(p)
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def main():
    port, n, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    roots = [int(p) for p in sys.argv[4:]]
    host = url.split("/")[2]
    req = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    before = rss_kib(roots)
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            socks.append(s)
        except OSError:
            break
    time.sleep(1)
    for s in socks:
        s.settimeout(2)
        try:
            s.recv(65536)
        except OSError:
            pass
    time.sleep(2)
    after = rss_kib(roots)
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    per = (after - before) / alive if alive else float("nan")
    print(f"RESULT opened={len(socks)} still_open={alive} rss_before_kib={before} "
          f"rss_after_kib={after} kib_per_conn={per:.2f}")
    for s in socks:
        s.close()


main()
