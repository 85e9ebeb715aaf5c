#!/bin/bash
# The warn action over plain HTTP, as curl sees it: the caution page (Korean or
# English per Accept-Language, no-store, a form with the original URL and a
# token), text/plain for non-browsers, the acknowledgement POST answered by the
# proxy itself (303 back to the URL, never forwarded), access to every host of
# the service afterwards, refused tokens (forged, replayed, another user's,
# another service's) and return URLs (another service, a non-AI host,
# javascript:, //host), a return URL on another host of the same service, a
# chunked form, expiry with a short ack_ttl_s, acks kept across reload and
# restart, and tls.warn_fallback on a CONNECT that is not intercepted.
source "$(dirname "$0")/lib.sh"

start_origin
printf '127.0.0.1 origin.test chatgpt.com chat.openai.com claude.ai gemini.google.com\n' >"$T/hosts"
PROXY_PORT=$(free_port)
GPT=http://chatgpt.com:$ORIGIN_PORT       # service chatgpt, warned
GPT2=http://chat.openai.com:$ORIGIN_PORT  # another host of chatgpt
CLAUDE=http://claude.ai:$ORIGIN_PORT      # service claude, warned, ack_ttl_s = 2
GEMINI=http://gemini.google.com:$ORIGIN_PORT # service gemini, warned, never acknowledged
AUDIT=$T/audit.jsonl
HTML='Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
KO='Accept-Language: ko-KR,ko;q=0.9,en;q=0.8'
EN='Accept-Language: en-US,en;q=0.9'

cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "caution-gpt"; action = "warn"; services = [ "chatgpt" ];
    reason = "Check <answers> & keep data in-house."; },
  { name = "caution-claude"; action = "warn"; services = [ "claude" ]; ack_ttl_s = 2; },
  { name = "caution-gemini"; action = "warn"; services = [ "gemini" ]; },
  { name = "default"; action = "allow"; }
);
EOF

# conf DIR FALLBACK: a proxy config keeping its acks and audit log in DIR
conf() {
    CONNECT_PORTS="443, $ORIGIN_PORT" proxy_conf \
        "audit : { path = \"$1/audit.jsonl\"; };" \
        "ack : { state_file = \"$1/acks.state\"; secret_file = \"$1/ack.secret\"; };" \
        "tls : { intercept = false; warn_fallback = \"$2\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        "@include \"$ROOT/rules/services.conf\"" \
        "@include \"$T/policy.conf\""
}

# page NAME URL [CURL_ARGS...]: GET URL as a browser would; head in $T/NAME.h, body in $T/NAME.html
page() {
    local name=$1 url=$2
    shift 2
    pcurl -H "$HTML" "$@" -D "$T/$name.h" -o "$T/$name.html" "$url" ||
        fail "$name: curl failed"
    tr -d '\r' <"$T/$name.h" >"$T/$name.hdr"
}

# ack HOSTURL URL TOKEN [CURL_ARGS...]: POST the acknowledgement form to
# HOSTURL/__aigate/ack; prints "STATUS LOCATION", body in $T/ack.out
ack() {
    local host=$1 url=$2 token=$3
    shift 3
    pcurl -H "$HTML" "$@" --data-urlencode "url=$url" --data-urlencode "token=$token" \
        -o "$T/ack.out" -w '%{http_code} %{redirect_url}' "$host/__aigate/ack"
}

# status_of CURL_ARGS...: the status of one request through the proxy
status_of() {
    pcurl -o /dev/null -w '%{http_code}' "$@"
}

# flip TOKEN: TOKEN with its last character changed
flip() {
    local last=${1: -1} repl=A
    [ "$last" = A ] && repl=B
    printf '%s%s' "${1%?}" "$repl"
}

mkdir -p "$T/a"
start_proxy "$T/a" "$(conf "$T/a" block)"
AUDIT=$T/a/audit.jsonl

