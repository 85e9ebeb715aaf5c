#!/usr/bin/env python3
"""Test origin for the aigate end-to-end tests.

Modes:
  http      threaded HTTP/1.1 origin with keep-alive.  Every accepted connection
            and every request head it reads is appended to --log as one JSON
            line ({"ev":"accept"} / {"ev":"req", ...}), so a test can tell
            exactly what reached the origin.  Paths:
              /echo[...]        200, JSON: method, target, version, headers
                                (list of [name, value]), body_len, body_sha256
              /body[...]        200, the request body verbatim
              /slow[...]        never answers (waits for the peer to close)
              /chunked[?bytes=N] 200 with a chunked body (default "hello chunked world\n";
                                with bytes=N, N bytes of a repeating pattern)
              /close[...]       200 delimited by connection close
              /status/NNN       status NNN, short text body (none for 1xx/204/304)
              anything else     200 "ok\n"
            Request bodies may use Content-Length or chunked encoding.
  tcp-echo  reads until the peer half-closes, then sends every byte back and closes.
  dns-nx    UDP DNS server answering every query with NXDOMAIN.

Only ever binds 127.0.0.1; --ready FILE is created once the socket is bound.
With --tls-cert CERT --tls-key KEY the http mode speaks HTTPS (TLS is
handshaken on the connection's own thread).
"""
import argparse
import base64
import hashlib
import json
import socket
import socketserver
import ssl
import threading

LOG_LOCK = threading.Lock()
LOG_FILE = None
CONN_IDS = iter(range(1, 1 << 62))
CONN_LOCK = threading.Lock()


def log(rec):
    if LOG_FILE is None:
        return
    line = json.dumps(rec) + "\n"
    with LOG_LOCK:
        with open(LOG_FILE, "a") as f:
            f.write(line)


class BadRequest(Exception):
    pass


def read_line(rfile, limit=1 << 20):
    line = rfile.readline(limit)
    if line and not line.endswith(b"\n"):
        raise BadRequest("line too long")
    return line


def read_chunked(rfile):
    body = bytearray()
    while True:
        line = read_line(rfile)
        if not line:
            raise BadRequest("eof in chunk size")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailers
                t = read_line(rfile)
                if t in (b"\r\n", b"\n", b""):
                    return bytes(body)
        data = rfile.read(size)
        if len(data) != size:
            raise BadRequest("eof in chunk data")
        body += data
        if read_line(rfile) not in (b"\r\n", b"\n"):
            raise BadRequest("no CRLF after chunk")


def pattern(n):
    block = bytes(range(256)) * 64
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


class HTTPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        with CONN_LOCK:
            cid = next(CONN_IDS)
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as e:
                log({"ev": "tls-fail", "conn": cid, "error": str(e)})
                return
        log({"ev": "accept", "conn": cid})
        nreq = 0
        try:
            while self.one_request(cid, nreq):
                nreq += 1
        except (BadRequest, ValueError) as e:
            log({"ev": "bad", "conn": cid, "error": str(e)})
        except (ConnectionError, OSError):
            pass

    def one_request(self, cid, nreq):
        line = read_line(self.rfile)
        while line in (b"\r\n", b"\n"):
            line = read_line(self.rfile)
        if not line:
            return False
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(parts) != 3:
            raise BadRequest("bad request line %r" % line)
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = []
        while True:
            h = read_line(self.rfile)
            if h in (b"\r\n", b"\n"):
                break
            if not h:
                raise BadRequest("eof in head")
            name, _, value = h.rstrip(b"\r\n").partition(b":")
            headers.append([name.decode("latin-1"), value.strip().decode("latin-1")])
        hmap = {}
        for n, v in headers:
            hmap.setdefault(n.lower(), []).append(v)
        te = ",".join(hmap.get("transfer-encoding", [])).lower()
        if "chunked" in te:
            body = read_chunked(self.rfile)
        elif "content-length" in hmap:
            n = int(hmap["content-length"][0])
            body = self.rfile.read(n)
            if len(body) != n:
                raise BadRequest("eof in body")
        else:
            body = b""
        rec = {
            "ev": "req",
            "conn": cid,
            "n": nreq,
            "method": method,
            "target": target,
            "version": version,
            "headers": headers,
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        log(rec)
        conn_hdr = ",".join(hmap.get("connection", [])).lower()
        keep = version == "HTTP/1.1" and "close" not in conn_hdr
        return self.respond(rec, body, method, target, keep)

    def send(self, status, body, ctype="text/plain", keep=True, extra=b"", head=False):
        reason = b"OK" if status == 200 else b"Status"
        out = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        out += b"Content-Type: " + ctype.encode() + b"\r\n"
        if not (100 <= status < 200 or status in (204, 304)):
            out += b"Content-Length: %d\r\n" % len(body)
        else:
            body = b""
        if not keep:
            out += b"Connection: close\r\n"
        out += extra + b"\r\n"
        if not head:
            out += body
        self.wfile.write(out)
        self.wfile.flush()
        return keep

    def respond(self, rec, body, method, target, keep):
        path = target
        if "://" in path:
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        path, _, query = path.partition("?")
        head = method == "HEAD"
        if path.startswith("/echo"):
            doc = dict(rec)
            del doc["ev"]
            data = json.dumps(doc).encode() + b"\n"
            return self.send(200, data, "application/json", keep, head=head)
        if path.startswith("/body"):
            return self.send(200, body, "application/octet-stream", keep, head=head)
        if path.startswith("/slow"):
            self.connection.settimeout(None)
            while self.connection.recv(65536):
                pass
            return False
        if path.startswith("/chunked"):
            if query.startswith("bytes="):
                data = pattern(int(query[6:]))
            else:
                data = b"hello chunked world\n"
            out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            if not head:
                for i in range(0, len(data), 7000):
                    piece = data[i:i + 7000]
                    out += b"%x\r\n%s\r\n" % (len(piece), piece)
                out += b"0\r\n\r\n"
            self.wfile.write(out)
            self.wfile.flush()
            return keep
        if path.startswith("/stall") or path.startswith("/cut"):
            # A head promising 100000 bytes, 10 of them, then: /stall waits
            # for the client to go away, /cut closes (a truncated response).
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 100000\r\n\r\n0123456789")
            self.wfile.flush()
            if path.startswith("/stall"):
                self.connection.settimeout(None)
                while self.connection.recv(65536):
                    pass
            return False
        if path.startswith("/close"):
            out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
            if not head:
                out += b"closed-delimited body\n"
            self.wfile.write(out)
            self.wfile.flush()
            return False
        if path.startswith("/status/"):
            status = int(path[len("/status/"):len("/status/") + 3])
            return self.send(status, b"status %d\n" % status, keep=keep, head=head)
        return self.send(200, b"ok\n", keep=keep, head=head)


class TCPEchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        log({"ev": "accept"})
        data = bytearray()
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            data += b
        log({"ev": "eof", "len": len(data)})
        self.request.sendall(bytes(data))
        self.request.shutdown(socket.SHUT_WR)


class DNSNXHandler(socketserver.BaseRequestHandler):
    def handle(self):
        q, sock = self.request
        if len(q) < 12:
            return
        flags = 0x8000 | (q[2] & 0x01) << 8 | 0x0080 | 3  # QR, RD copied, RA, NXDOMAIN
        end = 12
        while end < len(q) and q[end] != 0:  # skip the QNAME labels
            end += 1 + q[end]
        question = q[12:end + 5]  # QNAME, its terminator, QTYPE, QCLASS
        resp = q[:2] + flags.to_bytes(2, "big") + b"\0\1\0\0\0\0\0\0" + question
        sock.sendto(resp, self.client_address)


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class TLSServer(TCPServer):
    """TCPServer whose accepted sockets are wrapped in TLS (handshake on the handler's thread)."""
    ctx = None

    def get_request(self):
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    global LOG_FILE
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=["http", "tcp-echo", "dns-nx"], default="http")
    ap.add_argument("--log")
    ap.add_argument("--ready", help="file created once the socket is bound")
    ap.add_argument("--tls-cert", help="http mode over TLS with this certificate (PEM)")
    ap.add_argument("--tls-key", help="the certificate's key (PEM)")
    args = ap.parse_args()
    LOG_FILE = args.log
    addr = ("127.0.0.1", args.port)
    if args.mode == "http" and args.tls_cert:
        TLSServer.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLSServer.ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv = TLSServer(addr, HTTPHandler)
    elif args.mode == "http":
        srv = TCPServer(addr, HTTPHandler)
    elif args.mode == "tcp-echo":
        srv = TCPServer(addr, TCPEchoHandler)
    else:
        srv = UDPServer(addr, DNSNXHandler)
    if args.ready:
        open(args.ready, "w").close()
    srv.serve_forever()


if __name__ == "__main__":
    main()
