#!/bin/bash
# The directory modules on their own, before the proxy uses them (SPEC 9):
# a real MIT KDC and a real OpenLDAP slapd, driven through tests/e2e/dirparts.c
# (linked against the library) and through aigate -t / --explain.
#   Kerberos: SPNEGO tokens made by a real client (curl --proxy-negotiate with a
#   kinit ticket, captured by a one-shot server standing in for the proxy) are
#   accepted, user alice; the same token again is a replay and refused (in the
#   same process and in another); tokens for another service, for our host name
#   in a realm whose key we lack, or for a principal other than auth.principal
#   are refused; a client of a trusted realm keeps its realm; garbage is refused.
#   -t refuses world-readable keytabs and password files and keytabs without the
#   principal.
#   LDAP: groups via memberOf (group_attr) and via group_filter (%d), over
#   ldap://, StartTLS and ldaps://; user names and DNs that need RFC 4515
#   escaping; one lookup for a burst of requests; slapd stopped: the last known
#   groups are used, a new user gets none within timeout_ms; slapd back: lookups
#   resume; slapd frozen (SIGSTOP): the answer comes at timeout_ms and the late
#   result fills the cache.  --explain lists each group with its source.
source "$(dirname "$0")/lib.sh"

# The driver next to the proxy binary: build/e2e/dirparts or build/asan/e2e/dirparts.
DRIVER=$(dirname "$AIGATE")/e2e/dirparts
if [ ! -x "$DRIVER" ]; then
    make -C "$ROOT" "${DRIVER#"$ROOT"/}" >"$T/make.log" 2>&1 ||
        die "cannot build $DRIVER: $(tail -n 5 "$T/make.log")"
fi

# drv_negotiate ARGS: the driver's negotiate command (its stderr kept for the sanitizer check)
drv_negotiate() {
    "$DRIVER" negotiate "$@" 2>>"$T/driver.err"
}

# ---- Kerberos -------------------------------------------------------------------------
start_kdc "$T/kdc"

# negotiate_token HOST OUT: the Proxy-Authorization value curl --proxy-negotiate sends to
# a proxy named HOST (the current KRB5CCNAME and KRB5_CONFIG), caught by a one-shot
# server on 127.0.0.1 that answers 200
negotiate_token() {
    local port
    port=$(free_port)
    rm -f "$2" "$T/cap.ready"
    "$PY" - "$port" "$2" "$T/cap.ready" <<'EOF' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
open(sys.argv[3], "w").close()
s.settimeout(10)
c, _ = s.accept()
buf = b""
while b"\r\n\r\n" not in buf:
    d = c.recv(65536)
    if not d:
        break
    buf += d
for line in buf.split(b"\r\n"):
    if line.lower().startswith(b"proxy-authorization:"):
        open(sys.argv[2], "wb").write(line.split(b":", 1)[1].strip() + b"\n")
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
c.close()
EOF
    local pid=$!
    PIDS+=("$pid")
    wait_file "$T/cap.ready" 5 || die "token catcher did not start"
    curl -q -sS -o /dev/null --max-time 10 --resolve "$1:$port:127.0.0.1" \
        -x "http://$1:$port" --proxy-negotiate -U : http://origin.test/ 2>>"$T/curl.err"
    wait "$pid"
    [ -s "$2" ] || die "curl sent no Proxy-Authorization to $1: $(tail -n 2 "$T/curl.err")"
}

kinit_user alice
negotiate_token "$PROXY_HOST" "$T/tok1"
assert_match "curl sends a SPNEGO token to the proxy" '^Negotiate [A-Za-z0-9+/]+=*$' "$(cat "$T/tok1")"
out=$(drv_negotiate "$KDC_KEYTAB" - "$T/tok1" "$T/tok1")
echo "$out"
assert_eq "token from curl accepted as alice, realm stripped, mutual-auth reply" \
    "accepted user=alice principal=alice@AIGATE.TEST reply=yes" "$(sed -n 1p <<<"$out")"
assert_match "the same token again is refused as a replay" '^refused reason=.*replay' \
    "$(sed -n 2p <<<"$out")"
out=$(drv_negotiate "$KDC_KEYTAB" - "$T/tok1")
assert_match "a replay is refused by another process too (file replay cache)" \
    '^refused reason=.*replay' "$out"
assert_not_contains "the reason never quotes the token" "$out" "$(cut -c 11-40 "$T/tok1")"

out=$("$DRIVER" negotiate-bench "$KDC_KEYTAB" "$PROXY_HOST" 200 2 2>>"$T/driver.err")
echo "$out"
assert_match "200 tokens from 200 security contexts, accepted by 2 threads sharing an acceptor" \
    '^made 200 in [0-9]+ ms; accepted 200 of 200 ' "$out"

