#!/bin/bash
# One audit line per request on every path (SPEC 7), also for requests torn
# down mid-flight: an origin that stalls mid-response (idle timeout), an
# origin that cuts its response short, a client that goes away mid-body or
# while the origin is being reached, a body awaited for dlp inspection that
# never comes, and shutdown with a download still running.
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
cat >"$T/policy.conf" <<'EOP'
policy = (
  { name = "no-rrn"; action = "block"; hosts = [ "www.example.test" ]; dlp = [ "kr-rrn" ]; },
  { name = "default"; action = "allow"; }
);
EOP
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(LIMITS='header_timeout_ms = 5000; idle_timeout_ms = 1000; shutdown_grace_ms = 800;' \
    proxy_conf "audit : { path = \"$AUDIT\"; };" '@include "policy.conf"')"
O=http://origin.test:$ORIGIN_PORT
W=http://www.example.test:$ORIGIN_PORT

# line PATH: the audit lines for requests to PATH, as "action status"
lines() {
    "$PY" - "$AUDIT" "$1" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("path") == sys.argv[2]:
        print(d["action"], d["status"])
PY
}

# An origin that stalls after 10 of 100000 bytes: the idle timeout ends it.
pcurl -o /dev/null "$O/stall/idle" 2>/dev/null
sleep 0.3
assert_eq "origin stalled mid-response (idle timeout): one line, allow 200" "allow 200" \
    "$(lines /stall/idle)"

# An origin that closes after 10 of 100000 bytes.
pcurl -o /dev/null "$O/cut/short" 2>/dev/null
sleep 0.3
assert_eq "origin cut the response short: one line, allow 200" "allow 200" "$(lines /cut/short)"

# A client that goes away in the middle of its request body.
printf 'POST %s/echo/midbody HTTP/1.1\r\nHost: origin.test:%s\r\nContent-Length: 1000\r\n\r\nonly ten b' \
    "$O" "$ORIGIN_PORT" | raw_req --timeout 0.5 >/dev/null
sleep 0.5
assert_eq "client left mid-body: one line, allow, no status" "allow None" "$(lines /echo/midbody)"

# A client that goes away while the origin is still being reached (a name
# that the resolver takes seconds to answer: a DNS server that never answers).
"$PY" -c 'import socket,time; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$T/dns.port" &
DNSPID=$!
PIDS+=("$DNSPID")
sleep 0.3
# (the proxy above uses the hosts file; a second proxy asks the silent server)
P2=$(free_port)
SAVE_PORT=$PROXY_PORT
PROXY_PORT=$P2
mkdir -p "$T/p2"
start_proxy "$T/p2" "$(DNS="hosts_file = \"$T/hosts\"; nameservers = [ \"127.0.0.1:$(cat "$T/dns.port")\" ];" \
    proxy_conf "audit : { path = \"$T/p2/audit.jsonl\"; };")"
printf 'GET http://silent.invalid-test/echo/dnswait HTTP/1.1\r\nHost: silent.invalid-test\r\n\r\n' |
    raw_req --timeout 0.5 >/dev/null
# (a client that only shut its sending side may still want the answer, so
# the proxy waits for the resolver, up to its 2 x 2 s, then writes the line)
sleep 0.3
stop_proxy TERM 10
assert_eq "client left while the origin was being resolved: one line" 1 \
    "$(audit_count "$T/p2/audit.jsonl" 'd["path"] == "/echo/dnswait"')"
PROXY_PORT=$SAVE_PORT
PROXY_PID=${PROXY_PIDS[0]}

# A body awaited for dlp inspection that never comes: the client leaves.
printf 'POST %s/echo/inspect HTTP/1.1\r\nHost: www.example.test:%s\r\nContent-Length: 5000\r\n\r\nabc' \
    "$W" "$ORIGIN_PORT" | raw_req --timeout 0.5 >/dev/null
sleep 0.5
assert_eq "client left while its body was awaited for inspection: one error line" "error None" \
    "$(lines /echo/inspect)"

# Shutdown while a download is still running: the grace period ends it.
curl -q -sS --max-time 10 -x "http://127.0.0.1:$PROXY_PORT" -o /dev/null "$O/slow/shutdown" \
    -X POST -T /dev/zero 2>/dev/null &
CURL=$!
PIDS+=("$CURL")
sleep 0.5
stop_proxy TERM 10
assert_eq "proxy exit status" 0 "$PROXY_RC"
assert_eq "request cut by shutdown: one line" 1 \
    "$(audit_count "$AUDIT" 'd["path"] == "/slow/shutdown"')"
assert_eq "every request has exactly one line" "" \
    "$("$PY" -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["path"] for l in open(sys.argv[1]))
print(" ".join(p for p, n in c.items() if n != 1))' "$AUDIT")"
"$AIGATE" -c "$T/aigate.conf" --verify-log "$AUDIT" >/dev/null 2>&1 || fail "--verify-log"
