#!/bin/bash
# Groups from the directory in the proxy's decisions (SPEC 9, the `ldap` section), against
# a real OpenLDAP slapd: users sign in with Basic; rules name groups that only slapd knows.
#   - groupOfNames through group_filter (%d), then, after a reload (SIGHUP), memberOf
#     through group_attr: the same decisions, the reload cleared the cache;
#   - a user whose name needs RFC 4515 escaping ("x(y)");
#   - slapd frozen (SIGSTOP): a new user is answered at timeout_ms with no groups, the
#     late answer fills the cache;
#   - slapd stopped: a user read before keeps the groups (cached, then last known past
#     cache_ttl_s), a new user gets none at once; slapd back: lookups resume;
#   - /metrics counts hits, lookups, failures, timeouts and fallbacks.
source "$(dirname "$0")/lib.sh"

start_slapd "$T/ldap"
# Two more staff members, each read for the first time in a test below.
{
    for u in erin frank; do
        printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\n\n' \
            "$u" "$SLAPD_BASE" "$u" "$u" "$u"
    done
    printf 'dn: cn=staff,ou=groups,%s\nchangetype: modify\nadd: member\n' "$SLAPD_BASE"
    printf 'member: uid=erin,ou=people,%s\nmember: uid=frank,ou=people,%s\n' "$SLAPD_BASE" "$SLAPD_BASE"
} >"$T/more.ldif"
ldapmodify -a -x -H "$SLAPD_URI" -D "cn=admin,$SLAPD_BASE" -w admin-secret -f "$T/more.ldif" \
    >"$T/ldapmodify.log" 2>&1 || die "ldapmodify: $(tail -n 3 "$T/ldapmodify.log")"
start_origin
printf '127.0.0.1 origin.test secret.test\n' >"$T/hosts"
: >"$T/users.htpasswd"
for u in alice bob carol dave erin frank 'x(y)'; do
    printf '%s:%s\n' "$u" "$(openssl passwd -5 "$u-pass")" >>"$T/users.htpasswd"
done
cat >"$T/policy.conf" <<'EOP'
policy = (
  { name = "security-only"; action = "allow"; groups = [ "security" ]; hosts = [ "secret.test" ]; },
  { name = "no-secret"; action = "block"; hosts = [ "secret.test" ]; },
  { name = "staff-ok"; action = "allow"; groups = [ "staff" ]; },
  { name = "lab-ok"; action = "allow"; groups = [ "R&D (lab)" ]; },
  { name = "local-ok"; action = "allow"; groups = [ "local-admins" ]; },
  { name = "others"; action = "block"; }
);
EOP
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
ADMIN_PORT=$(free_port)
TIMEOUT_MS=1500
TTL=4

# conf LDAP-LINES...: the proxy's config with an ldap section holding LDAP-LINES
conf() {
    proxy_conf \
        "auth : { mode = \"basic\"; htpasswd = \"$T/users.htpasswd\"; };" \
        'groups = ( { name = "local-admins"; members = [ "dave" ]; } );' \
        "ldap : { uri = \"$SLAPD_URI\"; base = \"$SLAPD_BASE\";" \
        "         bind_dn = \"$SLAPD_BIND_DN\"; bind_password_file = \"$SLAPD_PWFILE\";" \
        "         user_filter = \"(&(objectClass=inetOrgPerson)(uid=%u))\";" \
        "         cache_ttl_s = $TTL; timeout_ms = $TIMEOUT_MS;" \
        "         $* };" \
        "admin : { listen = \"127.0.0.1:$ADMIN_PORT\"; };" \
        "audit : { path = \"$AUDIT\"; log_query = true; };" \
        "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        '@include "policy.conf"'
}
start_proxy "$T" "$(conf 'group_filter = "(&(objectClass=groupOfNames)(member=%d))";')"