# ---- the caution page, Korean and English -----------------------------------
URL1="$GPT/c/first?q=1&lang=x"
page ko "$URL1" -H "$KO"
assert_match "warned, Korean browser: 403" '^HTTP/1\.1 403' "$(head -n1 "$T/ko.hdr")"
assert_match "caution page: Cache-Control no-store" '^Cache-Control: .*no-store' "$(cat "$T/ko.hdr")"
assert_match "caution page: text/html" '^Content-Type: text/html' "$(cat "$T/ko.hdr")"
assert_contains "Korean page: <html lang=\"ko\">" "$(cat "$T/ko.html")" '<html lang="ko">'
assert_contains "Korean page: Korean heading" "$(cat "$T/ko.html")" '이용 전에 꼭 확인해 주십시오'
assert_contains "Korean page: the three points (personal data)" "$(cat "$T/ko.html")" '개인정보와 업무상 비밀을 입력하지 마십시오'
assert_contains "page names the service" "$(cat "$T/ko.html")" 'ChatGPT (OpenAI)'
assert_contains "page names the rule" "$(cat "$T/ko.html")" 'caution-gpt'
assert_contains "page shows the reason HTML-escaped" "$(cat "$T/ko.html")" \
    'Check &lt;answers&gt; &amp; keep data in-house.'
assert_not_contains "page has no raw <answers>" "$(cat "$T/ko.html")" '<answers>'
assert_contains "form POSTs to /__aigate/ack" "$(cat "$T/ko.html")" 'action="/__aigate/ack"'
assert_eq "hidden url is the original absolute URL" "$URL1" "$(form_field "$T/ko.html" url)"
TOKEN_KO=$(form_field "$T/ko.html" token)
assert_match "hidden token present" '^[A-Za-z0-9._~-]{20,}$' "$TOKEN_KO"

page en "$GPT/c/en" -H "$EN"
assert_match "warned, English browser: 403" '^HTTP/1\.1 403' "$(head -n1 "$T/en.hdr")"
assert_contains "English page: <html lang=\"en\">" "$(cat "$T/en.html")" '<html lang="en">'
assert_contains "English page: English heading" "$(cat "$T/en.html")" 'Before you use ChatGPT (OpenAI)'
assert_contains "English page: do not enter personal information" "$(cat "$T/en.html")" \
    'Do not enter personal information or confidential work data.'
page nolang "$GPT/c/nolang"
assert_contains "no Accept-Language: English" "$(cat "$T/nolang.html")" '<html lang="en">'

# ---- non-browsers: text/plain -------------------------------------------------
pcurl -D "$T/txt.h" -o "$T/txt.body" "$GPT/api/x" || fail "text client: curl failed"
txth=$(tr -d '\r' <"$T/txt.h")
assert_match "warned, curl's default Accept: 403" '^HTTP/1\.1 403' "$(head -n1 <<<"$txth")"
assert_match "non-HTML client: text/plain" '^Content-Type: text/plain' "$txth"
assert_match "non-HTML client: says a browser is needed" '[Bb]rowser' "$(cat "$T/txt.body")"
assert_not_contains "non-HTML client: no form" "$(cat "$T/txt.body")" '<form'
assert_eq "audit: the warnings logged as warn (caution-gpt)" 4 "$(wait_audit "$AUDIT" \
    'd["service"] == "chatgpt" and d["rule"] == "caution-gpt" and d["action"] == "warn" and d["status"] == 403' 4)"

# Fresh tokens, each bound to this client and chatgpt
page t1 "$GPT/t1" -H "$EN"
page t2 "$GPT/t2" -H "$EN"
page t3 "$GPT/t3" -H "$EN"
page t4 "$GPT/t4" -H "$EN"
page t5 "$GPT/t5" -H "$EN"
TOK1=$(form_field "$T/t1.html" token)
TOK2=$(form_field "$T/t2.html" token)
TOK3=$(form_field "$T/t3.html" token)
TOK4=$(form_field "$T/t4.html" token)
TOK5=$(form_field "$T/t5.html" token)

# ---- refused acknowledgements (nothing is recorded) ---------------------------
out=$(ack "$GPT" "$GPT/t1" "$(flip "$TOK1")")
assert_eq "forged token (last char changed): 403, no redirect" "403 " "$out"
assert_contains "forged token: an HTML page explains" "$(cat "$T/ack.out")" 'Acknowledgement not accepted'
assert_contains "forged token: the page is HTML" "$(cat "$T/ack.out")" '<html'

