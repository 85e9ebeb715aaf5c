#!/bin/bash
# Company workspaces only (SPEC 5b), AI inside other sites (the query
# condition), path-scoped catalog entries (SPEC 4), the hosts rules needing
# the request make intercepted (SPEC 5), and shadow-AI discovery
# (--report --unlisted, SPEC 2), end to end with curl, raw clients and
# origin.py (which logs the request headers it gets) over plain HTTP and
# behind TLS:
#  - add_headers: the origin sees the rule's header, once, on allowed and on
#    acknowledged requests, plain and intercepted, never a value the client
#    sent under that name (twice, in another case); not on the caution page's
#    requests;
#  - an uncatalogued host a headers or query rule names is intercepted (our
#    CA's certificate), another uncatalogued host stays a blind tunnel (the
#    origin's own certificate);
#  - with tls.intercept = false, a CONNECT such a rule decides is refused with
#    403 (audit: block by that rule), other tunnels still work;
#  - -t names the line of a header name with a space and of a value with
#    CR/LF (libconfig escapes); --explain lists the headers;
#  - query: Google's AI Mode (udm=50) blocked, other searches pass, plain and
#    intercepted;
#  - path-scoped: huggingface.co/chat is HuggingChat (caution, acknowledged
#    through the form), the rest of the host the hub; x.com/i/grok is Grok;
#  - --report --unlisted on the audit log of this run (rotated .gz files
#    included): AI-looking uncatalogued hosts with their requests and users.
source "$(dirname "$0")/lib.sh"

# ---- origins: origin.py plain and behind TLS, one certificate for every name -------
NAMES="chatgpt.com claude.ai login.microsoftonline.com www.google.com huggingface.co x.com
other.example chat.shadow-ai.example mygpt-helper.example mail.example"
PKI=$T/pki
# shellcheck disable=SC2086
make_cert "$PKI" origin $NAMES
printf '127.0.0.1 %s\n' "$(echo $NAMES)" >"$T/hosts"

start_origin
TLS_PORT=$(free_port)
TLS_LOG=$T/origin-tls.jsonl
: >"$TLS_LOG"
spawn "$PY" "$E2E/origin.py" --mode http --port "$TLS_PORT" --log "$TLS_LOG" \
    --tls-cert "$PKI/origin.pem" --tls-key "$PKI/origin.key" --ready "$T/tls.ready"
wait_file "$T/tls.ready" 10 || die "origin.py (TLS) did not start"
OP=$ORIGIN_PORT

"$AIGATE" --gen-ca "$T/ca" >/dev/null 2>&1 || die "--gen-ca failed"
CA=$T/ca/ca.pem

cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "company-chatgpt-only"; action = "allow"; hosts = [ "chatgpt.com" ];
    add_headers = ( { name = "ChatGPT-Allowed-Workspace-Id"; value = "ws-1111"; } ); },
  { name = "company-claude-only"; action = "warn"; hosts = [ "claude.ai" ];
    add_headers = ( { name = "anthropic-allowed-org-ids"; value = "org-a,org-b"; } ); },
  { name = "ms-tenant"; action = "allow"; hosts = [ "login.microsoftonline.com" ];
    add_headers = ( { name = "Restrict-Access-To-Tenants"; value = "corp.example"; },
                    { name = "Restrict-Access-Context"; value = "dir-0000"; } ); },
  { name = "ai-mode"; action = "block"; hosts = [ "www.google.com" ];
    paths = [ "/search" ]; query = [ "*udm=50*" ]; },
  { name = "caution"; action = "warn"; categories = [ "chat" ]; },
  { name = "default"; action = "allow"; }
);
EOF
AUDIT=$T/audit.jsonl
# intercept_conf true|false: the proxy's config with interception on or off
intercept_conf() {
    CONNECT_PORTS="443, $TLS_PORT" proxy_conf \
        "tls : { intercept = $1; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
        "        upstream_ca_file = \"$PKI/ca.pem\"; warn_fallback = \"allow\"; };" \
        "audit : { path = \"$2\"; rotate_bytes = 4000; keep = 100; };" \
        "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        "@include \"$ROOT/rules/services.conf\"" \
        '@include "policy.conf"'
}
PROXY_PORT=$(free_port)
start_proxy "$T" "$(intercept_conf true "$AUDIT")"
MAIN_PORT=$PROXY_PORT
MAIN_PID=$PROXY_PID
HTML='Accept: text/html'

# scurl ARGS...: curl through the proxy trusting only our CA
scurl() {
    pcurl --cacert "$CA" "$@"
}

