#!/usr/bin/env python3
"""WebSocket and streaming test origin for the aigate end-to-end tests.

One asyncio server on 127.0.0.1, plain or TLS (--cert/--key, e.g. from lib.sh
make_cert), serving on every connection either a WebSocket (a GET with
Upgrade: websocket, handled by python3-websockets' sans-I/O ServerConnection,
so the framing and permessage-deflate are an implementation independent of
aigate's) or a streaming HTTP/1.1 response.

WebSocket paths (permessage-deflate is accepted whenever the client offers it,
unless --no-deflate; --client-no-context-takeover makes the origin require it):
  /ws/echo[?frag=N]   echoes every message, same type, byte for byte (in N
                      fragments with frag=N).  Text commands instead of an echo:
                        "__close CODE REASON"  the origin closes with CODE
                        "__ping DATA"          the origin sends a ping
  /ws/push?mib=N[&msg=BYTES]
                      sends N MiB in binary messages of BYTES (default 65536) as
                      fast as the connection takes them, then the text "done"
  /ws/sink            reads and logs messages, answers nothing
HTTP paths (all streaming responses are written piece by piece, flushed at once):
  /sse?n=N&interval_ms=MS[&framing=chunked|close]
                      text/event-stream, N events "data: {"seq":i,"ts":MS}" where
                      ts is the wall-clock time in ms when the event is written
  /stream?n=N&interval_ms=MS&framing=chunked|close|length
                      N lines {"seq":i,"ts":MS}, the same timestamps
  /push?mib=N         N MiB of application/octet-stream, Content-Length, as fast
                      as the connection takes it
  /page.html          a page that opens new WebSocket(.../ws/echo) and
                      new EventSource(/sse?n=3) on its own origin and puts the
                      outcome in document.title ("ws ok sse ok" when both work)
  anything else       404

Every connection, request, WebSocket message (length and sha256) and close is
appended to --log as a JSON line, so a test can tell exactly what reached the
origin:
  {"ev":"accept","conn":C}
  {"ev":"http","conn":C,"method":...,"target":...,"headers":[[name,value],...]}
  {"ev":"ws-open","conn":C,"path":...,"extensions":"<Sec-WebSocket-Extensions of the 101>"}
  {"ev":"ws-frame","conn":C,"opcode":...,"fin":...,"len":N}   (data and close frames)
  {"ev":"ws-msg","conn":C,"type":"text"|"binary","len":N,"sha256":...,"frames":K}
  {"ev":"ws-close","conn":C,"code":...,"reason":...,"from":"client"|"origin"|null}
  {"ev":"done","conn":C,"path":...,"bytes":N,"ms":T}          (push and stream endpoints)
  {"ev":"peer-eof","conn":C,"path":...,"ts":MS}  the peer closed during a streaming
                      response (/sse, /stream, /push): the response stops there, as a
                      real server's would; ts is the wall-clock time in ms
  {"ev":"end","conn":C}
--ready FILE is created once the socket listens.
"""
import argparse
import asyncio
import hashlib
import itertools
import json
import socket
import ssl
import sys
import time
import urllib.parse

from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT
from websockets.server import ServerConnection

LOG = None
CONNS = itertools.count(1)
MAX_HEAD = 65536


def log(rec):
    if LOG is not None:
        LOG.write(json.dumps(rec) + "\n")
        LOG.flush()


def now_ms():
    return time.time() * 1000.0


PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>running</title></head>
<body><pre id="out"></pre>
<script>
const out = document.getElementById('out');
let ws_ok = false, sse_ok = false;
function done() { document.title = 'ws ' + (ws_ok ? 'ok' : 'failed') + ' sse ' + (sse_ok ? 'ok' : 'failed'); }
const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws/echo');
ws.onopen = () => ws.send('hello from the page');
ws.onmessage = (e) => {
  ws_ok = e.data === 'hello from the page';
  out.textContent += 'ws: ' + e.data + '\\n';
  ws.close(1000, 'bye');
  let got = 0;
  const es = new EventSource('/sse?n=3&interval_ms=50');
  es.onmessage = (ev) => {
    out.textContent += 'sse: ' + ev.data + '\\n';
    if (++got === 3) { sse_ok = true; es.close(); done(); }
  };
  es.onerror = () => { es.close(); done(); };
};
ws.onerror = () => done();
</script></body></html>
"""


class Conn:
    def __init__(self, args, reader, writer):
        self.args = args
        self.reader = reader
        self.writer = writer
        self.id = next(CONNS)

    # ---- HTTP ----------------------------------------------------------------

    async def read_head(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await self.reader.read(4096)
            if not chunk:
                return None, b""
            head += chunk
            if len(head) > MAX_HEAD:
                return None, b""
        end = head.index(b"\r\n\r\n") + 4
        return head[:end], head[end:]

    async def send(self, data):
        self.writer.write(data)
        await self.writer.drain()

    async def respond(self, status, reason, headers, body=b""):
        """A response head (one response per connection: the origin closes after it)."""
        headers = list(headers) + [("Connection", "close")]
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers]
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def run(self):
        log({"ev": "accept", "conn": self.id})
        try:
            head, rest = await self.read_head()
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
            headers = [tuple(x.split(":", 1)) for x in lines[1:] if ":" in x]
            headers = [(k.strip(), v.strip()) for k, v in headers]
            log({"ev": "http", "conn": self.id, "method": method, "target": target,
                 "headers": [list(h) for h in headers]})
            url = urllib.parse.urlsplit(target)
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            upgrade = any(k.lower() == "upgrade" and "websocket" in v.lower() for k, v in headers)
            if upgrade and url.path.startswith("/ws"):
                await self.websocket(head + rest, url.path, q)
            elif url.path == "/sse":
                await self.until_peer_leaves(self.stream(url.path, q, sse=True), url.path)
            elif url.path == "/stream":
                await self.until_peer_leaves(self.stream(url.path, q, sse=False), url.path)
            elif url.path == "/push":
                await self.until_peer_leaves(self.push_http(q), url.path)
            elif url.path == "/page.html":
                await self.respond(200, "OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", len(PAGE)),
                                               ("Cache-Control", "no-store")], PAGE)
            else:
                await self.respond(404, "Not Found", [("Content-Length", 10)], b"not found\n")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            log({"ev": "end", "conn": self.id})
            try:
                self.writer.close()
                await self.writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass

    async def until_peer_leaves(self, response, path):
        """Run a streaming response while watching the connection: the peer's EOF
        (it closed) is logged at once and ends the response."""
        task = asyncio.ensure_future(response)

        async def watch():
            try:
                while await self.reader.read(65536):
                    pass
            except (ConnectionError, ssl.SSLError):
                pass
            if not task.done():
                log({"ev": "peer-eof", "conn": self.id, "path": path, "ts": round(now_ms(), 3)})
                task.cancel()

        watcher = asyncio.ensure_future(watch())
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            watcher.cancel()

    async def stream(self, path, q, sse):
        n = int(q.get("n", "10"))
        interval = int(q.get("interval_ms", "100")) / 1000.0
        framing = q.get("framing", "chunked")
        ctype = "text/event-stream" if sse else "application/x-ndjson"
        headers = [("Content-Type", ctype), ("Cache-Control", "no-cache")]
        width = 64  # length framing: every line padded to this many bytes

        def piece(i):
            body = json.dumps({"seq": i, "ts": round(now_ms(), 3)})
            if sse:
                return f"id: {i}\ndata: {body}\n\n".encode()
            return (body.ljust(width - 1) + "\n").encode() if framing == "length" else \
                (body + "\n").encode()

        if framing == "chunked":
            headers.append(("Transfer-Encoding", "chunked"))
        elif framing == "length" and not sse:
            headers.append(("Content-Length", n * width))
        await self.respond(200, "OK", headers)
        t0, sent = time.monotonic(), 0
        for i in range(n):
            if i:
                await asyncio.sleep(interval)
            data = piece(i)
            sent += len(data)
            if framing == "chunked":
                data = b"%x\r\n%s\r\n" % (len(data), data)
            await self.send(data)
        if framing == "chunked":
            await self.send(b"0\r\n\r\n")
        log({"ev": "done", "conn": self.id, "path": path, "bytes": sent,
             "ms": round((time.monotonic() - t0) * 1000)})

    async def push_http(self, q):
        total = int(float(q.get("mib", "1")) * 1048576)
        block = bytes(range(256)) * 256
        await self.respond(200, "OK", [("Content-Type", "application/octet-stream"),
                                       ("Content-Length", total)])
        t0, sent = time.monotonic(), 0
        while sent < total:
            n = min(len(block), total - sent)
            await self.send(block[:n])
            sent += n
        log({"ev": "done", "conn": self.id, "path": "/push", "bytes": sent,
             "ms": round((time.monotonic() - t0) * 1000)})

    # ---- WebSocket -----------------------------------------------------------

    async def websocket(self, data, path, q):
        exts = []
        if not self.args.no_deflate:
            exts.append(ServerPerMessageDeflateFactory(
                client_no_context_takeover=self.args.client_no_context_takeover,
                server_no_context_takeover=self.args.server_no_context_takeover))
        ws = ServerConnection(extensions=exts, max_size=None)
        self.ws = ws
        self.eof = False
        self.msg = None
        self.closed_logged = False
        ws.receive_data(data)
        request = None
        for ev in ws.events_received():
            request = ev
        if request is None:
            return
        response = ws.accept(request)
        ws.send_response(response)
        await self.flush()
        if response.status_code != 101:
            return
        log({"ev": "ws-open", "conn": self.id, "path": path,
             "extensions": response.headers.get("Sec-WebSocket-Extensions")})
        self.frag = max(1, int(q.get("frag", "1")))
        if path == "/ws/push":
            sender = asyncio.ensure_future(self.push_ws(q))
            try:
                await self.ws_loop(path)
            finally:
                sender.cancel()
        else:
            await self.ws_loop(path)

    async def flush(self):
        """Write what the connection has to send.  After the closing handshake the
        origin closes the TCP connection first (RFC 6455 7.1.1): self.eof is set."""
        for chunk in self.ws.data_to_send():
            if chunk:
                self.writer.write(chunk)
            else:
                self.eof = True
        await self.writer.drain()

    def log_close(self):
        ws = self.ws
        if self.closed_logged or ws.close_rcvd is None and ws.close_sent is None:
            return
        self.closed_logged = True
        if ws.close_rcvd_then_sent is None:
            who = "origin" if ws.close_sent is not None else "client"
        else:
            who = "client" if ws.close_rcvd_then_sent else "origin"
        c = ws.close_rcvd or ws.close_sent
        log({"ev": "ws-close", "conn": self.id, "code": c.code, "reason": c.reason,
             "from": who})

    async def ws_loop(self, path):
        ws = self.ws
        while True:
            chunk = await self.reader.read(65536)
            if chunk:
                ws.receive_data(chunk)
            else:
                ws.receive_eof()
            for frame in ws.events_received():
                await self.on_frame(frame, path)
            await self.flush()
            self.log_close()
            if not chunk or self.eof or ws.state.name == "CLOSED":
                break
        if ws.close_rcvd is None and ws.close_sent is None:
            log({"ev": "ws-close", "conn": self.id, "code": None, "reason": None, "from": None})

    async def on_frame(self, frame, path):
        if frame.opcode in (OP_TEXT, OP_BINARY, OP_CONT, OP_CLOSE):
            log({"ev": "ws-frame", "conn": self.id, "opcode": int(frame.opcode),
                 "fin": frame.fin, "len": len(frame.data)})
        if frame.opcode in (OP_TEXT, OP_BINARY):
            self.msg = [frame.opcode, [frame.data]]
        elif frame.opcode is OP_CONT and self.msg is not None:
            self.msg[1].append(frame.data)
        if frame.opcode not in (OP_TEXT, OP_BINARY, OP_CONT) or not frame.fin:
            return
        opcode, parts = self.msg
        self.msg = None
        data = b"".join(parts)
        log({"ev": "ws-msg", "conn": self.id, "type": "text" if opcode is OP_TEXT else "binary",
             "len": len(data), "sha256": hashlib.sha256(data).hexdigest(), "frames": len(parts)})
        if path != "/ws/echo" or self.ws.state.name != "OPEN":
            return
        if opcode is OP_TEXT and data.startswith(b"__close "):
            code, _, reason = data[8:].decode().partition(" ")
            self.ws.send_close(int(code), reason)
            return
        if opcode is OP_TEXT and data.startswith(b"__ping "):
            self.ws.send_ping(data[7:])
            return
        n = min(self.frag, max(1, len(data)))
        cuts = [len(data) * k // n for k in range(n + 1)]
        send = self.ws.send_text if opcode is OP_TEXT else self.ws.send_binary
        for k in range(n):
            piece, fin = data[cuts[k]:cuts[k + 1]], k == n - 1
            if k == 0:
                send(piece, fin=fin)
            else:
                self.ws.send_continuation(piece, fin=fin)
            await self.flush()

    async def push_ws(self, q):
        total = int(float(q.get("mib", "1")) * 1048576)
        size = int(q.get("msg", "65536"))
        block = (bytes(range(256)) * (size // 256 + 1))[:size]
        t0, sent = time.monotonic(), 0
        try:
            while sent < total and self.ws.state.name == "OPEN" and not self.eof:
                n = min(size, total - sent)
                self.ws.send_binary(block[:n])
                sent += n
                await self.flush()
            if self.ws.state.name == "OPEN":
                self.ws.send_text(b"done")
                await self.flush()
        except (ConnectionError, ssl.SSLError):
            pass
        log({"ev": "done", "conn": self.id, "path": "/ws/push", "bytes": sent,
             "ms": round((time.monotonic() - t0) * 1000)})


async def main():
    global LOG
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", help="PEM certificate: serve TLS")
    ap.add_argument("--key", help="PEM key of --cert")
    ap.add_argument("--log", help="JSON lines of what happened")
    ap.add_argument("--ready", help="file created once listening")
    ap.add_argument("--no-deflate", action="store_true", help="refuse permessage-deflate")
    ap.add_argument("--client-no-context-takeover", action="store_true",
                    help="make the client reset its compression context after every message")
    ap.add_argument("--server-no-context-takeover", action="store_true",
                    help="reset the origin's compression context after every message")
    args = ap.parse_args()
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["http/1.1"])

    async def handle(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await Conn(args, reader, writer).run()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, ssl=ctx,
                                        limit=1 << 20)
    if args.ready:
        open(args.ready, "w").close()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
