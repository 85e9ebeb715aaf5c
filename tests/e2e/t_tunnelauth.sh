#!/bin/bash
# Identity inside an intercepted tunnel (SPEC 6, "Identity inside a tunnel"):
# with Basic authentication, the CONNECT is authenticated and the requests
# inside the intercepted TLS session belong to that user without carrying
# Proxy-Authorization (browsers never send it inside TLS).  An inner request
# that does carry credentials is checked: another user's valid credentials or
# a wrong password get 407 inside TLS.  A CONNECT without credentials gets 407
# before any tunnel.
source "$(dirname "$0")/lib.sh"

make_cert "$T/pki" good chat.deepseek.com claude.ai
start_nginx_servers "$T/nginx" GOOD="$T/pki/good"
"$AIGATE" --gen-ca "$T/ca" >/dev/null 2>&1 || die "--gen-ca failed"
CA=$T/ca/ca.pem
printf '127.0.0.1 chat.deepseek.com claude.ai\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOP'
policy = (
  { name = "security-free"; action = "allow"; groups = [ "security" ]; },
  { name = "ban-deepseek"; action = "block"; services = [ "deepseek" ]; },
  { name = "default"; action = "allow"; }
);
EOP
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="$GOOD" proxy_conf \
    "auth : { mode = \"basic\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    'groups = ( { name = "security"; members = [ "carol" ]; },' \
    '           { name = "staff"; members = [ "alice", "bob" ]; } );' \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$T/pki/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; };" \
    "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

DS=https://chat.deepseek.com:$GOOD/index.html
CL=https://claude.ai:$GOOD/index.html
HTML='Accept: text/html'

# code_of USER:PASS URL [CURL_ARGS...]: the status inside the tunnel
code_of() {
    local cred=$1 url=$2
    shift 2
    curl -q -sS --max-time 20 -x "http://$cred@127.0.0.1:$PROXY_PORT" --cacert "$CA" \
        -o "$T/body" -w '%{http_code}' "$@" "$url"
}

# The README quick start: alice is blocked on DeepSeek by a page, not asked to sign in.
assert_eq "alice, intercepted DeepSeek: the block page (403), not 407" 403 \
    "$(code_of alice:alice-pass "$DS" -H "$HTML")"
assert_contains "the block page names the rule" "$(cat "$T/body")" "ban-deepseek"
assert_eq "carol (security), intercepted DeepSeek: the origin page" 200 \
    "$(code_of carol:carol-pass "$DS")"
assert_contains "carol gets the origin's page" "$(cat "$T/body")" "origin page"
assert_eq "alice, intercepted Claude: allowed" 200 "$(code_of alice:alice-pass "$CL")"

# Several requests on one intercepted connection, none with credentials inside.
out=$(curl -q -sS --max-time 20 -x "http://bob:bob-pass@127.0.0.1:$PROXY_PORT" --cacert "$CA" \
    -o /dev/null -w '%{http_code}\n' "$CL" -o /dev/null "$CL?two" -o /dev/null "$CL?three")
assert_eq "three requests on one intercepted connection" "200 200 200" "$(echo $out)"

# Credentials inside the tunnel are checked.
BOB=$(printf 'bob:bob-pass' | base64)
CAROL=$(printf 'carol:carol-pass' | base64)
WRONG=$(printf 'alice:nope' | base64)
ALICE=$(printf 'alice:alice-pass' | base64)
assert_eq "inner Proxy-Authorization naming another user: 407 inside TLS" 407 \
    "$(code_of alice:alice-pass "$CL" -H "Proxy-Authorization: Basic $BOB")"
assert_eq "inner credentials of a more privileged user cannot lift a block" 407 \
    "$(code_of alice:alice-pass "$DS" -H "Proxy-Authorization: Basic $CAROL")"
assert_eq "inner wrong password: 407 inside TLS" 407 \
    "$(code_of alice:alice-pass "$CL" -H "Proxy-Authorization: Basic $WRONG")"
assert_eq "inner credentials of the same user: passes" 200 \
    "$(code_of alice:alice-pass "$CL" -H "Proxy-Authorization: Basic $ALICE")"

# No credentials on the CONNECT: 407 before any tunnel.
code=$(curl -q -sS --max-time 20 -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" \
    -o /dev/null -w '%{http_code}' "$DS" 2>/dev/null)
assert_eq "CONNECT without credentials: no tunnel" 000 "$code"
code=$(curl -q -sS --max-time 20 -x "http://127.0.0.1:$PROXY_PORT" --cacert "$CA" \
    -o /dev/null -w '%{http_connect}' "$DS" 2>/dev/null)
assert_eq "CONNECT without credentials: 407" 407 "$code"

# The audit log names the tunnel's user on the inner lines.
assert_le "audit: alice's intercepted DeepSeek request blocked as alice" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["host"] == "chat.deepseek.com" and d["action"] == "block" and d["tls"] == "intercept" and d["method"] == "GET"')"
assert_le "audit: bob's three inner requests" 3 "$(wait_audit "$AUDIT" \
    'd["user"] == "bob" and d["method"] == "GET" and d["tls"] == "intercept" and d["status"] == 200' 3)"
assert_le "audit: the mismatched inner credentials logged as auth-fail" 2 "$(wait_audit "$AUDIT" \
    'd["action"] == "auth-fail" and d["tls"] == "intercept" and d["status"] == 407' 2)"
assert_eq "nginx served DeepSeek once (carol), never for alice" 1 \
    "$(grep -c 'chat.deepseek.com "GET /index.html HTTP/1.1" 200' "$NGINX_SERVERS_LOG")"

stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
