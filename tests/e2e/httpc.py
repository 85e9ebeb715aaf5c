#!/usr/bin/env python3
"""Raw HTTP client helpers for the end-to-end tests (importable, and a CLI).

CLI: httpc.py PORT [--timeout S] [--summary] [--shut]
  Sends stdin, byte for byte and in one write, to 127.0.0.1:PORT, then reads
  until the proxy closes or S seconds (default 3) pass without data.  Prints
  the raw bytes received, or with --summary one line "STATUS closed|open"
  (STATUS is the first response's status code, 0 if none).  --shut half-closes
  the sending side after the write.
"""
import argparse
import socket
import sys


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_all(sock, timeout=3.0):
    """Read until EOF or until timeout seconds pass without data.
    Returns (data, closed): closed is True on EOF or reset."""
    sock.settimeout(timeout)
    data = bytearray()
    while True:
        try:
            b = sock.recv(65536)
        except socket.timeout:
            return bytes(data), False
        except ConnectionResetError:
            return bytes(data), True
        if not b:
            return bytes(data), True
        data += b


def status_of(raw):
    """Status code of the first response in raw, 0 if there is none."""
    try:
        line = raw.split(b"\r\n", 1)[0]
        if not line.startswith(b"HTTP/1."):
            return 0
        return int(line.split(b" ")[1])
    except (IndexError, ValueError):
        return 0


class Reader:
    """Reads successive responses from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("connection closed")
        self.buf += b

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, head_request=False):
        """Returns (status, headers as {lowercase name: [values]}, body)."""
        line = self._line()
        status = int(line.split(b" ")[1])
        headers = {}
        while True:
            h = self._line()
            if not h:
                break
            name, _, value = h.partition(b":")
            headers.setdefault(name.decode("latin-1").lower(), []).append(
                value.strip().decode("latin-1"))
        if head_request or 100 <= status < 200 or status in (204, 304):
            return status, headers, b""
        if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, bytes(body)
                body += self._exact(size)
                self._line()
        if "content-length" in headers:
            return status, headers, self._exact(int(headers["content-length"][0]))
        body = bytearray(self.buf)
        self.buf.clear()
        while True:
            b = self.sock.recv(65536)
            if not b:
                return status, headers, bytes(body)
            body += b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--shut", action="store_true")
    args = ap.parse_args()
    data = sys.stdin.buffer.read()
    s = connect(args.port)
    try:
        s.sendall(data)
        if args.shut:
            s.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the proxy may refuse before reading everything; read its answer
    raw, closed = recv_all(s, args.timeout)
    s.close()
    if args.summary:
        print(status_of(raw), "closed" if closed else "open")
    else:
        sys.stdout.buffer.write(raw)


if __name__ == "__main__":
    main()
