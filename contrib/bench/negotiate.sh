#!/usr/bin/env bash
# contrib/bench/negotiate.sh — Kerberos (Negotiate) proxy authentication: what it costs,
# and that checking tokens never stalls an event loop.  Not a test: it prints numbers
# (and keeps them in contrib/bench/results/negotiate-*.txt).
#
# A real MIT KDC and nginx (a 1 KiB file) as the test helpers start them
# (tests/e2e/lib.sh); aigate with one worker (one event loop) and its offload pool (2
# threads), not pinned; clients on the same machine.
#  1. requests/s on one kept-alive connection (wrk -c1 -t1, contrib/bench/negotiate.lua):
#     no authentication; Basic on every request (the worker's credential cache: no
#     bcrypt after the first); Negotiate, a token on the first request only (the
#     connection is signed in after it);
#  2. new connections/s, each a GET with "Connection: close" (negotiate_load.py flood,
#     LOOPS concurrent clients): no authentication; Basic; Negotiate with a fresh token
#     per connection, i.e. one GSSAPI accept (keytab, decryption, replay cache) each;
#  3. the event loop while tokens are checked: the latency of a client whose kept-alive
#     connection is already signed in (its requests need no token check) on the same
#     worker (negotiate_load.py probe), alone, during a Basic flood as in 2 (the same
#     client load, no offload work: the control), and during the Negotiate flood of 2.
#     Were tokens checked on the loop, the probe would wait behind them.
# Knobs: DURATION (s per run, 10), LOOPS (32), AIGATE (build/aigate).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export AIGATE=${AIGATE:-$root/build/aigate}
DURATION=${DURATION:-10}
LOOPS=${LOOPS:-32}
for t in wrk nginx krb5kdc kinit python3; do
    command -v "$t" >/dev/null || { echo "negotiate bench: $t missing" >&2; exit 2; }
done
[ -x "$AIGATE" ] || { echo "negotiate bench: $AIGATE missing (make build/aigate)" >&2; exit 2; }
DRIVER=$(dirname "$AIGATE")/e2e/dirparts
[ -x "$DRIVER" ] || make -C "$root" "${DRIVER#"$root"/}" >/dev/null
set +eu
# shellcheck source=../../tests/e2e/lib.sh
source "$root/tests/e2e/lib.sh" # start_kdc, kinit_user, start_nginx, start_proxy; cleans up at exit
mkdir -p "$here/results"
out="$here/results/negotiate-$(date +%Y%m%d-%H%M%S).txt"
say() { echo "$*" | tee -a "$out"; }
field() { grep -oE "$1=[0-9.]+" <<<"$2" | cut -d= -f2; }

say "# aigate negotiate bench: $(date -u +%FT%TZ), $(nproc) CPUs, DURATION=$DURATION s, LOOPS=$LOOPS"
say "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
start_kdc "$T/kdc"
start_nginx "$T/nginx"
printf '127.0.0.1 origin.test\n' >"$T/hosts"
URL=http://origin.test:$NGINX_HTTP_PORT/small.txt
LIMITS="max_connections = 20000; header_timeout_ms = 10000; idle_timeout_ms = 60000;"
export LIMITS WORKERS=1
kinit_user alice

# tokens N: N fresh Negotiate values for the proxy in $T/tokens (never used twice)
tokens() {
    "$DRIVER" tokens "$PROXY_HOST" "$1" >"$T/tokens" || die "cannot make tokens"
}
# keepalive NAME [AUTHZ_FILE [EVERY]]: requests/s on one kept-alive connection
keepalive() {
    local r
    r=$(TARGET=$URL AUTHZ_FILE=${2:-} EVERY=${3:-0} wrk -c1 -t1 -d"${DURATION}s" \
        -s "$here/negotiate.lua" "http://127.0.0.1:$PROXY_PORT" | grep '^RESULT')
    say "$(printf '%-44s %8s req/s  p50 %6s ms  p99 %6s ms  non-2xx %s' "$1" \
        "$(field rps "$r")" "$(field p50_ms "$r")" "$(field p99_ms "$r")" "$(field non2xx "$r")")"
}
# flood NAME AUTH: new connections/s
flood() {
    local r
    r=$(python3 "$here/negotiate_load.py" flood "$PROXY_PORT" "$URL" "$DURATION" "$LOOPS" "$2")
    say "$(printf '%-44s %8s conn/s p50 %6s ms  p99 %6s ms  failed %s' "$1" \
        "$(field per_s "$r")" "$(field p50_ms "$r")" "$(field p99_ms "$r")" "$(field failed "$r")")"
}
# probe NAME AUTH: latency of one signed-in kept-alive client, one request at a time
probe() {
    local r
    r=$(python3 "$here/negotiate_load.py" probe "$PROXY_PORT" "$URL" "$DURATION" "$2")
    say "$(printf '%-44s %8s req    p50 %6s ms  p99 %6s ms  max %s ms' "$1" \
        "$(field requests "$r")" "$(field p50_ms "$r")" "$(field p99_ms "$r")" "$(field max_ms "$r")")"
}

# ---- no authentication ---------------------------------------------------------------
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf 'auth : { mode = "none"; };')"
say ""
say "## 1. one kept-alive connection (wrk -c1 -t1)"
keepalive "no authentication"
stop_proxy

PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf "auth : { mode = \"negotiate\"; keytab = \"$KDC_KEYTAB\";" \
    "         htpasswd = \"$root/rules/users.htpasswd\"; };")"
printf 'Basic %s\n' "$(printf 'alice:alice-pass' | base64)" >"$T/basic"
keepalive "Basic, every request (credential cache)" "$T/basic" 1
tokens 1
keepalive "Negotiate, the first request only" "$T/tokens"

say ""
say "## 2. new connections (GET, Connection: close; $LOOPS concurrent clients)"
stop_proxy
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf 'auth : { mode = "none"; };')"
flood "no authentication" -
stop_proxy
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf "auth : { mode = \"negotiate\"; keytab = \"$KDC_KEYTAB\";" \
    "         htpasswd = \"$root/rules/users.htpasswd\"; };")"
flood "Basic (credential cache)" "$(cat "$T/basic")"
tokens $((DURATION * 6000))
flood "Negotiate, a fresh token each (GSSAPI accept)" "@$T/tokens"

say ""
say "## 3. a signed-in kept-alive client on the same event loop"
tokens 1
probe "alone" "$(cat "$T/tokens")"
# during_flood NAME AUTH: probe while negotiate_load.py floods with AUTH
during_flood() {
    python3 "$here/negotiate_load.py" flood "$PROXY_PORT" "$URL" "$DURATION" "$LOOPS" "$2" \
        >"$T/flood.out" &
    local pid=$!
    sleep 0.5
    "$DRIVER" tokens "$PROXY_HOST" 1 >"$T/probe.token"
    probe "$1" "$(cat "$T/probe.token")"
    wait "$pid"
    say "$(printf '%-44s %8s conn/s (the flood meanwhile)' "" "$(field per_s "$(cat "$T/flood.out")")")"
}
during_flood "during a Basic flood (no offload work)" "$(cat "$T/basic")"
tokens $((DURATION * 6000))
during_flood "during a Negotiate flood (an accept each)" "@$T/tokens"
stop_proxy
say ""
say "results in $out"
