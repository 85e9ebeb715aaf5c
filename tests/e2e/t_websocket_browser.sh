#!/bin/bash
# WebSocket and server-sent events in Chromium through the SHIPPED
# configuration (shipped_conf in lib.sh: Basic authentication, interception
# of catalogued hosts, the no-personal-data rule), driven by playwright-core
# (tests/e2e/browser/websocket.mjs): carol opens a page on claude.ai
# (intercepted; her group passes without a caution page) served by
# ws_origin.py; the page's new WebSocket('wss://claude.ai:…/ws/echo') echoes
# and its new EventSource('/sse…') gets its events; a WebSocket message with a
# resident registration number is closed with 1008 naming the rule, a clean
# one is echoed.  The audit log has the WebSockets' lines (101, "upgrade",
# intercepted, carol; the blocked one with its rule and "dlp") and the event
# stream's.  Screenshot: tests/e2e/out/websocket-page.png.
source "$(dirname "$0")/lib.sh"

need_browser
OUT=$E2E/out
mkdir -p "$OUT"
rm -f "$OUT/websocket-page.png"

make_cert "$T/pki" claude.ai
WSS_PORT=$(free_port)
OLOG=$T/origin.jsonl
spawn "$PY" "$E2E/ws_origin.py" --port "$WSS_PORT" --cert "$T/pki/claude.ai.pem" \
    --key "$T/pki/claude.ai.key" --log "$OLOG" --ready "$T/wss.ready"
wait_file "$T/wss.ready" || die "ws_origin.py did not start"
echo "127.0.0.1 claude.ai" >"$T/hosts"
PROXY_PORT=$(free_port)
shipped_conf "$T/rules" "$T/pki/ca.pem" "$T/hosts" "$WSS_PORT"
start_proxy "$T/rules" "$(cat "$T/rules/aigate.conf")"
AUDIT=$SHIPPED_AUDIT

PROXY_PORT=$PROXY_PORT PAGE_URL="https://claude.ai:$WSS_PORT/page.html" \
    CA_SPKI="$(spki_hash "$SHIPPED_CA")" OUT_DIR=$OUT \
    timeout 90 node "$E2E/browser/websocket.mjs" 2>&1 | tee "$T/browser.out"
assert_eq "websocket.mjs exit status" 0 "${PIPESTATUS[0]}"
if [ -s "$OUT/websocket-page.png" ]; then pass "screenshot websocket-page.png written"; else fail "no screenshot"; fi

ws="d.get('upgrade') == 'websocket' and d['status'] == 101 and d['user'] == 'carol' and d['host'] == 'claude.ai' and d['tls'] == 'intercept'"
assert_eq "audit: the page's and the clean WebSocket's lines (allow)" 2 "$(wait_audit "$AUDIT" \
    "$ws and d['action'] == 'allow' and d['rule'] == 'security-free'" 2)"
assert_eq "audit: the blocked WebSocket's line (no-personal-data, dlp kr-rrn)" 1 "$(wait_audit "$AUDIT" \
    "$ws and d['action'] == 'block' and d['rule'] == 'no-personal-data' and d.get('dlp') == ['kr-rrn']")"
assert_eq "audit: the event stream's line" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'carol' and d['path'] == '/sse' and d['status'] == 200 and d['tls'] == 'intercept'")"
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
assert_eq "the origin got the clean message, never the resident registration number" "1 0" \
    "$(grep -c "$(sha 'a clean prompt about the quarterly report')" "$OLOG") $(grep -c "$(sha '제 주민등록번호는 900101-1234568 입니다')" "$OLOG")"
