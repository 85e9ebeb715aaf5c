#!/bin/bash
# Personal data in prompts (SPEC 5a, README "Personal data in prompts"), from
# outside with curl: rules with dlp = [ "kr-rrn", "credit-card" ], an e-mail
# rule limited to one service and path, and a custom:NAME rule from
# dlp_patterns.  POSTs carrying a resident registration number (valid check
# digit) or a card number (Luhn) are blocked with 403 before the origin sees
# them, also when the data hides in JSON \u escapes, form encoding (%XX, '+'),
# a gzip or deflate Content-Encoding (also gzip twice, in one Content-Encoding
# line or two; a coding it cannot undo or a false gzip label: read as sent),
# a chunked body (split anywhere, trickling in slowly), a
# multipart upload or behind Expect: 100-continue; the audit line names the
# rule and the kinds ("dlp":[...]) but never the data.  Clean bodies (16 KiB
# of prose, plain, chunked, gzip; numbers failing Luhn or the check digit;
# data beyond limits.max_body_inspect_bytes) reach the origin byte for byte
# (length and SHA-256 reported by origin.py /echo).  Inside HTTPS: intercepted
# connections to a catalogued host are inspected; a blind CONNECT tunnel is not.
source "$(dirname "$0")/lib.sh"

INSPECT=8192 # limits.max_body_inspect_bytes in this test