negotiate_token "$PROXY_HOST" "$T/tok2"
assert_eq "strip_realm = false keeps the realm" \
    "accepted user=alice@AIGATE.TEST principal=alice@AIGATE.TEST reply=yes" \
    "$(drv_negotiate -n "$KDC_KEYTAB" HTTP/$PROXY_HOST "$T/tok2")"

kinit_user bob
negotiate_token "$PROXY_HOST" "$T/tok-bob"
assert_eq "principal = HTTP/host (no realm): bob accepted" \
    "accepted user=bob principal=bob@AIGATE.TEST reply=yes" \
    "$(drv_negotiate "$KDC_KEYTAB" "HTTP/$PROXY_HOST" "$T/tok-bob")"

negotiate_token other.aigate.test "$T/tok-other1"
negotiate_token other.aigate.test "$T/tok-other2"
negotiate_token other.aigate.test "$T/tok-other3"
out=$(drv_negotiate "$KDC_KEYTAB" - "$T/tok-other1")
assert_match "a token for another service (not in the keytab) is refused" \
    '^refused reason=.*HTTP/other.aigate.test.*(not found|keytab)' "$out"
out=$(drv_negotiate "$KDC_BOTH_KEYTAB" "HTTP/$PROXY_HOST@$KRB5_REALM" "$T/tok-other2")
assert_match "a token for another principal of the keytab is refused when auth.principal is set" \
    '^refused reason=' "$out"
assert_eq "... and accepted with principal \"\" (any in the keytab)" \
    "accepted user=bob principal=bob@AIGATE.TEST reply=yes" \
    "$(drv_negotiate "$KDC_BOTH_KEYTAB" - "$T/tok-other3")"

# A foreign realm: OTHER.TEST's own HTTP/proxy.aigate.test, a key the proxy does not hold.
kinit_user alice "$KRB5_OTHER_REALM" other-alice-pass
KRB5_CONFIG=$KRB5_OTHER_CONFIG negotiate_token "$PROXY_HOST" "$T/tok-foreign"
out=$(drv_negotiate "$KDC_KEYTAB" - "$T/tok-foreign")
assert_match "a token for our host name in a foreign realm is refused" \
    "^refused reason=.*$KRB5_OTHER_REALM" "$out"
# A client of the trusted realm, for our principal: accepted, but not "alice".
negotiate_token "$PROXY_HOST" "$T/tok-cross"
assert_eq "a trusted realm's alice is accepted as alice@OTHER.TEST, never as alice" \
    "accepted user=alice@OTHER.TEST principal=alice@OTHER.TEST reply=yes" \
    "$(drv_negotiate "$KDC_KEYTAB" - "$T/tok-cross")"

printf 'Negotiate !!!!\n' >"$T/garbage1"
printf 'Negotiate YWJjZGVm\n' >"$T/garbage2"
printf 'Basic YWxpY2U6YWxpY2UtcGFzcw==\n' >"$T/garbage3"
out=$(drv_negotiate "$KDC_KEYTAB" - "$T/garbage1" "$T/garbage2" "$T/garbage3")
assert_eq "garbage: not base64, not a token, another scheme" \
    "refused reason=header: bad token|refused reason=malformed token|refused reason=header: other scheme" \
    "$(tr '\n' '|' <<<"$out" | sed 's/|$//')"

# -t: the keytab and the principal are checked at load.
cat >"$T/neg.conf" <<EOF
listen = [ "127.0.0.1:$(free_port)" ];
auth : { mode = "negotiate"; keytab = "$KDC_KEYTAB"; principal = "HTTP/$PROXY_HOST"; };
EOF
out=$("$AIGATE" -t -c "$T/neg.conf" 2>&1)
assert_eq "-t accepts the keytab and principal" "$T/neg.conf: configuration OK" "$out"
chmod 0644 "$KDC_KEYTAB"
out=$("$AIGATE" -t -c "$T/neg.conf" 2>&1)
rc=$?
assert_eq "-t refuses a world-readable keytab (exit 2)" 2 "$rc"
assert_match "... naming FILE:LINE and the fix" "^$T/neg.conf:2: keytab .* is world-readable \\(mode 0644\\): chmod o-rwx" "$out"
chmod 0640 "$KDC_KEYTAB"
out=$("$AIGATE" -t -c "$T/neg.conf" 2>&1)
assert_eq "-t accepts a group-readable keytab (root:aigate 0640)" "$T/neg.conf: configuration OK" "$out"
chmod 0600 "$KDC_KEYTAB"
sed -i "s#principal = \"[^\"]*\"#principal = \"HTTP/nothere.aigate.test\"#" "$T/neg.conf"
out=$("$AIGATE" -t -c "$T/neg.conf" 2>&1)
assert_match "-t refuses a principal the keytab has no key for" \
    "^$T/neg.conf:2: keytab .* holds no key for HTTP/nothere.aigate.test" "$out"

