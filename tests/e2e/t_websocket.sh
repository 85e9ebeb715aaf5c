#!/bin/bash
# WebSockets through the proxy (SPEC 6a), with ws_origin.py and ws_client.py
# (python3-websockets' framing and permessage-deflate, independent of aigate's):
#   ws:// in absolute form (not inspected: relayed unparsed), wss:// to a
#   catalogued host inside interception (gemini: not inspected; chatgpt:
#   inspected, a dlp rule names it), wss:// to an uncatalogued host through a
#   blind tunnel: text and binary, a 1 MiB message (3 MiB when inspected, past
#   the inspection limit), fragmented messages, pings both ways, permessage-
#   deflate with and without context takeover, clean closes from either side;
#   the upgrade forwarded with Connection/Upgrade/Sec-WebSocket-* and Via,
#   other upgrades stripped, a 101 to anything but a WebSocket upgrade (or
#   switching to another protocol) answered 502, a 101 agreeing to an
#   extension the relay cannot read passed on only when nothing is inspected.
#   Blocked (deepseek) and warned (claude) services: the block page, the
#   caution page until the acknowledgement form is POSTed, then the upgrade.
#   DLP on messages: a resident registration number in a text message (whole,
#   split across fragments, compressed with and without context takeover, over
#   plain ws:// too), an API key, a private key: the message never reaches the
#   origin, the client gets 1008 naming the rule, the origin 1001, the audit
#   line "dlp"; Luhn-invalid and check-digit-invalid numbers and clean
#   messages pass byte for byte.  The same keys in a request body: 403.
#   A client that stops reading while the origin pushes 50 MiB: the proxy's
#   RSS grows by a few MiB at most (spliced, TLS, inspected), then all 50 MiB
#   arrive.  One audit line per WebSocket: status 101, "upgrade":"websocket",
#   bytes and ms over its life; --verify-log verifies.
source "$(dirname "$0")/lib.sh"

RSS_BOUND_KB=$((8 * 1024)) # "a few MiB" of growth while a client does not read

PKI=$T/pki
make_cert "$PKI" origin.test chatgpt.com claude.ai gemini.google.com chat.deepseek.com
WS_PORT=$(free_port)
WSS_PORT=$(free_port)
SW_PORT=$(free_port)
OLOG=$T/origin.jsonl
spawn "$PY" "$E2E/ws_origin.py" --port "$WS_PORT" --log "$OLOG" --ready "$T/ws.ready"
spawn "$PY" "$E2E/ws_origin.py" --port "$WSS_PORT" --cert "$PKI/origin.test.pem" \
    --key "$PKI/origin.test.key" --log "$OLOG" --ready "$T/wss.ready"
# switch.test: answers a request for /ext with a 101 to a WebSocket with an extension aigate
# cannot read, every other request with a 101 to h2c; keeps the heads it got
spawn "$PY" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
open(sys.argv[2], "w").close()
while True:
    c, _ = s.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(4096)
        if not d:
            break
        head += d
    with open(sys.argv[3], "ab") as f:
        f.write(head)
    if head.startswith(b"GET /ext "):
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                  b"Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n")
    else:
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    c.close()
' "$SW_PORT" "$T/sw.ready" "$T/sw.heads"
wait_file "$T/ws.ready" && wait_file "$T/wss.ready" && wait_file "$T/sw.ready" ||
    die "the test origins did not start"
printf '127.0.0.1 origin.test chatgpt.com claude.ai gemini.google.com chat.deepseek.com switch.test\n' \
    >"$T/hosts"
"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || die "--gen-ca failed: $(cat "$T/genca.out")"
CA=$T/ca/ca.pem
cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "ban-deepseek"; action = "block"; services = [ "deepseek" ]; },
  { name = "caution-claude"; action = "warn"; services = [ "claude" ]; },
  { name = "no-secrets"; action = "block"; services = [ "chatgpt" ];
    dlp = [ "kr-rrn", "credit-card", "api-key", "private-key" ]; },
  { name = "default"; action = "allow"; }
);
EOF
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
# Under ASan freed memory stays resident in a quarantine; keep it small so RSS shows what is held.
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=4"
start_proxy "$T" "$(CONNECT_PORTS="443, $WSS_PORT" \
    LIMITS="header_timeout_ms = 3000; idle_timeout_ms = 20000;" proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$PKI/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; log_query = true; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

