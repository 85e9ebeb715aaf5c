#!/bin/bash
# Users and policy through the proxy: Basic authentication (407 flows, the
# credential cache on keep-alive, auth-fail lines without the password, the
# per-address back-off that does not tell an unknown user from a wrong
# password), groups (a banned service blocked for staff, allowed for the
# exempt security group), per-path, hours and days rules, block pages (HTML
# vs text), a warn rule, a SIGHUP that changes the policy while a slow
# download runs on, and address mode naming the user in the audit log.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
start_origin
printf '127.0.0.1 origin.test chat.deepseek.com chatgpt.com\n' >"$T/hosts"
PROXY_PORT=$(free_port)
N=http://origin.test:$NGINX_HTTP_PORT
DS=http://chat.deepseek.com:$ORIGIN_PORT # deepseek: chat, vendor CN
GPT=http://chatgpt.com:$ORIGIN_PORT      # chatgpt: chat, vendor US
AUDIT=$T/audit.jsonl

# Windows of local time around now and two hours later; days other than today
# and tomorrow (so a run across midnight still sees a day outside the list).
NOW_WIN="$(date -d '-60 min' +%H:%M)-$(date -d '+60 min' +%H:%M)"
LATER_WIN="$(date -d '+120 min' +%H:%M)-$(date -d '+180 min' +%H:%M)"
today=$(date +%a | tr '[:upper:]' '[:lower:]')
tomorrow=$(date -d tomorrow +%a | tr '[:upper:]' '[:lower:]')
OTHER_DAYS=
for d in mon tue wed thu fri sat sun; do
    [ "$d" = "$today" ] || [ "$d" = "$tomorrow" ] || OTHER_DAYS="${OTHER_DAYS:+$OTHER_DAYS, }\"$d\""
done

# write_policy [FIRST_RULE]: $T/policy.conf, optionally with one rule on top
write_policy() {
    cat >"$T/policy.conf" <<EOF
policy = (
  ${1:-}
  { name = "security-exempt"; action = "allow"; groups = [ "security" ];
    vendor_countries = [ "CN" ]; },
  { name = "ban-cn-ai"; action = "block"; vendor_countries = [ "CN" ];
    reason = "Chinese AI services are banned for business use."; },
  { name = "no-uploads"; action = "block"; categories = [ "chat" ];
    methods = [ "POST", "PUT" ]; paths = [ "*/upload*" ]; },
  { name = "now-window"; action = "block"; hosts = [ "origin.test" ];
    paths = [ "/hours/*" ]; hours = "$NOW_WIN"; },
  { name = "later-window"; action = "block"; hosts = [ "origin.test" ];
    paths = [ "/later/*" ]; hours = "$LATER_WIN"; },
  { name = "other-days"; action = "block"; hosts = [ "origin.test" ];
    paths = [ "/days/*" ]; days = [ $OTHER_DAYS ]; },
  { name = "caution"; action = "warn"; services = [ "chatgpt" ]; paths = [ "/warn*" ]; },
  { name = "default"; action = "allow"; }
);
EOF
}

# basic_conf: the proxy config with Basic authentication and the groups
basic_conf() {
    LIMITS='header_timeout_ms = 2000; idle_timeout_ms = 30000;' proxy_conf \
        "auth : { mode = \"basic\"; realm = \"aigate-e2e\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
        'groups = ( { name = "security"; members = [ "carol" ]; },' \
        '           { name = "staff"; members = [ "alice", "bob" ]; } );' \
        "audit : { path = \"$AUDIT\"; };" \
        "@include \"$ROOT/rules/services.conf\"" \
        '@include "policy.conf"'
}

# status_of CURL_ARGS...: "CODE" of one request through the proxy
status_of() {
    pcurl -o /dev/null -w '%{http_code}' "$@"
}

write_policy
start_proxy "$T" "$(basic_conf)"

# ---- credential cache: one hash per keep-alive connection, not per request --
# Nothing is cached yet: the first request pays the bcrypt ($2y$, cost 10)
# verification; the next nine on the same connection must not.
outs=()
for i in 1 2 3 4 5 6 7 8 9 10; do outs+=(-o /dev/null); done
times=$(pcurl -U alice:alice-pass "${outs[@]}" -w '%{http_code} %{num_connects} %{time_total}\n' \
    "$N/one.txt" "$N/one.txt" "$N/one.txt" "$N/one.txt" "$N/one.txt" \
    "$N/one.txt" "$N/one.txt" "$N/one.txt" "$N/one.txt" "$N/one.txt")
