#!/bin/bash
# The proxy's own pages in Korean and English per Accept-Language (issue 11,
# defect 6): the block page, the error pages (4xx and 5xx) and the 407 page,
# as HTML and as text/plain, with Content-Language and Vary.
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
cat >"$T/policy.conf" <<'EOP'
policy = ( { name = "ban-deepseek"; action = "block"; services = [ "deepseek" ];
             reason = "DeepSeek is banned for business use."; } );
EOP
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf "audit : { path = \"$T/audit.jsonl\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"
KO='Accept-Language: ko-KR,ko;q=0.9,en-US;q=0.8'
EN='Accept-Language: en-US,en;q=0.9,ko;q=0.5'
HTML='Accept: text/html'
DS="http://chat.deepseek.com:$ORIGIN_PORT/"

# get NAME ARGS...: head in $T/NAME.h (CR stripped), body in $T/NAME.b
get() {
    local n=$1
    shift
    pcurl -D "$T/$n.raw" -o "$T/$n.b" "$@" 2>/dev/null
    tr -d '\r' <"$T/$n.raw" >"$T/$n.h"
}

get bko "$DS" -H "$HTML" -H "$KO"
assert_match "block page, ko: 403" '^HTTP/1\.1 403' "$(head -n1 "$T/bko.h")"
assert_match "block page, ko: Content-Language: ko" '^Content-Language: ko$' "$(cat "$T/bko.h")"
assert_match "block page, ko: Vary names Accept-Language" '^Vary: .*Accept-Language' "$(cat "$T/bko.h")"
assert_contains "block page, ko: <html lang=\"ko\">" "$(cat "$T/bko.b")" '<html lang="ko">'
assert_contains "block page, ko: the Korean heading" "$(cat "$T/bko.b")" '이용이 차단되었습니다'
get ben "$DS" -H "$HTML" -H "$EN"
assert_match "block page, en: Content-Language: en" '^Content-Language: en$' "$(cat "$T/ben.h")"
assert_contains "block page, en: <html lang=\"en\">" "$(cat "$T/ben.b")" '<html lang="en">'
get bkt "$DS" -H "$KO"
assert_match "block, text/plain, ko" '^Content-Type: text/plain' "$(cat "$T/bkt.h")"
assert_contains "block, text/plain, ko: Korean text" "$(cat "$T/bkt.b")" '이용이 차단되었습니다'
get bet "$DS" -H "$EN"
assert_contains "block, text/plain, en: English text" "$(cat "$T/bet.b")" 'is blocked'

# Error pages: a 400 the proxy answers and a 502 (connection refused).
get eko "http://origin.test:1/" -H "$HTML" -H "$KO"
assert_match "502 page, ko: status" '^HTTP/1\.1 502' "$(head -n1 "$T/eko.h")"
assert_match "502 page, ko: Content-Language: ko" '^Content-Language: ko$' "$(cat "$T/eko.h")"
assert_contains "502 page, ko: the Korean title" "$(cat "$T/eko.b")" '원 서버에 연결할 수 없습니다'
assert_contains "502 page, ko: <html lang=\"ko\">" "$(cat "$T/eko.b")" '<html lang="ko">'
get een "http://origin.test:1/" -H "$HTML" -H "$EN"
assert_contains "502 page, en: English title" "$(cat "$T/een.b")" 'Bad gateway'
printf 'GET http://origin.test:%s/ HTTP/1.1\r\nHost: other.test\r\nAccept-Language: ko\r\n\r\n' \
    "$ORIGIN_PORT" | raw_req --timeout 2 >"$T/400.raw"
assert_match "400 (Host mismatch), ko, text/plain" '^HTTP/1\.1 400' "$(head -n1 "$T/400.raw")"
assert_contains "400, ko: Korean text" "$(cat "$T/400.raw")" '잘못된 요청입니다'

stop_proxy
# 407 with Basic authentication
start_proxy "$T" "$(proxy_conf "auth : { mode = \"basic\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";")"
get ako "http://origin.test:$ORIGIN_PORT/" -H "$HTML" -H "$KO"
assert_match "407, ko" '^HTTP/1\.1 407' "$(head -n1 "$T/ako.h")"
assert_contains "407, ko: Korean title" "$(cat "$T/ako.b")" '프록시 로그인이 필요합니다'
get aen "http://origin.test:$ORIGIN_PORT/" -H "$HTML"
assert_contains "407 without Accept-Language: English" "$(cat "$T/aen.b")" 'Proxy authentication required'
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
