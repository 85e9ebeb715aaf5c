#!/bin/bash
# Two aigate nodes behind a real HAProxy (send-proxy-v2, /healthz checks, no
# affinity) sharing their acknowledgements through a real redis-server
# (SPEC 10): an acknowledgement made through one node is honoured by the
# other, its token cannot be replayed on the other, it expires on both; with
# Redis down the caution page comes back (never an allow), the ack POST gets
# 503 and /healthz says why; Redis back: service resumes without restarting
# aigate; a node killed with SIGKILL: HAProxy's checks move clients to the
# other within its check interval.
source "$(dirname "$0")/lib.sh"
command -v haproxy >/dev/null || die "haproxy is missing: make test-deps"

start_origin
printf '127.0.0.1 origin.test perplexity.ai\n' >"$T/hosts"
start_redis "$T/redis"
cat >"$T/policy.conf" <<'EOP'
policy = ( { name = "caution"; action = "warn"; services = [ "perplexity" ]; ack_ttl_s = 4; } );
EOP
# Both nodes share the acknowledgement secret (tokens verify on either) but not their logs.
"$PY" -c 'import os; print(os.urandom(32).hex())' >"$T/ack.secret"
chmod 600 "$T/ack.secret"

# node NAME PORT ADMIN: the configuration of one node
node_conf() {
    PROXY_PORT=$2 proxy_conf 'proxy_protocol = [ "127.0.0.1/32" ];' \
        "auth : { mode = \"basic\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
        "admin : { listen = \"127.0.0.1:$3\"; };" \
        "ack : { secret_file = \"$T/ack.secret\"; store = \"redis://127.0.0.1:$REDIS_PORT/3\"; };" \
        "audit : { path = \"$T/$1/audit.jsonl\"; node = \"$1\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        "@include \"$ROOT/rules/services.conf\"" "@include \"$T/policy.conf\""
}
A=$(free_port); AA=$(free_port); B=$(free_port); BA=$(free_port)
mkdir -p "$T/a" "$T/b"
PROXY_PORT=$A start_proxy "$T/a" "$(node_conf a "$A" "$AA")"
PID_A=$PROXY_PID
PROXY_PORT=$B start_proxy "$T/b" "$(node_conf b "$B" "$BA")"
PID_B=$PROXY_PID
FRONT=$(free_port)
start_haproxy "$T/haproxy" "$(haproxy_conf "$FRONT" send-proxy-v2 "$A:$AA" "$B:$BA")"

URL="http://perplexity.ai:$ORIGIN_PORT/echo/fleet"
HTML='Accept: text/html'
# through PORT (a node directly, from 127.0.0.3 which is not a balancer, or HAProxy)
req() {
    local port=$1
    shift
    curl -q -sS --max-time 10 --interface 127.0.0.3 -x "http://alice:alice-pass@127.0.0.1:$port" \
        -H "$HTML" "$@" 2>/dev/null
}
code() {
    req "$@" -o "$T/body" -w '%{http_code}'
}
ack() { # PORT TOKEN
    req "$1" --data-urlencode "url=$URL" --data-urlencode "token=$2" -o "$T/ack.out" \
        -w '%{http_code}' "http://perplexity.ai:$ORIGIN_PORT/__aigate/ack"
}
token_from() { # PORT
    req "$1" -o "$T/page.html" "$URL" >/dev/null
    form_field "$T/page.html" token
}
hz() {
    curl -q -sS --max-time 5 -o "$T/hz" -w '%{http_code}' "http://127.0.0.1:$1/healthz"
}