# get USER URL: "STATUS SECONDS" of a GET by USER (password USER-pass) through the proxy
get() {
    curl -q -sS --max-time 20 -x "http://127.0.0.1:$PROXY_PORT" --proxy-user "$1:$1-pass" \
        -o /dev/null -w '%{http_code} %{time_total}' "$2"
}
# status USER URL: the status alone
status() {
    get "$@" | cut -d' ' -f1
}
# rule_of PATH: the rule of the audit line for PATH (the test's requests each have their own)
rule_of() {
    wait_audit "$AUDIT" "d['path'] == '$1'" >/dev/null
    "$PY" - "$AUDIT" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if d.get("path") == sys.argv[2]:
        print(d["rule"], d["user"])
EOF
}
# metric NAME: its value on /metrics
metric() {
    curl -q -sS --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}
O=http://origin.test:$ORIGIN_PORT
S=http://secret.test:$ORIGIN_PORT

# ---- groupOfNames through group_filter ------------------------------------------------------------
assert_eq "alice (staff in slapd): allowed" 200 "$(status alice "$O/?f=alice")"
assert_eq "... by the staff rule" "staff-ok alice" "$(rule_of /?f=alice)"
assert_eq "alice on secret.test: blocked (not in security)" 403 "$(status alice "$S/?f=alice-secret")"
assert_eq "carol (security in slapd) on secret.test: allowed" 200 "$(status carol "$S/?f=carol")"
assert_eq "... by the security rule" "security-only carol" "$(rule_of /?f=carol)"
assert_eq "dave (no directory group; a config group): allowed by the config group" 200 \
    "$(status dave "$O/?f=dave")"
assert_eq "... local-ok" "local-ok dave" "$(rule_of /?f=dave)"
assert_eq "x(y) (R&D (lab), a name needing RFC 4515 escaping): allowed" 200 \
    "$(status 'x(y)' "$O/?f=xy")"
assert_eq "... lab-ok" "lab-ok x(y)" "$(rule_of /?f=xy)"
# Requests of a user not read yet, at once: one lookup serves them all.
lookups=$(metric aigate_directory_lookups_total)
burst=()
for i in 1 2 3 4 5 6; do
    status bob "$O/?burst=$i" >"$T/burst.$i" &
    burst+=($!)
done
wait "${burst[@]}"
assert_eq "six requests of bob at once: all allowed" "200 200 200 200 200 200" \
    "$(cat "$T"/burst.* | tr '\n' ' ' | sed 's/ $//')"
assert_eq "... with one directory lookup" $((lookups + 1)) "$(metric aigate_directory_lookups_total)"
assert_eq "bob again: a cache hit, no lookup" 200 "$(status bob "$O/?burst=7")"
assert_eq "... still one lookup" $((lookups + 1)) "$(metric aigate_directory_lookups_total)"
assert_le "... answered from the cache" 1 "$(metric aigate_directory_cache_hits_total)"

# ---- slapd frozen: a new user is answered at timeout_ms --------------------------------------------
freeze "$SLAPD_PID" || die "cannot freeze slapd"
read -r code secs <<<"$(get erin "$O/?frozen=erin")"
ms=$("$PY" -c "print(int(float('$secs') * 1000))")
assert_eq "erin (staff) with slapd frozen: no groups, blocked" 403 "$code"
assert_eq "... by the last rule" "others erin" "$(rule_of /?frozen=erin)"
assert_le "... not before timeout_ms (the lookup was waited for)" $((TIMEOUT_MS - 200)) "$ms"
assert_le "... and not much later" "$ms" $((TIMEOUT_MS + 1500))
assert_le "the deadline is counted" 1 "$(metric aigate_directory_timeouts_total)"
thaw "$SLAPD_PID"
code=
for i in $(seq 30); do
    code=$(status erin "$O/?thawed=$i")
    [ "$code" = 200 ] && break
    sleep 0.2
done
assert_eq "slapd thawed: erin is staff" 200 "$code"

