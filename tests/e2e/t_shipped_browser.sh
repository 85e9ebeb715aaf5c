#!/bin/bash
# The shipped configuration in a real browser: Debian's Chromium, headless,
# driven by playwright-core (tests/e2e/browser/shipped.mjs) through aigate
# running the SHIPPED rules/aigate.conf (shipped_conf in lib.sh: only port, CA,
# origin trust store, hosts file, name server, connect_ports and state files
# changed).  Basic authentication is on, as shipped: Chromium gets the proxy's
# 407 and answers it with the user's password through DevTools
# (Fetch.authRequired -> Fetch.continueWithAuth), as a person typing it would.
# The browser trusts the aigate CA (which aigate sends with its leaves) and, for
# the blind tunnel, nginx's own certificate (nginx sends no chain) by SPKI hash.
#   alice: chat.deepseek.com -> block page (ban-cn-ai); claude.ai in Korean ->
#          caution page, a click on the button, the origin's page; example.org
#          over a blind tunnel and over plain HTTP -> the origin's page
#   carol (security), her own browser context: claude.ai -> the origin's page
#          at once (security-free); chat.deepseek.com -> block page (ban-cn-ai)
# Screenshots: tests/e2e/out/shipped-block.png, shipped-caution-ko.png,
# shipped-after-ack.png, shipped-allowed.png, shipped-carol.png, shipped-carol-block.png.
source "$(dirname "$0")/lib.sh"

need_browser
OUT=$E2E/out
SHOTS="shipped-block.png shipped-caution-ko.png shipped-after-ack.png shipped-allowed.png shipped-carol.png shipped-carol-block.png"
mkdir -p "$OUT"
for f in $SHOTS; do rm -f "$OUT/$f"; done

start_shipped chat.deepseek.com claude.ai example.org
AUDIT=$SHIPPED_AUDIT
WARN_URL="https://claude.ai:$GOOD/index.html?from=browser"
PROXY_PORT=$PROXY_PORT BLOCK_URL="https://chat.deepseek.com:$GOOD/" WARN_URL=$WARN_URL \
    WARN_SERVICE="Claude (Anthropic)" TUNNEL_URL="https://example.org:$GOOD/index.html" \
    PLAIN_URL="http://example.org:$PLAIN/index.html" \
    CA_SPKI="$(spki_hash "$SHIPPED_CA"),$(spki_hash "$T/pki/good.pem")" OUT_DIR=$OUT \
    timeout 90 node "$E2E/browser/shipped.mjs" 2>&1 | tee "$T/browser.out"
assert_eq "shipped.mjs exit status" 0 "${PIPESTATUS[0]}"
for f in $SHOTS; do
    if [ -s "$OUT/$f" ]; then pass "screenshot $f written"; else fail "no screenshot $f"; fi
done

# What the proxy saw of the two people's visits
q='d["tls"] == "intercept" and d["method"] == "GET"'
assert_le "audit: the browsers' first CONNECTs met a 407 (no credentials yet)" 2 "$(wait_audit "$AUDIT" \
    'd["action"] == "auth-fail" and d["status"] == 407 and d["method"] == "CONNECT" and d["user"] is None' 2)"
assert_eq "audit: no wrong password was ever tried" 0 "$(audit_count "$AUDIT" \
    'd["action"] == "auth-fail" and d["user"] is not None')"
assert_le "audit: alice blocked on DeepSeek by ban-cn-ai, intercepted" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'chat.deepseek.com' and d['rule'] == 'ban-cn-ai' and d['action'] == 'block' and d['status'] == 403")"
assert_le "audit: alice warned on Claude by caution, intercepted" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'claude.ai' and d['rule'] == 'caution' and d['action'] == 'warn'")"
assert_eq "audit: alice's click, acknowledged inside the intercepted TLS" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'alice' and d['action'] == 'ack' and d['status'] == 303 and d['tls'] == 'intercept'")"
assert_le "audit: alice allowed on Claude after the click" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'claude.ai' and d['action'] == 'allow' and d['status'] == 200")"
assert_le "audit: alice's blind tunnel to example.org" 1 "$(wait_audit "$AUDIT" \
    "d['method'] == 'CONNECT' and d['user'] == 'alice' and d['host'] == 'example.org' and d['tls'] == 'tunnel' and d['action'] == 'allow'")"
assert_le "audit: alice's plain HTTP page of example.org" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'alice' and d['host'] == 'example.org' and d['tls'] == 'none' and d['status'] == 200")"
assert_le "audit: carol allowed on Claude by security-free" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'carol' and d['host'] == 'claude.ai' and d['rule'] == 'security-free' and d['status'] == 200")"
assert_eq "audit: carol never saw a caution page" 0 "$(audit_count "$AUDIT" \
    "d['user'] == 'carol' and d['action'] == 'warn'")"
assert_le "audit: carol blocked on DeepSeek by ban-cn-ai" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'carol' and d['host'] == 'chat.deepseek.com' and d['rule'] == 'ban-cn-ai' and d['action'] == 'block'")"
assert_eq "nginx served Claude's page twice (alice after the click, carol)" 2 \
    "$(grep -cF "$GOOD claude.ai \"GET /index.html?from=browser HTTP/1.1\" 200" "$NGINX_SERVERS_LOG")"
assert_eq "nginx never saw /__aigate" 0 "$(grep -c '__aigate' "$NGINX_SERVERS_LOG")"
assert_eq "nginx never served DeepSeek" 0 "$(grep -c ' chat.deepseek.com ' "$NGINX_SERVERS_LOG")"
