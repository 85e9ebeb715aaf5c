#!/usr/bin/env python3
"""WebSocket and streaming test client for the aigate end-to-end tests.

Talks to ws_origin.py directly or through an HTTP proxy: ws:// and http:// URLs
go to the proxy in absolute-form ("GET http://host:port/path", Upgrade headers
and all; --connect tunnels them through CONNECT instead, as browsers do),
wss:// and https:// through CONNECT and then TLS verified against --ca.
WebSocket framing and permessage-deflate come from python3-websockets'
sans-I/O ClientConnection (an implementation independent of aigate's).
Prints one JSON object on stdout; exits 0 when everything went as expected.

  ws_client.py ws URL [options] STEP...
    Steps, run in order:
      text=S, text@N=S       send S as a text message (in N fragments); expect
                             the same message back byte for byte
      binary=SIZE, binary@N=SIZE
                             the same with SIZE pseudo-random bytes
      send-text=S, send-text@N=S, send-binary=SIZE
                             send without waiting for an echo
      ping=DATA              send a ping, expect the pong with DATA
      server-ping=DATA       ask the echo origin to ping ("__ping DATA"), expect it
      server-close=CODE[:REASON]
                             ask the echo origin to close ("__close ..."); expect
                             its close frame with CODE
      close=CODE[:REASON]    close; expect the peer's close and the end of the
                             connection
      expect-close=CODE      wait for the peer's close frame with CODE ("*": any)
      read=MIB               read binary messages until MIB MiB arrived (or "done")
      pause=SECONDS          do nothing, reading nothing
      bench=COUNT:SIZE[:WINDOW]
                             echo COUNT binary messages of SIZE, WINDOW in flight
                             (default 16); reports msgs/s and MB/s
    After the steps a WebSocket still open is closed with 1000 (--no-close: not).
    Output: {"ok", "status", "extensions", "steps": [{"step", "ok", "ms", ...}],
             "close": {"code", "reason", "from"}, "error"}
  ws_client.py sse URL [--events N] [--stop-after K]
    reads N server-sent events carrying {"seq","ts"} (ts: ms when written) and
    reports {"ok", "status", "events", "latency_ms": {"max", "p50", "all"}};
    with --stop-after K it closes the connection after K events and reports
    "closed_at" (wall-clock ms)
  ws_client.py stream URL [--events N]
    the same for lines of {"seq","ts"} (chunked, length or close-delimited)
  ws_client.py get URL [--pause-after BYTES --pause SECONDS]
    reads the whole body, optionally stopping for a while after BYTES;
    reports {"ok", "status", "bytes", "ms"}

Options: --proxy HOST:PORT, --proxy-user USER:PASS, --ca FILE (CA for TLS to the
origin or to aigate's interception), --connect, --resolve HOST:IP (direct
connections), --deflate (offer permessage-deflate), --no-context-takeover (offer
client_no_context_takeover), --server-no-context-takeover, --rcvbuf BYTES,
--timeout SECONDS (per wait, default 10), --seed N.
"""
import argparse
import base64
import json
import random
import socket
import ssl
import sys
import time
import urllib.parse

from websockets.client import ClientConnection
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from websockets.uri import parse_uri


class Failure(Exception):
    pass


def now_ms():
    return time.time() * 1000.0


# ---- connections -------------------------------------------------------------

