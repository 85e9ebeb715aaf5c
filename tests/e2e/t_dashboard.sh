#!/bin/bash
# The security team's dashboard (SPEC section 11) on the admin listener.  A
# known mix of traffic through a real proxy (allows, blocks, warns, an
# acknowledgement posted from the caution form, a DLP hit, two users through
# Basic authentication, two groups, ordinary web traffic) and then:
#  - GET /api/usage for every by= agrees exactly with the audit log (counted
#    here by an independent reader), the known numbers of the mix hold, CSV
#    equals JSON, filters narrow the rows;
#  - the same numbers after a restart and after a rotation (small
#    audit.rotate_bytes, gzip'ed files), and a new request shows up within 5 s;
#  - admin.htpasswd unset: / and /api/ answer 403, /healthz and /metrics stay
#    open; a wrong password 401 with WWW-Authenticate; the right one 200 with
#    Content-Security-Policy: default-src 'self';
#  - bad parameters: 400 with a JSON error, and the proxy keeps serving;
#  - /metrics: counters per action, service and rule, the latency histogram;
#  - Chromium (tests/e2e/browser/dashboard.mjs) opens the page with
#    credentials: every request goes to the admin listener, each service of
#    the mix is shown, a chart is drawn; screenshots in tests/e2e/out/.
source "$(dirname "$0")/lib.sh"

start_origin
printf '127.0.0.1 origin.test chatgpt.com claude.ai gemini.google.com chat.deepseek.com\n' >"$T/hosts"
O=$ORIGIN_PORT
HTML='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'

hash() { openssl passwd -6 "$1"; }
printf 'alice:%s\nbob:%s\n' "$(hash alice-pass)" "$(hash bob-pass)" >"$T/users.htpasswd"
printf 'sec:%s\n' "$(hash sec-pass)" >"$T/admin.htpasswd"
cat >"$T/policy.conf" <<'EOF'
groups = ( { name = "staff"; members = [ "alice", "bob" ]; },
           { name = "security"; members = [ "bob" ]; } );
policy = (
  { name = "no-cards"; action = "block"; services = [ "chatgpt" ]; dlp = [ "credit-card" ]; },
  { name = "ban-deepseek"; action = "block"; services = [ "deepseek" ]; },
  { name = "caution-claude"; action = "warn"; services = [ "claude" ]; },
  { name = "default"; action = "allow"; }
);
EOF
ADMIN_PORT=$(free_port)
PROXY_PORT=$(free_port)
D=$T/p
mkdir -p "$D"
AUDIT=$D/audit.jsonl

# conf [AUDIT_EXTRA]: the proxy's config; admin.htpasswd set unless NO_ADMIN_PW=1
conf() {
    local pw="htpasswd = \"$T/admin.htpasswd\";"
    [ "${NO_ADMIN_PW:-0}" = 1 ] && pw=""
    CONNECT_PORTS="443, $O" LIMITS="header_timeout_ms = 5000; idle_timeout_ms = 10000;" proxy_conf \
        "auth : { mode = \"basic\"; htpasswd = \"$T/users.htpasswd\"; };" \
        "admin : { listen = \"127.0.0.1:$ADMIN_PORT\"; $pw };" \
        "audit : { path = \"$AUDIT\"; ${1:-} };" \
        "ack : { state_file = \"$D/acks.state\"; secret_file = \"$D/ack.secret\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        "@include \"$ROOT/rules/services.conf\"" \
        "@include \"$T/policy.conf\""
}

A="http://127.0.0.1:$ADMIN_PORT"
# admin PATH [CURL_ARGS...]: GET on the admin listener as sec; body to stdout
admin() {
    local path=$1
    shift
    curl -q -sS --max-time 20 -u sec:sec-pass "$@" "$A$path"
}
# status_of URL [CURL_ARGS...]
code_of() {
    local url=$1
    shift
    curl -q -s --max-time 20 -o /dev/null -w '%{http_code}' "$@" "$url"
}
as() { # as USER CURL_ARGS...: a request through the proxy as USER
    local u=$1
    shift
    pcurl -o /dev/null -w '%{http_code}\n' -U "$u:$u-pass" "$@"
}

