#!/usr/bin/env python3
"""Run the llhttp request conformance corpus through a forward proxy.

usage: conformance.py --proxy HOST:PORT (--origin-self | --origin HOST:PORT) CORPUS.json
                      [--only ID,ID,...] [-v]

Each case's raw bytes (see the corpus README; {ORIGIN} replaced by the origin's
address, and well-formed Host lines naming it too, see HOST_RE) are sent to the proxy on a fresh TCP connection, then responses are
read until the proxy closes or stays idle for a second.

--origin-self starts a small threaded origin on an ephemeral 127.0.0.1 port that
records every complete request it receives by its /__llN/ path prefix and answers
200 with a small body.  A request counts only once its body is complete
(Content-Length or chunked), so a proxy that forwards a head and then aborts a
malformed body does not count as forwarding it.  With --origin (someone else's
server) the 2xx responses the client receives are counted instead, which is
only an approximation.

Rule from the corpus README: a reject case passes when no more than
complete_before_error messages reach the origin; an accept case passes when all
its messages do.  Prints one line per case and "N passed, M failed"; exits 1 if
any case failed.
"""
import argparse
import base64
import json
import re
import socket
import socketserver
import sys
import threading
import time

IDLE_S = 1.0
CASE_MAX_S = 8.0
PATH_RE = re.compile(rb"^/__ll(\d+)/")
# The corpus made every target absolute but kept llhttp's Host lines
# ("Host: www.example.com"), which then name another authority than the
# target: a client must send the target's authority (RFC 9112 3.2), and aigate
# refuses a mismatch with 400 (SPEC 12).  A well-formed "Host: value" line is
# rewritten to the origin's address; malformed ones are left as they are.
HOST_RE = re.compile(rb"(\r\nHost: )[!-~]*\r\n")


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}

    def add(self, case_id):
        with self.lock:
            self.seen[case_id] = self.seen.get(case_id, 0) + 1

    def count(self, case_id):
        with self.lock:
            return self.seen.get(case_id, 0)


class BadRequest(Exception):
    pass


def read_chunked(rfile):
    """Read a chunked body strictly; raise BadRequest on malformed framing."""
    while True:
        line = rfile.readline(4100)
        if not line.endswith(b"\r\n"):
            raise BadRequest("chunk size line")
        size = line[:-2].split(b";", 1)[0]
        if not size or not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size):
            raise BadRequest("chunk size")
        n = int(size, 16)
        if n == 0:
            break
        data = rfile.read(n + 2)
        if len(data) != n + 2 or not data.endswith(b"\r\n"):
            raise BadRequest("chunk data")
    while True:  # trailers
        line = rfile.readline(8192)
        if line == b"\r\n":
            return
        if not line.endswith(b"\r\n"):
            raise BadRequest("trailer")


class OriginHandler(socketserver.StreamRequestHandler):
    timeout = 10

    def handle(self):
        while True:
            try:
                if not self.one_request():
                    return
            except (BadRequest, OSError, ValueError):
                return

    def one_request(self):
        line = self.rfile.readline(65536)
        while line == b"\r\n":  # empty lines before a request (RFC 9112 section 2.2)
            line = self.rfile.readline(65536)
        if not line:
            return False
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3 or not line.endswith(b"\r\n"):
            raise BadRequest("request line")
        headers = []
        while True:
            h = self.rfile.readline(65536)
            if h == b"\r\n":
                break
            if not h.endswith(b"\r\n") or b":" not in h:
                raise BadRequest("header")
            name, value = h[:-2].split(b":", 1)
            headers.append((name.strip().lower(), value.strip()))
        hmap = {}
        for name, value in headers:
            hmap.setdefault(name, []).append(value)
        te = b",".join(hmap.get(b"transfer-encoding", [])).lower()
        if te:
            if not te.replace(b" ", b"").endswith(b"chunked"):
                raise BadRequest("transfer-encoding")
            read_chunked(self.rfile)
        elif b"content-length" in hmap:
            n = int(hmap[b"content-length"][0])
            if len(self.rfile.read(n)) != n:
                raise BadRequest("short body")
        target = re.sub(rb"^https?://[^/?#]*", b"", parts[1])
        m = PATH_RE.match(target)
        if m:
            self.server.recorder.add(int(m.group(1)))
        conn = b",".join(hmap.get(b"connection", [])).lower()
        close = b"close" in conn or (parts[2] == b"HTTP/1.0" and b"keep-alive" not in conn)
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                         + (b"Connection: close\r\n" if close else b"") + b"\r\nok\n")
        self.wfile.flush()
        return not close


