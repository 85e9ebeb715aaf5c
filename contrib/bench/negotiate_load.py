#!/usr/bin/env python3
"""Load for contrib/bench/negotiate.sh (not a test: it prints numbers).

negotiate_load.py flood PORT URL SECONDS LOOPS AUTH
    LOOPS asyncio loops each repeat until SECONDS pass: connect to the proxy on
    127.0.0.1:PORT, send one GET of URL with "Connection: close", read the
    answer to its end, close.  AUTH is "-" (no Proxy-Authorization), "@FILE"
    (one line of FILE per connection, in order: fresh Negotiate tokens, never
    used twice; the run stops early when they run out) or a header value used
    on every connection (Basic).  Prints
    "RESULT per_s=N ok=N failed=N p50_ms=X p99_ms=X".

negotiate_load.py probe PORT URL SECONDS AUTH
    One keep-alive connection: the first GET carries AUTH ("-" for none, or a
    header value), the following ones nothing (the connection is signed in);
    one request at a time, for SECONDS.  Prints
    "RESULT requests=N p50_ms=X p99_ms=X max_ms=X failed=N".
"""
import asyncio
import sys
import time


def head(url, authz, close):
    host = url.split("/")[2]
    h = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n"
    if authz:
        h += f"Proxy-Authorization: {authz}\r\n"
    if close:
        h += "Connection: close\r\n"
    return (h + "\r\n").encode()


async def read_answer(r):
    """Status of one answer, its body read (Content-Length framing, as nginx sends)."""
    status = int((await r.readline()).split(b" ")[1])
    length = 0
    while True:
        line = await r.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await r.readexactly(length)
    return status


def pct(xs, p):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


async def flood(port, url, secs, loops, auth):
    tokens = None
    if auth.startswith("@"):
        with open(auth[1:]) as f:
            tokens = [line.strip() for line in f if line.strip()]
        tokens.reverse()
    fixed = None if auth == "-" or tokens is not None else auth
    counts = [0, 0]
    lat = []
    deadline = time.monotonic() + secs

    async def one_loop():
        while time.monotonic() < deadline:
            if tokens is not None:
                if not tokens:
                    return
                authz = tokens.pop()
            else:
                authz = fixed
            t0 = time.monotonic()
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(head(url, authz, True))
                ok = await read_answer(r) == 200
                w.close()
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                ok = False
            counts[0 if ok else 1] += 1
            if ok:
                lat.append((time.monotonic() - t0) * 1000)

    start = time.monotonic()
    await asyncio.gather(*(one_loop() for _ in range(loops)))
    elapsed = time.monotonic() - start
    print(f"RESULT per_s={counts[0] / elapsed:.0f} ok={counts[0]} failed={counts[1]} "
          f"p50_ms={pct(lat, 50):.2f} p99_ms={pct(lat, 99):.2f}", flush=True)


async def probe(port, url, secs, auth):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    lat, failed = [], 0
    authz = None if auth == "-" else auth
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        w.write(head(url, authz, False))
        authz = None
        if await read_answer(r) == 200:
            lat.append((time.monotonic() - t0) * 1000)
        else:
            failed += 1
    w.close()
    print(f"RESULT requests={len(lat)} p50_ms={pct(lat, 50):.2f} p99_ms={pct(lat, 99):.2f} "
          f"max_ms={max(lat) if lat else 0:.2f} failed={failed}", flush=True)


def main():
    mode, port, url, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    if mode == "flood":
        asyncio.run(flood(port, url, secs, int(sys.argv[5]), sys.argv[6]))
    elif mode == "probe":
        asyncio.run(probe(port, url, secs, sys.argv[5]))
    else:
        sys.exit("usage: negotiate_load.py flood|probe ...")


if __name__ == "__main__":
    main()