start_proxy "$D" "$(conf)"
wait_port "$ADMIN_PORT" 10 || die "admin listener does not answer"

# ---- the mix -----------------------------------------------------------------------
t_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for p in a1 a2; do as alice "http://chatgpt.com:$O/c/$p" >>"$T/codes"; done
as alice -H 'Content-Type: application/json' --data '{"prompt":"my card is 4111 1111 1111 1111"}' \
    "http://chatgpt.com:$O/backend-api/conversation" >>"$T/codes"
as alice "http://chat.deepseek.com:$O/" >>"$T/codes"
pcurl -U alice:alice-pass -H "$HTML" -o "$T/caution.html" "http://claude.ai:$O/chat/new" ||
    fail "caution page: curl failed"
TOKEN=$(form_field "$T/caution.html" token)
assert_match "the caution page has an acknowledgement token" '^[A-Za-z0-9._~-]{20,}$' "$TOKEN"
ackc=$(pcurl -U alice:alice-pass -H "$HTML" --data-urlencode "url=http://claude.ai:$O/chat/new" \
    --data-urlencode "token=$TOKEN" -o /dev/null -w '%{http_code}' "http://claude.ai:$O/__aigate/ack")
assert_eq "caution form posted: 303" 303 "$ackc"
as alice "http://claude.ai:$O/chat/new" >>"$T/codes"
for p in g1 g2 g3; do as bob "http://gemini.google.com:$O/$p" >>"$T/codes"; done
for p in d1 d2; do as bob "http://chat.deepseek.com:$O/$p" >>"$T/codes"; done
pcurl -U bob:bob-pass -H "$HTML" -o /dev/null "http://claude.ai:$O/x"
as bob "http://origin.test:$O/plain" >>"$T/codes"
assert_eq "the mix: statuses" "200 200 403 403 200 200 200 200 403 403 200" "$(tr '\n' ' ' <"$T/codes" | sed 's/ $//')"
# 2 + 1 + 1 chatgpt/deepseek (alice), 1 warn + 1 ack + 1 allow claude (alice),
# 3 gemini + 2 deepseek + 1 warn claude + 1 plain (bob)
LINES=14
assert_eq "audit log: $LINES lines" "$LINES" "$(wait_audit "$AUDIT" 'True' "$LINES")"

FROM=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)
TO=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)
Q="from=$FROM&to=$TO"

# expected BY [FILTER_PY]: rows for BY computed from the audit files by Python, as JSON
expected() {
    "$PY" - "$D" "$FROM" "$TO" "$1" "${2:-True}" <<'EOF'
import datetime, glob, gzip, json, sys
d, frm, to, by, filt = sys.argv[1:6]
groups = {"alice": ["staff"], "bob": ["staff", "security"]}
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
frm, to = p(frm), p(to)
rows = {}
for f in sorted(glob.glob(d + "/audit.jsonl*")):
    op = gzip.open if f.endswith(".gz") else open
    for line in op(f, "rt", encoding="utf-8"):
        try:
            l = json.loads(line)
        except ValueError:
            continue
        ts = p(l["ts"])
        if not (frm <= ts < to) or not eval(filt, {}, {"l": l, "groups": groups}):
            continue
        if by == "group":
            keys = groups.get(l["user"]) or [None]
        elif by == "hour":
            keys = [ts.strftime("%Y-%m-%dT%H:00:00Z")]
        elif by == "day":
            keys = [ts.strftime("%Y-%m-%d")]
        else:
            keys = [l[by]]
        for k in keys:
            r = rows.setdefault(k, {"key": k, "requests": 0, "allow": 0, "warn": 0, "ack": 0,
                                    "block": 0, "dlp": 0, "bytes_out": 0})
            r["requests"] += 1
            if l["action"] in ("allow", "warn", "ack", "block"):
                r[l["action"]] += 1
            r["dlp"] += 1 if l.get("dlp") else 0
            r["bytes_out"] += l["bytes_out"] or 0
print(json.dumps(sorted(rows.values(), key=lambda r: str(r["key"])), sort_keys=True))
EOF
}
# normalise: the rows of an /api/usage JSON answer, sorted like expected()
normalise() {
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(json.dumps(sorted(d["rows"], key=lambda r: str(r["key"])), sort_keys=True))'
}
# csv_rows: the rows of a CSV answer, as normalise() prints them
csv_rows() {
    "$PY" -c '
import csv, json, sys
r = list(csv.reader(sys.stdin))
assert r[0] == ["key", "requests", "allow", "warn", "ack", "block", "dlp", "bytes_out"], r[0]
rows = [dict(zip(r[0], [x[0] or None] + [int(v) for v in x[1:]])) for x in r[1:]]
print(json.dumps(sorted(rows, key=lambda r: str(r["key"])), sort_keys=True))'
}