# ---- LDAP ------------------------------------------------------------------------------
start_slapd "$T/ldap"

# ldap_conf NAME TTL TIMEOUT_MS LDAP-LINES...: $T/NAME.conf with an ldap section and a
# config group for alice
ldap_conf() {
    local name=$1 ttl=$2 tmo=$3
    shift 3
    {
        printf 'listen = [ "127.0.0.1:%s" ];\n' "$(free_port)"
        printf 'groups = ( { name = "local-admins"; members = [ "alice" ]; } );\n'
        printf 'ldap : {\n  base = "%s";\n  bind_dn = "%s"; bind_password_file = "%s";\n' \
            "$SLAPD_BASE" "$SLAPD_BIND_DN" "$SLAPD_PWFILE"
        printf '  cache_ttl_s = %s; timeout_ms = %s;\n' "$ttl" "$tmo"
        printf '  %s\n' "$@"
        printf '};\n'
    } >"$T/$name.conf"
}

# drv_start CONF / drv CMD: a driver process answering commands; drv prints the answer
# line into $ANS (waiting up to 20 s)
drv_start() {
    coproc DRV { "$DRIVER" groups "$1" 2>>"$T/driver.err"; }
    DRV_PID=$DRV_PID
    PIDS+=("$DRV_PID")
    read -r -t 20 ANS <&"${DRV[0]}" || die "driver did not start: $(tail -n 5 "$T/driver.err")"
    [ "$ANS" = ready ] || die "driver: $ANS"
}
drv() {
    echo "$*" >&"${DRV[1]}"
    ANS=
    read -r -t 20 ANS <&"${DRV[0]}" || ANS="(no answer)"
    echo "  $* -> $ANS"
}
drv_stop() {
    exec {DRV[1]}>&-
    wait "$DRV_PID" 2>/dev/null
}
# field NAME: the value of NAME= in $ANS (source and groups may hold spaces)
field() {
    case $1 in
    source) sed -nE 's/.* source=(.*) groups=.*/\1/p' <<<"$ANS" ;;
    groups) sed -nE 's/.* groups=(.*) ms=.*/\1/p' <<<"$ANS" ;;
    *) grep -oE "(^| )$1=[^ ]*" <<<"$ANS" | sed "s/^ *$1=//" ;;
    esac
}

ldap_conf memberof 300 2000 "uri = \"$SLAPD_URI\";" 'group_attr = "memberOf";'
drv_start "$T/memberof.conf"
drv get alice
assert_eq "memberOf: alice's groups, config first" \
    "local-admins(config),staff(directory),ai-users(directory)" "$(field groups)"
assert_eq "... read from the directory, by callback" "directory callback" \
    "$(field source) $(field how)"
drv get alice
assert_eq "... then from the cache, at once" "directory (cached) now" "$(field source) $(field how)"
drv get bob
assert_eq "memberOf: a group whose DN holds parentheses" "staff(directory),R&D (lab)(directory)" \
    "$(field groups)"
drv get dave
assert_eq "a user in no group" "- directory" "$(field groups) $(field source)"
drv get 'x(y)'
assert_eq "a user name with ( ) is escaped in user_filter" "R&D (lab)(directory)" "$(field groups)"
drv get '*'
assert_eq "'*' as user name matches nobody (escaped)" "- directory" "$(field groups) $(field source)"
drv get nobody-here
assert_eq "a user the directory does not know: no groups" "- directory" \
    "$(field groups) $(field source)"
drv burst 20 carol
for i in $(seq 2 20); do
    read -r -t 20 line <&"${DRV[0]}"
    [[ $line == *"groups=security(directory"* ]] || fail "burst answer $i: $line"
