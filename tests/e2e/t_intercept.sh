#!/bin/bash
# TLS interception of catalogued AI hosts, seen from curl and openssl s_client:
# --gen-ca, path rules and the caution page (with its acknowledgement) inside
# HTTPS, origins verified against tls.upstream_ca_file (wrong name, expired,
# untrusted issuer → 502 tls_certificate_error), non-AI hosts tunnelled blind,
# the minted leaf (SAN = host, ECDSA, signed by our CA, cached per host), the
# audit lines, a client that does not trust the CA logged, and -t on a missing CA.
source "$(dirname "$0")/lib.sh"

# ---- certificates: the test PKI of the origins, another CA, our CA -----------
PKI=$T/pki
make_cert "$PKI" good chatgpt.com chat.openai.com claude.ai origin.test
make_cert "$PKI" wrong wrong.test
make_expired_cert "$PKI" expired chatgpt.com origin.test
make_cert "$T/other" untrusted chatgpt.com
start_nginx_servers "$T/nginx" GOOD="$PKI/good" WRONG="$PKI/wrong" EXPIRED="$PKI/expired" \
    UNTRUSTED="$T/other/untrusted"

"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || fail "--gen-ca failed: $(cat "$T/genca.out")"
CA=$T/ca/ca.pem
assert_eq "--gen-ca: ca.key mode 0600" 600 "$(stat -c %a "$T/ca/ca.key" 2>/dev/null)"
assert_match "--gen-ca: a CA certificate" 'CA:TRUE' "$(openssl x509 -in "$CA" -noout -text 2>&1)"
sums=$(sha256sum "$T/ca/ca.pem" "$T/ca/ca.key")
"$AIGATE" --gen-ca "$T/ca" >"$T/genca2.out" 2>&1
rc=$?
if [ "$rc" != 0 ]; then
    pass "--gen-ca on an existing CA refuses (exit $rc)"
else
    fail "--gen-ca on an existing CA: exit 0"
fi
assert_match "--gen-ca refusal says why" 'exist' "$(cat "$T/genca2.out")"
assert_eq "--gen-ca refusal leaves the CA alone" "$sums" "$(sha256sum "$T/ca/ca.pem" "$T/ca/ca.key")"
mkdir -p "$T/half"
echo "not a certificate" >"$T/half/ca.pem"
"$AIGATE" --gen-ca "$T/half" >"$T/genca3.out" 2>&1
rc=$?
if [ "$rc" != 0 ]; then
    pass "--gen-ca with only ca.pem present refuses (exit $rc)"
else
    fail "--gen-ca with only ca.pem present: exit 0"
fi
assert_eq "--gen-ca never overwrites an existing ca.pem" "not a certificate" "$(cat "$T/half/ca.pem")"

printf '127.0.0.1 origin.test chatgpt.com chat.openai.com claude.ai\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "no-uploads"; action = "block"; services = [ "chatgpt" ];
    methods = [ "POST", "PUT" ]; paths = [ "*/upload*" ]; },
  { name = "caution-claude"; action = "warn"; services = [ "claude" ]; },
  { name = "default"; action = "allow"; }
);
EOF
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="443, $GOOD, $WRONG, $EXPIRED, $UNTRUSTED" proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$PKI/ca.pem\"; warn_fallback = \"block\"; };" \
    "audit : { path = \"$AUDIT\"; };" \
    "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

GPT=https://chatgpt.com:$GOOD
CLAUDE=https://claude.ai:$GOOD
HTML='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

# scurl ARGS...: curl through the proxy trusting only our CA
scurl() {
    pcurl --cacert "$CA" "$@"
}

# leaf HOST PORT OUT: the certificate the proxy presents for HOST:PORT (via s_client -proxy)
leaf() {
    openssl s_client -proxy "127.0.0.1:$PROXY_PORT" -connect "$1:$2" -servername "$1" \
        </dev/null 2>/dev/null | openssl x509 -out "$3" 2>/dev/null
}

# issuer_of HOST PORT: the issuer of the certificate the client sees through the proxy
issuer_of() {
    openssl s_client -proxy "127.0.0.1:$PROXY_PORT" -connect "$1:$2" -servername "$1" \
        </dev/null 2>/dev/null | openssl x509 -noout -issuer 2>/dev/null
}

# ---- intercepted: GET allowed, POST /upload blocked inside TLS ---------------
out=$(scurl -o "$T/get.out" -w '%{http_code} %{http_connect}' "$GPT/")
assert_eq "intercepted GET /: 200 after CONNECT 200" "200 200" "$out"
assert_contains "intercepted GET /: the origin page from nginx" "$(cat "$T/get.out")" 'origin page'
assert_eq "nginx got it over TLS with SNI chatgpt.com" 1 \
    "$(grep -cF "$GOOD chatgpt.com \"GET / HTTP/1.1\" 200" "$NGINX_SERVERS_LOG")"