out=$(ack "$GPT" "$GPT/t1" "garbage")
assert_eq "garbage token: 403" "403 " "$out"
out=$(ack "$GPT" "$CLAUDE/" "$TOK2")
assert_match "return url on another service (claude.ai): refused, no redirect" '^4[0-9][0-9] $' "$out"
out=$(ack "$GPT" "http://origin.test:$ORIGIN_PORT/" "$TOK3")
assert_match "return url on a non-AI host: refused, no redirect" '^4[0-9][0-9] $' "$out"
out=$(ack "$GPT" "javascript:alert(1)" "$TOK4")
assert_match "return url javascript:: refused, no redirect" '^4[0-9][0-9] $' "$out"
out=$(ack "$GPT" "//claude.ai/x" "$TOK4")
assert_match "return url scheme-relative //claude.ai: refused, no redirect" '^4[0-9][0-9] $' "$out"
out=$(ack "$GPT" "$GPT/t5" "$TOK5" --interface 127.0.0.2)
assert_eq "token of 127.0.0.1 posted from 127.0.0.2 (another user): 403" "403 " "$out"
# 127.0.0.2's own token, returning to another host of the same service: accepted
page other "$GPT/o" -H "$EN" --interface 127.0.0.2
out=$(ack "$GPT" "$GPT2/o" "$(form_field "$T/other.html" token)" --interface 127.0.0.2)
assert_eq "return url on another host of the same service (chat.openai.com): 303 there" "303 $GPT2/o" "$out"
# A chunked form (RFC 9112 recipients must parse chunked) is either read or
# refused with 411 Length Required; never a misleading 400.
page chunked "$GPT/ch" -H "$EN" --interface 127.0.0.3
out=$(ack "$GPT" "$GPT/ch" "$(form_field "$T/chunked.html" token)" --interface 127.0.0.3 \
    -H 'Transfer-Encoding: chunked')
assert_match "acknowledgement form sent chunked: 303 or 411" "^(303 $GPT/ch|411 )\$" "$out"
page claudetok "$CLAUDE/x" -H "$EN"
out=$(ack "$CLAUDE" "$CLAUDE/x" "$TOK1")
assert_eq "chatgpt's token used to acknowledge claude: 403" "403 " "$out"
assert_eq "after the refusals chatgpt is still warned" 403 "$(status_of -H "$HTML" "$GPT/still")"
assert_eq "after the refusals claude is still warned" 403 "$(status_of -H "$HTML" "$CLAUDE/still")"
ACK_POSTS_ORIGIN=$(origin_count '__aigate')
assert_eq "no refused /__aigate/ack reached the origin" 0 "$ACK_POSTS_ORIGIN"

# ---- the acknowledgement ------------------------------------------------------
hdr=$(pcurl -H "$HTML" -H "$KO" --data-urlencode "url=$URL1" --data-urlencode "token=$TOKEN_KO" \
    -D - -o /dev/null "$GPT/__aigate/ack" | tr -d '\r')
assert_match "acknowledgement: 303" '^HTTP/1\.1 303' "$(head -n1 <<<"$hdr")"
assert_eq "acknowledgement: Location is the original URL" "Location: $URL1" \
    "$(grep -i '^Location:' <<<"$hdr")"
before=$(origin_count)
assert_eq "then the original URL: 200 from the origin" ok "$(pcurl -H "$HTML" "$URL1")"
assert_eq "origin saw the original URL with its query" 1 "$(origin_count '"target": "/c/first\?q=1&lang=x"')"
assert_eq "another chatgpt host (chat.openai.com) passes too" ok "$(pcurl -H "$HTML" "$GPT2/other")"
assert_eq "a non-browser client of the same user passes too" ok "$(pcurl "$GPT/api/y")"
assert_eq "three requests reached the origin" 3 "$(($(origin_count) - before))"
assert_eq "the origin never saw /__aigate/ack" 0 "$(origin_count '__aigate')"
assert_eq "another client address (another user) is still warned" 403 \
    "$(status_of -H "$HTML" --interface 127.0.0.4 "$GPT/other-user")"
assert_eq "another service (claude) is still warned" 403 "$(status_of -H "$HTML" "$CLAUDE/")"
out=$(ack "$GPT" "$URL1" "$TOKEN_KO")
assert_eq "replayed token: 403" "403 " "$out"
assert_match "replayed token: the page says it is used" 'not accepted.*(already )?used|used.*not accepted' \
    "$(tr '\n' ' ' <"$T/ack.out")"
