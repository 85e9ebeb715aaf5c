#!/bin/bash
# aigate --explain: the service, category and vendor country of a URL, the
# rule that decides and its action, and the rules that came close, for a
# staff user, the exempt group, an uncatalogued host, a user identified by
# address, a CONNECT target and a bad URL.  Then -t on broken policies: exit
# 2 and FILE:LINE: naming the policy file and the rule.
source "$(dirname "$0")/lib.sh"

cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "security-exempt"; action = "allow"; groups = [ "security" ];
    vendor_countries = [ "CN" ]; },
  { name = "ban-cn-ai"; action = "block"; vendor_countries = [ "CN" ];
    reason = "Chinese AI services are banned for business use."; },
  { name = "no-uploads"; action = "block"; categories = [ "chat" ];
    methods = [ "POST", "PUT" ]; paths = [ "*/upload*" ]; },
  { name = "default"; action = "allow"; }
);
EOF
cat >"$T/aigate.conf" <<EOF
auth : { mode = "address"; };
addresses = ( { network = "127.0.0.0/8"; user = "desk-user"; },
              { network = "127.0.0.2/32"; user = "lab-pc"; } );
groups = ( { name = "security"; members = [ "carol", "lab-pc" ]; },
           { name = "staff"; members = [ "alice", "bob", "desk-user" ]; } );
audit : { path = "$T/audit.jsonl"; };
@include "$ROOT/rules/services.conf"
@include "policy.conf"
EOF

# explain USER METHOD URL: the output (stdout and stderr) in $OUT, status in $RC
explain() {
    OUT=$("$AIGATE" -c "$T/aigate.conf" --explain "$@" 2>&1)
    RC=$?
    echo "---- --explain $*"
    echo "$OUT"
}

# deciding: the part of $OUT about the deciding rule (up to the near misses)
deciding() {
    awk 'tolower($0) ~ /decid/ { on = 1 } tolower($0) ~ /came close|near miss/ { on = 0 } on' <<<"$OUT"
}

# near: the part of $OUT from the near misses on
near() {
    awk 'tolower($0) ~ /came close|near miss/ { on = 1 } on' <<<"$OUT"
}

assert_eq "-t on the test config" 0 "$("$AIGATE" -t -c "$T/aigate.conf" >/dev/null 2>&1; echo $?)"

# A banned service for a staff user
explain alice GET https://chat.deepseek.com/
assert_eq "alice/deepseek: exit 0" 0 "$RC"
assert_contains "alice/deepseek: service id" "$OUT" deepseek
assert_match "alice/deepseek: category chat" '\bchat\b' "$OUT"
assert_match "alice/deepseek: vendor country CN" '\bCN\b' "$OUT"
assert_match "alice/deepseek: the deciding rule is ban-cn-ai, action block" 'ban-cn-ai.*block' "$(deciding)"
assert_match "alice/deepseek: the deciding rule's place in policy.conf" 'policy\.conf:4\b' "$(deciding)"
assert_contains "alice/deepseek: the reason" "$OUT" "banned for business use"
assert_contains "alice/deepseek: the exception came close" "$(near)" security-exempt
assert_contains "alice/deepseek: the near miss says the group is missing" "$(near)" security
assert_match "alice/deepseek: the effective action is block" '\bblock\b' "$(tail -n 3 <<<"$OUT")"

# Same request for the security group: the exception decides
explain carol GET https://chat.deepseek.com/
assert_eq "carol/deepseek: exit 0" 0 "$RC"
assert_match "carol/deepseek: the deciding rule is security-exempt, action allow" \
    'security-exempt.*allow' "$(deciding)"
assert_not_contains "carol/deepseek: ban-cn-ai does not decide" "$(deciding)" ban-cn-ai
assert_contains "carol/deepseek: carol's group is shown" "$OUT" security
assert_match "carol/deepseek: the effective action is allow" '\ballow\b' "$(tail -n 3 <<<"$OUT")"

# Anonymous
explain - GET http://chat.deepseek.com/
assert_eq "anonymous/deepseek: exit 0" 0 "$RC"
assert_match "anonymous/deepseek: ban-cn-ai blocks" 'ban-cn-ai.*block' "$(deciding)"

# An uncatalogued host: not an AI service, the default rule
explain alice GET http://www.example.org/some/page
assert_eq "uncatalogued host: exit 0" 0 "$RC"
assert_contains "uncatalogued host: said to be outside the catalog" "$OUT" "not a catalogued"
assert_match "uncatalogued host: the default rule allows" 'default.*allow' "$(deciding)"
assert_not_contains "uncatalogued host: no vendor country claimed" "$OUT" "CN is in"