# check_all WHEN: every by= against the log, and CSV against JSON
check_all() {
    local by got want
    for by in service user group rule action category hour day; do
        got=$(admin "/api/usage?$Q&by=$by" | normalise)
        want=$(expected "$by")
        assert_eq "$1: by=$by equals the audit log" "$want" "$got"
        assert_eq "$1: by=$by as CSV equals JSON" "$got" "$(admin "/api/usage?$Q&by=$by&format=csv" | csv_rows)"
    done
}

# wait_total N: until /api/usage counts N requests (10 s at most); prints the ms it took
wait_total() {
    local t0 i n=-1
    t0=$(now_ms)
    for ((i = 0; i < 100; i++)); do
        n=$(admin "/api/usage?$Q&by=action" | jget 'sum(r["requests"] for r in d["rows"])' 2>/dev/null)
        [ "$n" = "$1" ] && break
        sleep 0.1
    done
    echo $(($(now_ms) - t0))
}

wait_total "$LINES" >/dev/null
check_all "first run"
svc=$(admin "/api/usage?$Q&by=service")
pick() { jget "[ (r['requests'], r['allow'], r['warn'], r['ack'], r['block'], r['dlp']) for r in d['rows'] if r['key'] == $1 ][0]" <<<"$svc"; }
assert_eq "chatgpt: 3 requests, 2 allowed, 1 blocked with personal data" "(3, 2, 0, 0, 1, 1)" "$(pick "'chatgpt'")"
assert_eq "claude: a caution shown twice, acknowledged once, then allowed" "(4, 1, 2, 1, 0, 0)" "$(pick "'claude'")"
assert_eq "deepseek: 3 blocks" "(3, 0, 0, 0, 3, 0)" "$(pick "'deepseek'")"
assert_eq "gemini: 3 allowed" "(3, 3, 0, 0, 0, 0)" "$(pick "'gemini'")"
assert_eq "not an AI service: key null" "(1, 1, 0, 0, 0, 0)" "$(pick None)"
assert_eq "by=service: largest first, null last" "['claude', 'chatgpt', 'deepseek', 'gemini', None]" \
    "$(jget '[r["key"] for r in d["rows"]]' <<<"$svc")"
grp=$(admin "/api/usage?$Q&by=group")
assert_eq "by=group: bob counts in both of his groups" "[('staff', 14), ('security', 7)]" \
    "$(jget '[(r["key"], r["requests"]) for r in d["rows"]]' <<<"$grp")"
assert_eq "group=security: bob's requests only" "$(expected user 'l["user"] == "bob"')" \
    "$(admin "/api/usage?$Q&by=user&group=security" | normalise)"
