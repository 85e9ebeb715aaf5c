#!/bin/bash
# /healthz (issue 11, defect 8): "ok" (200) while serving; 503 and the reason
# in the body while draining after SIGTERM (the admin listener keeps answering
# until the workers are done, so a load balancer sees it) and while the audit
# writer is dropping lines (here: an audit log on /dev/full, so every write
# fails with ENOSPC and the 4 MiB queue fills).
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
ADMIN=$(free_port)
PROXY_PORT=$(free_port)
start_proxy "$T" "$(LIMITS='shutdown_grace_ms = 4000; idle_timeout_ms = 30000;' proxy_conf \
    "admin : { listen = \"127.0.0.1:$ADMIN\"; };" "audit : { path = \"$T/audit.jsonl\"; };")"
wait_port "$ADMIN" 5 || die "admin listener not up"

hz() {
    curl -q -sS --max-time 5 -o "$T/hz.body" -w '%{http_code}' "http://127.0.0.1:$ADMIN/healthz"
}
assert_eq "/healthz while serving: 200" 200 "$(hz)"
assert_eq "/healthz body: ok" ok "$(cat "$T/hz.body")"

# A long upload keeps a worker busy while draining.
curl -q -sS --max-time 20 -x "http://127.0.0.1:$PROXY_PORT" -o /dev/null -X POST -T /dev/zero \
    "http://origin.test:$ORIGIN_PORT/slow/drain" 2>/dev/null &
PIDS+=("$!")
sleep 0.5
kill -TERM "$PROXY_PID"
sleep 0.5
alive "$PROXY_PID" || fail "proxy exited before the grace period was over"
assert_eq "/healthz while draining: 503" 503 "$(hz)"
assert_contains "/healthz says why: draining" "$(cat "$T/hz.body")" "draining"
stop_proxy TERM 10
assert_eq "proxy exit status after draining" 0 "$PROXY_RC"

# An audit log that cannot be written: once lines are dropped, /healthz is 503.
mkdir -p "$T/full"
start_proxy "$T/full" "$(proxy_conf "admin : { listen = \"127.0.0.1:$ADMIN\"; };" \
    'audit : { path = "/dev/full"; };')"
wait_port "$ADMIN" 5 || die "admin listener not up"
assert_eq "/healthz before any line: 200" 200 "$(hz)"
# 20000 pipelined OPTIONS answered by the proxy itself: one ~400-byte audit line each.
"$PY" - "$PROXY_PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = b"OPTIONS http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\nMax-Forwards: 0\r\n\r\n"
n, got = 20000, 0
s.sendall(req * n)
s.settimeout(30)
buf = b""
while got < n:
    b = s.recv(1 << 20)
    if not b:
        break
    buf += b
    got += buf.count(b"HTTP/1.1 200")
    buf = buf[buf.rfind(b"HTTP/1.1 200") + 1:] if b"HTTP/1.1 200" in buf else buf
print("answered", got)
PY
for i in $(seq 50); do [ "$(hz)" = 503 ] && break; sleep 0.1; done
assert_eq "/healthz while audit lines are dropped: 503" 503 "$(hz)"
assert_contains "/healthz says why: audit" "$(cat "$T/hz.body")" "audit log"
assert_match "/metrics counts the dropped lines" '^aigate_audit_dropped_total [1-9]' \
    "$(curl -q -sS "http://127.0.0.1:$ADMIN/metrics")"
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