scurl -X POST --data-binary 'file bytes' -D "$T/up.h" -o "$T/up.body" "$GPT/backend/upload" ||
    fail "POST /upload: curl failed"
uph=$(tr -d '\r' <"$T/up.h")
assert_match "POST /backend/upload inside TLS: 403" '^HTTP/1\.1 403' "$(grep '^HTTP' <<<"$uph" | tail -n1)"
assert_match "POST /upload: Proxy-Status names no-uploads" 'details="rule=no-uploads"' "$uph"
assert_contains "text block page shows the address as requested, with its port" "$(cat "$T/up.body")" \
    "https://chatgpt.com:$GOOD/backend/upload"
scurl -H "$HTML" -X POST --data-binary 'x' -o "$T/up.html" "$GPT/upload" || fail "POST /upload (HTML): curl failed"
assert_contains "POST /upload from a browser: the HTML block page inside TLS" "$(cat "$T/up.html")" '<html'
assert_contains "block page names the rule" "$(cat "$T/up.html")" 'no-uploads'
assert_eq "blocked uploads never reached nginx" 0 "$(grep -c 'upload' "$NGINX_SERVERS_LOG")"
assert_eq "POST elsewhere on the service passes (nginx answers 405 to POST on static files)" 405 \
    "$(scurl -X POST --data-binary 'x' -o /dev/null -w '%{http_code}' "$GPT/index.html")"
out=$(scurl --http2 -o /dev/null -w '%{http_version}' "$GPT/index.html")
assert_eq "a client offering h2 gets http/1.1 (ALPN)" 1.1 "$out"
out=$(scurl -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' "$GPT/index.html" "$GPT/index.html" |
    tr '\n' ' ')
assert_eq "two requests on one intercepted connection" "200 1 200 0 " "$out"

# ---- the caution page over HTTPS and its acknowledgement ---------------------
scurl -H "$HTML" -H 'Accept-Language: ko-KR,ko;q=0.9' -D "$T/warn.h" -o "$T/warn.html" "$CLAUDE/index.html?x=1" ||
    fail "caution over HTTPS: curl failed"
assert_match "warned service over HTTPS: 403 inside TLS" '^HTTP/1\.1 403' \
    "$(tr -d '\r' <"$T/warn.h" | grep '^HTTP' | tail -n1)"
assert_contains "caution page over HTTPS (Korean)" "$(cat "$T/warn.html")" '<html lang="ko">'
assert_eq "hidden url is the https URL with its port" "$CLAUDE/index.html?x=1" "$(form_field "$T/warn.html" url)"
TOKEN=$(form_field "$T/warn.html" token)
scurl -D "$T/warntxt.h" -o "$T/warntxt.body" "$CLAUDE/api" || fail "caution over HTTPS (text): curl failed"
assert_match "warned service over HTTPS, non-HTML client: text/plain inside TLS" '^Content-Type: text/plain' \
    "$(tr -d '\r' <"$T/warntxt.h")"
out=$(scurl -H "$HTML" --data-urlencode "url=$CLAUDE/index.html?x=1" --data-urlencode "token=$TOKEN" \
    -o /dev/null -w '%{http_code} %{redirect_url}' "$CLAUDE/__aigate/ack")
assert_eq "acknowledgement inside TLS: 303 to the URL" "303 $CLAUDE/index.html?x=1" "$out"
out=$(scurl -H "$HTML" -o "$T/after.out" -w '%{http_code}' "$CLAUDE/index.html?x=1")
assert_eq "after the acknowledgement: 200" 200 "$out"
assert_contains "after the acknowledgement: the origin page" "$(cat "$T/after.out")" 'origin page'
assert_eq "nginx never saw /__aigate/ack" 0 "$(grep -c '__aigate' "$NGINX_SERVERS_LOG")"
out=$(scurl -H "$HTML" --data-urlencode "url=$CLAUDE/index.html?x=1" --data-urlencode "token=$TOKEN" \
    -o /dev/null -w '%{http_code}' "$CLAUDE/__aigate/ack")
assert_eq "replayed token inside TLS: 403" 403 "$out"

