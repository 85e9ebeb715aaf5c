#!/bin/bash
# The WebSocket and streaming test tools (ws_origin.py, ws_client.py) against
# each other, directly and through what the proxy relays today: wss:// to an
# uncatalogued host through a blind CONNECT tunnel (text, a 1 MiB binary
# message, fragmented messages, pings both ways, closes both ways,
# permessage-deflate with and without context takeover, 50 MiB pushed by the
# origin), ws:// tunnelled over CONNECT as browsers do, and server-sent events
# and chunked, length and close-delimited streams through the plain proxy and
# a tunnel, every event arriving.
source "$(dirname "$0")/lib.sh"

make_cert "$T/pki" origin.test
WS_PORT=$(free_port)
WSS_PORT=$(free_port)
spawn "$PY" "$E2E/ws_origin.py" --port "$WS_PORT" --log "$T/origin.jsonl" --ready "$T/ws.ready"
spawn "$PY" "$E2E/ws_origin.py" --port "$WSS_PORT" --cert "$T/pki/origin.test.pem" \
    --key "$T/pki/origin.test.key" --log "$T/origin.jsonl" --ready "$T/wss.ready"
wait_file "$T/ws.ready" && wait_file "$T/wss.ready" || die "ws_origin.py did not start"
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="443, $WS_PORT, $WSS_PORT" proxy_conf \
    "audit : { path = \"$T/audit.log\"; };")"

# client NAME ARGS...: run ws_client.py, keep its JSON in $T/NAME.json; its status
client() {
    local name=$1
    shift
    "$PY" "$E2E/ws_client.py" "$@" >"$T/$name.json" 2>"$T/$name.err"
}

# expect_ok WHAT NAME ARGS...: the client run succeeds
expect_ok() {
    local what=$1 name=$2
    shift 2
    if client "$name" "$@"; then
        pass "$what"
    else
        fail "$what: $(cat "$T/$name.json" "$T/$name.err")"
    fi
}

ECHO_STEPS=(text=hello "text@4=a fragmented text message" binary=1048576 binary@5=100000
    ping=client-ping server-ping=origin-ping)
VIA=(--proxy "127.0.0.1:$PROXY_PORT")

# ---- the tools on their own ----------------------------------------------------------
expect_ok "direct ws://: echoes byte for byte" direct-plain ws "ws://127.0.0.1:$WS_PORT/ws/echo" \
    "${ECHO_STEPS[@]}"
expect_ok "direct wss:// with permessage-deflate, echoes in fragments" direct-tls \
    ws "wss://origin.test:$WSS_PORT/ws/echo?frag=3" --resolve origin.test:127.0.0.1 \
    --ca "$T/pki/ca.pem" --deflate "${ECHO_STEPS[@]}"
assert_eq "direct: deflate agreed" "permessage-deflate" "$(jget 'd["extensions"]' <"$T/direct-tls.json")"
assert_eq "direct: the origin's echo came in 3 frames" 3 \
    "$(jget 'd["steps"][1]["echo_frames"]' <"$T/direct-tls.json")"
assert_eq "the origin saw the client's 4 fragments (twice)" 2 \
    "$(grep -c '"type": "text", "len": 25, .*"frames": 4' "$T/origin.jsonl")"

# ---- wss:// through a blind tunnel --------------------------------------------------
expect_ok "wss:// through a blind tunnel: echoes, pings" tunnel-plain \
    ws "wss://origin.test:$WSS_PORT/ws/echo" "${VIA[@]}" --ca "$T/pki/ca.pem" "${ECHO_STEPS[@]}" \
    close=1000:bye
assert_eq "tunnel: the client's close came back" 1000 \
    "$(jget 'd["close"]["code"]' <"$T/tunnel-plain.json")"
assert_eq "tunnel: the origin saw the client's close" 1 \
    "$(grep -c '"ws-close".*"code": 1000, "reason": "bye", "from": "client"' "$T/origin.jsonl")"
expect_ok "wss:// tunnel, permessage-deflate with context takeover" tunnel-deflate \
    ws "wss://origin.test:$WSS_PORT/ws/echo?frag=2" "${VIA[@]}" --ca "$T/pki/ca.pem" --deflate \
    "${ECHO_STEPS[@]}" text=hello text=hello "text@3=hello hello hello"
expect_ok "wss:// tunnel, permessage-deflate without context takeover; the origin closes" \
    tunnel-nctx ws "wss://origin.test:$WSS_PORT/ws/echo" "${VIA[@]}" --ca "$T/pki/ca.pem" \
    --deflate --no-context-takeover "${ECHO_STEPS[@]}" server-close=4001:done
assert_eq "tunnel: client_no_context_takeover agreed" \
    "permessage-deflate; client_no_context_takeover" "$(jget 'd["extensions"]' <"$T/tunnel-nctx.json")"
assert_eq "tunnel: the origin's close 4001 arrived" "4001 done" \
    "$(jget 'str(d["close"]["code"]) + " " + d["close"]["reason"]' <"$T/tunnel-nctx.json")"
expect_ok "wss:// tunnel: 50 MiB pushed by the origin arrive" tunnel-push \
    ws "wss://origin.test:$WSS_PORT/ws/push?mib=50" "${VIA[@]}" --ca "$T/pki/ca.pem" read=50
expect_ok "ws:// tunnelled over CONNECT" connect-plain \
    ws "ws://origin.test:$WS_PORT/ws/echo" "${VIA[@]}" --connect "${ECHO_STEPS[@]}"
sleep 0.3
assert_eq "audit: one tunnel line per wss:// connection" 4 \
    "$(audit_count "$T/audit.log" 'd["method"] == "CONNECT" and d["port"] == '"$WSS_PORT"' and d["tls"] == "tunnel"')"

# ---- streaming responses -----------------------------------------------------------------
# stream_ok WHAT NAME MODE URL ARGS...: all 10 events arrive, the median within 50 ms
stream_ok() {
    local what=$1 name=$2
    shift 2
    expect_ok "$what: all events" "$name" "$@" --events 10
    if [ -s "$T/$name.json" ] && [ "$(jget 'd["ok"]' <"$T/$name.json")" = True ]; then
        assert_le "$what: median latency (ms, max $(jget 'd["latency_ms"]["max"]' <"$T/$name.json"))" \
            "$(jget 'int(d["latency_ms"]["p50"])' <"$T/$name.json")" 50
    fi
}
for f in chunked close; do
    stream_ok "SSE ($f) through the proxy" "sse-$f" \
        sse "http://origin.test:$WS_PORT/sse?n=10&interval_ms=100&framing=$f" "${VIA[@]}"
done
for f in chunked close length; do
    stream_ok "line stream ($f) through the proxy" "stream-$f" \
        stream "http://origin.test:$WS_PORT/stream?n=10&interval_ms=100&framing=$f" "${VIA[@]}"
done
stream_ok "SSE through a blind tunnel" sse-tunnel \
    sse "https://origin.test:$WSS_PORT/sse?n=10&interval_ms=100" "${VIA[@]}" --ca "$T/pki/ca.pem"
assert_eq "SSE content type" "text/event-stream" "$(jget 'd["content_type"]' <"$T/sse-chunked.json")"