# hdr FILE NAME: the values origin.py's /echo saw under NAME (any case), joined by '|'
hdr() {
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print("|".join(v for k, v in d["headers"] if k.lower() == sys.argv[2].lower()))' "$1" "$2" 2>/dev/null
}

# hdr_names FILE NAME: the names (as sent) of the header lines NAME, joined by '|'
hdr_names() {
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print("|".join(k for k, v in d["headers"] if k.lower() == sys.argv[2].lower()))' "$1" "$2" 2>/dev/null
}

# raw_tls HOST PORT OUT: send stdin (a whole request) inside a CONNECT tunnel to HOST:PORT
# with TLS (trusting our CA), write the response body to OUT, print the status
cat >"$T/raw_tls.py" <<'EOF'
import socket, ssl, sys
proxy, host, port, ca, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
req = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", proxy), timeout=10)
s.sendall(("CONNECT %s:%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n" % (host, port, host, port)).encode())
head = b""
while b"\r\n\r\n" not in head:
    b = s.recv(1)
    if not b:
        break
    head += b
if not head.startswith(b"HTTP/1.1 200"):
    print(head.split(b"\r\n")[0].decode())
    sys.exit(0)
ctx = ssl.create_default_context(cafile=ca)
t = ctx.wrap_socket(s, server_hostname=host)
t.sendall(req)
data = b""
while True:
    try:
        b = t.recv(65536)
    except (ssl.SSLError, OSError):
        break
    if not b:
        break
    data += b
h, _, body = data.partition(b"\r\n\r\n")
open(out, "wb").write(body)
print(h.split(b"\r\n")[0].split(b" ")[1].decode())
EOF
raw_tls() {
    "$PY" "$T/raw_tls.py" "$PROXY_PORT" "$1" "$2" "$CA" "$3"
}

# all_audit PYEXPR [MIN]: lines of the whole audit log (rotated files too) matching PYEXPR,
# waiting up to 5 s for MIN (1) of them
all_audit() {
    local i n=0 f
    for ((i = 0; i < 50; i++)); do
        for f in "$AUDIT".* "$AUDIT"; do
            [ -e "$f" ] || continue
            case $f in *.gz) gzip -dc "$f" 2>/dev/null ;; *) cat "$f" ;; esac
        done >"$T/all.jsonl"
        n=$(audit_count "$T/all.jsonl" "$1")
        [ "$n" -ge "${2:-1}" ] && break
        sleep 0.1
    done
    echo "$n"
}

# issuer_of HOST PORT: the issuer of the certificate the client sees through the proxy
issuer_of() {
    openssl s_client -proxy "127.0.0.1:$PROXY_PORT" -connect "$1:$2" -servername "$1" \
        </dev/null 2>/dev/null | openssl x509 -noout -issuer 2>/dev/null
}

# ---- add_headers over plain HTTP: allowed, the client's values replaced ----------------------
st=$(printf 'GET http://chatgpt.com:%s/echo HTTP/1.1\r\nHost: chatgpt.com:%s\r\nChatGPT-Allowed-Workspace-Id: evil-1\r\nchatgpt-allowed-workspace-id: evil-2\r\nCHATGPT-ALLOWED-WORKSPACE-ID: evil-3\r\nConnection: close\r\n\r\n' \
    "$OP" "$OP" | raw_req)
