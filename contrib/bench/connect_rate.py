#!/usr/bin/env python3
"""New CONNECT tunnels per second, for contrib/bench/bench.sh.

connect_rate.py PROXY_PORT|direct TARGET_HOST:PORT SECONDS [LOOPS]

LOOPS (default 50) asyncio loops each repeat: connect to the proxy on
127.0.0.1, send CONNECT TARGET, read the status line, close.  With "direct"
in place of a port, each loop only opens and closes a TCP connection to
TARGET: the same client work without a proxy, the ceiling of this client
(one Python thread, so it saturates near 10k/s).  Prints one RESULT line.
"""
import asyncio
import sys
import time


async def one_loop(port, target, deadline, counts):
    thost, tport = target.rsplit(":", 1)
    req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    while time.monotonic() < deadline:
        try:
            if port is None:
                _, w = await asyncio.open_connection(thost, int(tport))
                ok = True
            else:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(req)
                ok = b" 200" in await r.readline()
            counts[0 if ok else 1] += 1
            w.close()
        except OSError:
            counts[1] += 1


async def main():
    port = None if sys.argv[1] == "direct" else int(sys.argv[1])
    target, secs = sys.argv[2], float(sys.argv[3])
    loops = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    counts = [0, 0]
    start = time.monotonic()
    deadline = start + secs
    await asyncio.gather(*(one_loop(port, target, deadline, counts) for _ in range(loops)))
    elapsed = time.monotonic() - start
    print(f"RESULT per_s={counts[0] / elapsed:.0f} failed={counts[1]}")


asyncio.run(main())
