#!/bin/bash
# Kerberos proxy authentication (SPEC 9, auth.mode = "negotiate") against a real
# MIT KDC, with curl --proxy-negotiate and raw clients holding real tokens:
#   - no credentials: 407 offering Negotiate, and Basic too (htpasswd is set);
#   - GET, a blind CONNECT and an intercepted CONNECT as alice, by ticket; the
#     CONNECT's 200 carries GSSAPI's mutual-authentication token;
#   - connection-based identity: on one connection only the first request
#     carries a token, the next ones are alice's without it; another
#     connection is not; an intercepted tunnel's inner requests are the
#     CONNECT's user, and an inner token naming someone else gets 407;
#   - garbage, a token for another service, one for our name in a foreign
#     realm, a replayed token: 407, an auth-fail audit line each, the reason in
#     the diagnostic log (never the token);
#   - Basic alongside; Proxy-Authorization never reaches the origin.
source "$(dirname "$0")/lib.sh"

DRIVER=$(dirname "$AIGATE")/e2e/dirparts
if [ ! -x "$DRIVER" ]; then
    make -C "$ROOT" "${DRIVER#"$ROOT"/}" >"$T/make.log" 2>&1 ||
        die "cannot build $DRIVER: $(tail -n 5 "$T/make.log")"
fi