assert_eq "audit: one ack line for chatgpt from 127.0.0.1" 1 "$(wait_audit "$AUDIT" \
    'd["client"] == "127.0.0.1" and d["action"] == "ack" and d["service"] == "chatgpt" and d["method"] == "POST" and d["path"] == "/__aigate/ack" and d["status"] == 303')"
assert_eq "audit: the acknowledged requests are allow with the warn rule's name" 3 "$(wait_audit "$AUDIT" \
    'd["client"] == "127.0.0.1" and d["service"] == "chatgpt" and d["rule"] == "caution-gpt" and d["action"] == "allow" and d["status"] == 200' 3)"
secret_mode=$(stat -c %a "$T/a/ack.secret" 2>/dev/null)
assert_eq "ack.secret created with mode 0600" 600 "$secret_mode"

# ---- expiry: claude's acknowledgement lasts 2 s --------------------------------
page claude "$CLAUDE/chat" -H "$EN"
CTOK=$(form_field "$T/claude.html" token)
assert_eq "claude: 303 on acknowledgement" "303 $CLAUDE/chat" "$(ack "$CLAUDE" "$CLAUDE/chat" "$CTOK")"
assert_eq "claude right after: 200" 200 "$(status_of -H "$HTML" "$CLAUDE/chat")"
sleep 3
page claude2 "$CLAUDE/chat" -H "$EN"
assert_match "claude 3 s later (ack_ttl_s = 2): 403 again" '^HTTP/1\.1 403' "$(head -n1 "$T/claude2.hdr")"
assert_contains "claude 3 s later: the caution page again" "$(cat "$T/claude2.html")" 'action="/__aigate/ack"'

# ---- warn_fallback = block: a warned CONNECT without interception ------------
accepts=$(grep -c '"accept"' "$ORIGIN_LOG")
err=$(pcurl -p -o /dev/null "$GEMINI/" 2>&1)
assert_contains "warn_fallback block: CONNECT to a warned service refused" "$err" \
    "CONNECT tunnel failed, response 403"
sleep 0.2
assert_eq "warn_fallback block: origin never dialled" "$accepts" "$(grep -c '"accept"' "$ORIGIN_LOG")"
assert_eq "audit: the refused CONNECT logged with 403" 1 "$(wait_audit "$AUDIT" \
    'd["method"] == "CONNECT" and d["service"] == "gemini" and d["status"] == 403')"
assert_eq "an acknowledged service: CONNECT passes (tunnel to the origin)" ok \
    "$(pcurl -p "$GPT/through-tunnel")"

# ---- reload and restart keep the acknowledgement ----------------------------
kill -HUP "$PROXY_PID"
sleep 0.5
assert_eq "after SIGHUP chatgpt still acknowledged" 200 "$(status_of -H "$HTML" "$GPT/after-hup")"
stop_proxy TERM
assert_eq "proxy exits 0 on SIGTERM" 0 "$PROXY_RC"
start_proxy "$T/a" "$(conf "$T/a" block)"
assert_eq "after a restart chatgpt still acknowledged (state file)" 200 \
    "$(status_of -H "$HTML" "$GPT/after-restart")"
assert_eq "after a restart chat.openai.com still acknowledged" 200 \
    "$(status_of -H "$HTML" "$GPT2/after-restart")"
assert_eq "after a restart claude (expired) is warned" 403 "$(status_of -H "$HTML" "$CLAUDE/")"
out=$(ack "$GPT" "$URL1" "$TOKEN_KO")
assert_eq "after a restart the used token is still refused" "403 " "$out"

# ---- warn_fallback = allow ---------------------------------------------------
mkdir -p "$T/b"
stop_proxy TERM
PROXY_PORT=$(free_port)
start_proxy "$T/b" "$(conf "$T/b" allow)"
assert_eq "warn_fallback allow: warned CONNECT is tunnelled, origin answers" ok \
    "$(pcurl -p "$GEMINI/gemini-tunnel")"
assert_eq "warn_fallback allow: the origin saw the tunnelled request" 1 \
    "$(origin_count '"target": "/gemini-tunnel"')"
assert_eq "warn_fallback allow: plain HTTP to it still gets the caution page" 403 \
    "$(status_of -H "$HTML" "$GEMINI/plain")"