assert_eq "10 authenticated keep-alive requests: all 200" 10 "$(grep -c '^200 ' <<<"$times")"
assert_eq "requests 2..10 reuse the connection" 9 "$(tail -n +2 <<<"$times" | grep -c '^200 0 ')"
first_ms=$(head -n1 <<<"$times" | awk '{ printf "%d", $3 * 1000 }')
rest_ms=$(tail -n +2 <<<"$times" | awk '{ s += $3 } END { printf "%d", s * 1000 }')
echo "first request ${first_ms} ms (bcrypt), the nine after it ${rest_ms} ms together"
if [ "$rest_ms" -lt "$first_ms" ]; then
    pass "cached credentials: 9 later requests together ($rest_ms ms) faster than the first ($first_ms ms)"
else
    fail "credentials not cached on keep-alive: 9 later requests took $rest_ms ms, the first $first_ms ms"
fi

# ---- 407 flows -------------------------------------------------------------
pcurl -D "$T/h407" -o "$T/b407" "$DS/" || fail "no credentials: curl failed"
assert_match "no credentials: 407" '^HTTP/1\.1 407' "$(head -n1 "$T/h407")"
assert_match "no credentials: Proxy-Authenticate Basic with the realm" \
    '^Proxy-Authenticate: Basic realm="aigate-e2e"' "$(tr -d '\r' <"$T/h407")"
WRONG_PW=Wr0ng-e2e-Passw0rd
assert_eq "wrong password: 407" 407 "$(status_of -U "alice:$WRONG_PW" "$N/one.txt")"
assert_eq "right password: 200" 200 "$(status_of -U alice:alice-pass "$N/one.txt")"
assert_eq "right password: body from nginx" one "$(pcurl -U alice:alice-pass "$N/one.txt")"
assert_eq "bob (SHA-512 hash) authenticates" 200 "$(status_of -U bob:bob-pass "$N/one.txt")"
assert_eq "carol (SHA-256 hash) authenticates" 200 "$(status_of -U carol:carol-pass "$N/one.txt")"

# ---- a banned service: blocked for staff, allowed for the security group -----
pcurl -U alice:alice-pass -D "$T/hban" -o "$T/bban" "$DS/ban-text" || fail "ban (text): curl failed"
hban=$(tr -d '\r' <"$T/hban")
assert_match "deepseek for alice: 403" '^HTTP/1\.1 403' "$(head -n1 <<<"$hban")"
assert_match "deepseek for alice: Proxy-Status names the rule" \
    '^Proxy-Status: aigate; error=http_request_denied; details="rule=ban-cn-ai"' "$hban"
assert_match "deepseek for alice without Accept: text/plain page" '^Content-Type: text/plain' "$hban"
assert_contains "text block page names the rule" "$(cat "$T/bban")" ban-cn-ai
pcurl -U alice:alice-pass -H 'Accept: text/html,application/xhtml+xml' -D "$T/hbanh" \
    -o "$T/bbanh" "$DS/ban-html" || fail "ban (HTML): curl failed"
hbanh=$(tr -d '\r' <"$T/hbanh")
assert_match "deepseek for alice, browser: 403" '^HTTP/1\.1 403' "$(head -n1 <<<"$hbanh")"
assert_match "deepseek for alice, browser: HTML page" '^Content-Type: text/html' "$hbanh"
assert_match "HTML block page is an HTML document" '<html' "$(cat "$T/bbanh")"
assert_match "deepseek for alice, browser: Proxy-Status names the rule" 'details="rule=ban-cn-ai"' "$hbanh"
assert_eq "deepseek for bob (staff): 403" 403 "$(status_of -U bob:bob-pass "$DS/ban-bob")"
assert_eq "blocked requests never reached the origin" 0 "$(origin_count '"/ban-')"
assert_eq "deepseek for carol (security): body from the origin" ok \
    "$(pcurl -U carol:carol-pass "$DS/exempt")"
assert_eq "origin saw carol's request" 1 "$(origin_count '"/exempt"')"

# ---- uncatalogued host, per-path, hours and days rules -----------------------
assert_eq "uncatalogued host allowed for alice" one "$(pcurl -U alice:alice-pass "$N/one.txt")"
pcurl -U alice:alice-pass -D "$T/hup" -o /dev/null --data-binary 'file bytes' "$GPT/backend/upload/1"
assert_match "POST */upload* to a chat service: 403" '^HTTP/1\.1 403' "$(head -n1 "$T/hup")"
assert_match "POST */upload*: Proxy-Status names no-uploads" 'details="rule=no-uploads"' \
    "$(tr -d '\r' <"$T/hup")"
