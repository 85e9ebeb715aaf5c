#!/bin/bash
# CONNECT: a tunnel to an allowed port carries TLS end to end; other ports get
# 403 and are never dialled; a half-close travels through the tunnel.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
start_origin
start_echo
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="443, $NGINX_HTTPS_PORT, $ECHO_PORT" proxy_conf)"

# HTTPS through the tunnel, verified against the test CA
out=$(pcurl -p --cacert "$T/nginx/certs/ca.pem" -o "$T/small.out" -w '%{http_code} %{http_connect}' \
    "https://origin.test:$NGINX_HTTPS_PORT/small.txt")
assert_eq "CONNECT then GET: status and CONNECT status" "200 200" "$out"
assert_eq "body through the tunnel" "$(sha256sum <"$NGINX_HTML/small.txt")" "$(sha256sum <"$T/small.out")"
# several requests through one tunnel
out=$(pcurl -p --cacert "$T/nginx/certs/ca.pem" "https://origin.test:$NGINX_HTTPS_PORT/one.txt" \
    "https://origin.test:$NGINX_HTTPS_PORT/two.txt" | tr '\n' ' ')
assert_eq "two requests through one tunnel" "one two " "$out"

# A port not in connect_ports: 403, and the origin is never dialled
err=$(pcurl -p -o /dev/null "http://origin.test:$ORIGIN_PORT/echo" 2>&1)
assert_contains "curl: CONNECT to a port not allowed" "$err" "CONNECT tunnel failed, response 403"
printf 'CONNECT origin.test:%s HTTP/1.1\r\nHost: origin.test:%s\r\n\r\n' "$ORIGIN_PORT" "$ORIGIN_PORT" |
    raw_req --timeout 2 >"$T/c403.raw"
assert_match "raw CONNECT to a port not allowed" '^HTTP/1\.1 403' "$(head -n1 "$T/c403.raw")"
sleep 0.2
assert_eq "origin never dialled" 0 "$(grep -c '"accept"' "$ORIGIN_LOG")"

# Half-close: the client sends, shuts down its write side, and still gets the
# echo server's answer, which it only sends after it saw the end of input.
"$PY" - "$E2E" "$PROXY_PORT" "$ECHO_PORT" <<'EOF' || fail "half-close through the tunnel"
import socket, sys
sys.path.insert(0, sys.argv[1])
import httpc

port, echo = int(sys.argv[2]), int(sys.argv[3])
s = httpc.connect(port)
s.sendall(b"CONNECT origin.test:%d HTTP/1.1\r\nHost: origin.test:%d\r\n\r\n" % (echo, echo))
head = b""
while b"\r\n\r\n" not in head:
    b = s.recv(1)
    if not b:
        sys.exit("no CONNECT answer")
    head += b
if not head.startswith(b"HTTP/1.1 200"):
    sys.exit("CONNECT answered %r" % head)
payload = b"half-close payload " * 1000
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
got, closed = httpc.recv_all(s, 5)
if got != payload:
    sys.exit("echo: got %d bytes, want %d" % (len(got), len(payload)))
if not closed:
    sys.exit("tunnel not closed after the server closed")
print("ok - half-close: %d bytes echoed after SHUT_WR, then closed" % len(got))
EOF