# ---- slapd stopped -----------------------------------------------------------------------------------
assert_eq "carol read just before" 200 "$(status carol "$S/?before=stop")"
stop_slapd
read -r code secs <<<"$(get carol "$S/?down=cached")"
assert_eq "slapd stopped: carol within cache_ttl_s keeps security" 200 "$code"
sleep $((TTL + 1))
read -r code secs <<<"$(get carol "$S/?down=lastknown")"
assert_eq "past cache_ttl_s, directory down: carol's last known groups" 200 "$code"
read -r code secs <<<"$(get 'x(y)' "$O/?down=xy")"
assert_eq "x(y) read before, past the TTL: last known, allowed" 200 "$code"
read -r code secs <<<"$(get frank "$O/?down=frank")"
ms=$("$PY" -c "print(int(float('$secs') * 1000))")
assert_eq "frank (staff) never read, slapd down: no groups, blocked" 403 "$code"
assert_le "... answered within timeout_ms" "$ms" "$TIMEOUT_MS"
fails=$(metric aigate_directory_failures_total)
assert_le "failures to reach the directory are counted" 1 "$fails"
assert_le "requests answered while it was down are counted" 1 \
    "$(metric aigate_directory_fallbacks_total)"

# A user never read: alice was read, but under the cache of a new directory setting she is new.
# Use a reload that changes the settings (the cache is cleared) while slapd is down.
# shellcheck disable=SC2016 # %d is the filter's, not the shell's
conf 'group_filter = "(&(objectClass=groupOfNames)(member=%d)(cn=*))";' >"$T/aigate.conf"
kill -HUP "$PROXY_PID"
for i in $(seq 50); do
    grep -q "configuration reloaded" "$PROXY_LOG" && break
    sleep 0.1
done
read -r code secs <<<"$(get alice "$O/?down=alice-new")"
ms=$("$PY" -c "print(int(float('$secs') * 1000))")
assert_eq "slapd down, alice unknown to the (cleared) cache: no groups, blocked" 403 "$code"
assert_le "... answered within timeout_ms" "$ms" "$TIMEOUT_MS"

# ---- slapd back ---------------------------------------------------------------------------------------
start_slapd "$T/ldap"
code=
for i in $(seq 60); do
    code=$(status alice "$O/?back=$i")
    [ "$code" = 200 ] && break
    sleep 0.25
done
assert_eq "slapd back: lookups resume (alice is staff again)" 200 "$code"

# ---- memberOf through group_attr, after a reload --------------------------------------------------------
lookups=$(metric aigate_directory_lookups_total)
conf 'group_attr = "memberOf";' >"$T/aigate.conf"
n=$(grep -c "configuration reloaded" "$PROXY_LOG")
kill -HUP "$PROXY_PID"
for i in $(seq 50); do
    [ "$(grep -c "configuration reloaded" "$PROXY_LOG")" -gt "$n" ] && break
    sleep 0.1
done
assert_eq "memberOf: alice allowed" 200 "$(status alice "$O/?m=alice")"
assert_eq "... staff-ok" "staff-ok alice" "$(rule_of /?m=alice)"
assert_eq "memberOf: carol on secret.test allowed" 200 "$(status carol "$S/?m=carol")"
assert_eq "memberOf: alice on secret.test blocked" 403 "$(status alice "$S/?m=alice-secret")"
assert_eq "memberOf: x(y) by R&D (lab)" "lab-ok x(y)" "$(status 'x(y)' "$O/?m=xy" >/dev/null; rule_of /?m=xy)"
assert_le "the reload cleared the cache: alice, carol and x(y) read again" $((lookups + 3)) \
    "$(metric aigate_directory_lookups_total)"

# --explain shows the groups and where they came from.
out=$("$AIGATE" -c "$T/aigate.conf" --explain carol GET "$S/" 2>&1)
assert_match "--explain: carol's directory group" 'security.*directory' "$out"

stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