assert_eq "blocked upload never reached the origin" 0 "$(origin_count '"POST"')"
assert_eq "GET on the same upload path allowed" ok "$(pcurl -U alice:alice-pass "$GPT/backend/upload/1")"
assert_eq "POST to another path of the chat service allowed" 200 \
    "$(status_of -U alice:alice-pass --data-binary 'hello' "$GPT/backend/conversation")"
assert_eq "hours window around now ($NOW_WIN) matches: 403" 403 \
    "$(status_of -U alice:alice-pass "$N/hours/one.txt")"
pcurl -U alice:alice-pass -D "$T/hhours" -o /dev/null "$N/hours/one.txt"
assert_match "hours rule named in Proxy-Status" 'details="rule=now-window"' "$(tr -d '\r' <"$T/hhours")"
assert_eq "hours window later today ($LATER_WIN) does not match: 404 from nginx" 404 \
    "$(status_of -U alice:alice-pass "$N/later/one.txt")"
assert_eq "days without today ($OTHER_DAYS) do not match: 404 from nginx" 404 \
    "$(status_of -U alice:alice-pass "$N/days/one.txt")"

# ---- warn without interception, to a browser: the caution page (403) -------
assert_eq "warn rule for a browser: 403" 403 \
    "$(status_of -U alice:alice-pass -H 'Accept: text/html' "$GPT/warn-me")"

# ---- the audit log: decisions, auth-fail without the password ---------------
assert_eq "audit: alice's deepseek blocks by ban-cn-ai" 2 "$(wait_audit "$AUDIT" \
    'd["user"] == "alice" and d["service"] == "deepseek" and d["rule"] == "ban-cn-ai" and d["action"] == "block" and d["status"] == 403' 2)"
assert_eq "audit: carol's deepseek allowed by security-exempt" 1 "$(wait_audit "$AUDIT" \
    'd["user"] == "carol" and d["path"] == "/exempt" and d["rule"] == "security-exempt" and d["action"] == "allow" and d["status"] == 200')"
assert_eq "audit: the upload blocked by no-uploads" 1 "$(wait_audit "$AUDIT" \
    'd["method"] == "POST" and d["service"] == "chatgpt" and d["rule"] == "no-uploads" and d["action"] == "block"')"
assert_eq "audit: the warn rule logged as warn" 1 "$(wait_audit "$AUDIT" \
    'd["path"] == "/warn-me" and d["rule"] == "caution" and d["action"] == "warn" and d["status"] == 403')"
assert_eq "audit: auth-fail line names the user tried" 1 "$(wait_audit "$AUDIT" \
    'd["action"] == "auth-fail" and d["user"] == "alice" and d["status"] == 407')"
assert_eq "audit: 407 without credentials is an auth-fail with user null" 1 "$(wait_audit "$AUDIT" \
    'd["action"] == "auth-fail" and d["user"] is None and d["path"] == "/"')"
b64=$(printf 'alice:%s' "$WRONG_PW" | base64)
for secret in "$WRONG_PW" "$b64" alice-pass "$(printf 'alice:alice-pass' | base64)"; do
    assert_not_contains "no credential [$secret] in the audit log" "$(cat "$AUDIT")" "$secret"
    assert_not_contains "no credential [$secret] in the proxy's log" "$(cat "$PROXY_LOG")" "$secret"
done

# ---- back-off: same answer for an unknown user and a wrong password ----------
# From 127.0.0.2, so the failures above (from 127.0.0.1) do not count.
fail_req() { # fail_req N USER:PASS: one failed attempt, head in $T/bo.N.h, body in $T/bo.N.b
    curl -q -sS --max-time 20 --interface 127.0.0.2 -x "http://127.0.0.1:$PROXY_PORT" -U "$2" \
        -D "$T/bo.$1.h" -o "$T/bo.$1.b" -w '%{time_total}' "$GPT/"
}
fail_req 1 mallory:nobody-knows >/dev/null
fail_req 2 alice:not-her-password >/dev/null
assert_match "unknown user: 407" '^HTTP/1\.1 407' "$(head -n1 "$T/bo.1.h")"
assert_eq "unknown user and wrong password get the same head" \
    "$(tr -d '\r' <"$T/bo.1.h" | grep -v '^Date:')" "$(tr -d '\r' <"$T/bo.2.h" | grep -v '^Date:')"