# ---- bad origin certificates: 502 tls_certificate_error inside TLS ------------
for bad in "WRONG:$WRONG:wrong name" "EXPIRED:$EXPIRED:expired" "UNTRUSTED:$UNTRUSTED:untrusted issuer"; do
    IFS=: read -r tag port what <<<"$bad"
    scurl -D "$T/$tag.h" -o "$T/$tag.body" "https://chatgpt.com:$port/" ||
        fail "origin with a $what certificate: curl failed (the client must still trust us)"
    h=$(tr -d '\r' <"$T/$tag.h")
    assert_match "origin with a $what certificate: 502" '^HTTP/1\.1 502' "$(grep '^HTTP' <<<"$h" | tail -n1)"
    assert_match "origin with a $what certificate: Proxy-Status tls_certificate_error" \
        '^Proxy-Status: aigate; error=tls_certificate_error; details="[^"]+"' "$h"
    echo "---- $what: $(grep '^Proxy-Status' <<<"$h")"
done
assert_match "expired: details say so" 'expired' "$(tr -d '\r' <"$T/EXPIRED.h" | grep '^Proxy-Status')"
assert_eq "nginx answered no request on the bad-certificate ports" 0 \
    "$(grep -cE "^($WRONG|$EXPIRED|$UNTRUSTED) " "$NGINX_SERVERS_LOG")"

# ---- a non-AI host is tunnelled blind ----------------------------------------
assert_match "origin.test through the proxy: the test CA's certificate, not ours" \
    'CN *= *aigate e2e test CA' "$(issuer_of origin.test "$GOOD")"
out=$(pcurl --cacert "$PKI/ca.pem" -o /dev/null -w '%{http_code}' "https://origin.test:$GOOD/")
assert_eq "origin.test verified with the origin's CA (blind tunnel): 200" 200 "$out"
pcurl --cacert "$CA" -o /dev/null "https://origin.test:$GOOD/" 2>"$T/blind.err"
assert_eq "origin.test does not verify against our CA (exit 60)" 60 "$?"
pcurl --cacert "$PKI/ca.pem" -o /dev/null "https://origin.test:$WRONG/" 2>"$T/blindwrong.err"
assert_eq "origin.test with a wrong-name certificate: the client itself sees it (exit 60)" 60 "$?"
assert_match "chatgpt.com through the proxy: issued by our CA" 'CN *= *aigate interception CA' \
    "$(issuer_of chatgpt.com "$GOOD")"

# ---- the minted leaf ------------------------------------------------------------
# Each worker keeps its own leaf cache (proxy/tls/tls_mitm.c), so with 2 workers a
# host has at most 2 leaves whichever worker a connection lands on.
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null; }
for i in 1 2 3 4 5 6 7 8; do leaf chatgpt.com "$GOOD" "$T/leafw$i.pem"; done
leaf chat.openai.com "$GOOD" "$T/leaf4.pem"
[ -s "$T/leafw1.pem" ] || fail "no leaf certificate from s_client through the proxy"
distinct=$(for i in 1 2 3 4 5 6 7 8; do fp "$T/leafw$i.pem"; done | sort -u | grep -c .)
assert_le "leaf cache, 2 workers: 8 connections to chatgpt.com see at most 2 leaves" "$distinct" 2
if [ -s "$T/leaf4.pem" ] && ! for i in 1 2 3 4 5 6 7 8; do fp "$T/leafw$i.pem"; done | grep -qxF "$(fp "$T/leaf4.pem")"; then
    pass "another host (chat.openai.com) gets another certificate"
else
    fail "chat.openai.com got no certificate of its own"
fi
cp "$T/leafw1.pem" "$T/leaf1.pem"
assert_eq "leaf SAN = the host" "DNS:chatgpt.com" \
    "$(openssl x509 -in "$T/leaf1.pem" -noout -ext subjectAltName 2>/dev/null | sed -n '2p' | tr -d ' ')"
assert_eq "other leaf SAN = its host" "DNS:chat.openai.com" \
    "$(openssl x509 -in "$T/leaf4.pem" -noout -ext subjectAltName 2>/dev/null | sed -n '2p' | tr -d ' ')"
assert_contains "leaf is ECDSA" "$(openssl x509 -in "$T/leaf1.pem" -noout -text 2>/dev/null)" id-ecPublicKey
assert_eq "leaf verifies against our CA" "$T/leaf1.pem: OK" \
    "$(openssl verify -CAfile "$CA" -purpose sslserver "$T/leaf1.pem" 2>&1)"
assert_match "leaf does not verify against the origins' CA" 'error|fail' \
    "$(openssl verify -CAfile "$PKI/ca.pem" "$T/leaf1.pem" 2>&1)"

# ---- a client that does not trust our CA --------------------------------------
pcurl --cacert "$PKI/ca.pem" -o /dev/null "$GPT/" 2>"$T/untrusting.err"
assert_eq "a client that does not trust our CA fails verification (exit 60)" 60 "$?"
for ((i = 0; i < 50; i++)); do
    grep -q 'does the client trust the aigate CA' "$PROXY_LOG" && break
    sleep 0.1