for i in $(seq 50); do [ "$(hz "$AA")" = 200 ] && [ "$(hz "$BA")" = 200 ] && break; sleep 0.1; done
assert_eq "node a healthy with Redis up" 200 "$(hz "$AA")"
assert_eq "warned: caution page on node a" 403 "$(code "$A" "$URL")"
TOKEN=$(token_from "$A")
[ -n "$TOKEN" ] || fail "no token on the caution page"
assert_eq "acknowledged through node a: 303" 303 "$(ack "$A" "$TOKEN")"
assert_eq "honoured by node b" 200 "$(code "$B" "$URL")"
assert_eq "and by node a" 200 "$(code "$A" "$URL")"
assert_eq "the used token replayed on node b: refused" 403 "$(ack "$B" "$TOKEN")"
assert_contains "refused as already used" "$(cat "$T/ack.out")" "already used"
ok=0
for i in 1 2 3 4; do [ "$(code "$FRONT" "$URL")" = 200 ] && ok=$((ok + 1)); done
assert_eq "four requests through HAProxy (round-robin, no affinity): all allowed" 4 "$ok"
assert_le "HAProxy spread them over both nodes" 1 "$(wait_audit "$T/b/audit.jsonl" \
    'd["client"] == "127.0.0.3" and d["status"] == 200 and d["node"] == "b"')"
sleep 4.5
assert_eq "expired on node a" 403 "$(code "$A" "$URL")"
assert_eq "expired on node b" 403 "$(code "$B" "$URL")"

# Redis down: caution again (never an allow), ack 503, /healthz not ok.
TOKEN=$(token_from "$B")
assert_eq "fresh acknowledgement through node b" 303 "$(ack "$B" "$TOKEN")"
assert_eq "allowed on node a" 200 "$(code "$A" "$URL")"
stop_redis
assert_eq "Redis down: the caution page again on node a (never an allow)" 403 "$(code "$A" "$URL")"
assert_eq "Redis down: the caution page again on node b" 403 "$(code "$B" "$URL")"
TOKEN=$(token_from "$A")
assert_eq "Redis down: the ack POST gets 503" 503 "$(ack "$A" "$TOKEN")"
for i in $(seq 50); do [ "$(hz "$AA")" = 503 ] && break; sleep 0.1; done
assert_eq "Redis down: /healthz 503" 503 "$(hz "$AA")"
assert_contains "/healthz says why" "$(cat "$T/hz")" "ack store"
start_redis "$T/redis" "$REDIS_PORT"
for i in $(seq 100); do [ "$(hz "$AA")" = 200 ] && [ "$(hz "$BA")" = 200 ] && break; sleep 0.1; done
assert_eq "Redis back: node a healthy again, not restarted" 200 "$(hz "$AA")"
TOKEN=$(token_from "$A")
assert_eq "Redis back: acknowledgements recorded again" 303 "$(ack "$A" "$TOKEN")"
assert_eq "Redis back: honoured on node b" 200 "$(code "$B" "$URL")"

# Node a killed: clients through HAProxy go to node b within the check interval
# (an allowed site: the acknowledgement above expires meanwhile).
PLAIN="http://origin.test:$ORIGIN_PORT/echo/failover"
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null
t0=$(now_ms)
first_ok=""
fails=0
while [ $(($(now_ms) - t0)) -lt 4000 ]; do
    if [ "$(code "$FRONT" "$PLAIN")" = 200 ]; then
        [ -n "$first_ok" ] || first_ok=$(($(now_ms) - t0))
    else
        fails=$((fails + 1))
        [ -n "$first_ok" ] && first_ok=""
    fi
    sleep 0.05
done
[ -n "$first_ok" ] || first_ok=99999
assert_le "after SIGKILL of node a, requests through HAProxy succeed within its check interval (ms)" \
    "$first_ok" 1500
down=$(grep -c 'node1 is DOWN' "$T/haproxy/haproxy.log")
assert_eq "HAProxy's /healthz checks marked node a down" 1 "$down"
for i in 1 2 3 4; do
    assert_eq "through HAProxy after the failover ($i)" 200 "$(code "$FRONT" "$PLAIN")"
done
PROXY_PIDS=("$PID_B")
PROXY_PID=$PID_B
stop_proxy
assert_eq "node b exit status" 0 "$PROXY_RC"
"$AIGATE" -c "$T/b/aigate.conf" --verify-log "$T/b/audit.jsonl" >/dev/null 2>&1 ||
    fail "node b's chain does not verify"