body=${st#*$'\r\n\r\n'}
printf '%s' "$body" >"$T/plain.json"
assert_match "plain HTTP, allowed: 200" '^HTTP/1\.1 200' "$st"
assert_eq "plain HTTP: the origin sees the rule's value only" "ws-1111" "$(hdr "$T/plain.json" ChatGPT-Allowed-Workspace-Id)"
assert_eq "plain HTTP: one header line, named as the rule names it" "ChatGPT-Allowed-Workspace-Id" \
    "$(hdr_names "$T/plain.json" ChatGPT-Allowed-Workspace-Id)"
assert_eq "the client's values never reach the origin" 0 "$(grep -c 'evil-' "$ORIGIN_LOG")"

# ---- intercepted HTTPS: the same, inside TLS -----------------------------------------------
st=$(printf 'GET /echo HTTP/1.1\r\nHost: chatgpt.com:%s\r\nchatgpt-allowed-workspace-id: evil-4\r\nChatGPT-Allowed-Workspace-Id:evil-5\r\nConnection: close\r\n\r\n' \
    "$TLS_PORT" | raw_tls chatgpt.com "$TLS_PORT" "$T/tls.json")
assert_eq "intercepted HTTPS, allowed: 200" 200 "$st"
assert_eq "intercepted: the origin sees the rule's value only" "ws-1111" "$(hdr "$T/tls.json" chatgpt-allowed-workspace-id)"
assert_eq "intercepted: one header line" "ChatGPT-Allowed-Workspace-Id" \
    "$(hdr_names "$T/tls.json" ChatGPT-Allowed-Workspace-Id)"
assert_eq "intercepted: the client's values never reach the origin" 0 "$(grep -c 'evil-' "$TLS_LOG")"
out=$(scurl -o "$T/tls2.json" -w '%{http_code}' "https://chatgpt.com:$TLS_PORT/echo")
assert_eq "curl through the proxy: 200" 200 "$out"
assert_eq "curl through the proxy: the header" "ws-1111" "$(hdr "$T/tls2.json" ChatGPT-Allowed-Workspace-Id)"

# ---- an uncatalogued host a headers rule names: intercepted, both headers -----------------
assert_match "login.microsoftonline.com (uncatalogued, named by a headers rule): our CA's certificate" \
    'CN *= *aigate interception CA' "$(issuer_of login.microsoftonline.com "$TLS_PORT")"
out=$(scurl -H 'Restrict-Access-To-Tenants: evil.example' -o "$T/ms.json" -w '%{http_code}' \
    "https://login.microsoftonline.com:$TLS_PORT/echo/common/oauth2/v2.0/authorize")
assert_eq "Microsoft sign-in host: 200" 200 "$out"
assert_eq "Restrict-Access-To-Tenants set" "corp.example" "$(hdr "$T/ms.json" Restrict-Access-To-Tenants)"
assert_eq "Restrict-Access-Context set" "dir-0000" "$(hdr "$T/ms.json" Restrict-Access-Context)"
assert_match "another uncatalogued host stays a blind tunnel: the origin's own certificate" \
    'CN *= *aigate e2e test CA' "$(issuer_of other.example "$TLS_PORT")"
out=$(pcurl --cacert "$PKI/ca.pem" -o "$T/other.json" -w '%{http_code}' "https://other.example:$TLS_PORT/echo")
assert_eq "blind tunnel to other.example: 200 with the origin's certificate" 200 "$out"

# ---- warn + add_headers: caution first, headers once acknowledged (plain, then HTTPS) -------
out=$(scurl -H "$HTML" -o "$T/c0.html" -w '%{http_code}' "https://claude.ai:$TLS_PORT/echo?x=0")
assert_eq "claude.ai over HTTPS, not acknowledged: the caution page" 403 "$out"
out=$(pcurl -H "$HTML" -H 'anthropic-allowed-org-ids: mine' -o "$T/c1.html" -w '%{http_code}' "http://claude.ai:$OP/echo?x=1")
assert_eq "claude.ai over plain HTTP, not acknowledged: the caution page" 403 "$out"
assert_eq "cautioned requests never reach the origin" 0 "$(grep -c 'x=1' "$ORIGIN_LOG")"
assert_eq "nor the TLS origin" 0 "$(grep -c 'x=0' "$TLS_LOG")"
out=$(pcurl -H "$HTML" --data-urlencode "url=$(form_field "$T/c1.html" url)" \
    --data-urlencode "token=$(form_field "$T/c1.html" token)" -o /dev/null -w '%{http_code}' \
    "http://claude.ai:$OP/__aigate/ack")
assert_eq "acknowledgement over plain HTTP: 303" 303 "$out"
out=$(pcurl -H 'anthropic-allowed-org-ids: mine' -H 'Anthropic-Allowed-Org-Ids: mine-too' \
    -o "$T/c2.json" -w '%{http_code}' "http://claude.ai:$OP/echo?x=2")
assert_eq "acknowledged, plain HTTP: 200" 200 "$out"
assert_eq "acknowledged, plain HTTP: the rule's header only" "org-a,org-b" "$(hdr "$T/c2.json" anthropic-allowed-org-ids)"
printf 'GET /echo?x=3 HTTP/1.1\r\nHost: claude.ai:%s\r\nanthropic-allowed-org-ids: mine\r\nConnection: close\r\n\r\n' "$TLS_PORT" |
    raw_tls claude.ai "$TLS_PORT" "$T/c3.json" >"$T/c3.st"
assert_eq "acknowledged, intercepted HTTPS: 200" 200 "$(cat "$T/c3.st")"
assert_eq "acknowledged, intercepted HTTPS: the rule's header only" "org-a,org-b" "$(hdr "$T/c3.json" anthropic-allowed-org-ids)"
assert_eq "no client value ever reached an origin" 0 "$(cat "$ORIGIN_LOG" "$TLS_LOG" | grep -c '"mine')"

# ---- query: Google's AI Mode ----------------------------------------------------------------
out=$(pcurl -o /dev/null -w '%{http_code}' "http://www.google.com:$OP/search?q=weather&udm=50")
assert_eq "AI Mode (udm=50) over plain HTTP: blocked" 403 "$out"
out=$(pcurl -o /dev/null -w '%{http_code}' "http://www.google.com:$OP/search?q=weather")
assert_eq "an ordinary search over plain HTTP: 200" 200 "$out"
assert_match "www.google.com (uncatalogued, named by a query rule): intercepted" \
    'CN *= *aigate interception CA' "$(issuer_of www.google.com "$TLS_PORT")"
scurl -D "$T/aimode.h" -o /dev/null "https://www.google.com:$TLS_PORT/search?udm=50&q=x" || fail "AI Mode over HTTPS: curl failed"
assert_match "AI Mode over HTTPS: 403 inside TLS, by ai-mode" 'details="rule=ai-mode"' "$(tr -d '\r' <"$T/aimode.h")"
out=$(scurl -o /dev/null -w '%{http_code}' "https://www.google.com:$TLS_PORT/search?q=udm50")
assert_eq "an ordinary search over HTTPS: 200" 200 "$out"
assert_eq "the AI Mode searches never reached an origin" 0 "$(cat "$ORIGIN_LOG" "$TLS_LOG" | grep -c 'udm=50')"

# ---- path-scoped catalog entries -------------------------------------------------------------
out=$(scurl -H "$HTML" -o "$T/hc.html" -w '%{http_code}' "https://huggingface.co:$TLS_PORT/chat/conversation/1")
assert_eq "huggingface.co/chat: HuggingChat, cautioned (chat)" 403 "$out"
assert_contains "the caution page names HuggingChat" "$(cat "$T/hc.html")" "HuggingChat"
out=$(scurl -H "$HTML" -o /dev/null -w '%{http_code}' "https://huggingface.co:$TLS_PORT/chatdb/some-model")
assert_eq "huggingface.co/chatdb/...: the hub, allowed" 200 "$out"
out=$(pcurl -H "$HTML" -o /dev/null -w '%{http_code}' "http://huggingface.co:$OP/chat")
assert_eq "plain http://huggingface.co/chat: HuggingChat, cautioned" 403 "$out"
out=$(scurl -H "$HTML" --data-urlencode "url=$(form_field "$T/hc.html" url)" \
    --data-urlencode "token=$(form_field "$T/hc.html" token)" -o /dev/null -w '%{http_code}' \
    "https://huggingface.co:$TLS_PORT/__aigate/ack")
assert_eq "HuggingChat's caution acknowledged on the shared host: 303" 303 "$out"
out=$(scurl -H "$HTML" -o /dev/null -w '%{http_code}' "https://huggingface.co:$TLS_PORT/chat/conversation/2")
assert_eq "HuggingChat after the acknowledgement: 200" 200 "$out"
assert_match "x.com (only path-scoped entries name it): intercepted" \
    'CN *= *aigate interception CA' "$(issuer_of x.com "$TLS_PORT")"
out=$(scurl -H "$HTML" -o /dev/null -w '%{http_code}' "https://x.com:$TLS_PORT/i/grok")
assert_eq "x.com/i/grok: Grok, cautioned" 403 "$out"
out=$(scurl -H "$HTML" -o /dev/null -w '%{http_code}' "https://x.com:$TLS_PORT/home")
assert_eq "x.com/home: no service, allowed" 200 "$out"
n=$(all_audit 'd["host"] == "huggingface.co" and d["path"] == "/chat/conversation/1" and d["service"] == "huggingchat" and d["action"] == "warn"')
assert_eq "audit: /chat is huggingchat" 1 "$n"
n=$(all_audit 'd["host"] == "huggingface.co" and d["path"] == "/chatdb/some-model" and d["service"] == "huggingface"')
assert_eq "audit: the rest of the host is the hub" 1 "$n"
n=$(all_audit 'd["host"] == "x.com" and d["path"] == "/home" and d["service"] is None')
assert_eq "audit: x.com/home has no service" 1 "$n"

# ---- --explain lists the headers --------------------------------------------------------------
out=$("$AIGATE" -c "$T/aigate.conf" --explain alice GET "https://chatgpt.com/backend-api/me" 2>&1)
assert_contains "--explain: the headers the rule adds" "$out" "    ChatGPT-Allowed-Workspace-Id: ws-1111"
assert_contains "--explain: set on this request" "$out" "sets header ChatGPT-Allowed-Workspace-Id: ws-1111"
assert_contains "--explain: verdict with one header" "$out" \
    "verdict: action=allow rule=company-chatgpt-only service=chatgpt page=none tls=intercept headers=1"
out=$("$AIGATE" -c "$T/aigate.conf" --explain alice GET "https://www.google.com/search?q=x&udm=50" 2>&1)
assert_contains "--explain: the query decides" "$out" "verdict: action=block rule=ai-mode"

# ---- shadow AI traffic for --report --unlisted ----------------------------------------------------
for i in 1 2 3; do pcurl -o /dev/null "http://chat.shadow-ai.example:$OP/q$i" || fail "shadow host $i"; done
pcurl -o /dev/null "http://mygpt-helper.example:$OP/x" || fail "mygpt-helper"
pcurl -o /dev/null "http://mail.example:$OP/inbox" || fail "mail.example"
pcurl -o /dev/null "https://chat.shadow-ai.example:$TLS_PORT/" --cacert "$PKI/ca.pem" || fail "shadow host over a blind tunnel"

# ---- interception off: a CONNECT a headers rule decides is refused -------------------------------
mkdir -p "$T/off"
cp "$T/policy.conf" "$T/off/policy.conf"
PROXY_PORT=$(free_port)
start_proxy "$T/off" "$(intercept_conf false "$T/off/audit.jsonl")"
accepted=$(grep -c '"ev": "accept"' "$TLS_LOG")
out=$(pcurl --cacert "$CA" -o /dev/null -w '%{http_code} %{http_connect}' "https://chatgpt.com:$TLS_PORT/echo")
assert_eq "intercept off: CONNECT chatgpt.com (a headers rule decides) refused with 403" "000 403" "$out"
out=$(pcurl --cacert "$CA" -o /dev/null -w '%{http_code} %{http_connect}' "https://claude.ai:$TLS_PORT/echo")
assert_eq "intercept off: the warn rule with headers (warn_fallback allow) refused too" "000 403" "$out"
printf 'CONNECT chatgpt.com:%s HTTP/1.1\r\nHost: chatgpt.com:%s\r\n\r\n' "$TLS_PORT" "$TLS_PORT" | raw_req >"$T/refused.raw"
assert_match "the refusal says why (Proxy-Status)" 'details="rule=company-chatgpt-only; interception required"' \
    "$(tr -d '\r' <"$T/refused.raw")"
assert_eq "no refused tunnel reached the origin" "$accepted" "$(grep -c '"ev": "accept"' "$TLS_LOG")"
out=$(pcurl --cacert "$PKI/ca.pem" -o /dev/null -w '%{http_code} %{http_connect}' "https://other.example:$TLS_PORT/echo")
assert_eq "intercept off: other tunnels still work" "200 200" "$out"
n=$(wait_audit "$T/off/audit.jsonl" 'd["method"] == "CONNECT" and d["host"] == "chatgpt.com" and d["action"] == "block" and d["rule"] == "company-chatgpt-only" and d["status"] == 403' 2)
assert_eq "audit: the refused CONNECTs are blocks by the headers rule" 2 "$n"
stop_proxy
PROXY_PORT=$MAIN_PORT
PROXY_PID=$MAIN_PID

# ---- -t: header names and values checked, with the line --------------------------------------------
mkdir -p "$T/bad"
printf '%s\n' 'policy = (' '  { name = "ws"; action = "allow"; hosts = [ "chatgpt.com" ];' \
    '    add_headers = ( { name = "Bad Name"; value = "x"; } ); }' ');' >"$T/bad/policy.conf"
printf '@include "%s/rules/services.conf"\n@include "policy.conf"\n' "$ROOT" >"$T/bad/aigate.conf"
out=$("$AIGATE" -t -c "$T/bad/aigate.conf" 2>&1)
rc=$?
assert_eq "-t: a header name with a space: exit 2" 2 "$rc"
assert_contains "-t: FILE:LINE of the name" "$out" "$T/bad/policy.conf:3: rule \"ws\": add_headers: header name \"Bad Name\" is not a token"
printf '%s\n' 'policy = (' '  { name = "ws"; action = "allow"; hosts = [ "chatgpt.com" ];' \
    '    add_headers = ( { name = "ChatGPT-Allowed-Workspace-Id";' \
    '                      value = "ws-1\r\nX-Injected: 1"; } ); }' ');' >"$T/bad/policy.conf"
out=$("$AIGATE" -t -c "$T/bad/aigate.conf" 2>&1)
rc=$?
assert_eq "-t: a value with CR/LF (libconfig escapes): exit 2" 2 "$rc"
assert_contains "-t: FILE:LINE of the value" "$out" "$T/bad/policy.conf:4: rule \"ws\": add_headers: value of ChatGPT-Allowed-Workspace-Id contains CR or LF"
sed -i 's/\\r\\n/\\n/' "$T/bad/policy.conf"
out=$("$AIGATE" -t -c "$T/bad/aigate.conf" 2>&1)
assert_contains "-t: LF alone is refused too" "$out" "contains CR or LF"

# ---- the shipped examples are valid once uncommented --------------------------------------------
mkdir -p "$T/ex"
{
    echo 'policy = ('
    sed -n '/workspace-examples-begin/,/workspace-examples-end/p; /query-examples-begin/,/query-examples-end/p' \
        "$ROOT/rules/policy.conf" | grep -v 'examples-' | sed 's/^  # //'
    echo '{ name = "default"; action = "allow"; } );'
} >"$T/ex/policy.conf"
printf '@include "%s/rules/services.conf"\n@include "policy.conf"\n' "$ROOT" >"$T/ex/aigate.conf"
out=$("$AIGATE" -t -c "$T/ex/aigate.conf" 2>&1)
assert_eq "the shipped workspace and query examples load (-t)" 0 "$?"
for h in ChatGPT-Allowed-Workspace-Id OpenAI-Allowed-Organization-Ids anthropic-allowed-org-ids \
    Restrict-Access-To-Tenants Restrict-Access-Context X-GoogApps-Allowed-Domains; do
    assert_le "shipped example adds $h" 1 "$(grep -c "name = \"$h\"" "$T/ex/policy.conf")"