def read_head(sock, buf=b""):
    """Read an HTTP response head; returns (status, headers, head bytes, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failure("connection closed before a response head")
        buf += chunk
        if len(buf) > 65536:
            raise Failure("response head too large")
    end = buf.index(b"\r\n\r\n") + 4
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise Failure("bad status line: %r" % lines[0])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    return int(parts[1]), headers, buf[:end], buf[end:]


def open_stream(args, url):
    """Connect for url; returns (socket, request-target, extra request headers)."""
    u = urllib.parse.urlsplit(url)
    secure = u.scheme in ("wss", "https")
    host = u.hostname
    port = u.port or (443 if secure else 80)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    authority = "%s:%d" % (host if ":" not in host else "[%s]" % host, port)
    auth = []
    if args.proxy_user:
        auth = [("Proxy-Authorization",
                 "Basic " + base64.b64encode(args.proxy_user.encode()).decode())]

    def tcp(h, p):
        s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if args.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        s.settimeout(args.timeout)
        s.connect((h, p))
        return s

    if args.proxy:
        ph, _, pp = args.proxy.rpartition(":")
        sock = tcp(ph, int(pp))
        if not secure and not args.connect:
            return sock, "http://%s%s" % (authority, path), auth
        req = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (authority, authority)
        req += "".join("%s: %s\r\n" % h for h in auth) + "\r\n"
        sock.sendall(req.encode())
        status, _, head, rest = read_head(sock)
        if status != 200:
            raise Failure("CONNECT answered %d: %s" % (status, head.split(b"\r\n")[0].decode()))
        if rest:
            raise Failure("bytes after the CONNECT answer")
    else:
        sock = tcp(args.resolve.get(host, host), port)
    if secure:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.set_alpn_protocols(["http/1.1"])
        sock = ctx.wrap_socket(sock, server_hostname=host)
    return sock, path, []


# ---- WebSocket -------------------------------------------------------------------

class WS:
    def __init__(self, args, url):
        self.args = args
        exts = None
        if args.deflate:
            exts = [ClientPerMessageDeflateFactory(
                client_no_context_takeover=args.no_context_takeover,
                server_no_context_takeover=args.server_no_context_takeover,
                client_max_window_bits=True)]
        self.conn = ClientConnection(parse_uri(url.replace("http", "ws", 1)
                                               if url.startswith("http") else url),
                                     extensions=exts, max_size=None)
        self.sock, target, extra = open_stream(args, url)
        self.msgs = []      # complete data messages: (opcode, bytes, frames)
        self.pings, self.pongs = [], []
        self.partial = None
        self.close = None   # {"code", "reason", "from"}
        self.eof = False
        req = self.conn.connect()
        req.path = target
        for k, v in extra:
            req.headers[k] = v
        self.conn.send_request(req)
        self.flush()
        self.response = None
        self.wait(lambda: self.response is not None, "the handshake response")

    def flush(self):
        for data in self.conn.data_to_send():
            if data:
                self.sock.sendall(data)
            else:
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def pump(self, deadline):
        """Read once (until deadline); process what arrived."""
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return
        except (ConnectionError, ssl.SSLError):
            data = b""
        if data:
            self.conn.receive_data(data)
        else:
            self.eof = True
            self.conn.receive_eof()
        for ev in self.conn.events_received():
            self.event(ev)
        self.flush()

    def event(self, ev):
        if self.response is None:
            self.response = ev
            return
        op = ev.opcode
        if op in (OP_TEXT, OP_BINARY):
            self.partial = [op, [ev.data]]
        elif op is OP_CONT and self.partial is not None:
            self.partial[1].append(ev.data)
        elif op is OP_PING:
            self.pings.append(ev.data)
        elif op is OP_PONG:
            self.pongs.append(ev.data)
        elif op is OP_CLOSE:
            c = self.conn.close_rcvd
            self.close = {"code": c.code if c else None, "reason": c.reason if c else None,
                          "from": "server" if self.conn.close_rcvd_then_sent is not False
                          else "client"}
        if op in (OP_TEXT, OP_BINARY, OP_CONT) and ev.fin and self.partial is not None:
            self.msgs.append((self.partial[0], b"".join(self.partial[1]), len(self.partial[1])))
            self.partial = None

    def wait(self, cond, what, timeout=None):
        deadline = time.monotonic() + (timeout or self.args.timeout)
        while not cond():
            if self.eof:
                raise Failure("connection ended waiting for %s" % what)
            if time.monotonic() >= deadline:
                raise Failure("timed out waiting for %s" % what)
            self.pump(deadline)

    def next_msg(self, what):
        self.wait(lambda: self.msgs or self.close is not None, what)
        if not self.msgs:
            raise Failure("closed (%s) waiting for %s" % (self.close, what))
        return self.msgs.pop(0)

    def send(self, opcode, data, nfrag):
        n = max(1, min(nfrag, len(data) or 1))
        cuts = [len(data) * k // n for k in range(n + 1)]
        first = self.conn.send_text if opcode is OP_TEXT else self.conn.send_binary
        for k in range(n):
            piece, fin = data[cuts[k]:cuts[k + 1]], k == n - 1
            if k == 0:
                first(piece, fin=fin)
            else:
                self.conn.send_continuation(piece, fin=fin)
            self.flush()


def run_step(ws, step, rng):
    name, _, arg = step.partition("=")
    name, _, frag = name.partition("@")
    nfrag = int(frag or "1")
    out = {}
    if name in ("text", "binary", "send-text", "send-binary"):
        opcode = OP_TEXT if name.endswith("text") else OP_BINARY
        data = arg.encode() if opcode is OP_TEXT else rng.randbytes(int(arg))
        ws.send(opcode, data, nfrag)
        out["bytes"] = len(data)
        if not name.startswith("send-"):
            op, got, frames = ws.next_msg("the echo")
            out.update(echo_bytes=len(got), echo_frames=frames)
            if op is not opcode or got != data:
                raise Failure("echo differs (%d bytes back for %d)" % (len(got), len(data)))
    elif name == "ping":
        ws.conn.send_ping(arg.encode())
        ws.flush()
        ws.wait(lambda: arg.encode() in ws.pongs, "the pong")
    elif name == "server-ping":
        ws.send(OP_TEXT, b"__ping " + arg.encode(), 1)
        ws.wait(lambda: arg.encode() in ws.pings, "the origin's ping")
    elif name in ("server-close", "close"):
        code, _, reason = arg.partition(":")
        if name == "close":
            ws.conn.send_close(int(code), reason)
            ws.flush()
        else:
            ws.send(OP_TEXT, ("__close %s %s" % (code, reason)).encode(), 1)
        ws.wait(lambda: ws.close is not None, "the close frame")
        ws.wait(lambda: ws.eof, "the end of the connection")
        out["close"] = ws.close
        if ws.close["code"] != int(code):
            raise Failure("closed with %s, expected %s" % (ws.close["code"], code))
    elif name == "expect-close":
        ws.wait(lambda: ws.close is not None, "the close frame")
        out["close"] = ws.close
        if arg != "*" and ws.close["code"] != int(arg):
            raise Failure("closed with %s, expected %s" % (ws.close["code"], arg))
    elif name == "read":
        want, got, t0 = int(float(arg) * 1048576), 0, time.monotonic()
        while got < want:
            op, data, _ = ws.next_msg("pushed data")
            if op is OP_TEXT and data == b"done":
                break
            got += len(data)
        secs = max(time.monotonic() - t0, 1e-6)
        out.update(bytes=got, mb_s=round(got / secs / 1e6, 1))
        if got < want:
            raise Failure("read %d of %d bytes" % (got, want))
    elif name == "pause":
        time.sleep(float(arg))
    elif name == "bench":
        count, size, window = (arg.split(":") + ["16"])[:3]
        count, size, window = int(count), int(size), int(window)
        data, sent, got, t0 = rng.randbytes(size), 0, 0, time.monotonic()
        while got < count:
            while sent < count and sent - got < window:
                ws.send(OP_BINARY, data, 1)
                sent += 1
            op, echo, _ = ws.next_msg("an echo")
            if echo != data:
                raise Failure("echo %d differs" % got)
            got += 1
        secs = max(time.monotonic() - t0, 1e-6)
        out.update(msgs_s=round(count / secs), mb_s=round(count * size / secs / 1e6, 1))
    else:
        raise Failure("unknown step %r" % step)
    return out


def cmd_ws(args):
    res = {"ok": False, "status": None, "extensions": None, "steps": [], "close": None,
           "error": None}
    rng = random.Random(args.seed)
    ws = None
    try:
        ws = WS(args, args.url)
        res["status"] = ws.response.status_code
        res["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        if ws.conn.handshake_exc is not None:
            body = ws.response.body or b""
            res["body"] = body[:2000].decode("utf-8", "replace")
            raise Failure("handshake failed: %s" % ws.conn.handshake_exc)
        for step in args.steps:
            t0 = time.monotonic()
            rec = {"step": step if len(step) <= 80 else step[:77] + "...", "ok": False}
            res["steps"].append(rec)
            rec.update(run_step(ws, step, rng))
            rec["ok"] = True
            rec["ms"] = round((time.monotonic() - t0) * 1000, 1)
        if not args.no_close and ws.conn.state.name == "OPEN":
            ws.conn.send_close(1000, "")
            ws.flush()
            ws.wait(lambda: ws.eof, "the end of the connection")
        res["ok"] = True
    except (Failure, OSError, ssl.SSLError) as e:
        res["error"] = str(e)
    if ws is not None:
        res["close"] = ws.close
        ws.sock.close()
    return res


# ---- HTTP streams -------------------------------------------------------------------

class Body:
    """Reads a response body incrementally (chunked, Content-Length or until close),
    calling on_data(bytes, ms) as bytes arrive."""

    def __init__(self, sock, headers, rest, timeout):
        self.sock, self.buf, self.timeout = sock, rest, timeout
        te = ",".join(headers.get("transfer-encoding", [])).lower()
        cl = headers.get("content-length")
        self.framing = "chunked" if "chunked" in te else "length" if cl else "close"
        self.left = int(cl[0]) if cl else None

    def more(self):
        self.sock.settimeout(self.timeout)
        data = self.sock.recv(262144)
        if not data:
            raise EOFError
        self.buf += data

    def read(self, on_data):
        if self.framing == "length":
            while self.left > 0:
                if not self.buf:
                    self.more()
                take, self.buf = self.buf[:self.left], self.buf[self.left:]
                self.left -= len(take)
                on_data(take)
        elif self.framing == "close":
            while True:
                if self.buf:
                    on_data(self.buf)
                    self.buf = b""
                try:
                    self.more()
                except EOFError:
                    return
        else:
            while True:
                while b"\r\n" not in self.buf:
                    self.more()
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    return
                while size > 0:
                    if not self.buf:
                        self.more()
                    take, self.buf = self.buf[:size], self.buf[size:]
                    size -= len(take)
                    on_data(take)
                while len(self.buf) < 2:
                    self.more()
                self.buf = self.buf[2:]


def http_get(args):
    sock, target, extra = open_stream(args, args.url)
    u = urllib.parse.urlsplit(args.url)
    host = u.netloc.rpartition("@")[2]
    req = "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n" % (target, host)
    req += "".join("%s: %s\r\n" % h for h in extra) + "\r\n"
    sock.sendall(req.encode())
    status, headers, _, rest = read_head(sock)
    return sock, status, headers, Body(sock, headers, rest, args.timeout)


def cmd_events(args, sse):
    res = {"ok": False, "status": None, "events": 0, "framing": None, "latency_ms": None,
           "error": None}
    lat, pending = [], [b""]
    sep = b"\n\n" if sse else b"\n"

    class Enough(Exception):
        pass

    def on_data(data):
        t = now_ms()
        pending[0] += data
        while sep in pending[0]:
            item, pending[0] = pending[0].split(sep, 1)
            text = item.decode()
            if sse:
                text = "".join(x[5:].strip() for x in text.split("\n") if x.startswith("data:"))
            if text.strip():
                lat.append(round(t - json.loads(text)["ts"], 2))
            if args.stop_after is not None and len(lat) >= args.stop_after:
                raise Enough()

    try:
        sock, res["status"], headers, body = http_get(args)
        res["framing"] = body.framing
        res["content_type"] = (headers.get("content-type") or [None])[0]
        if res["status"] != 200:
            raise Failure("status %d" % res["status"])
        try:
            body.read(on_data)
        except Enough:
            res["closed_at"] = round(now_ms(), 3)
        sock.close()
    except (Failure, OSError, ssl.SSLError, EOFError, ValueError) as e:
        res["error"] = str(e) or type(e).__name__
    res["events"] = len(lat)
    if lat:
        srt = sorted(lat)
        res["latency_ms"] = {"max": srt[-1], "p50": srt[len(srt) // 2], "all": lat}
    want = args.stop_after if args.stop_after is not None else args.events
    res["ok"] = res["error"] is None and (want is None or len(lat) == want)
    return res


def cmd_get(args):
    res = {"ok": False, "status": None, "bytes": 0, "ms": None, "error": None}
    got, paused = [0], [args.pause_after is None]
    t0 = time.monotonic()

    def on_data(data):
        got[0] += len(data)
        if not paused[0] and got[0] >= args.pause_after:
            paused[0] = True
            time.sleep(args.pause)

    try:
        sock, res["status"], _, body = http_get(args)
        res["framing"] = body.framing
        body.read(on_data)
        sock.close()
        res["ok"] = res["status"] == 200
    except (Failure, OSError, ssl.SSLError, EOFError, ValueError) as e:
        res["error"] = str(e) or type(e).__name__
    res["bytes"] = got[0]
    res["ms"] = round((time.monotonic() - t0) * 1000)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["ws", "sse", "stream", "get"])
    ap.add_argument("url")
    ap.add_argument("steps", nargs="*")
    ap.add_argument("--proxy")
    ap.add_argument("--proxy-user")
    ap.add_argument("--ca")
    ap.add_argument("--connect", action="store_true")
    ap.add_argument("--resolve", action="append", default=[])
    ap.add_argument("--deflate", action="store_true")
    ap.add_argument("--no-context-takeover", action="store_true")
    ap.add_argument("--server-no-context-takeover", action="store_true")
    ap.add_argument("--no-close", action="store_true")
    ap.add_argument("--events", type=int)
    ap.add_argument("--stop-after", type=int)
    ap.add_argument("--pause-after", type=int)
    ap.add_argument("--pause", type=float, default=0)
    ap.add_argument("--rcvbuf", type=int)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_intermixed_args()
    args.resolve = dict(r.split(":", 1) for r in args.resolve)
    if args.mode == "ws":
        res = cmd_ws(args)
    elif args.mode in ("sse", "stream"):
        res = cmd_events(args, args.mode == "sse")
    else:
        res = cmd_get(args)
    print(json.dumps(res))
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
