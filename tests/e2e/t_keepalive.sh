#!/bin/bash
# Keep-alive on both sides: several requests on one client connection travel
# over one origin connection; pipelined requests are answered in order.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
start_origin
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf)"
N=http://origin.test:$NGINX_HTTP_PORT

# Three requests on one client connection -> one upstream connection
out=$(pcurl -w ' %{num_connects}\n' "$N/one.txt" "$N/two.txt" "$N/three.txt" | tr '\n' ' ')
assert_eq "three bodies, one client connection" "one  1 two  0 three  0 " "$out"
sleep 0.2 # nginx writes its access log line after the response
lines=$(nginx_requests '"GET /(one|two|three)\.txt HTTP/1\.1" 200')
assert_eq "nginx served three requests" 3 "$(grep -c . <<<"$lines")"
assert_eq "over one upstream connection" 1 "$(cut -d' ' -f1 <<<"$lines" | sort -u | grep -c .)"
assert_eq "as requests 1, 2, 3 of that connection" "1 2 3" "$(cut -d' ' -f2 <<<"$lines" | tr '\n' ' ' | sed 's/ $//')"

# Pipelining: three requests in one write, to nginx and to origin.py (with a
# POST body and a chunked answer in the middle), answered in order.
"$PY" - "$E2E" "$PROXY_PORT" "$N" "http://origin.test:$ORIGIN_PORT" <<'EOF' || fail "pipelining"
import sys
sys.path.insert(0, sys.argv[1])
import httpc

port, n, o = int(sys.argv[2]), sys.argv[3], sys.argv[4]
ok = True


def check(desc, want, got):
    global ok
    if want == got:
        print("ok - " + desc)
    else:
        print("not ok - %s: expected %r, got %r" % (desc, want, got))
        ok = False


s = httpc.connect(port)
req = "".join("GET %s/%s.txt HTTP/1.1\r\nHost: %s\r\n\r\n" % (n, w, n[7:])
              for w in ("one", "two", "three"))
s.sendall(req.encode())
r = httpc.Reader(s)
for w in ("one", "two", "three"):
    st, h, body = r.response()
    check("pipelined nginx answer %s" % w, (200, w + "\n"), (st, body.decode()))

req = ("POST %s/body/p1 HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello"
       "GET %s/chunked HTTP/1.1\r\nHost: %s\r\n\r\n"
       "POST %s/body/p3 HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
       % (o, o[7:], o, o[7:], o, o[7:]))
s.sendall(req.encode())
for want in (b"hello", b"hello chunked world\n", b"abc"):
    st, h, body = r.response()
    check("pipelined origin answer %r" % want, (200, want), (st, body))
s.close()
sys.exit(0 if ok else 1)
EOF
