#!/bin/bash
# The product as it is deployed, seen with curl: the SHIPPED rules/aigate.conf
# (Basic authentication against rules/users.htpasswd, the shipped groups, TLS
# interception, rules/services.conf, rules/policy.conf, rules/pages) with only
# the port, the CA, the origin trust store, the hosts file, connect_ports and
# the state files changed (shipped_conf in lib.sh).  The last round passed
# every test while this configuration showed browsers a 407 on every HTTPS
# page, because the tests ran interception with authentication off.
#
# What the shipped policy decides, and what is checked here (all from
# 127.0.0.1, an ordinary desk, not the security lab's 10.99.0.0/16):
#   alice (staff)     chat.deepseek.com  ban-cn-ai       block: 403 block page
#   alice             claude.ai          caution         warn: caution page, ack, origin
#   alice             claude.ai POST */upload*  no-uploads  block (after the ack)
#   alice             claude.ai POST card no.   no-personal-data  block
#   alice             perplexity.ai      default         allow (search: no caution), intercepted
#   alice             example.org        default         allow, blind tunnel / plain HTTP
#   bob (staff)       claude.ai          caution         warn: alice's ack is not bob's
#   carol (security)  claude.ai          security-free   allow, no caution page
#   carol             chat.deepseek.com  ban-cn-ai       block: the lab exception needs the lab network
#   nobody            anything           407
# The origins (start_shipped) are one nginx with a certificate for every name
# (signed by the test PKI, which the proxy trusts as tls.upstream_ca_file) on an
# ephemeral HTTPS port, and plain HTTP on another; the hosts file maps the names
# to 127.0.0.1.
source "$(dirname "$0")/lib.sh"

start_shipped chat.deepseek.com claude.ai perplexity.ai example.org
AUDIT=$SHIPPED_AUDIT
CA=$SHIPPED_CA

DS=https://chat.deepseek.com:$GOOD
CL=https://claude.ai:$GOOD
PX=https://perplexity.ai:$GOOD
HTML='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
KO='Accept-Language: ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7'

# get NAME USER:PASS URL [CURL_ARGS...]: one request through the proxy as USER
# (no credentials for an empty USER:PASS), trusting the aigate CA; heads in
# $T/NAME.hdr (the CONNECT's answer first for https), body in $T/NAME.html;
# prints "CONNECT_STATUS STATUS"
get() {
    local name=$1 cred=$2 url=$3
    shift 3
    curl -q -sS --max-time 20 -x "http://${cred:+$cred@}127.0.0.1:$PROXY_PORT" --cacert "$CA" \
        -D "$T/$name.h" -o "$T/$name.html" -w '%{http_connect} %{http_code}' "$@" "$url" \
        2>"$T/$name.err"
    tr -d '\r' <"$T/$name.h" >"$T/$name.hdr" 2>/dev/null
}

# ---- blocked: DeepSeek (ban-cn-ai) inside the intercepted TLS ----------------------
assert_eq "alice, https DeepSeek: tunnel 200, then the block page's 403 inside it" "200 403" \
    "$(get ds alice:alice-pass "$DS/" -H "$HTML")"
assert_match "block page: text/html" '^Content-Type: text/html' "$(cat "$T/ds.hdr")"
assert_contains "block page: Proxy-Status names the rule" "$(cat "$T/ds.hdr")" \
    'Proxy-Status: aigate; error=http_request_denied; details="rule=ban-cn-ai"'
assert_contains "block page: names the rule" "$(cat "$T/ds.html")" 'ban-cn-ai'
assert_contains "block page: names the service" "$(cat "$T/ds.html")" 'DeepSeek'
assert_contains "block page: names the user" "$(cat "$T/ds.html")" 'alice'
assert_contains "block page: the shipped reason" "$(cat "$T/ds.html")" \
    'AI services of vendors based in China are banned for business use'
assert_eq "alice, https DeepSeek, curl's own Accept: 403" "200 403" "$(get dstxt alice:alice-pass "$DS/")"
assert_match "block answer for a non-browser: text/plain" '^Content-Type: text/plain' "$(cat "$T/dstxt.hdr")"

# ---- warned: Claude (caution), Korean, acknowledged inside the intercepted TLS ---
URL="$CL/index.html?from=shipped"
assert_eq "alice, https Claude, ko-KR: the caution page's 403 inside the tunnel" "200 403" \
    "$(get ko alice:alice-pass "$URL" -H "$HTML" -H "$KO")"
assert_match "caution page: no-store" '^Cache-Control: .*no-store' "$(cat "$T/ko.hdr")"
assert_contains "caution page: Korean" "$(cat "$T/ko.html")" '<html lang="ko">'
assert_contains "caution page: the Korean heading for Claude" "$(cat "$T/ko.html")" \
    'Claude (Anthropic) 이용 전에 꼭 확인해 주십시오'