done
drv stats
assert_eq "20 requests for a new user: one directory lookup (7 users, 7 lookups)" 7 "$(field lookups)"
drv_stop
out=$("$AIGATE" -c "$T/memberof.conf" --explain alice GET http://origin.test/ 2>&1)
assert_contains "--explain shows each group and where it came from" "$out" \
    "groups: local-admins (config), staff (directory), ai-users (directory)"
assert_contains "--explain says it read the directory" "$out" "directory   $SLAPD_URI: read now"

ldap_conf filter 300 2000 "uri = \"$SLAPD_TLS_URI\"; ca_file = \"$SLAPD_CA\";" \
    'group_filter = "(&(objectClass=groupOfNames)(member=%d))";'
drv_start "$T/filter.conf"
drv get bob
assert_match "group_filter over ldaps://: bob" \
    '^(staff\(directory\),R&D \(lab\)\(directory\)|R&D \(lab\)\(directory\),staff\(directory\))$' \
    "$(field groups)"
drv get 'x(y)'
assert_eq "group_filter: a DN with ( ) is escaped for %d" "R&D (lab)(directory)" "$(field groups)"
drv_stop

ldap_conf starttls 300 2000 "uri = \"$SLAPD_URI\"; starttls = true; ca_file = \"$SLAPD_CA\";"
drv_start "$T/starttls.conf"
drv get carol
assert_eq "StartTLS on ldap://: carol" "security(directory)" "$(field groups)"
drv_stop
make_cert "$T/otherpki" stranger
ldap_conf badca 300 2000 "uri = \"$SLAPD_TLS_URI\"; ca_file = \"$T/otherpki/ca.pem\";"
drv_start "$T/badca.conf"
drv now carol
assert_match "ldaps:// with a CA that does not sign the server's certificate: refused" \
    '^carol unavailable=' "$ANS"
drv_stop

# The directory goes away and comes back.  cache_ttl_s = 1 so that entries age quickly.
ldap_conf down 1 1500 "uri = \"$SLAPD_URI\";"
drv_start "$T/down.conf"
drv get alice
assert_eq "before: alice from the directory" "directory" "$(field source)"
stop_slapd
sleep 1.2
drv get alice
assert_eq "slapd stopped, TTL over: alice keeps her last known groups" \
    "local-admins(config),staff(directory (last known, directory unavailable)),ai-users(directory (last known, directory unavailable))" \
    "$(field groups)"
assert_le "... answered well within timeout_ms" "$(field ms)" 1500
drv get bob
assert_eq "slapd stopped: a new user gets no groups" "- directory unavailable" \
    "$(field groups) $(field source)"
assert_le "... within timeout_ms" "$(field ms)" 1500
out=$("$AIGATE" -c "$T/down.conf" --explain alice GET http://origin.test/ 2>&1)
assert_contains "--explain with the directory down: config groups only" "$out" \
    "groups: local-admins (config)"
assert_match "... and why" "directory   $SLAPD_URI unavailable: .*(contact|connect)" "$out"
start_slapd "$T/ldap"
resumed=
for i in $(seq 1 60); do
    drv get bob
    if [[ $ANS == *"source=directory groups"* ]]; then
        resumed=$i
        break
    fi
    sleep 0.25
done
assert_match "slapd back: lookups resume (bob's groups read again)" '^[0-9]+$' "$resumed"
assert_eq "... bob's groups" "staff(directory),R&D (lab)(directory)" "$(field groups)"
drv_stop

# slapd frozen: the caller is answered at timeout_ms; the late answer fills the cache.
ldap_conf frozen 300 1000 "uri = \"$SLAPD_URI\";"
drv_start "$T/frozen.conf"
drv get alice
assert_eq "before freezing: alice from the directory" "directory" "$(field source)"
freeze "$SLAPD_PID" || die "slapd did not stop on SIGSTOP"
drv get carol
assert_eq "slapd frozen: carol answered without groups" "- directory unavailable" \
    "$(field groups) $(field source)"
ms=$(field ms)
assert_le "... at the deadline, not before (timeout_ms 1000)" 950 "$ms"
assert_le "... and not much after" "$ms" 2500
thaw "$SLAPD_PID"
filled=
for i in $(seq 1 40); do
    drv get carol
    if [[ $ANS == *"groups=security(directory (cached))"* ]]; then
        filled=$i
        break
    fi
    sleep 0.25
done
assert_match "slapd thawed: the late result filled the cache (carol cached)" '^[0-9]+$' "$filled"
drv stats
assert_eq "... one timeout counted" 1 "$(field timeouts)"
drv_stop

# -t: the password file must be private; the ldap keys are checked.
chmod 0644 "$SLAPD_PWFILE"
out=$("$AIGATE" -t -c "$T/memberof.conf" 2>&1)
assert_match "-t refuses a world-readable bind_password_file" \
    "^$T/memberof.conf:[0-9]+: bind_password_file .* is world-readable" "$out"
chmod 0600 "$SLAPD_PWFILE"
assert_eq "-t accepts the ldap section" "$T/memberof.conf: configuration OK" \
    "$("$AIGATE" -t -c "$T/memberof.conf" 2>&1)"
assert_not_contains "the password never shows" "$(cat "$T/driver.err" "$KDC_DIR/kinit.log")" svc-secret
if grep -qE 'Sanitizer|runtime error' "$T/driver.err" 2>/dev/null; then
    fail "sanitizer report from the driver: $(grep -m1 -E 'Sanitizer|runtime error' "$T/driver.err")"
    sed -n '1,60p' "$T/driver.err" >&2
fi