class Origin(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), OriginHandler)
        self.recorder = Recorder()


def count_2xx(data):
    """Count 2xx responses in a client-side byte stream (for --origin)."""
    n, off = 0, 0
    while True:
        end = data.find(b"\r\n\r\n", off)
        if end < 0 or not data.startswith(b"HTTP/1.", off):
            return n
        head = data[off:end].split(b"\r\n")
        status = int(head[0].split(b" ")[1])
        if 200 <= status < 300:
            n += 1
        fields = {}
        for line in head[1:]:
            k, _, v = line.partition(b":")
            fields[k.strip().lower()] = v.strip().lower()
        off = end + 4
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            while True:
                le = data.find(b"\r\n", off)
                if le < 0:
                    return n
                size = int(data[off:le].split(b";")[0], 16)
                off = le + 2 + size + 2
                if size == 0:
                    break
        else:
            off += int(fields.get(b"content-length", b"0"))


def hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def run_case(proxy, raw):
    """Send raw to the proxy, return everything read until close or idle."""
    got = b""
    deadline = time.monotonic() + CASE_MAX_S
    try:
        s = socket.create_connection(proxy, timeout=IDLE_S)
    except OSError:
        return got
    with s:
        try:
            s.sendall(raw)
        except OSError:
            return got
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, OSError):
                break
            if not chunk:
                break
            got += chunk
    return got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", required=True, help="HOST:PORT of the proxy")
    grp = ap.add_mutually_exclusive_group(required=True)
    grp.add_argument("--origin", help="HOST:PORT of an origin to use")
    grp.add_argument("--origin-self", action="store_true", help="start our own recording origin")
    ap.add_argument("--only", help="comma-separated case ids")
    ap.add_argument("-v", "--verbose", action="store_true", help="show the proxy's responses")
    ap.add_argument("corpus")
    args = ap.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    if args.only:
        wanted = {int(x) for x in args.only.split(",")}
        cases = [c for c in cases if c["id"] in wanted]

    origin = None
    if args.origin_self:
        origin = Origin()
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        origin_addr = "127.0.0.1:%d" % origin.server_address[1]
    else:
        origin_addr = args.origin
    proxy = hostport(args.proxy)
    try:
        socket.create_connection(proxy, timeout=IDLE_S).close()
    except OSError as e:
        print("cannot connect to the proxy at %s: %s" % (args.proxy, e), file=sys.stderr)
        return 2

    passed = failed = 0
    for c in cases:
        raw = base64.b64decode(c["raw_b64"]).replace(b"{ORIGIN}", origin_addr.encode())
        raw = HOST_RE.sub(b"\\g<1>" + origin_addr.encode() + b"\r\n", raw)
        reply = run_case(proxy, raw)
        if origin is not None:
            time.sleep(0.05)
            reached = origin.recorder.count(c["id"])
        else:
            reached = count_2xx(reply)
        if c["verdict"] == "reject":
            limit = c.get("complete_before_error") or 0
            ok = reached <= limit
            want = "<= %d" % limit
        else:
            ok = reached >= c["messages"]
            want = ">= %d" % c["messages"]
        passed += ok
        failed += not ok
        print("%s %3d %-6s reached %d (want %s)  %s: %s" % (
            "pass" if ok else "FAIL", c["id"], c["verdict"], reached, want, c["file"], c["title"]))
        if args.verbose or not ok:
            first = reply.split(b"\r\n", 1)[0]
            print("     proxy said: %r" % first)
    print("%d passed, %d failed" % (passed, failed))
    if origin is not None:
        origin.shutdown()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