assert_eq "unknown user and wrong password get the same body" \
    "$(sha256sum <"$T/bo.1.b")" "$(sha256sum <"$T/bo.2.b")"
fail_req 3 alice:not-her-password >/dev/null
fail_req 4 mallory:nobody-knows >/dev/null
t5=$(fail_req 5 alice:not-her-password)
t5_ms=$(awk -v t="$t5" 'BEGIN { printf "%d", t * 1000 }')
assert_match "5th failure: still 407" '^HTTP/1\.1 407' "$(head -n1 "$T/bo.5.h")"
if [ "$t5_ms" -ge 250 ]; then
    pass "5th failure within a minute held back ($t5_ms ms >= 250 ms)"
else
    fail "5th failure within a minute answered in $t5_ms ms, expected a back-off of >= 250 ms"
fi
assert_eq "the 5th failure's head is the same as the 1st" \
    "$(tr -d '\r' <"$T/bo.1.h" | grep -v '^Date:')" "$(tr -d '\r' <"$T/bo.5.h" | grep -v '^Date:')"
assert_eq "127.0.0.1 is not slowed by 127.0.0.2's failures" 200 \
    "$(pcurl -U alice:alice-pass -o /dev/null -w '%{http_code}' --max-time 0.25 "$N/one.txt")"

# ---- SIGHUP changes the policy; a running slow download completes intact -----
make_big "$NGINX_HTML/big.bin"
spawn curl -q -sS --max-time 40 -x "http://127.0.0.1:$PROXY_PORT" -U alice:alice-pass \
    --limit-rate 25M -o "$T/big.out" "$N/big.bin"
dl=$LAST_PID
sleep 1
alive "$dl" || fail "slow download ended before the reload"
write_policy '{ name = "reloaded-ban"; action = "block"; hosts = [ "origin.test" ]; },'
kill -HUP "$PROXY_PID"
st=
for ((i = 0; i < 50; i++)); do
    st=$(status_of -U alice:alice-pass "$N/one.txt")
    [ "$st" = 403 ] && break
    sleep 0.1
done
assert_eq "after SIGHUP the new rule blocks origin.test" 403 "$st"
pcurl -U alice:alice-pass -D "$T/hrel" -o /dev/null "$N/two.txt"
assert_match "after SIGHUP: Proxy-Status names the new rule" 'details="rule=reloaded-ban"' \
    "$(tr -d '\r' <"$T/hrel")"
alive "$dl" || fail "the slow download did not outlast the reload (too fast to show anything?)"
wait "$dl"
assert_eq "download running across the reload: curl exit status" 0 "$?"
assert_eq "download running across the reload: 100 MiB intact" \
    "$(sha256sum <"$NGINX_HTML/big.bin")" "$(sha256sum <"$T/big.out")"
rm -f "$T/big.out" "$NGINX_HTML/big.bin"
assert_eq "after SIGHUP the rest of the policy still holds for carol" ok \
    "$(pcurl -U carol:carol-pass "$DS/after-reload")"
stop_proxy

# ---- address mode: the user comes from the client's network -----------------
mkdir -p "$T/addr"
cp "$T/policy.conf" "$T/addr/policy.conf"
PROXY_PORT=$(free_port)
start_proxy "$T/addr" "$(proxy_conf \
    'auth : { mode = "address"; };' \
    'addresses = ( { network = "127.0.0.0/8"; user = "desk-user"; },' \
    '              { network = "127.0.0.2/32"; user = "lab-pc"; } );' \
    'groups = ( { name = "security"; members = [ "lab-pc" ]; } );' \
    "audit : { path = \"$T/addr/audit.jsonl\"; };" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"
assert_eq "address mode: no credentials needed" 200 "$(status_of "$GPT/addr")"
assert_eq "address mode: desk-user is banned from deepseek" 403 "$(status_of "$DS/addr-desk")"
assert_eq "address mode: lab-pc (127.0.0.2/32, in security) may use deepseek" 200 \
    "$(status_of --interface 127.0.0.2 "$DS/addr-lab")"
assert_eq "audit user desk-user for 127.0.0.1" 2 "$(wait_audit "$T/addr/audit.jsonl" \
    'd["user"] == "desk-user" and d["client"] == "127.0.0.1"' 2)"
assert_eq "audit user lab-pc for 127.0.0.2 (longest prefix)" 1 "$(wait_audit "$T/addr/audit.jsonl" \
    'd["user"] == "lab-pc" and d["client"] == "127.0.0.2" and d["rule"] == "security-exempt"')"
