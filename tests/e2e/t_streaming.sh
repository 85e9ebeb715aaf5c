#!/bin/bash
# Streaming responses go on as they are written (SPEC 6a), with ws_origin.py
# stamping every event with the time it wrote it and ws_client.py comparing on
# arrival: server-sent events (chunked and close-delimited) and line streams
# (chunked, Content-Length, close-delimited) through the plain proxy, inside
# interception (catalogued chatgpt.com) and through a blind tunnel; every
# event arrives, the median within 50 ms of being written, and none held back
# until the next one (200 ms later; one outlier allowed on a loaded machine).  A client that closes after the first
# event ends the origin's stream at once (the origin sees the proxy's EOF
# within a second, while its next event is 3 s away), plain, intercepted and
# tunnelled.  A client that stops reading while the origin sends 50 MiB: the
# proxy's RSS grows by a few MiB at most, then every byte arrives.
source "$(dirname "$0")/lib.sh"

RSS_BOUND_KB=$((8 * 1024))
INTERVAL=200 # ms between events

PKI=$T/pki
make_cert "$PKI" origin.test chatgpt.com
WS_PORT=$(free_port)
WSS_PORT=$(free_port)
OLOG=$T/origin.jsonl
spawn "$PY" "$E2E/ws_origin.py" --port "$WS_PORT" --log "$OLOG" --ready "$T/ws.ready"
spawn "$PY" "$E2E/ws_origin.py" --port "$WSS_PORT" --cert "$PKI/origin.test.pem" \
    --key "$PKI/origin.test.key" --log "$OLOG" --ready "$T/wss.ready"
wait_file "$T/ws.ready" && wait_file "$T/wss.ready" || die "ws_origin.py did not start"
printf '127.0.0.1 origin.test chatgpt.com\n' >"$T/hosts"
"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || die "--gen-ca failed: $(cat "$T/genca.out")"
CA=$T/ca/ca.pem
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4"
start_proxy "$T" "$(CONNECT_PORTS="443, $WSS_PORT" \
    LIMITS="header_timeout_ms = 3000; idle_timeout_ms = 20000;" proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$PKI/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; };" \
    "@include \"$ROOT/rules/services.conf\"")"

PLAIN=http://origin.test:$WS_PORT
MITM=https://chatgpt.com:$WSS_PORT
TUN=https://origin.test:$WSS_PORT
VIA=(--proxy "127.0.0.1:$PROXY_PORT")

# j NAME EXPR: EXPR on the JSON of client run NAME
j() {
    jget "$2" <"$T/$1.json"
}

# stream_ok WHAT NAME MODE URL ARGS...: all 10 events arrive, the median within 50 ms of
# being written and each before the next is written
stream_ok() {
    local what=$1 name=$2
    shift 2
    if "$PY" "$E2E/ws_client.py" "$@" "${VIA[@]}" --events 10 >"$T/$name.json" 2>"$T/$name.err"; then
        pass "$what: all 10 events"
    else
        fail "$what: $(cat "$T/$name.json" "$T/$name.err")"
        return
    fi
    assert_le "$what: median latency (ms)" "$(j "$name" 'int(d["latency_ms"]["p50"])')" 50
    # Held back for the next one, events would all be an interval late; one slow outlier is the
    # shared machine.
    assert_le "$what: events later than $((INTERVAL / 2)) ms (max $(j "$name" 'd["latency_ms"]["max"]'))" \
        "$(j "$name" "sum(1 for x in d['latency_ms']['all'] if x > $INTERVAL / 2)")" 1
}
Q="n=10&interval_ms=$INTERVAL"
for base in PLAIN MITM TUN; do
    url=${!base}
    case $base in
    PLAIN) where="plain" ca=() ;;
    MITM) where="intercepted" ca=(--ca "$CA") ;;
    TUN) where="blind tunnel" ca=(--ca "$PKI/ca.pem") ;;
    esac
    for f in chunked close; do
        stream_ok "SSE ($f), $where" "sse-$base-$f" sse "$url/sse?$Q&framing=$f" "${ca[@]}"
    done
    for f in chunked close length; do
        stream_ok "line stream ($f), $where" "stream-$base-$f" stream "$url/stream?$Q&framing=$f" \
            "${ca[@]}"
    done
done
assert_eq "SSE content type passed on" "text/event-stream" "$(j sse-MITM-chunked 'd["content_type"]')"
assert_eq "intercepted SSE: chunked framing passed on" chunked "$(j sse-MITM-chunked 'd["framing"]')"

# ---- a client that leaves ends the origin's stream ------------------------------------------
# left NAME WHAT URL ARGS...: after the first event the client closes; the origin sees it within 1 s
left() {
    local name=$1 what=$2 url=$3
    shift 3
    "$PY" "$E2E/ws_client.py" sse "$url" "${VIA[@]}" "$@" --stop-after 1 >"$T/$name.json" \
        2>"$T/$name.err" || fail "$what: $(cat "$T/$name.json" "$T/$name.err")"
    local closed i eof=""
    closed=$(j "$name" 'd.get("closed_at") or 0')
    for ((i = 0; i < 30; i++)); do
        eof=$(grep '"peer-eof"' "$OLOG" | grep -F "\"path\": \"/sse\"" |
            "$PY" -c 'import json, sys
t = float(sys.argv[1])
ts = [json.loads(l)["ts"] for l in sys.stdin if json.loads(l)["ts"] >= t - 5]
print(int(min(ts) - t) if ts else "")' "$closed")
        [ -n "$eof" ] && break
        sleep 0.1
    done
    if [ -z "$eof" ]; then
        fail "$what: the origin did not see the client leave within 3 s"
    else
        assert_le "$what: the origin's stream ended (ms after the client closed)" "$eof" 1000
    fi
}
left left-plain "client leaves a plain SSE stream" "$PLAIN/sse?n=5&interval_ms=3000"
left left-mitm "client leaves an intercepted SSE stream" "$MITM/sse?n=5&interval_ms=3000" --ca "$CA"
left left-tun "client leaves an SSE stream in a blind tunnel" "$TUN/sse?n=5&interval_ms=3000" \
    --ca "$PKI/ca.pem"

# ---- a client that stops reading while the origin sends 50 MiB ----------------------------------
# paused NAME WHAT URL ARGS...: the client reads 64 KiB, nothing for 3 s, then the rest
paused() {
    local name=$1 what=$2 url=$3
    shift 3
    local idle sampler cl peak
    idle=$(rss_kb "$PROXY_PID")
    : >"$T/rss-$name"
    spawn sample_rss "$T/rss-$name"
    sampler=$LAST_PID
    spawn "$PY" "$E2E/ws_client.py" get "$url" "${VIA[@]}" --rcvbuf 65536 --timeout 30 \
        --pause-after 65536 --pause 3 "$@" >"$T/$name.json" 2>"$T/$name.err"
    cl=$LAST_PID
    sleep 2.5
    kill "$sampler"
    wait "$sampler" 2>/dev/null
    wait "$cl" 2>/dev/null
    assert_eq "$what: all 50 MiB arrived after the pause" "True 52428800" \
        "$(j "$name" 'str(d["ok"]) + " " + str(d["bytes"])')"
    peak=$(sort -n "$T/rss-$name" | tail -n1)
    assert_le "$what: RSS growth while the client does not read (KiB, idle $idle)" \
        $((peak - idle)) "$RSS_BOUND_KB"
}
paused push-plain "plain HTTP" "$PLAIN/push?mib=50"
paused push-mitm "intercepted HTTPS" "$MITM/push?mib=50" --ca "$CA"