start_kdc "$T/kdc"
start_origin
make_cert "$T/pki" good claude.ai www.example.test
start_nginx_servers "$T/nginx" GOOD="$T/pki/good"
"$AIGATE" --gen-ca "$T/ca" >/dev/null 2>&1 || die "--gen-ca failed"
printf '127.0.0.1 origin.test claude.ai www.example.test\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOP'
policy = ( { name = "default"; action = "allow"; } );
EOP
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="$GOOD" proxy_conf \
    "auth : { mode = \"negotiate\"; keytab = \"$KDC_KEYTAB\";" \
    "         htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    "tls : { intercept = true; ca_cert = \"$T/ca/ca.pem\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$T/pki/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; log_query = true; };" \
    "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

# The proxy by its host name, as browsers reach it (the principal is HTTP/<that name>).
PX=(--resolve "$PROXY_HOST:$PROXY_PORT:127.0.0.1" -x "http://$PROXY_HOST:$PROXY_PORT")
ORIGIN=http://origin.test:$ORIGIN_PORT

# tokens NAME N: N fresh Proxy-Authorization values for the proxy with NAME's ticket, in $T/tok.NAME
tokens() {
    kinit_user "$1"
    "$DRIVER" tokens "$PROXY_HOST" "$2" >"$T/tok.$1" 2>>"$T/driver.err" ||
        die "no tokens for $1: $(tail -n 2 "$T/driver.err")"
}

# conn_seq SPEC...: one connection to the proxy, one request per SPEC "TARGET|AUTHZ" (AUTHZ
# "-" for none), each answered before the next.  TARGET is an absolute http URL, or
# "CONNECT host:port": the SPECs after an answered CONNECT go inside TLS to that host (the
# interception CA $T/ca/ca.pem trusted), with an origin-form TARGET ("/path").  Prints one
# line per answer: "STATUS", plus " mutual" when it carried a Negotiate token.
conn_seq() {
    "$PY" - "$PROXY_PORT" "$T/ca/ca.pem" "$@" <<'EOF'
import os, ssl, sys
sys.path.insert(0, os.environ["E2E"])
import httpc
s = httpc.connect(int(sys.argv[1]), timeout=15)
rd = httpc.Reader(s)
tunnel = None
for spec in sys.argv[3:]:
    target, authz = spec.split("|", 1)
    connect = target.startswith("CONNECT ")
    if connect:
        host = target.split(" ", 1)[1]
        head = "CONNECT %s HTTP/1.1\r\nHost: %s\r\n" % (host, host)
    elif tunnel:
        head = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (target, tunnel)
    else:
        head = "GET %s HTTP/1.1\r\nHost: %s\r\n" % (target, target.split("/")[2])
    if authz != "-":
        head += "Proxy-Authorization: %s\r\n" % authz
    s.sendall((head + "\r\n").encode())
    try:
        status, headers, _ = rd.response(head_request=connect)
    except (EOFError, OSError):
        print("closed")
        break
    mutual = any(v.startswith("Negotiate ") for v in headers.get("proxy-authenticate", []))
    print(status, "mutual" if mutual else "", flush=True)
    if connect:
        if status != 200:
            break
        tunnel = host
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        s = ctx.wrap_socket(s, server_hostname=host.rsplit(":", 1)[0])
        rd = httpc.Reader(s)
EOF
}
export E2E

# ---- the challenge ---------------------------------------------------------------------
out=$(curl -q -sS --max-time 20 "${PX[@]}" -D - -o /dev/null "$ORIGIN/echo" 2>&1)
assert_match "no credentials: 407" '^HTTP/1.1 407' "$out"
assert_contains "407 offers Negotiate" "$out" $'Proxy-Authenticate: Negotiate\r'
assert_contains "... and Basic, htpasswd being set" "$out" 'Proxy-Authenticate: Basic realm="aigate"'
assert_eq "Negotiate is offered first" "Negotiate" \
    "$(grep -i '^Proxy-Authenticate:' <<<"$out" | head -n 1 | awk '{ print $2 }' | tr -d '\r')"
code=$(KRB5CCNAME=FILE:$T/no-such-cache curl -q -sS --max-time 20 "${PX[@]}" --proxy-negotiate \
    -U : -o /dev/null -w '%{http_code}' "$ORIGIN/echo" 2>/dev/null)
assert_eq "curl --proxy-negotiate without a ticket: 407" 407 "$code"

# ---- alice by ticket: GET, blind CONNECT, intercepted CONNECT -------------------------------
kinit_user alice
NEG=(--proxy-negotiate -U :)
out=$(curl -q -sS --max-time 20 "${PX[@]}" "${NEG[@]}" -w '\n%{http_code}' "$ORIGIN/echo?get=alice")
assert_eq "alice GET by Kerberos ticket: 200" 200 "$(tail -n 1 <<<"$out")"
assert_not_contains "the origin's echo shows no Proxy-Authorization" "$(head -n 1 <<<"$out")" \
    "proxy-authorization"

out=$(curl -q -sS --max-time 20 "${PX[@]}" "${NEG[@]}" --cacert "$T/pki/ca.pem" -v \
    "https://www.example.test:$GOOD/index.html" 2>&1)
assert_contains "alice blind CONNECT by ticket: the origin page" "$out" "origin page"
assert_match "the CONNECT's 200 carries the mutual-authentication token" \
    '< Proxy-Authenticate: Negotiate [A-Za-z0-9+/]+=*' "$out"

out=$(curl -q -sS --max-time 20 "${PX[@]}" "${NEG[@]}" --cacert "$T/ca/ca.pem" \
    -o /dev/null -w '%{http_code}\n' "https://claude.ai:$GOOD/index.html?i=1" \
    -o /dev/null "https://claude.ai:$GOOD/index.html?i=2")
assert_eq "alice intercepted CONNECT, two inner requests: 200 200" "200 200" "$(echo $out)"

# ---- connection-based identity ---------------------------------------------------------------
tokens alice 3
tok1=$(sed -n 1p "$T/tok.alice")
out=$(conn_seq "$ORIGIN/echo?seq=1|$tok1" "$ORIGIN/echo?seq=2|-" "$ORIGIN/echo?seq=3|-")
assert_eq "one connection: a token on the first request only, three answers" "200 |200 |200 " \
    "$(tr '\n' '|' <<<"$out" | sed 's/|$//')"
assert_eq "another connection without a token is asked to sign in" "407 " \
    "$(conn_seq "$ORIGIN/echo?seq=4|-")"
tokens bob 2
out=$(conn_seq "$ORIGIN/echo?seq=bob1|$(sed -n 1p "$T/tok.bob")" "$ORIGIN/echo?seq=bob2|-")
assert_eq "bob's connection" "200 |200 " "$(tr '\n' '|' <<<"$out" | sed 's/|$//')"
out=$(conn_seq "CONNECT claude.ai:$GOOD|$(sed -n 2p "$T/tok.alice")" "/index.html?t=1|-" \
    "/index.html?i=bob|$(sed -n 2p "$T/tok.bob")" "/index.html?t=2|-" \
    "/index.html?t=3|$(sed -n 3p "$T/tok.alice")")
assert_eq "intercepted: CONNECT by token (mutual), inner requests alice's, bob's token inside 407" \
    "200 mutual|200 |407 |200 |200 " "$(tr '\n' '|' <<<"$out" | sed 's/|$//')"

# ---- refused tokens ----------------------------------------------------------------------------
kinit_user alice
"$DRIVER" tokens other.aigate.test 1 >"$T/tok.other" 2>>"$T/driver.err" || die "no token for other"
kinit_user alice "$KRB5_OTHER_REALM" other-alice-pass
KRB5_CONFIG=$KRB5_OTHER_CONFIG "$DRIVER" tokens "$PROXY_HOST" 1 >"$T/tok.foreign" \
    2>>"$T/driver.err" || die "no token for the foreign realm"
assert_eq "garbage token: 407" "407 " "$(conn_seq "$ORIGIN/echo?bad=1|Negotiate !!!!")"
assert_eq "base64 that is no token: 407" "407 " "$(conn_seq "$ORIGIN/echo?bad=2|Negotiate YWJjZGVm")"
assert_eq "a token for another service: 407" "407 " \
    "$(conn_seq "$ORIGIN/echo?bad=3|$(cat "$T/tok.other")")"
assert_eq "a token for our name in a foreign realm: 407" "407 " \
    "$(conn_seq "$ORIGIN/echo?bad=4|$(cat "$T/tok.foreign")")"
assert_eq "alice's first token again (a replay): 407" "407 " "$(conn_seq "$ORIGIN/echo?bad=5|$tok1")"
assert_eq "an auth-fail audit line for each, naming no user" 5 "$(wait_audit "$AUDIT" \
    'd["action"] == "auth-fail" and d["status"] == 407 and (d["path"] or "").startswith("/echo?bad=") and d["user"] is None' 5)"
log=$(cat "$PROXY_LOG")
assert_match "the log says why: replay" 'Negotiate authentication from 127.0.0.1 refused: .*[Rr]eplay' "$log"
assert_match "the log says why: another service" \
    'refused: .*HTTP/other.aigate.test.*(not found|keytab)' "$log"
assert_match "the log says why: malformed" 'refused: malformed Negotiate header' "$log"
assert_not_contains "the log never holds a token" "$log" "$(cut -c 11-60 <<<"$tok1")"

# ---- Basic alongside ----------------------------------------------------------------------------
code=$(curl -q -sS --max-time 20 -x "http://carol:carol-pass@127.0.0.1:$PROXY_PORT" \
    -o /dev/null -w '%{http_code}' "$ORIGIN/echo?basic=carol")
assert_eq "Basic alongside: carol by password" 200 "$code"
code=$(curl -q -sS --max-time 20 -x "http://carol:wrong@127.0.0.1:$PROXY_PORT" \
    -o /dev/null -w '%{http_code}' "$ORIGIN/echo?basic=wrong")
assert_eq "Basic alongside: a wrong password gets 407" 407 "$code"

# ---- the audit log and the origin ----------------------------------------------------------------
assert_le "audit: alice's GET" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["path"] == "/echo?get=alice" and d["action"] == "allow" and d["tls"] == "none"')"
assert_le "audit: alice's blind CONNECT" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["method"] == "CONNECT" and d["host"] == "www.example.test" and d["tls"] == "tunnel"')"
assert_le "audit: alice's two intercepted inner requests" 2 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["method"] == "GET" and d["host"] == "claude.ai" and d["tls"] == "intercept" and d["status"] == 200' 2)"
assert_eq "audit: the three requests of one connection are alice's" 3 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["path"] in ("/echo?seq=1", "/echo?seq=2", "/echo?seq=3") and d["status"] == 200' 3)"
assert_eq "audit: the request of a connection without a token: auth-fail, no user" 1 \
    "$(audit_count "$AUDIT" 'd["path"] == "/echo?seq=4" and d["action"] == "auth-fail" and d["user"] is None')"
assert_eq "audit: bob's two requests" 2 "$(wait_audit "$AUDIT" \
    'd["user"] == "bob" and (d["path"] or "").startswith("/echo?seq=bob") and d["status"] == 200' 2)"
assert_eq "audit: the inner request with bob's token in alice's tunnel: auth-fail" 1 \
    "$(audit_count "$AUDIT" 'd["path"] == "/index.html?i=bob" and d["action"] == "auth-fail" and d["tls"] == "intercept"')"
assert_eq "audit: the other inner requests of that tunnel are alice's" 3 \
    "$(audit_count "$AUDIT" '(d["path"] or "").startswith("/index.html?t=") and d["user"] == "alice" and d["status"] == 200')"
assert_le "audit: carol by Basic" 1 "$(wait_audit "$AUDIT" 'd["user"] == "carol" and d["status"] == 200')"
assert_eq "the origin saw seq=1..3 and bob's two, not seq=4 nor the refused ones" \
    "seq=1 seq=2 seq=3 seq=bob1 seq=bob2" \
    "$(origin_reqs '"target": "/echo\?seq=' | grep -oE 'seq=[a-z0-9]+' | tr '\n' ' ' | sed 's/ $//')"
assert_eq "no request reached the origin with Proxy-Authorization" 0 \
    "$(origin_count '[Pp]roxy-[Aa]uthorization')"
assert_le "the origin saw requests at all" 6 "$(origin_count)"

stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
