#!/bin/bash
# Who may use the proxy: client_networks, origin-form requests (not a proxy
# request), and limits.max_connections.
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
O=http://origin.test:$ORIGIN_PORT

# A client outside client_networks gets 403 and the origin sees nothing
mkdir -p "$T/denied"
PROXY_PORT=$(free_port)
start_proxy "$T/denied" "$(proxy_conf 'client_networks = [ "10.0.0.0/8" ];')"
assert_eq "client outside client_networks" 403 "$(pcurl -o /dev/null -w '%{http_code}' "$O/echo/denied")"
err=$(pcurl -p -o /dev/null "https://origin.test:443/" 2>&1)
assert_contains "CONNECT from outside client_networks" "$err" "response 403"
stop_proxy
assert_eq "origin saw nothing from the denied client" 0 "$(origin_count)"

# An origin-form request is not a proxy request
mkdir -p "$T/originform"
PROXY_PORT=$(free_port)
start_proxy "$T/originform" "$(proxy_conf)"
printf 'GET /echo/originform HTTP/1.1\r\nHost: origin.test:%s\r\n\r\n' "$ORIGIN_PORT" |
    raw_req --timeout 2 --summary >"$T/of"
assert_match "origin-form request refused with 400" '^400 ' "$(cat "$T/of")"
assert_eq "origin-form request not forwarded" 0 "$(origin_count originform)"
assert_eq "proxy still serves after the origin-form request" 200 \
    "$(pcurl --max-time 3 -o /dev/null -w '%{http_code}' "$O/echo/after-originform")"
stop_proxy

mkdir -p "$T/maxconn"
PROXY_PORT=$(free_port)
start_proxy "$T/maxconn" "$(LIMITS='max_connections = 5; header_timeout_ms = 10000; idle_timeout_ms = 10000;' proxy_conf)"

# max_connections = 5: five connections work, the sixth is refused or closed
# (not served, not left hanging), and a freed slot can be used again.
"$PY" - "$E2E" "$PROXY_PORT" "$O" <<'EOF' || fail "max_connections"
import socket, sys, time
sys.path.insert(0, sys.argv[1])
import httpc

port, o = int(sys.argv[2]), sys.argv[3]
ok = True


def get(s, what):
    s.sendall(b"GET %s/echo/%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (o.encode(), what.encode(), o[7:].encode()))
    return httpc.Reader(s).response()[0]


def say(good, msg):
    global ok
    print(("ok - " if good else "not ok - ") + msg)
    ok = ok and good


five = [httpc.connect(port) for _ in range(5)]
time.sleep(0.5)  # let the proxy accept them all
try:
    sixth = httpc.connect(port, timeout=3)
    sixth.sendall(b"GET %s/echo/sixth HTTP/1.1\r\nHost: %s\r\n\r\n" % (o.encode(), o[7:].encode()))
    raw, closed = httpc.recv_all(sixth, 3)
    st = httpc.status_of(raw)
    if closed and not 200 <= st < 300:
        say(True, "sixth connection closed (status %d)" % st)
    elif not closed and st == 0:
        say(False, "sixth connection neither refused nor closed within 3 s (left in the backlog?)")
    else:
        say(False, "sixth connection served: status %d, closed %s" % (st, closed))
    sixth.close()
except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
    say(True, "sixth connection refused (%s)" % e.__class__.__name__)
for i, s in enumerate(five):
    try:
        st = get(s, "five%d" % i)
    except (OSError, EOFError) as e:
        st = repr(e)
    say(st == 200, "connection %d of five served (%s)" % (i + 1, st))
five[0].close()
time.sleep(0.5)
s = httpc.connect(port)
try:
    st = get(s, "again")
except (OSError, EOFError) as e:
    st = repr(e)
say(st == 200, "a freed slot serves a new connection (%s)" % st)
sys.exit(0 if ok else 1)
EOF
assert_eq "the sixth request never reached the origin" 0 "$(origin_count sixth)"