assert_eq "service=deepseek&user=bob" "$(expected rule 'l["service"] == "deepseek" and l["user"] == "bob"')" \
    "$(admin "/api/usage?$Q&by=rule&service=deepseek&user=bob" | normalise)"
assert_eq "action=block by=user" "$(expected user 'l["action"] == "block"')" \
    "$(admin "/api/usage?$Q&by=user&action=block" | normalise)"
assert_eq "category=chat by=service" "$(expected service 'l["category"] == "chat"')" \
    "$(admin "/api/usage?$Q&by=service&category=chat" | normalise)"
assert_eq "an empty service= matches null" "$(expected user 'l["service"] is None')" \
    "$(admin "/api/usage?$Q&by=user&service=" | normalise)"
assert_eq "limit=2 keeps the two largest" "['claude', 'chatgpt']" \
    "$(admin "/api/usage?$Q&by=service&limit=2" | jget '[r["key"] for r in d["rows"]]')"
hdr=$(admin "/api/usage?$Q" -o /dev/null -D - | tr -d '\r')
assert_match "/api/usage: application/json" '^Content-Type: application/json' "$hdr"
assert_match "/api/usage: the CSP header" "^Content-Security-Policy: default-src 'self'" "$hdr"
body=$(admin "/api/usage?$Q&by=action")
assert_eq "JSON: from, to and by echoed" "('${FROM%Z}.000Z', '${TO%Z}.000Z', 'action')" \
    "$(jget '(d["from"], d["to"], d["by"])' <<<"$body")"
assert_eq "default period is the last 24 hours" "$LINES" \
    "$(admin '/api/usage?by=action' | jget 'sum(r["requests"] for r in d["rows"])')"
recent=$(admin "/api/recent?n=3")
assert_eq "/api/recent?n=3: the three newest lines, newest first" \
    "$(tail -n 3 "$AUDIT" | tac | "$PY" -c 'import json,sys; print([json.loads(l)["id"] for l in sys.stdin])')" \
    "$(jget '[l["id"] for l in d["lines"]]' <<<"$recent")"
assert_eq "/api/recent?action=block: blocks only" "['block', 'block', 'block', 'block']" \
    "$(admin "/api/recent?action=block" | jget '[l["action"] for l in d["lines"]]')"

# ---- /metrics ------------------------------------------------------------------------
m=$(curl -sS "$A/metrics")
metric() { grep -F "$1 " <<<"$m" | awk '{print $2}'; }
assert_eq "metrics: blocks" 4 "$(metric 'aigate_requests_by_action_total{action="block"}')"
assert_eq "metrics: warns" 2 "$(metric 'aigate_requests_by_action_total{action="warn"}')"
assert_eq "metrics: acks" 1 "$(metric 'aigate_requests_by_action_total{action="ack"}')"
assert_eq "metrics: claude" 4 "$(metric 'aigate_requests_by_service_total{service="claude"}')"
assert_eq "metrics: not an AI service" 1 "$(metric 'aigate_requests_by_service_total{service="none"}')"
assert_eq "metrics: rule ban-deepseek" 3 "$(metric 'aigate_requests_by_rule_total{rule="ban-deepseek"}')"
assert_eq "metrics: latency histogram counts every line" "$LINES" "$(metric aigate_request_duration_seconds_count)"
assert_eq "metrics: +Inf bucket" "$LINES" "$(metric 'aigate_request_duration_seconds_bucket{le="+Inf"}')"
assert_match "metrics: TLS handshake failures" '^aigate_tls_handshake_failures_total [0-9]+$' "$m"
assert_match "metrics: upstream errors by kind" '^aigate_upstream_errors_total\{kind="connection_refused"\} [0-9]+$' "$m"
for name in $(grep -oE 'aigate_[a-z_]+' "$ROOT/contrib/grafana/aigate.json" | sort -u); do
    grep -qE "^$name[ {]" <<<"$m" || fail "contrib/grafana/aigate.json charts $name, which /metrics lacks"