# client NAME ARGS...: run ws_client.py through the proxy, its JSON in $T/NAME.json; its status
client() {
    local name=$1
    shift
    "$PY" "$E2E/ws_client.py" "$@" --proxy "127.0.0.1:$PROXY_PORT" >"$T/$name.json" 2>"$T/$name.err"
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

# j NAME EXPR: EXPR on the JSON of client run NAME
j() {
    jget "$2" <"$T/$1.json"
}

# sha TEXT: the SHA-256 of TEXT, as ws_origin.py logs a message's
sha() {
    printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

# origin_got SHA: how many messages with that SHA-256 reached an origin
origin_got() {
    grep -c "\"sha256\": \"$1\"" "$OLOG" || true
}

ECHO_STEPS=(text=hello "text@4=a fragmented text message" binary=1048576 binary@5=100000
    ping=client-ping server-ping=origin-ping)
WS=ws://origin.test:$WS_PORT
GEMINI=wss://gemini.google.com:$WSS_PORT
GPT=wss://chatgpt.com:$WSS_PORT
OT=wss://origin.test:$WSS_PORT

# ---- ws:// in absolute form: relayed unparsed ------------------------------------------
expect_ok "ws://: echoes, pings both ways, the client closes" plain ws "$WS/ws/echo?n=plain" \
    "${ECHO_STEPS[@]}" close=1000:bye
assert_eq "ws://: the client's close came back" "1000 bye" \
    "$(j plain 'str(d["close"]["code"]) + " " + d["close"]["reason"]')"
assert_eq "ws://: the origin saw the client's close" 1 \
    "$(grep -c '"ws-close".*"code": 1000, "reason": "bye", "from": "client"' "$OLOG")"
hdrs=$(grep '"target": "/ws/echo?n=plain"' "$OLOG")
assert_contains "ws://: forwarded in origin-form" "$hdrs" '"method": "GET"'
assert_contains "ws://: Upgrade: websocket forwarded" "$hdrs" '["Upgrade", "websocket"]'
assert_contains "ws://: Connection: Upgrade forwarded" "$hdrs" '["Connection", "Upgrade"]'
assert_contains "ws://: Sec-WebSocket-Key forwarded" "$hdrs" '"Sec-WebSocket-Key"'
assert_contains "ws://: Sec-WebSocket-Version forwarded" "$hdrs" '["Sec-WebSocket-Version", "13"]'
assert_contains "ws://: our Via added" "$hdrs" '["Via", "1.1 aigate"]'
expect_ok "ws://, permessage-deflate with context takeover, the origin echoes in fragments" \
    plain-deflate ws "$WS/ws/echo?frag=3" --deflate "${ECHO_STEPS[@]}" text=hello text=hello
assert_eq "ws://: deflate agreed through the proxy" "permessage-deflate" \
    "$(j plain-deflate 'd["extensions"]')"
expect_ok "ws://, deflate without context takeover; the origin closes" plain-nctx \
    ws "$WS/ws/echo" --deflate --no-context-takeover "${ECHO_STEPS[@]}" server-close=4001:done
assert_eq "ws://: the origin's close 4001 arrived" "4001 done" \
    "$(j plain-nctx 'str(d["close"]["code"]) + " " + d["close"]["reason"]')"

# Other upgrades are stripped; a 101 to anything but a WebSocket upgrade is refused.
printf 'GET http://origin.test:%s/ws/h2c HTTP/1.1\r\nHost: origin.test:%s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n' \
    "$WS_PORT" "$WS_PORT" | raw_req --summary >"$T/h2c.out"
h2c=$(grep '"target": "/ws/h2c"' "$OLOG")
assert_not_contains "h2c upgrade: Upgrade not forwarded" "$h2c" '"Upgrade"'
assert_not_contains "h2c upgrade: HTTP2-Settings (named in Connection) not forwarded" "$h2c" 'HTTP2-Settings'
assert_match "h2c upgrade: answered as a plain request (the origin's 404)" '^404' "$(cat "$T/h2c.out")"
SW=http://switch.test:$SW_PORT
assert_match "a 101 to a plain GET: 502" '^502' "$(printf 'GET %s/plain HTTP/1.1\r\nHost: switch.test:%s\r\n\r\n' \
    "$SW" "$SW_PORT" | raw_req --summary)"
assert_match "a 101 switching a WebSocket upgrade to h2c: 502" '^502' "$(printf 'GET %s/ws HTTP/1.1\r\nHost: switch.test:%s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n' \
    "$SW" "$SW_PORT" | raw_req --summary)"
assert_contains "switch.test got the WebSocket upgrade as such" "$(tr -d '\r' <"$T/sw.heads")" \
    "Upgrade: websocket"
# An extension the relay cannot read: passed on when messages are not inspected, refused when they are
WSREQ='Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n'
assert_match "a 101 with an unknown extension, not inspected: passed on" '^101' \
    "$(printf "GET %s/ext HTTP/1.1\r\nHost: switch.test:%s\r\n$WSREQ" "$SW" "$SW_PORT" | raw_req --summary)"
assert_match "a 101 with an unknown extension, inspected (chatgpt): 502" '^502' \
    "$(printf "GET http://chatgpt.com:%s/ext HTTP/1.1\r\nHost: chatgpt.com:%s\r\n$WSREQ" "$SW_PORT" "$SW_PORT" |
        raw_req --summary)"

# ---- wss:// inside interception, not inspected ------------------------------------------
expect_ok "wss:// intercepted (gemini): echoes, pings both ways, the client closes" tls \
    ws "$GEMINI/ws/echo" --ca "$CA" "${ECHO_STEPS[@]}" close=1000:bye
expect_ok "wss:// intercepted, deflate in fragments both ways; the origin closes" tls-deflate \
    ws "$GEMINI/ws/echo?frag=2" --ca "$CA" --deflate "${ECHO_STEPS[@]}" server-close=1000:ok
expect_ok "wss:// intercepted, deflate without context takeover" tls-nctx \
    ws "$GEMINI/ws/echo" --ca "$CA" --deflate --no-context-takeover "${ECHO_STEPS[@]}"

# ---- wss:// to an uncatalogued host: a blind tunnel -----------------------------------------
expect_ok "wss:// uncatalogued: through a blind tunnel" tunnel \
    ws "$OT/ws/echo" --ca "$PKI/ca.pem" "${ECHO_STEPS[@]}" close=1000:bye

# ---- blocked and warned services ---------------------------------------------------------------
client deepseek ws "ws://chat.deepseek.com:$WS_PORT/ws/echo"
assert_eq "ws:// to a banned service: 403" 403 "$(j deepseek 'd["status"]')"
assert_contains "ws:// to a banned service: the block answer names the rule" \
    "$(j deepseek 'd.get("body", "")')" "ban-deepseek"
client deepseek-tls ws "wss://chat.deepseek.com:$WSS_PORT/ws/echo" --ca "$CA"
assert_eq "wss:// to a banned service, intercepted: 403" 403 "$(j deepseek-tls 'd["status"]')"
assert_eq "the origin never saw a DeepSeek request" 0 "$(grep -c 'chat.deepseek.com' "$OLOG")"

CLAUDE=https://claude.ai:$WSS_PORT
client claude-before ws "wss://claude.ai:$WSS_PORT/ws/echo" --ca "$CA"
assert_eq "wss:// to a warned service: 403 until acknowledged" 403 "$(j claude-before 'd["status"]')"
pcurl --cacert "$CA" -H 'Accept: text/html' -o "$T/caution.html" "$CLAUDE/ws/echo" ||
    fail "caution page: curl failed"
assert_contains "the caution page names the rule" "$(cat "$T/caution.html")" "caution-claude"
code=$(pcurl --cacert "$CA" -H 'Accept: text/html' -o /dev/null -w '%{http_code}' \
    --data-urlencode "url=$(form_field "$T/caution.html" url)" \
    --data-urlencode "token=$(form_field "$T/caution.html" token)" "$CLAUDE/__aigate/ack")
assert_eq "acknowledgement form POSTed: 303" 303 "$code"
expect_ok "wss:// to the warned service after the acknowledgement: the upgrade works" claude-after \
    ws "wss://claude.ai:$WSS_PORT/ws/echo" --ca "$CA" text=hello close=1000:bye
expect_ok "ws:// to the warned service after the acknowledgement too" claude-plain \
    ws "ws://claude.ai:$WS_PORT/ws/echo" text=hello

# ---- DLP on messages (chatgpt: no-secrets) ------------------------------------------------------
RRN_MSG="my resident number is 900101-1234568, please fill in the form"
BAD_MSG="not personal data: 900101-1234567 (check digit) and 4111 1111 1111 1112 (Luhn)"
APIKEY_MSG="use the key sk-proj-$(head -c 60 /dev/zero | tr '\0' 'a')T3BlbkFJ$(head -c 60 /dev/zero | tr '\0' 'b') for the call"
PEM_MSG="-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2
OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r
-----END PRIVATE KEY-----"
expect_ok "inspected wss://: clean and invalid numbers, 1 MiB and 3 MiB messages pass byte for byte" \
    dlp-clean ws "$GPT/ws/echo" --ca "$CA" --deflate "${ECHO_STEPS[@]}" "text=$BAD_MSG" \
    "text@3=$BAD_MSG" binary=3145728 close=1000:bye
assert_eq "inspected wss://: the origin got the invalid numbers byte for byte (twice)" 2 \
    "$(origin_got "$(sha "$BAD_MSG")")"

# blocked NAME WHAT KIND ARGS...: a ws_client run (steps in ARGS) ending in a 1008 from the
# proxy naming no-secrets; the audit line says kind; the message with sha $MSG_SHA never
# reached the origin, which got a 1001
blocked() {
    local name=$1 what=$2 kind=$3
    shift 3
    local before
    before=$(grep -c '"ws-close".*"code": 1001, "reason": "", "from": "client"' "$OLOG")
    expect_ok "$what: closed with 1008" "$name" "$@" expect-close=1008
    assert_eq "$what: the close reason names the rule" "blocked by aigate rule no-secrets" \
        "$(j "$name" '(d["close"] or {}).get("reason")')"
    assert_eq "$what: the message never reached the origin" 0 "$(origin_got "$MSG_SHA")"
    sleep 0.2
    assert_eq "$what: the origin got a close 1001" $((before + 1)) \
        "$(grep -c '"ws-close".*"code": 1001, "reason": "", "from": "client"' "$OLOG")"
    assert_eq "$what: the audit line (block, no-secrets, dlp, 101, websocket)" 1 "$(wait_audit "$AUDIT" \
        "d.get('upgrade') == 'websocket' and d['status'] == 101 and d['action'] == 'block' and d['rule'] == 'no-secrets' and d.get('dlp') == ['$kind'] and d['path'] == '/ws/echo?case=$name'")"
}
MSG_SHA=$(sha "$RRN_MSG")
blocked rrn "RRN in a text message" kr-rrn ws "$GPT/ws/echo?case=rrn" --ca "$CA" text=hello \
    "send-text=$RRN_MSG"
blocked rrn-frag "RRN split across 4 fragments" kr-rrn ws "$GPT/ws/echo?case=rrn-frag" --ca "$CA" \
    text=hello "send-text@4=$RRN_MSG"
CTX_MSG="my resident number is (not given), please fill in the form"
blocked rrn-deflate "RRN, permessage-deflate with context takeover" kr-rrn \
    ws "$GPT/ws/echo?case=rrn-deflate" --ca "$CA" --deflate "text=$CTX_MSG" "text=$BAD_MSG" \
    "send-text@2=$RRN_MSG"
blocked rrn-nctx "RRN, permessage-deflate without context takeover" kr-rrn \
    ws "$GPT/ws/echo?case=rrn-nctx" --ca "$CA" --deflate --no-context-takeover "text=$BAD_MSG" \
    "send-text=$RRN_MSG"
assert_eq "the message before it, compressed in the same context, reached the origin" 1 \
    "$(origin_got "$(sha "$CTX_MSG")")"
blocked rrn-plain "RRN over plain ws:// (absolute form)" kr-rrn \
    ws "ws://chatgpt.com:$WS_PORT/ws/echo?case=rrn-plain" --deflate text=hello "send-text=$RRN_MSG"
MSG_SHA=$(sha "$APIKEY_MSG")
blocked apikey "an API key in a message" api-key ws "$GPT/ws/echo?case=apikey" --ca "$CA" \
    "send-text=$APIKEY_MSG"
MSG_SHA=$(sha "$PEM_MSG")
blocked pem "a private key in a message" private-key ws "$GPT/ws/echo?case=pem" --ca "$CA" \
    --deflate "send-text@3=$PEM_MSG"

# The same secrets in request bodies
for k in apikey pem; do
    if [ $k = apikey ]; then body=$APIKEY_MSG kind=api-key; else body=$PEM_MSG kind=private-key; fi
    "$PY" -c 'import json, sys; open(sys.argv[1], "w").write(json.dumps({"prompt": sys.argv[2]}))' \
        "$T/body-$k" "$body"
    code=$(pcurl --cacert "$CA" -o "$T/body-$k.out" -w '%{http_code}' --data-binary "@$T/body-$k" \
        -H 'Content-Type: application/json' "https://chatgpt.com:$WSS_PORT/backend-api/$k")
    assert_eq "$kind in a request body: 403" 403 "$code"
    assert_eq "$kind in a request body: the audit line" 1 "$(wait_audit "$AUDIT" \
        "d['path'] == '/backend-api/$k' and d['action'] == 'block' and d['rule'] == 'no-secrets' and d.get('dlp') == ['$kind']")"
done

# ---- a client that stops reading while the origin pushes 50 MiB -----------------------------------
# paused NAME WHAT URL ARGS...: the client reads nothing for 3 s, then all 50 MiB
paused() {
    local name=$1 what=$2 url=$3
    shift 3
    local idle sampler
    idle=$(rss_kb "$PROXY_PID")
    : >"$T/rss-$name"
    spawn sample_rss "$T/rss-$name"
    sampler=$LAST_PID
    spawn "$PY" "$E2E/ws_client.py" ws "$url" --proxy "127.0.0.1:$PROXY_PORT" --rcvbuf 65536 \
        --timeout 30 "$@" pause=3 read=50 >"$T/$name.json" 2>"$T/$name.err"
    local cl=$LAST_PID
    sleep 2.5
    kill "$sampler"
    wait "$sampler" 2>/dev/null
    wait "$cl" 2>/dev/null
    if [ "$(j "$name" 'd["ok"]')" = True ]; then
        pass "$what: all 50 MiB arrived after the pause"
    else
        fail "$what: $(cat "$T/$name.json" "$T/$name.err")"
    fi
    local peak
    peak=$(sort -n "$T/rss-$name" | tail -n1)
    assert_le "$what: RSS growth while the client does not read (KiB, idle $idle)" \
        $((peak - idle)) "$RSS_BOUND_KB"
}
paused push-plain "ws:// (spliced)" "$WS/ws/push?mib=50"
paused push-tls "wss:// intercepted" "$GEMINI/ws/push?mib=50" --ca "$CA"
paused push-dlp "wss:// intercepted and inspected" "$GPT/ws/push?mib=50" --ca "$CA"

# ---- audit ----------------------------------------------------------------------------------------
sleep 0.3
assert_eq "audit: the plain WebSocket's line" 1 "$(audit_count "$AUDIT" \
    "d['path'] == '/ws/echo?n=plain' and d['status'] == 101 and d.get('upgrade') == 'websocket' and d['tls'] == 'none' and d['action'] == 'allow' and d['bytes_in'] > 1148576 and d['bytes_out'] > 1148576 and d['ms'] >= 0")"
assert_eq "audit: the intercepted WebSockets' lines (gemini)" 3 "$(audit_count "$AUDIT" \
    "d['host'] == 'gemini.google.com' and (d['path'] or '').startswith('/ws/echo') and d['status'] == 101 and d.get('upgrade') == 'websocket' and d['tls'] == 'intercept' and d['rule'] == 'default' and d['bytes_in'] > 1148576")"
assert_eq "audit: the 50 MiB pushes, bytes_out over the WebSocket's life" 3 "$(audit_count "$AUDIT" \
    "d['path'] == '/ws/push?mib=50' and d.get('upgrade') == 'websocket' and d['bytes_out'] > 52428800 and d['ms'] >= 3000")"
assert_eq "audit: the inspected WebSocket that passed: allow, no dlp" 1 "$(audit_count "$AUDIT" \
    "d['host'] == 'chatgpt.com' and d['path'] == '/ws/echo' and d.get('upgrade') == 'websocket' and d['action'] == 'allow' and 'dlp' not in d and d['bytes_in'] > 4194304")"
assert_eq "audit: the blind tunnel's line" 1 "$(audit_count "$AUDIT" \
    "d['method'] == 'CONNECT' and d['host'] == 'origin.test' and d['tls'] == 'tunnel' and 'upgrade' not in d")"
assert_eq "audit: refused upgrades have no upgrade field" 0 "$(audit_count "$AUDIT" \
    "d['status'] != 101 and 'upgrade' in d")"
stop_proxy
assert_match "--verify-log verifies the log" '^[0-9]+ lines verified' \
    "$("$AIGATE" -c "$T/aigate.conf" --verify-log "$AUDIT" 2>&1)"