assert_contains "caution page: the personal-data point" "$(cat "$T/ko.html")" \
    '개인정보와 업무상 비밀을 입력하지 마십시오'
assert_contains "caution page: names the rule" "$(cat "$T/ko.html")" 'caution'
assert_contains "caution page: names the user" "$(cat "$T/ko.html")" 'alice'
assert_eq "caution page: the form's url is the original URL" "$URL" "$(form_field "$T/ko.html" url)"
TOKEN=$(form_field "$T/ko.html" token)
assert_match "caution page: a token" '^[A-Za-z0-9._~-]{20,}$' "$TOKEN"

assert_eq "bob (staff, same rule), https Claude: his own caution page" "200 403" \
    "$(get bob0 bob:bob-pass "$URL" -H "$HTML")"
BOB_TOKEN=$(form_field "$T/bob0.html" token)

ack=$(curl -q -sS --max-time 20 -x "http://alice:alice-pass@127.0.0.1:$PROXY_PORT" --cacert "$CA" \
    -H "$HTML" -H "$KO" --data-urlencode "url=$URL" --data-urlencode "token=$TOKEN" \
    -o "$T/ack.out" -w '%{http_connect} %{http_code} %{redirect_url}' "$CL/__aigate/ack")
assert_eq "alice acknowledges inside the intercepted TLS: 303 back to the URL" "200 303 $URL" "$ack"
assert_eq "after the ack: alice gets the origin page" "200 200" "$(get after alice:alice-pass "$URL" -H "$HTML")"
assert_contains "after the ack: the origin's page" "$(cat "$T/after.html")" 'origin page'
assert_eq "after the ack: another page of the service, straight to the origin" "200 200" \
    "$(get after2 alice:alice-pass "$CL/index.html?again=1" -H "$HTML")"
assert_eq "alice's ack is not bob's: bob still gets the caution page" "200 403" \
    "$(get bob1 bob:bob-pass "$URL" -H "$HTML")"
assert_contains "bob's page is the caution page" "$(cat "$T/bob1.html")" 'action="/__aigate/ack"'
ack=$(curl -q -sS --max-time 20 -x "http://alice:alice-pass@127.0.0.1:$PROXY_PORT" --cacert "$CA" \
    -H "$HTML" --data-urlencode "url=$URL" --data-urlencode "token=$BOB_TOKEN" \
    -o /dev/null -w '%{http_code}' "$CL/__aigate/ack")
assert_match "alice cannot acknowledge with bob's token" '^4[0-9][0-9]$' "$ack"

# ---- the shipped path and personal-data rules, inside the intercepted TLS ----------
assert_eq "alice (acknowledged) uploads a file to Claude: no-uploads" "200 403" \
    "$(get up alice:alice-pass "$CL/api/upload" -H "$HTML" --data-binary 'x')"
assert_contains "no-uploads: Proxy-Status names the rule" "$(cat "$T/up.hdr")" 'details="rule=no-uploads"'
assert_eq "alice (acknowledged) sends a card number to Claude: no-personal-data" "200 403" \
    "$(get dlp alice:alice-pass "$CL/api/chat" -H "$HTML" -H 'Content-Type: application/json' \
        --data-binary '{"prompt":"my card is 4111 1111 1111 1111"}')"
assert_contains "no-personal-data: Proxy-Status names the rule" "$(cat "$T/dlp.hdr")" \
    'details="rule=no-personal-data"'
assert_eq "the origin never saw the upload or the card number" 0 \
    "$(grep -cE '"POST /api/(upload|chat)' "$NGINX_SERVERS_LOG")"

# ---- a second user in another group: carol (security) ------------------------------
assert_eq "carol (security), https Claude: security-free, the origin page at once" "200 200" \
    "$(get carol carol:carol-pass "$URL" -H "$HTML")"
assert_contains "carol gets the origin's page" "$(cat "$T/carol.html")" 'origin page'
assert_eq "carol, https DeepSeek from a desk: blocked too" "200 403" \
    "$(get carolds carol:carol-pass "$DS/" -H "$HTML")"
assert_contains "carol's block page names ban-cn-ai" "$(cat "$T/carolds.hdr")" 'details="rule=ban-cn-ai"'
assert_contains "carol's block page names her" "$(cat "$T/carolds.html")" 'carol'

# ---- allowed ------------------------------------------------------------------------
assert_eq "alice, https Perplexity (search: no caution), intercepted: origin page" "200 200" \
    "$(get px alice:alice-pass "$PX/index.html" -H "$HTML")"