start_origin
# HTTPS in front of origin.py: nginx terminates TLS (certificate for chatgpt.com
# and origin.test from the test PKI) and passes every request to origin.py, so
# requests inside TLS land in the same $ORIGIN_LOG and /echo works there too.
PKI=$T/pki
make_cert "$PKI" good chatgpt.com origin.test
TLS_PORT=$(free_port)
mkdir -p "$T/nginx/tmp"
{
    nginx_conf_head "$T/nginx" "'\$server_port \"\$request\" \$status'"
    cat <<EOF
    server {
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $PKI/good.pem;
        ssl_certificate_key $PKI/good.key;
        client_max_body_size 16m;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN_PORT;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$T/nginx/nginx.conf"
spawn nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log"
wait_port "$TLS_PORT" 10 || die "nginx did not start: $(tail -n 5 "$T/nginx/error.log" 2>/dev/null)"

"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || die "--gen-ca failed: $(cat "$T/genca.out")"
CA=$T/ca/ca.pem

printf '127.0.0.1 origin.test chatgpt.com\n' >"$T/hosts"
cat >"$T/policy.conf" <<'EOF'
dlp_patterns = ( { name = "project"; regex = "PROJECT-[0-9]{4}"; } );
policy = (
  { name = "no-personal-data"; action = "block"; dlp = [ "kr-rrn", "credit-card" ]; },
  { name = "no-email-to-chat"; action = "block"; services = [ "chatgpt" ];
    paths = [ "/backend-api/*" ]; dlp = [ "email" ]; },
  { name = "no-project-codes"; action = "block"; dlp = [ "custom:project" ]; },
  { name = "default"; action = "allow"; }
);
EOF
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="443, $TLS_PORT" \
    LIMITS="header_timeout_ms = 3000; idle_timeout_ms = 5000; max_body_inspect_bytes = $INSPECT;" \
    proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$PKI/ca.pem\"; };" \
    "audit : { path = \"$AUDIT\"; };" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"

GPT=http://chatgpt.com:$ORIGIN_PORT # catalogued (chatgpt), plain HTTP
OT=http://origin.test:$ORIGIN_PORT  # not catalogued
SGPT=https://chatgpt.com:$TLS_PORT  # intercepted
SOT=https://origin.test:$TLS_PORT   # tunnelled blind

# ---- the bodies -------------------------------------------------------------------
# $T/b/NAME, written once by Python so every byte is exact.  The personal data
# below is made up: a resident registration number with a valid check digit,
# the usual Visa test number, an address at example.com.
B=$T/b
mkdir -p "$B"
BOUNDARY=----e2eBoundary7MA4YWxkTrZu0gW
"$PY" - "$B" "$INSPECT" "$BOUNDARY" <<'EOF'
import gzip, json, os, sys, zlib

out, inspect, BOUNDARY = sys.argv[1], int(sys.argv[2]), sys.argv[3]
RRN, CARD, MAIL = "900101-1234568", "4111 1111 1111 1111", "alice@example.com"

def put(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)

def chat(text):  # a chat-completion request as a web client sends it
    return json.dumps({"model": "gpt-4o", "stream": True,
                       "messages": [{"role": "user", "content": text}]}, ensure_ascii=False)

def u_escape(s):  # every character as a JSON \uXXXX escape
    return "".join("\\u%04x" % ord(c) for c in s)

def pct(s):  # every byte as %XX
    return "".join("%%%02X" % b for b in s.encode())

SENTENCES = [
    "Please summarise the quarterly report for the board meeting in three short paragraphs.",
    "회의록을 정리해 주세요. 다음 주 화요일 오전 10시까지 팀장님께 보고해야 합니다.",
    "Revenue grew 12.5% over 2023, driven by the new subscription tier launched in March.",
    "The migration of 1200 servers to the new data centre finished on 2024-05-17 at 09:30.",
    "고객 만족도 조사 결과 응답자의 87%가 서비스에 만족한다고 답했습니다.",
    "Version 3.14.2 fixes the memory leak reported in ticket 4521 and improves start-up time.",
    "Draft a polite reply declining the invitation, but suggest meeting again in Q3.",
    "예산은 총 2억 5천만 원이며, 그중 40%는 인건비로 배정되어 있습니다.",
]

def prose(n):
    text, size, i = [], 0, 0
    while size < n:
        text.append(SENTENCES[i % len(SENTENCES)] + (" " if i % 5 else "\n"))
        size += len(text[-1].encode())
        i += 1
    return "".join(text)

# -- personal data, plainly
put("rrn", chat("제 주민등록번호는 %s 입니다. 이걸로 서류를 작성해 주세요." % RRN))
put("card", chat("My card is %s, exp 12/29. Why was the payment declined?" % CARD))
put("card-plain", "card 4111111111111111 exp 12/29\n")
put("card-multipart", "\r\n".join([  # a file upload, as a browser form sends it
    "--" + BOUNDARY, 'Content-Disposition: form-data; name="purpose"', "", "assistants",
    "--" + BOUNDARY, 'Content-Disposition: form-data; name="file"; filename="notes.txt"',
    "Content-Type: text/plain", "", "Meeting notes.\nPay with %s by Friday." % CARD,
    "--" + BOUNDARY + "--", ""]))
put("several", chat("rrn %s, card %s, mail %s, call 010-1234-5678" % (RRN, CARD, MAIL)))
# -- hidden: JSON escapes, form encoding, content codings
put("rrn-json-u", '{"prompt":"%s"}' % u_escape(RRN))
put("card-json-u", '{"messages":[{"role":"user","content":"pay with %s"}]}' % u_escape(CARD))
put("rrn-form-pct", "model=gpt-4o&prompt=" + pct("주민번호 " + RRN) + "&stream=true")
put("card-form-plus", "prompt=my+card+is+4111+1111+1111+1111&x=1")
put("card-gzip", gzip.compress(chat("My card is %s" % CARD).encode()))
put("rrn-deflate", zlib.compress(chat("주민등록번호 %s" % RRN).encode()))
put("rrn-gzip-json-u", gzip.compress(('{"prompt":"%s"}' % u_escape(RRN)).encode()))
# -- e-mail (blocked only on chatgpt /backend-api/*) and the custom pattern
put("mail", chat("Forward this to %s when you are done." % MAIL))
put("project", chat("What is the status of PROJECT-4711 this week?"))
put("project-json-u", '{"prompt":"PROJECT%s4711"}' % u_escape("-"))
put("project-miss", chat("What is the status of PROJECT-47 and project-4711?"))
# -- clean: prose, near misses that fail Luhn, the check digit, the date or the issuer
put("prose", chat(prose(16 * 1024)))
put("near-miss", chat("Not personal data: 4111 1111 1111 1112 (Luhn), 900101-1234567 (check "
                      "digit), 020229-4567898 (no 29 Feb 2002), 5011111111111119 (issuer), "
                      "4111 1111-1111 1111 (mixed), 0x4111111111111111, 3.4111111111111111, "
                      "order 1700000000000, icon@2x.png"))
put("prose-gzip", gzip.compress(chat(prose(16 * 1024)).encode()))
# -- the inspection limit (plain text): the card at the start, just inside the limit, beyond it
filler = prose(2 * inspect)
put("card-after-limit", filler + "\nBy the way, my card is %s.\n" % CARD)
put("card-first-big", "My card is %s.\n" % CARD + filler)
head = prose(inspect).encode()[: inspect - 200].decode("utf-8", "ignore")
put("card-before-limit", head + " card %s end\n" % CARD + filler)
EOF
size_of() { stat -c %s "$1"; }
sha_of() { sha256sum <"$1" | cut -d' ' -f1; }
[ "$(size_of "$B/prose")" -ge 16384 ] || die "prose body too small"
[ "$(size_of "$B/card-after-limit")" -gt $((2 * INSPECT)) ] || die "card-after-limit too small"

# post LABEL URL BODYFILE [CURL ARGS]: POST the file through the proxy, head in
# $T/LABEL.h and body in $T/LABEL.out; prints the status code.
post() {
    local label=$1 url=$2 file=$3
    shift 3
    pcurl -D "$T/$label.h" -o "$T/$label.out" -w '%{http_code}' --data-binary "@$file" "$@" "$url"
}

# path_of URL: the path of an absolute URL
path_of() {
    local p=${1#*://*/}
    echo "/${p%%\?*}"
}

# blocked DESC URL BODY RULE KINDS [CURL ARGS]: POSTing BODY to URL gets 403 from
# RULE, the origin never sees it, and its audit line has "dlp" == KINDS
# (a Python list expression, compared as a set).
blocked() {
    local desc=$1 url=$2 body=$3 rule=$4 kinds=$5 label code path
    shift 5
    label=blk.$(basename "$body").$RANDOM
    path=$(path_of "$url")
    code=$(post "$label" "$url" "$B/$body" "$@")
    assert_eq "$desc: 403" 403 "$code"
    assert_match "$desc: Proxy-Status names $rule" \
        "^Proxy-Status: aigate; error=http_request_denied; details=\"rule=$rule\"" \
        "$(tr -d '\r' <"$T/$label.h")"
    assert_eq "$desc: the origin never received it" 0 "$(origin_count "\"target\": \"$path\"")"
    assert_eq "$desc: audit block line with dlp $kinds" 1 "$(wait_audit "$AUDIT" \
        "d['path'] == '$path' and d['method'] == 'POST' and d['action'] == 'block' and d['status'] == 403 and d['rule'] == '$rule' and sorted(d.get('dlp') or []) == sorted($kinds)")"
}

# forwarded DESC URL BODY [CURL ARGS]: POSTing BODY to URL (an /echo path of
# origin.py) gets 200 and the origin received exactly BODY's bytes; the audit
# line is an allow with no "dlp" (nothing found).
forwarded() {
    local desc=$1 url=$2 body=$3 label code path
    shift 3
    label=fwd.$(basename "$body").$RANDOM
    path=$(path_of "$url")
    code=$(post "$label" "$url" "$B/$body" "$@")
    assert_eq "$desc: 200 from the origin" 200 "$code"
    assert_eq "$desc: the origin received it once" 1 "$(origin_count "\"target\": \"$path\"")"
    assert_eq "$desc: origin got $(size_of "$B/$body") bytes" "$(size_of "$B/$body")" \
        "$(jget 'd["body_len"]' <"$T/$label.out" 2>/dev/null)"
    assert_eq "$desc: origin got the same bytes (SHA-256)" "$(sha_of "$B/$body")" \
        "$(jget 'd["body_sha256"]' <"$T/$label.out" 2>/dev/null)"
    assert_eq "$desc: audit allow line without dlp" 1 "$(wait_audit "$AUDIT" \
        "d['path'] == '$path' and d['action'] == 'allow' and d['status'] == 200 and 'dlp' not in d")"
}

JSON='Content-Type: application/json'
FORM='Content-Type: application/x-www-form-urlencoded'
TEXT='Content-Type: text/plain; charset=utf-8'

# ---- plainly written personal data: blocked, never forwarded ------------------------
blocked "RRN in a chat prompt" "$GPT/backend-api/conversation" rrn no-personal-data '["kr-rrn"]' -H "$JSON"
blocked "card number in a chat prompt" "$GPT/dlp/card" card no-personal-data '["credit-card"]' -H "$JSON"
blocked "card to an uncatalogued host" "$OT/echo/card" card-plain no-personal-data '["credit-card"]' -H "$TEXT"
blocked "RRN, card, e-mail and phone at once: every kind found is listed" "$GPT/dlp/several" several \
    no-personal-data '["kr-rrn", "credit-card", "email", "phone-kr"]' -H "$JSON"
pcurl -H 'Accept: text/html' -D "$T/html.h" -o "$T/html.out" -H "$JSON" --data-binary "@$B/card" "$GPT/dlp/card-html"
assert_match "a browser gets the HTML block page" '<html' "$(cat "$T/html.out")"
assert_contains "the block page names the rule" "$(cat "$T/html.out")" no-personal-data
assert_not_contains "the block page does not echo the card number" "$(cat "$T/html.out")" '4111 1111'

# ---- hidden in encodings: still blocked ----------------------------------------------
blocked "RRN as JSON \\u escapes" "$GPT/dlp/rrn-json-u" rrn-json-u no-personal-data '["kr-rrn"]' -H "$JSON"
blocked "card as JSON \\u escapes" "$GPT/dlp/card-json-u" card-json-u no-personal-data '["credit-card"]' -H "$JSON"
blocked "card as JSON \\u escapes, no Content-Type" "$OT/echo/card-json-u-noct" card-json-u \
    no-personal-data '["credit-card"]' -H 'Content-Type:'
blocked "RRN in a form, every byte %XX" "$GPT/dlp/rrn-form-pct" rrn-form-pct no-personal-data '["kr-rrn"]' -H "$FORM"
blocked "card in a form with '+' for spaces" "$GPT/dlp/card-form-plus" card-form-plus \
    no-personal-data '["credit-card"]' -H "$FORM"
blocked "card in a gzip body" "$GPT/dlp/card-gzip" card-gzip no-personal-data '["credit-card"]' \
    -H "$JSON" -H 'Content-Encoding: gzip'
blocked "RRN in a deflate body" "$GPT/dlp/rrn-deflate" rrn-deflate no-personal-data '["kr-rrn"]' \
    -H "$JSON" -H 'Content-Encoding: deflate'
blocked "RRN as JSON escapes inside gzip" "$GPT/dlp/rrn-gzip-json-u" rrn-gzip-json-u \
    no-personal-data '["kr-rrn"]' -H "$JSON" -H 'Content-Encoding: gzip'
blocked "card in a chunked body" "$GPT/dlp/card-chunked" card no-personal-data '["credit-card"]' \
    -H "$JSON" -H 'Transfer-Encoding: chunked'
blocked "card in a multipart file upload" "$GPT/dlp/upload" card-multipart no-personal-data '["credit-card"]' \
    -H "Content-Type: multipart/form-data; boundary=$BOUNDARY"
# A label cannot hide plain text: a coding the proxy cannot undo, or a body
# that is not the stream its label says, is read as it came.
blocked "card labelled Content-Encoding: br" "$GPT/dlp/card-br" card no-personal-data \
    '["credit-card"]' -H "$JSON" -H 'Content-Encoding: br'
blocked "card in plain text labelled gzip" "$GPT/dlp/card-fake-gzip" card no-personal-data \
    '["credit-card"]' -H "$JSON" -H 'Content-Encoding: gzip'
# A transfer coding besides chunked (accepted, as llhttp does) is undone too.
"$PY" - "$B/card" "$GPT/dlp/card-te-gzip" >"$T/te-gzip.req" <<'PYEOF'
import gzip, sys
body = gzip.compress(open(sys.argv[1], "rb").read())
head = ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"
        % (sys.argv[2], sys.argv[2].split("/")[2]))