done
out=$("$AIGATE" -c "$T/ex/aigate.conf" --explain - GET "http://api.openai.com/v1/models" 2>&1)
assert_contains "the OpenAI API example sets its header on api.openai.com" "$out" "sets header OpenAI-Allowed-Organization-Ids"

# ---- --report --unlisted on this run's audit log, rotated .gz files included ------------------------
stop_proxy # every line written
for ((i = 0; i < 100; i++)); do
    compgen -G "$AUDIT.*.gz" >/dev/null && break
    sleep 0.1
done
ngz=$(compgen -G "$AUDIT.*.gz" | wc -l)
assert_le "the audit log was rotated and compressed during the run" 1 "$ngz"
total=0
for f in "$AUDIT" "$AUDIT".*; do
    [ -e "$f" ] || continue
    case $f in *.gz) n=$(gzip -dc "$f" | grep -c .) ;; *) n=$(grep -c . "$f") ;; esac
    total=$((total + n))
done
echo "audit lines over $((ngz + 1)) files: $total"
"$AIGATE" -c "$T/aigate.conf" --report --unlisted "$AUDIT".* "$AUDIT" >"$T/unlisted.out" 2>"$T/unlisted.err"
assert_eq "--report --unlisted: exit 0" 0 "$?"
cat "$T/unlisted.out"
rep=$(cat "$T/unlisted.out")
assert_contains "--unlisted: every line of every file read" "$rep" "lines: $total (unreadable: 0)"
assert_match "--unlisted: chat.shadow-ai.example, 4 lines (3 requests and a tunnel), 1 user" \
    '^ +4 +1  chat\.shadow-ai\.example +name: "chat", an AI word$' "$rep"
assert_match "--unlisted: mygpt-helper.example, 1 request" '^ +1 +1  mygpt-helper\.example +name: "mygpt", "gpt" in it$' "$rep"
assert_match "--unlisted: the users of each host" '^ +@127\.0\.0\.1 4$' "$rep"
for quiet in mail.example other.example www.google.com login.microsoftonline.com chatgpt.com huggingface.co x.com; do
    assert_not_contains "--unlisted: $quiet is not reported" "$(grep -vE '^(lines|catalog|hosts):' <<<"$rep")" " $quiet "
done
assert_contains "--unlisted: the shipped list of known AI domains is read" "$rep" "known AI domains outside it: "
assert_not_contains "--unlisted: the list was found beside the catalog" "$(cat "$T/unlisted.err")" "heuristic only"