# A per-path rule: POST to an upload path of a chat service
explain bob POST http://chatgpt.com/backend/upload/7
assert_eq "bob POST upload: exit 0" 0 "$RC"
assert_contains "bob POST upload: service chatgpt" "$OUT" chatgpt
assert_match "bob POST upload: no-uploads blocks" 'no-uploads.*block' "$(deciding)"
assert_contains "bob POST upload: the path that matched" "$(deciding)" /backend/upload/7
assert_contains "bob POST upload: the method that matched" "$(deciding)" POST
assert_contains "bob POST upload: ban-cn-ai came close (vendor not CN)" "$(near)" ban-cn-ai

# Users by address (auth.mode = "address"; the longest prefix wins)
explain @127.0.0.1 GET https://chat.deepseek.com/
assert_eq "@127.0.0.1: exit 0" 0 "$RC"
assert_contains "@127.0.0.1: resolved to desk-user" "$OUT" desk-user
assert_contains "@127.0.0.1: the client address is shown" "$OUT" 127.0.0.1
assert_match "@127.0.0.1: ban-cn-ai blocks desk-user (staff)" 'ban-cn-ai.*block' "$(deciding)"
explain @127.0.0.2 GET https://chat.deepseek.com/
assert_contains "@127.0.0.2: resolved to lab-pc (/32 beats /8)" "$OUT" lab-pc
assert_match "@127.0.0.2: lab-pc (security) is exempt" 'security-exempt.*allow' "$(deciding)"

# A CONNECT target (host:port): host-level conditions only
explain alice CONNECT chat.deepseek.com:443
assert_eq "CONNECT deepseek: exit 0" 0 "$RC"
assert_contains "CONNECT deepseek: service" "$OUT" deepseek
assert_match "CONNECT deepseek: port 443" '\b443\b' "$OUT"
assert_match "CONNECT deepseek: ban-cn-ai blocks the tunnel" 'ban-cn-ai.*block' "$(deciding)"
explain alice CONNECT chatgpt.com:443
assert_eq "CONNECT chatgpt: exit 0" 0 "$RC"
assert_not_contains "CONNECT chatgpt: the path rule cannot decide a tunnel" "$(deciding)" no-uploads
assert_match "CONNECT chatgpt: allowed by default" 'default.*allow' "$(deciding)"

# Bad URLs: non-zero exit and a message
for url in 'ftp://chat.deepseek.com/' 'http:///nohost' 'not a url'; do
    explain alice GET "$url"
    if [ "$RC" != 0 ]; then pass "bad URL [$url]: exit $RC"; else fail "bad URL [$url]: exit 0"; fi
    assert_match "bad URL [$url]: says what is wrong" '.{10}' "$OUT"
    assert_not_contains "bad URL [$url]: no decision printed" "$OUT" "ban-cn-ai"
done
explain alice GET
if [ "$RC" != 0 ]; then pass "--explain with a missing URL: exit $RC"; else fail "--explain with a missing URL: exit 0"; fi

# -t on broken policies: exit 2, FILE:LINE: naming the policy file and the rule.
# The broken setting is on line 4, inside the rule that starts on line 3.
# check_bad_policy DESC SETTING NEEDLE
check_bad_policy() {
    local err rc
    mkdir -p "$T/bad"
    printf 'policy = (\n  { name = "fine"; action = "allow"; users = [ "x" ]; },\n  { name = "broken-rule";\n    %s },\n  { name = "default"; action = "allow"; }\n);\n' \
        "$2" >"$T/bad/policy-bad.conf"
    printf '@include "%s/rules/services.conf"\n@include "policy-bad.conf"\n' "$ROOT" >"$T/bad/aigate.conf"
    err=$("$AIGATE" -t -c "$T/bad/aigate.conf" 2>&1)
    rc=$?
    echo "---- -t with [$2]: $err"
    assert_eq "$1: -t exits 2" 2 "$rc"
    assert_match "$1: FILE:LINE: names policy-bad.conf and the rule's lines" \
        'policy-bad\.conf:(3|4): ' "$err"
    assert_contains "$1: names the rule" "$err" broken-rule
    assert_contains "$1: names the problem" "$err" "$3"
}
check_bad_policy "unknown condition" 'action = "block"; colour = [ "red" ];' colour
check_bad_policy "unknown service id" 'action = "block"; services = [ "no-such-service" ];' no-such-service
check_bad_policy "bad action" 'action = "deny";' action
check_bad_policy "bad day" 'action = "block"; days = [ "funday" ];' funday
check_bad_policy "bad hours" 'action = "block"; hours = "25:00-26:00";' 25:00
