#!/bin/bash
# Ambiguous or malformed requests are refused (400, 431 for an oversized head),
# the connection is closed after the answer (RFC 9112 sections 6.3 and 11.2),
# and nothing reaches the origin.  Then the llhttp conformance corpus, when
# tests/e2e/conformance.py and the corpus are present.
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf)"

"$PY" - "$E2E" "$PROXY_PORT" "origin.test:$ORIGIN_PORT" <<'EOF' || fail "malformed requests"
import sys
sys.path.insert(0, sys.argv[1])
import httpc

port, auth = int(sys.argv[2]), sys.argv[3].encode()


def req(name, head, body=b"", method=b"POST", version=b"HTTP/1.1", eol=b"\r\n"):
    line = b"%s http://%s/__fr_%s %s" % (method, auth, name.encode(), version)
    lines = [line, b"Host: " + auth] + head
    return eol.join(lines) + eol + eol + body


CHUNKED = [b"Transfer-Encoding: chunked"]
cases = [
    ("cl_te", 400, req("cl_te", [b"Content-Length: 5"] + CHUNKED, b"0\r\n\r\n")),
    ("te_cl", 400, req("te_cl", CHUNKED + [b"Content-Length: 5"], b"0\r\n\r\n")),
    ("two_cl", 400, req("two_cl", [b"Content-Length: 5", b"Content-Length: 6"], b"hello!")),
    ("cl_list", 400, req("cl_list", [b"Content-Length: 5, 6"], b"hello!")),
    ("te_gzip", 400, req("te_gzip", [b"Transfer-Encoding: gzip"], b"abc")),
    ("te_chunked_identity", 400,
     req("te_chunked_identity", [b"Transfer-Encoding: chunked, identity"], b"0\r\n\r\n")),
    ("chunk_size_zz", 400, req("chunk_size_zz", CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n")),
    ("chunk_size_overflow", 400,
     req("chunk_size_overflow", CHUNKED, b"ffffffffffffffffffff1\r\nhello\r\n0\r\n\r\n")),
    ("obs_fold", 400, req("obs_fold", [b"X-Folded: a", b" b"], method=b"GET")),
    ("nul_in_header", 400, req("nul_in_header", [b"X-Nul: a\x00b"], method=b"GET")),
    ("bare_cr_in_header", 400, req("bare_cr_in_header", [b"X-Cr: a\rb"], method=b"GET")),
    ("bare_lf", 400, req("bare_lf", [b"X-Lf: a"], method=b"GET", eol=b"\n")),
    ("space_before_colon", 400, req("space_before_colon", [b"X-Sp : a"], method=b"GET")),
    ("header_70k", 431, req("header_70k", [b"X-Big: " + b"a" * (70 * 1024)], method=b"GET")),
    ("unknown_method", 400, req("unknown_method", [], method=b"FROB")),
    ("http_2_0", 400, req("http_2_0", [], method=b"GET", version=b"HTTP/2.0")),
    # SPEC 12 / RFC 9112 3.2: one Host, naming the target's authority
    ("two_host", 400, req("two_host", [b"Host: " + auth], method=b"GET")),
    ("two_host_differing", 400, req("two_host_differing", [b"Host: www.example.test"],
                                    method=b"GET")),
    ("host_other_site", 400,
     b"GET http://%s/__fr_host_other_site HTTP/1.1\r\nHost: www.example.test\r\n\r\n" % auth),
    ("host_other_port", 400,
     b"GET http://%s/__fr_host_other_port HTTP/1.1\r\nHost: origin.test:1\r\n\r\n" % auth),
    ("host_no_port", 400,
     b"GET http://%s/__fr_host_no_port HTTP/1.1\r\nHost: origin.test\r\n\r\n" % auth),
    ("host_empty", 400,
     b"GET http://%s/__fr_host_empty HTTP/1.1\r\nHost: \r\n\r\n" % auth),
]

ok = True
for name, want, data in cases:
    s = httpc.connect(port)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    raw, closed = httpc.recv_all(s, 3)
    s.close()
    got = httpc.status_of(raw)
    good = got == want and closed
    ok = ok and good
    print("%s - %s: want %d and close, got %d%s" %
          ("ok" if good else "not ok", name, want, got, "" if closed else " (left open)"))
sys.exit(0 if ok else 1)
EOF
sleep 0.3
assert_eq "no malformed request reached the origin" "" "$(origin_reqs __fr_)"

# Host differing from the target only by case, a trailing dot or spelling is fine
# (the forwarded Host is the target's).
host_ok=$(printf 'GET http://origin.test:%s/echo/host_case HTTP/1.1\r\nHost: ORIGIN.Test.:%s\r\nConnection: close\r\n\r\n' \
    "$ORIGIN_PORT" "$ORIGIN_PORT" | raw_req --summary)
assert_eq "Host differing only in case and a trailing dot: forwarded" "200 closed" "$host_ok"

# The proxy is still fine afterwards
assert_eq "a good request after the bad ones" 200 \
    "$(pcurl -o /dev/null -w '%{http_code}' "http://origin.test:$ORIGIN_PORT/echo/good")"

# llhttp conformance corpus (tests/e2e/conformance.py is maintained separately;
# it takes the corpus as its last argument)
corpus=${AIGATE_CONFORMANCE:-../shared/conformance/llhttp-requests.json}
case $corpus in /*) ;; *) corpus=$ROOT/$corpus ;; esac
if [ ! -e "$E2E/conformance.py" ]; then
    echo "skip: conformance corpus run ($E2E/conformance.py is absent)"
elif [ ! -e "$corpus" ]; then
    echo "skip: conformance corpus run ($corpus is absent)"
else
    if "$PY" "$E2E/conformance.py" --proxy "127.0.0.1:$PROXY_PORT" --origin-self "$corpus" \
        >"$T/conformance.out" 2>&1; then
        pass "conformance corpus: $(tail -n1 "$T/conformance.out")"
    else
        fail "conformance corpus"
        tail -n 30 "$T/conformance.out" >&2
    fi
fi