code=$(curl -q -sS --max-time 20 -x "http://alice:alice-pass@127.0.0.1:$PROXY_PORT" \
    --cacert "$T/pki/ca.pem" -o "$T/blind.html" -w '%{http_connect} %{http_code}' \
    "https://example.org:$GOOD/index.html")
assert_eq "alice, https example.org (not AI): a blind tunnel to the origin's own certificate" \
    "200 200" "$code"
assert_contains "blind tunnel: the origin page" "$(cat "$T/blind.html")" 'origin page'
assert_eq "alice, http example.org: the origin page" "000 200" \
    "$(get plain alice:alice-pass "http://example.org:$PLAIN/index.html")"
assert_contains "plain HTTP: the origin page" "$(cat "$T/plain.html")" 'origin page'

# ---- no or wrong credentials --------------------------------------------------------
assert_eq "CONNECT without credentials: 407, no tunnel" "407 000" "$(get noauth '' "$DS/")"
assert_contains "407 names the shipped realm" "$(cat "$T/noauth.hdr")" \
    'Proxy-Authenticate: Basic realm="aigate"'
assert_eq "CONNECT with a wrong password: 407" "407 000" "$(get badpw alice:wrong "$CL/")"
assert_eq "plain HTTP without credentials: 407" "000 407" "$(get noauth2 '' "http://example.org:$PLAIN/")"

# ---- the audit log -------------------------------------------------------------------
q='d["tls"] == "intercept" and d["method"] == "GET"'
assert_le "audit: alice blocked on DeepSeek by ban-cn-ai, intercepted" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'chat.deepseek.com' and d['service'] == 'deepseek' and d['rule'] == 'ban-cn-ai' and d['action'] == 'block' and d['status'] == 403")"
assert_le "audit: alice warned on Claude by caution, intercepted" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'claude.ai' and d['rule'] == 'caution' and d['action'] == 'warn' and d['status'] == 403")"
assert_eq "audit: alice's acknowledgement, intercepted" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'alice' and d['action'] == 'ack' and d['status'] == 303 and d['tls'] == 'intercept' and d['service'] == 'claude'")"
assert_le "audit: alice allowed on Claude after the ack" 2 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['host'] == 'claude.ai' and d['action'] == 'allow' and d['status'] == 200" 2)"
assert_eq "audit: bob warned twice" 2 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'bob' and d['rule'] == 'caution' and d['action'] == 'warn'" 2)"
assert_eq "audit: carol allowed on Claude by security-free" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'carol' and d['host'] == 'claude.ai' and d['rule'] == 'security-free' and d['action'] == 'allow' and d['status'] == 200")"
assert_eq "audit: carol blocked on DeepSeek by ban-cn-ai" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'carol' and d['host'] == 'chat.deepseek.com' and d['rule'] == 'ban-cn-ai' and d['action'] == 'block'")"
assert_eq "audit: the upload blocked by no-uploads" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'alice' and d['method'] == 'POST' and d['rule'] == 'no-uploads' and d['action'] == 'block' and d['tls'] == 'intercept'")"
assert_eq "audit: the card number blocked by no-personal-data" 1 "$(wait_audit "$AUDIT" \
    "d['user'] == 'alice' and d['rule'] == 'no-personal-data' and d.get('dlp') == ['credit-card'] and d['tls'] == 'intercept'")"
assert_eq "audit: Perplexity allowed by default, intercepted" 1 "$(wait_audit "$AUDIT" \
    "$q and d['user'] == 'alice' and d['service'] == 'perplexity' and d['rule'] == 'default' and d['action'] == 'allow'")"
assert_eq "audit: example.org as a blind tunnel of alice" 1 "$(wait_audit "$AUDIT" \
    "d['method'] == 'CONNECT' and d['user'] == 'alice' and d['host'] == 'example.org' and d['tls'] == 'tunnel' and d['action'] == 'allow'")"
assert_le "audit: the refused credentials as auth-fail" 3 "$(wait_audit "$AUDIT" \
    "d['action'] == 'auth-fail' and d['status'] == 407" 3)"
assert_eq "nginx never saw /__aigate" 0 "$(grep -c '__aigate' "$NGINX_SERVERS_LOG")"
assert_eq "nginx never served DeepSeek" 0 "$(grep -c ' chat.deepseek.com ' "$NGINX_SERVERS_LOG")"

stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
if out=$("$AIGATE" -c "$T/rules/aigate.conf" --verify-log "$AUDIT" 2>&1); then
    pass "the audit log verifies with the shipped chain settings: $out"
else
    fail "the audit log does not verify: $out"
fi