done
pass "contrib/grafana/aigate.json: every metric it charts is served"

# ---- authentication ------------------------------------------------------------------
assert_eq "no credentials: 401" 401 "$(code_of "$A/")"
wrong=$(curl -sS -u sec:nope -D - -o "$T/wrong.body" "$A/api/usage" | tr -d '\r')
assert_match "wrong password: 401" '^HTTP/1\.1 401' "$wrong"
assert_match "wrong password: WWW-Authenticate Basic" '^WWW-Authenticate: Basic realm=' "$wrong"
assert_eq "wrong password: a JSON error" True "$(jget '"error" in d' <"$T/wrong.body")"
assert_eq "unknown user: 401" 401 "$(code_of "$A/" -u mallory:sec-pass)"
page=$(admin / -H 'Accept-Language: ko-KR,ko;q=0.9' -D "$T/page.h")
hdr=$(tr -d '\r' <"$T/page.h")
assert_match "right password: 200" '^HTTP/1\.1 200' "$hdr"
assert_match "the page: CSP default-src 'self'" "^Content-Security-Policy: default-src 'self'$" "$hdr"
assert_match "the page: text/html" '^Content-Type: text/html' "$hdr"
assert_contains "Korean browser: <html lang=\"ko\">" "$page" '<html lang="ko">'
assert_contains "English browser: <html lang=\"en\">" "$(admin / -H 'Accept-Language: en-US,en;q=0.9')" '<html lang="en">'
assert_not_contains "the page has no inline script" "$page" '<script>'
assert_contains "the page loads its script from the listener" "$page" '<script src="dash.js"'
assert_match "dash.js: text/javascript" '^Content-Type: text/javascript' \
    "$(admin /dash.js -o /dev/null -D - | tr -d '\r')"
assert_match "dash.css: text/css" '^Content-Type: text/css' "$(admin /dash.css -o /dev/null -D - | tr -d '\r')"
assert_eq "an unknown path: 404" 404 "$(code_of "$A/nope" -u sec:sec-pass)"

# ---- bad parameters: 400 with a JSON error, and the proxy keeps serving ---------------
long=$(head -c 300 /dev/zero | tr '\0' x)
for bad in "by=bogus" "from=yesterday" "from=2026-02-30T00:00:00Z" "to=2026-13-01" \
    "from=$TO&to=$FROM" "from=$FROM&period=1h" "period=5x" "period=0h" "format=xml" "limit=0" \
    "limit=-1" "tz=+25:00" "nope=1" "by=user&by=service" "service=$long" "%zz=1" "n=5" \
    "by=hour&from=1970-01-01&to=9999-01-01"; do
    resp=$(curl -sS -u sec:sec-pass -w '\n%{http_code}' "$A/api/usage?$bad")
    assert_eq "/api/usage?${bad:0:40}: 400" 400 "$(tail -n1 <<<"$resp")"
    assert_eq "/api/usage?${bad:0:40}: JSON error" True "$(head -n -1 <<<"$resp" | jget '"error" in d and isinstance(d["error"], str)')"
done
for bad in "n=0" "n=1001" "by=user" "n=x"; do
    assert_eq "/api/recent?$bad: 400" 400 "$(code_of "$A/api/recent?$bad" -u sec:sec-pass)"
done
assert_eq "after the bad parameters: the proxy serves" 200 "$(as bob "http://gemini.google.com:$O/after-bad")"
assert_eq "after the bad parameters: /healthz 200" 200 "$(code_of "$A/healthz")"
LINES=$((LINES + 1))

# ---- a new request shows up within 5 s -----------------------------------------------
as bob "http://gemini.google.com:$O/fresh" >/dev/null
LINES=$((LINES + 1))
ms=$(wait_total "$LINES")
assert_le "a new request is counted within 5 s (${ms} ms)" "$ms" 5000

