#!/bin/bash
# The caution page in a real browser: Debian's Chromium, headless, driven by
# playwright-core (tests/e2e/browser/caution.mjs) through the proxy.  Plain
# HTTP in English and Korean, the acknowledge button, the origin's page after
# it; then the same over HTTPS with interception, the browser trusting the
# aigate CA by its SPKI hash.  Screenshots: tests/e2e/out/caution-en.png,
# caution-ko.png, caution-https.png, after-ack.png.
source "$(dirname "$0")/lib.sh"

BROWSER_DIR=$E2E/browser
OUT=$E2E/out
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing: run 'make deps' (Debian package chromium)"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "node and npm are needed for the browser test"
fi
if [ ! -d "$BROWSER_DIR/node_modules/playwright-core" ]; then
    (cd "$BROWSER_DIR" && npm ci --no-audit --no-fund) >"$T/npm.log" 2>&1 ||
        die "npm ci in tests/e2e/browser failed: $(tail -n 5 "$T/npm.log")"
fi
mkdir -p "$OUT"
rm -f "$OUT"/caution-en.png "$OUT"/caution-ko.png "$OUT"/caution-https.png "$OUT"/after-ack.png

# Origins: nginx over HTTP (perplexity.ai, warned) and over HTTPS (claude.ai,
# warned, intercepted), both serving the same "origin page".  Plain HTTP needs
# a host outside Chromium's HSTS preload list: Chromium itself turns
# http://chatgpt.com:PORT/ into a CONNECT to chatgpt.com:PORT.  Names the
# hosts file does not know get NXDOMAIN from a local server, so Chromium's
# own background requests through the proxy never leave the machine.
start_dns_nx
make_cert "$T/pki" good perplexity.ai claude.ai
start_nginx_servers "$T/nginx" PLAIN= GOOD="$T/pki/good"
"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || die "--gen-ca: $(cat "$T/genca.out")"
SPKI=$(openssl x509 -in "$T/ca/ca.pem" -noout -pubkey | openssl pkey -pubin -outform DER |
    openssl dgst -sha256 -binary | base64)

printf '127.0.0.1 perplexity.ai claude.ai\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "caution"; action = "warn"; services = [ "perplexity", "claude" ];
    reason = "Per the Ministry of the Interior and Safety's guidance: do not enter personal details or confidential work data, and check the answers before you rely on them."; },
  { name = "default"; action = "allow"; }
);
EOF
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="$GOOD" DNS="hosts_file = \"$T/hosts\"; nameservers = [ \"127.0.0.1:$DNS_PORT\" ];" LIMITS='header_timeout_ms = 10000; idle_timeout_ms = 30000;' proxy_conf \
    "tls : { intercept = true; ca_cert = \"$T/ca/ca.pem\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$T/pki/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; };" \
    "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

HTTP_URL="http://perplexity.ai:$PLAIN/index.html?from=browser"
HTTPS_URL="https://claude.ai:$GOOD/index.html?from=browser"
PROXY_PORT=$PROXY_PORT HTTP_URL=$HTTP_URL HTTP_SERVICE=Perplexity HTTPS_URL=$HTTPS_URL \
    HTTPS_SERVICE="Claude (Anthropic)" CA_SPKI=$SPKI OUT_DIR=$OUT \
    timeout 75 node "$BROWSER_DIR/caution.mjs" 2>&1 | tee "$T/browser.out"
rc=${PIPESTATUS[0]}
assert_eq "caution.mjs exit status" 0 "$rc"
for f in caution-en.png caution-ko.png caution-https.png after-ack.png; do
    if [ -s "$OUT/$f" ]; then pass "screenshot $f written"; else fail "no screenshot $f"; fi
done

# What the proxy saw of the browser's visit
assert_le "audit: warn lines for perplexity.ai over HTTP" 2 "$(wait_audit "$AUDIT" \
    'd["host"] == "perplexity.ai" and d["action"] == "warn" and d["tls"] == "none"' 2)"
assert_le "audit: warn line for claude.ai, intercepted" 1 "$(wait_audit "$AUDIT" \
    'd["host"] == "claude.ai" and d["action"] == "warn" and d["tls"] == "intercept"')"
assert_eq "audit: the browser's two acknowledgements" 2 "$(wait_audit "$AUDIT" \
    'd["action"] == "ack" and d["status"] == 303' 2)"
assert_eq "nginx never saw /__aigate/ack" 0 \
    "$(grep -c '__aigate' "$NGINX_SERVERS_LOG")"
assert_eq "nginx (HTTPS) served the page after the click, over TLS with SNI claude.ai" 1 \
    "$(grep -cF "$GOOD claude.ai \"GET /index.html?from=browser HTTP/1.1\" 200" "$NGINX_SERVERS_LOG")"
assert_eq "nginx (HTTPS) served the browser's next page of the service" 1 \
    "$(grep -cF "$GOOD claude.ai \"GET /index.html?again=1 HTTP/1.1\" 200" "$NGINX_SERVERS_LOG")"
