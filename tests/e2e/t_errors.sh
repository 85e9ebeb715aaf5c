#!/bin/bash
# Errors the proxy answers itself: origin refused (502), name not found (502),
# origin silent (504), each with an HTML page for a browser and a Proxy-Status
# header; loop detection on our own Via; Max-Forwards for OPTIONS and TRACE.
source "$(dirname "$0")/lib.sh"

start_origin
start_dns_nx
write_hosts
PROXY_PORT=$(free_port)
LIMITS='header_timeout_ms = 1000; idle_timeout_ms = 2000; connect_timeout_ms = 2000;'
DNS="hosts_file = \"$T/hosts\"; nameservers = [ \"127.0.0.1:$DNS_PORT\" ];"
start_proxy "$T" "$(proxy_conf)"
O=http://origin.test:$ORIGIN_PORT
BROWSER=(-H 'Accept: text/html,application/xhtml+xml,*/*;q=0.8')

# check_error NAME STATUS: the response in $T/NAME.h / $T/NAME.body is an HTML error page
check_error() {
    local h
    h=$(tr -d '\r' <"$T/$1.h")
    assert_match "$1: status $2" "^HTTP/1\.1 $2" "$(head -n1 <<<"$h")"
    assert_match "$1: Proxy-Status" '^Proxy-Status: aigate; error=[a-z_]+' "$h"
    assert_match "$1: HTML page" '^Content-Type: text/html' "$h"
    assert_match "$1: HTML body" '<(html|!doctype)' "$(tr '[:upper:]' '[:lower:]' <"$T/$1.body")"
}

# Origin port closed
closed=$(free_port)
pcurl "${BROWSER[@]}" -D "$T/refused.h" -o "$T/refused.body" "http://origin.test:$closed/x"
check_error refused 502

# Name that does not resolve (the name server answers NXDOMAIN)
t0=$(now_ms)
pcurl "${BROWSER[@]}" -D "$T/nxdomain.h" -o "$T/nxdomain.body" "http://no-such-host.invalid/x"
t=$(($(now_ms) - t0))
check_error nxdomain 502
assert_le "NXDOMAIN answered quickly (ms)" "$t" 3000

# Origin accepts and never answers: 504 after idle_timeout_ms
t0=$(now_ms)
pcurl "${BROWSER[@]}" -D "$T/slow.h" -o "$T/slow.body" "$O/slow"
t=$(($(now_ms) - t0))
check_error slow 504
assert_le "504 not before idle_timeout_ms (ms)" 1500 "$t"
assert_le "504 soon after idle_timeout_ms (ms)" "$t" 4000

# Loop detection: a request that already carries our Via is refused, not forwarded
for via in '1.1 aigate' '1.0 fred, 1.1 aigate'; do
    st=$(pcurl -o /dev/null -w '%{http_code}' -H "Via: $via" "$O/echo/loop")
    assert_match "request with Via: $via refused (508 expected)" '^[45][0-9][0-9]$' "$st"
done
assert_eq "looping requests never reached the origin" 0 "$(origin_count /echo/loop)"
assert_eq "Via of another proxy is not a loop" 200 \
    "$(pcurl -o /dev/null -w '%{http_code}' -H 'Via: 1.1 otherproxy' "$O/echo/otherproxy")"

# Max-Forwards: 0 -> OPTIONS and TRACE answered by the proxy
assert_eq "OPTIONS with Max-Forwards: 0 answered" 200 \
    "$(pcurl -o /dev/null -w '%{http_code}' -X OPTIONS -H 'Max-Forwards: 0' "$O/echo/mf0")"
pcurl -o "$T/trace0.body" -D "$T/trace0.h" -X TRACE -H 'Max-Forwards: 0' -H 'X-Trace-Me: 1' "$O/echo/mf0"
assert_match "TRACE with Max-Forwards: 0 answered" '^HTTP/1\.1 200' "$(head -n1 "$T/trace0.h")"
assert_contains "TRACE answer echoes the request" "$(cat "$T/trace0.body")" "X-Trace-Me: 1"
assert_eq "Max-Forwards: 0 requests never reached the origin" 0 "$(origin_count /echo/mf0)"

# Max-Forwards: 1 -> forwarded with Max-Forwards: 0
assert_eq "TRACE with Max-Forwards: 1 forwarded" 200 \
    "$(pcurl -o /dev/null -w '%{http_code}' -X TRACE -H 'Max-Forwards: 1' "$O/echo/mf1")"
assert_eq "origin got Max-Forwards: 0" "['0']" \
    "$(origin_reqs /echo/mf1 | jget '[v for n, v in d["headers"] if n.lower() == "max-forwards"]')"