# ---- restart ---------------------------------------------------------------------------
before=$(for by in service user group rule action hour; do admin "/api/usage?$Q&by=$by"; done)
stop_proxy
start_proxy "$D" "$(conf)"
wait_port "$ADMIN_PORT" 10 || die "admin listener does not answer after the restart"
after=$(for by in service user group rule action hour; do admin "/api/usage?$Q&by=$by"; done)
assert_eq "after a restart: the same numbers" "$before" "$after"
check_all "after a restart"

# ---- rotation: small rotate_bytes, gzip'ed files ------------------------------------
stop_proxy
start_proxy "$D" "$(conf 'rotate_bytes = 1500; keep = 0;')"
wait_port "$ADMIN_PORT" 10 || die "admin listener does not answer"
for i in 1 2 3 4 5 6; do as alice "http://gemini.google.com:$O/rot$i" >/dev/null; done
as alice "http://chat.deepseek.com:$O/rot" >/dev/null
LINES=$((LINES + 7))
for ((i = 0; i < 50; i++)); do
    [ "$(ls "$D"/audit.jsonl.*.gz 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.1
done
assert_le "rotation: at least two gzip'ed files" 2 "$(ls "$D"/audit.jsonl.*.gz 2>/dev/null | wc -l)"
wait_total "$LINES" >/dev/null
check_all "after rotations while running"
stop_proxy
start_proxy "$D" "$(conf 'rotate_bytes = 1500; keep = 0;')"
wait_port "$ADMIN_PORT" 10 || die "admin listener does not answer"
check_all "after a restart with rotated files"
rep=$("$AIGATE" --report "$D"/audit.jsonl.*.gz "$AUDIT")
assert_match "--report over the same files: $LINES lines" "^lines: $LINES \(unreadable: 0\)" "$rep"

# ---- Chromium ------------------------------------------------------------------------
need_browser
mkdir -p "$E2E/out"
ADMIN_URL="$A/" ADMIN_USER=sec ADMIN_PASS=sec-pass SERVICES=chatgpt,claude,gemini,deepseek \
    OUT_DIR="$E2E/out" timeout 150 node "$E2E/browser/dashboard.mjs" 2>&1 | tee "$T/browser.out"
rc=${PIPESTATUS[0]}
assert_eq "browser: every check passed" 0 "$rc"
grep -q '^not ok' "$T/browser.out" && fail "browser: see the not ok lines above"

# ---- admin.htpasswd unset: 403, /healthz and /metrics open ------------------------------
stop_proxy
start_proxy "$D" "$(NO_ADMIN_PW=1 conf)"
wait_port "$ADMIN_PORT" 10 || die "admin listener does not answer"
assert_eq "no admin.htpasswd: / 403" 403 "$(code_of "$A/" -u sec:sec-pass)"
assert_eq "no admin.htpasswd: /api/usage 403" 403 "$(code_of "$A/api/usage")"
assert_eq "no admin.htpasswd: /api/recent 403" 403 "$(code_of "$A/api/recent" -u sec:sec-pass)"
assert_eq "no admin.htpasswd: /healthz 200" 200 "$(code_of "$A/healthz")"
assert_eq "no admin.htpasswd: /metrics 200" 200 "$(code_of "$A/metrics")"
assert_eq "/healthz never asks for a password" 200 "$(code_of "$A/healthz" -u sec:wrong)"

# ---- a reload that sets admin.htpasswd turns the dashboard on (the index starts then) ------
conf >"$D/aigate.conf"
kill -HUP "$PROXY_PID"
for ((i = 0; i < 50; i++)); do
    [ "$(code_of "$A/api/usage?$Q" -u sec:sec-pass)" = 200 ] && break
    sleep 0.1
done
assert_eq "after a reload with admin.htpasswd: /api/usage 200" 200 "$(code_of "$A/api/usage?$Q" -u sec:sec-pass)"
assert_eq "after the reload: the numbers of the log" "$(expected service)" \
    "$(admin "/api/usage?$Q&by=service" | normalise)"