sys.stdout.buffer.write(head.encode() + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
PYEOF
assert_eq "card under Transfer-Encoding: gzip, chunked: 403" "403 closed" \
    "$(raw_req --summary <"$T/te-gzip.req")"
assert_eq "card under Transfer-Encoding: gzip, chunked: the origin never received it" 0 \
    "$(origin_count '"target": "/dlp/card-te-gzip"')"
# A client that waits for 100 Continue (curl gives up waiting after 1 s).
t0=$(now_ms)
blocked "card behind Expect: 100-continue" "$GPT/dlp/card-expect" card no-personal-data '["credit-card"]' \
    -H "$JSON" -H 'Expect: 100-continue'
echo "# Expect: 100-continue with a body to inspect took $(($(now_ms) - t0)) ms"

# ---- e-mail: only on chatgpt /backend-api/*; elsewhere found, logged, allowed ---------
blocked "e-mail to chatgpt /backend-api/*" "$GPT/backend-api/mail" mail no-email-to-chat '["email"]' -H "$JSON"
# Rule no-personal-data needs the body anyway, so the e-mail is found and logged.
code=$(post mail-ot "$OT/echo/mail-ot" "$B/mail" -H "$JSON")
assert_eq "e-mail to another host: 200" 200 "$code"
assert_eq "e-mail to another host: forwarded intact" "$(sha_of "$B/mail")" \
    "$(jget 'd["body_sha256"]' <"$T/mail-ot.out" 2>/dev/null)"
assert_eq "e-mail to another host: allow line listing dlp email" 1 "$(wait_audit "$AUDIT" \
    'd["host"] == "origin.test" and d["path"] == "/echo/mail-ot" and d["action"] == "allow" and d["rule"] == "default" and d.get("dlp") == ["email"]')"
code=$(post mail-gpt "$GPT/echo/mail-gpt" "$B/mail" -H "$JSON")
assert_eq "e-mail to chatgpt outside /backend-api/: 200" 200 "$code"

# ---- custom pattern ---------------------------------------------------------------------
blocked "custom pattern PROJECT-[0-9]{4}" "$GPT/dlp/project" project no-project-codes '["custom:project"]' -H "$JSON"
blocked "custom pattern through a JSON escape" "$OT/echo/project-json-u" project-json-u \
    no-project-codes '["custom:project"]' -H "$JSON"
assert_eq "audit spells the custom kind custom:project" 2 \
    "$(audit_count "$AUDIT" 'd.get("dlp") == ["custom:project"] and d["rule"] == "no-project-codes"')"
forwarded "near misses of the custom pattern" "$GPT/echo/project-miss" project-miss -H "$JSON"

# ---- clean bodies: forwarded byte for byte ----------------------------------------------
forwarded "16 KiB prose prompt (JSON)" "$GPT/echo/prose" prose -H "$JSON"
forwarded "numbers failing Luhn, check digit, date, issuer" "$GPT/echo/near-miss" near-miss -H "$JSON"
forwarded "16 KiB prose prompt, chunked" "$GPT/echo/prose-chunked" prose -H "$JSON" -H 'Transfer-Encoding: chunked'
forwarded "16 KiB prose prompt, gzip (forwarded compressed)" "$GPT/echo/prose-gzip" prose-gzip \
    -H "$JSON" -H 'Content-Encoding: gzip'
forwarded "prose to an uncatalogued host" "$OT/echo/prose-ot" prose -H "$JSON"
forwarded "prose behind Expect: 100-continue" "$GPT/echo/prose-expect" prose -H "$JSON" -H 'Expect: 100-continue'
# While it waits for a body to inspect, the proxy answers "100 Continue" itself
# (RFC 9110 10.1.1), once: a client that waits for it does not stall.
t0=$(now_ms)
code=$(post expect-wait "$GPT/echo/prose-expect-wait" "$B/prose" -H "$JSON" -H 'Expect: 100-continue' \
    --expect100-timeout 30)
t1=$(now_ms)
assert_eq "client waiting 30 s for 100 Continue: 200" 200 "$code"
assert_le "client waiting 30 s for 100 Continue: answered in under 5 s ($((t1 - t0)) ms)" "$((t1 - t0))" 5000
assert_eq "client waiting for 100 Continue: exactly one 100 reached it" 1 \
    "$(grep -c '^HTTP/1.1 100' "$T/expect-wait.h")"
hdrs=$(origin_reqs '"target": "/echo/prose-gzip"')
assert_contains "gzip body: Content-Encoding passed on to the origin" "$hdrs" '"Content-Encoding", "gzip"'

# ---- limits.max_body_inspect_bytes: only the first $INSPECT bytes are read ----------------
forwarded "card after $((2 * INSPECT)) bytes of text (beyond the limit): not seen" \
    "$GPT/echo/card-after-limit" card-after-limit -H "$TEXT"
forwarded "the same, chunked" "$GPT/echo/card-after-limit-chunked" card-after-limit \
    -H "$TEXT" -H 'Transfer-Encoding: chunked'
blocked "card at the start of a body larger than the limit" "$GPT/dlp/card-first-big" card-first-big \
    no-personal-data '["credit-card"]' -H "$TEXT"
blocked "card just inside the limit" "$GPT/dlp/card-before-limit" card-before-limit \
    no-personal-data '["credit-card"]' -H "$TEXT"
blocked "card just inside the limit, chunked" "$GPT/dlp/card-before-limit-chunked" card-before-limit \
    no-personal-data '["credit-card"]' -H "$TEXT" -H 'Transfer-Encoding: chunked'

# ---- bodies as the network delivers them -------------------------------------------------
# The card split over chunk boundaries, all in one write.
printf 'POST %s/dlp/split-chunks HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n10\r\n{"p":"card 4111 \r\n6\r\n1111 1\r\n13\r\n111 1111 and more"}\r\n0\r\n\r\n' \
    "$GPT" "${GPT#http://}" | raw_req --summary >"$T/split.out"
assert_eq "card split over three chunks: 403" "403 closed" "$(cat "$T/split.out")"
assert_eq "card split over three chunks: never forwarded" 0 "$(origin_count '"target": "/dlp/split-chunks"')"
# Bodies trickling in after the head (200 ms apart, 1.2 s in all, longer than
# header_timeout_ms): a chunked one with the card split over two writes, and a
# clean one with a length.  Both at once.
"$PY" - "$PROXY_PORT" "$GPT" >"$T/slow.out" <<'EOF'
import hashlib, socket, sys, threading, time

port, gpt = int(sys.argv[1]), sys.argv[2].encode()
CLEAN = b'{"prompt":"Please tidy up these meeting notes: budget, hiring plan, and the Q3 roadmap."}'
res = {}

def run(name, head, pieces):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    for p in pieces:
        time.sleep(0.2)
        s.sendall(p)
    s.settimeout(5)
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass
    res[name] = data

card = [b"10\r\n", b'{"p":"card 4111 ', b"\r\n9\r\n1111 1111", b"\r\n", b"a\r\n 1111 end\r\n", b"0\r\n\r\n"]
t1 = threading.Thread(target=run, args=("card", b"POST " + gpt + b"/dlp/slow-card HTTP/1.1\r\n"
    b"Host: " + gpt[7:] + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    b"Connection: close\r\n\r\n", card))
t2 = threading.Thread(target=run, args=("clean", b"POST " + gpt + b"/echo/slow-clean HTTP/1.1\r\n"
    b"Host: " + gpt[7:] + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n" % len(CLEAN), [CLEAN[i:i + 15] for i in range(0, len(CLEAN), 15)]))
t1.start(); t2.start(); t1.join(); t2.join()
for name in ("card", "clean"):
    print(name, res.get(name, b"").split(b"\r\n", 1)[0].decode("latin-1"))
print("want", hashlib.sha256(CLEAN).hexdigest())
print("got", res.get("clean", b"").split(b"\r\n\r\n", 1)[-1].decode("latin-1").strip())
EOF
slow=$(cat "$T/slow.out")
assert_eq "slow chunked body, card split over two writes: 403" "card HTTP/1.1 403 Forbidden" \
    "$(grep '^card' <<<"$slow")"
assert_eq "slow chunked body with the card: never forwarded" 0 "$(origin_count '"target": "/dlp/slow-card"')"
assert_eq "slow clean body: 200" "clean HTTP/1.1 200 OK" "$(grep '^clean' <<<"$slow")"
assert_eq "slow clean body: forwarded intact" "$(sed -n 's/^want //p' <<<"$slow")" \
    "$(sed -n 's/^got //p' <<<"$slow" | jget 'd["body_sha256"]' 2>/dev/null)"
# The audit "ms" is the exchange's duration; the body alone took over a second.
wait_audit "$AUDIT" 'd["path"] == "/echo/slow-clean"' >/dev/null
slow_ms=$(grep -F '"path":"/echo/slow-clean"' "$AUDIT" | jget 'd["ms"]' 2>/dev/null)
if [ "${slow_ms:-0}" -ge 1000 ]; then
    pass "slow clean body: audit ms ($slow_ms) covers the upload (>= 1000)"
else
    fail "slow clean body: audit ms is ${slow_ms:-missing}, but the upload alone took over 1000 ms"
fi

# ---- content codings in several field lines --------------------------------------------
# Two Content-Encoding lines mean the same as one line listing both (RFC 9110
# section 5.3): the body below is gzip inside gzip.
gzip -c -n <"$B/card-gzip" >"$B/card-gzip-gzip"
blocked "card in gzip inside gzip, one line 'Content-Encoding: gzip, gzip'" "$GPT/dlp/ce-list" \
    card-gzip-gzip no-personal-data '["credit-card"]' -H "$JSON" -H 'Content-Encoding: gzip, gzip'
blocked "card in gzip inside gzip, two lines 'Content-Encoding: gzip'" "$GPT/dlp/ce-lines" \
    card-gzip-gzip no-personal-data '["credit-card"]' -H "$JSON" -H 'Content-Encoding: gzip' \
    -H 'Content-Encoding: gzip'

# ---- keep-alive: a blocked body does not poison the next request on the connection -----
out=$(pcurl -H "$JSON" -w '%{http_code}\n' -o /dev/null --data-binary "@$B/card" "$GPT/dlp/ka-card" \
    --next -sS -x "http://127.0.0.1:$PROXY_PORT" -H "$JSON" -w '%{http_code} %{num_connects}\n' \
    -o "$T/ka.out" --data-binary "@$B/prose" "$GPT/echo/ka-prose")
echo "# one curl, blocked POST then clean POST: $(tr '\n' ' ' <<<"$out")(status, new connections)"
assert_match "one curl run: blocked POST, then a clean POST (the proxy may close after the block)" '^403 200 [01] $' "$(tr '\n' ' ' <<<"$out")"
assert_eq "keep-alive: the clean POST after the block reached the origin intact" "$(sha_of "$B/prose")" \
    "$(jget 'd["body_sha256"]' <"$T/ka.out" 2>/dev/null)"
assert_eq "keep-alive: the blocked one did not" 0 "$(origin_count '"target": "/dlp/ka-card"')"

# ---- inside HTTPS -------------------------------------------------------------------------
# Intercepted (chatgpt.com is catalogued): the body is seen.
code=$(pcurl --cacert "$CA" -D "$T/tls-card.h" -o "$T/tls-card.out" -w '%{http_code}' -H "$JSON" \
    --data-binary "@$B/card" "$SGPT/dlp/tls-card")
assert_eq "intercepted HTTPS: card number blocked with 403 inside TLS" 403 "$code"
assert_match "intercepted HTTPS: Proxy-Status names the rule" 'details="rule=no-personal-data"' \
    "$(tr -d '\r' <"$T/tls-card.h")"
assert_eq "intercepted HTTPS: audit block line with dlp credit-card" 1 "$(wait_audit "$AUDIT" \
    'd["path"] == "/dlp/tls-card" and d["scheme"] == "https" and d["tls"] == "intercept" and d["action"] == "block" and d["rule"] == "no-personal-data" and d.get("dlp") == ["credit-card"]')"
code=$(pcurl --cacert "$CA" -o /dev/null -w '%{http_code}' -H "$JSON" -H 'Content-Encoding: gzip' \
    --data-binary "@$B/rrn-gzip-json-u" "$SGPT/dlp/tls-rrn-gzip")
assert_eq "intercepted HTTPS: RRN as JSON escapes in gzip blocked" 403 "$code"
code=$(pcurl --cacert "$CA" -o "$T/tls-prose.out" -w '%{http_code}' -H "$JSON" \
    --data-binary "@$B/prose" "$SGPT/echo/tls-prose")
assert_eq "intercepted HTTPS: clean prose 200" 200 "$code"
assert_eq "intercepted HTTPS: clean prose reached the origin intact" "$(sha_of "$B/prose")" \
    "$(jget 'd["body_sha256"]' <"$T/tls-prose.out" 2>/dev/null)"
assert_eq "intercepted HTTPS: the blocked requests never reached the origin" 0 \
    "$(origin_count '"target": "/dlp/tls-')"
# Blind tunnel (origin.test is not catalogued): the proxy cannot see the body.
code=$(pcurl --cacert "$PKI/ca.pem" -o "$T/tun.out" -w '%{http_code}' -H "$JSON" \
    --data-binary "@$B/card" "$SOT/echo/tunnel-card")
assert_eq "blind CONNECT tunnel: the body is not seen, the card reaches the origin" 200 "$code"
assert_eq "blind CONNECT tunnel: intact" "$(sha_of "$B/card")" \
    "$(jget 'd["body_sha256"]' <"$T/tun.out" 2>/dev/null)"
assert_eq "blind CONNECT tunnel: one tunnel line, allowed, no dlp" 1 "$(wait_audit "$AUDIT" \
    'd["method"] == "CONNECT" and d["host"] == "origin.test" and d["tls"] == "tunnel" and d["action"] == "allow" and "dlp" not in d')"

# ---- the audit log names kinds, never the data -----------------------------------------
stop_proxy
assert_eq "proxy exits 0 on SIGTERM" 0 "$PROXY_RC"
# (random hex ids and chain values are left out: they may hold any digits by chance)
log=$(sed -E 's/"(id|chain)":"[0-9a-f]+"//g' "$AUDIT")
for secret in 900101 1234568 4111 alice@example 'alice\u0040' PROJECT-4711 010-1234; do
    assert_not_contains "no [$secret] in the audit log" "$log" "$secret"
    assert_not_contains "no [$secret] in the proxy's log" "$(cat "$PROXY_LOG")" "$secret"
done
assert_eq "audit: every line parses as JSON" "$(grep -c . "$AUDIT")" "$(audit_count "$AUDIT" 'True')"
out=$("$AIGATE" -c "$T/aigate.conf" --verify-log "$AUDIT" 2>&1)
assert_eq "audit log verifies (--verify-log): exit 0" 0 "$?"