done
assert_match "the proxy logs the refused handshake" \
    'chatgpt\.com.*does the client trust the aigate CA\?' "$(cat "$PROXY_LOG")"

# ---- audit --------------------------------------------------------------------
assert_eq "audit: intercepted GET / allowed, tls intercept, scheme https" 1 "$(wait_audit "$AUDIT" \
    'd["method"] == "GET" and d["host"] == "chatgpt.com" and d["path"] == "/" and d["scheme"] == "https" and d["tls"] == "intercept" and d["action"] == "allow" and d["status"] == 200')"
assert_eq "audit: the upload blocked inside TLS" 2 "$(wait_audit "$AUDIT" \
    'd["method"] == "POST" and d["path"] in ("/backend/upload", "/upload") and d["tls"] == "intercept" and d["rule"] == "no-uploads" and d["action"] == "block" and d["status"] == 403' 2)"
assert_eq "audit: the warns inside TLS (HTML and text)" 2 "$(wait_audit "$AUDIT" \
    'd["host"] == "claude.ai" and d["tls"] == "intercept" and d["action"] == "warn" and d["status"] == 403' 2)"
assert_eq "audit: the ack inside TLS" 1 "$(wait_audit "$AUDIT" \
    'd["host"] == "claude.ai" and d["tls"] == "intercept" and d["scheme"] == "https" and d["action"] == "ack" and d["status"] == 303')"
assert_eq "audit: the 502s are errors, tls intercept" 3 "$(wait_audit "$AUDIT" \
    'd["method"] == "GET" and d["status"] == 502 and d["tls"] == "intercept" and d["action"] == "error"' 3)"
assert_le "audit: CONNECT lines with tls intercept" 5 "$(wait_audit "$AUDIT" \
    'd["method"] == "CONNECT" and d["host"] == "chatgpt.com" and d["tls"] == "intercept"' 5)"
assert_le "audit: origin.test tunnelled (tls tunnel), never intercepted" 1 "$(wait_audit "$AUDIT" \
    'd["method"] == "CONNECT" and d["host"] == "origin.test" and d["tls"] == "tunnel"')"
assert_eq "audit: no intercepted line for origin.test" 0 \
    "$(audit_count "$AUDIT" 'd["host"] == "origin.test" and d["tls"] == "intercept"')"

# ---- leaf cache with one worker: the same certificate every time -------------
stop_proxy TERM
assert_eq "proxy exits 0 on SIGTERM" 0 "$PROXY_RC"
mkdir -p "$T/one"
PROXY_PORT=$(free_port)
start_proxy "$T/one" "$(WORKERS=1 CONNECT_PORTS="$GOOD, $EXPIRED" proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\"; upstream_ca_file = \"$PKI/ca.pem\"; };" \
    "audit : { path = \"$T/one/audit.jsonl\"; };" "@include \"$ROOT/rules/services.conf\"")"
leaf chatgpt.com "$GOOD" "$T/one1.pem"
leaf chatgpt.com "$GOOD" "$T/one2.pem"
leaf chatgpt.com "$EXPIRED" "$T/one3.pem"
leaf claude.ai "$GOOD" "$T/one4.pem"
[ -s "$T/one1.pem" ] || fail "one worker: no leaf certificate from s_client through the proxy"
assert_eq "leaf cache, 1 worker: the same certificate on a second connection" \
    "$(fp "$T/one1.pem")" "$(fp "$T/one2.pem")"
assert_eq "leaf cache, 1 worker: the same certificate for the host on another port" \
    "$(fp "$T/one1.pem")" "$(fp "$T/one3.pem")"
if [ -s "$T/one4.pem" ] && [ "$(fp "$T/one1.pem")" != "$(fp "$T/one4.pem")" ]; then
    pass "leaf cache, 1 worker: claude.ai gets another certificate"
else
    fail "leaf cache, 1 worker: claude.ai got no certificate of its own"
fi

# ---- -t with interception on and a missing CA ---------------------------------
mkdir -p "$T/t"
cat >"$T/t/aigate.conf" <<EOF
tls : { intercept = true; ca_cert = "$T/missing/ca.pem"; ca_key = "$T/missing/ca.key"; };
EOF
err=$("$AIGATE" -t -c "$T/t/aigate.conf" 2>&1)
rc=$?
assert_eq "-t with a missing CA: exit 2" 2 "$rc"
assert_contains "-t with a missing CA names the file" "$err" "$T/missing/ca.pem"
cat >"$T/t/ok.conf" <<EOF
tls : { intercept = true; ca_cert = "$CA"; ca_key = "$T/ca/ca.key"; };
EOF
assert_eq "-t with the generated CA: exit 0" 0 "$("$AIGATE" -t -c "$T/t/ok.conf" >/dev/null 2>&1; echo $?)"
