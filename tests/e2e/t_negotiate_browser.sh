#!/bin/bash
# A browser signs in to the proxy with its user's Kerberos ticket (SPEC 9): Debian's
# Chromium, headless (tests/e2e/browser/negotiate.mjs), with alice's ticket cache from a
# real MIT KDC, --auth-server-allowlist, and the proxy reached by its host name.  The
# proxy offers Negotiate and Basic; the pages load with no password prompt, alice's
# groups come from a real slapd and decide: Claude is for the directory group ai-users.
#
# The proxy's name: Chromium asks for a ticket to HTTP/<the name it resolved the proxy
# by>.  With --host-resolver-rules="MAP proxy.aigate.test 127.0.0.1" it asks for
# HTTP/127.0.0.1 (the KDC logs "Server not found in Kerberos database"; the policy
# DisableAuthNegotiateCnameLookup, given with --policy, does not change that), so the
# browser runs in a mount namespace of its own whose /etc/hosts names the proxy, as DNS
# would on a domain (unshare -m as root, or in a user namespace otherwise).
#   - a plain-HTTP origin page, and an intercepted Claude page (a CONNECT signed in by
#     ticket, its inner requests alice's);
#   - the audit log names alice, the Claude page was allowed by the ai-users rule;
#   - bob (not in ai-users) in the same setting is blocked on Claude by the no-ai rule.
source "$(dirname "$0")/lib.sh"

need_browser
OUT=$E2E/out
mkdir -p "$OUT"
rm -f "$OUT"/negotiate-*.png

start_kdc "$T/kdc"
start_slapd "$T/ldap"
make_cert "$T/pki" good claude.ai
start_nginx_servers "$T/nginx" PLAIN= GOOD="$T/pki/good"
"$AIGATE" --gen-ca "$T/ca" >/dev/null 2>&1 || die "--gen-ca failed"
printf '127.0.0.1 origin.test claude.ai\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOP'
policy = (
  { name = "ai-users"; action = "allow"; groups = [ "ai-users" ]; services = [ "claude" ]; },
  { name = "no-ai"; action = "block"; services = [ "claude" ]; },
  { name = "default"; action = "allow"; }
);
EOP
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="$GOOD" LIMITS="header_timeout_ms = 5000; idle_timeout_ms = 10000;" proxy_conf \
    "auth : { mode = \"negotiate\"; keytab = \"$KDC_KEYTAB\";" \
    "         htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    "ldap : { uri = \"$SLAPD_URI\"; base = \"$SLAPD_BASE\";" \
    "         bind_dn = \"$SLAPD_BIND_DN\"; bind_password_file = \"$SLAPD_PWFILE\";" \
    '         group_attr = "memberOf"; };' \
    "tls : { intercept = true; ca_cert = \"$T/ca/ca.pem\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$T/pki/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; log_query = true; };" \
    "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

PLAIN_URL="http://origin.test:$PLAIN/index.html?b=plain"
AI_URL="https://claude.ai:$GOOD/index.html?b=claude"
# browse URL...: negotiate.mjs with the current ticket cache, in a mount namespace whose
# /etc/hosts also maps $PROXY_HOST to 127.0.0.1
cat /etc/hosts >"$T/hosts.browser"
echo "127.0.0.1 $PROXY_HOST" >>"$T/hosts.browser"
if unshare -m true 2>/dev/null; then
    NS=(unshare -m --propagation private)
elif unshare -r -m true 2>/dev/null; then
    NS=(unshare -r -m --propagation private)
else
    die "cannot make a mount namespace (unshare -m) to give Chromium the proxy's name"
fi
browse() {
    PROXY_HOST=$PROXY_HOST PROXY_PORT=$PROXY_PORT URLS="$*" CA_SPKI="$(spki_hash "$T/ca/ca.pem")" \
        OUT_DIR=$OUT timeout 90 "${NS[@]}" sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' \
        "$T/hosts.browser" node "$E2E/browser/negotiate.mjs"
}
kinit_user alice
browse "$PLAIN_URL" "$AI_URL" 2>&1 | tee "$T/browser.out"
assert_eq "negotiate.mjs exit status" 0 "${PIPESTATUS[0]}"

assert_le "audit: the plain page, alice's" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["path"] == "/index.html?b=plain" and d["status"] == 200 and d["tls"] == "none"')"
assert_le "audit: the CONNECT to Claude, signed in by ticket as alice" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["method"] == "CONNECT" and d["host"] == "claude.ai"')"
assert_le "audit: the Claude page, alice's, allowed by her directory group" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["path"] == "/index.html?b=claude" and d["tls"] == "intercept" and d["rule"] == "ai-users" and d["status"] == 200')"
assert_eq "audit: no password was ever tried" 0 "$(audit_count "$AUDIT" \
    'd["action"] == "auth-fail" and d["user"] is not None')"
assert_le "nginx served the Claude page" 1 \
    "$(grep -cF "$GOOD claude.ai \"GET /index.html?b=claude HTTP/1.1\" 200" "$NGINX_SERVERS_LOG")"

# bob is not in ai-users: the same browser setting with his ticket gets the block page.
kinit_user bob
browse "$AI_URL" >"$T/browser-bob.out" 2>&1
assert_contains "bob's Chromium: the Claude page is refused" "$(cat "$T/browser-bob.out")" \
    "not ok - $AI_URL: status 200: got 403"
assert_contains "... without a sign-in prompt" "$(cat "$T/browser-bob.out")" "ok - no sign-in prompt"
assert_le "audit: bob blocked on Claude by no-ai" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "bob" and d["host"] == "claude.ai" and d["rule"] == "no-ai" and d["status"] == 403')"

stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
