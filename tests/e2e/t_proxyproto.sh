#!/bin/bash
# PROXY protocol from a real HAProxy (SPEC 10): connections from a
# proxy_protocol network must start with a PROXY header (v2 from
# send-proxy-v2, v1 from send-proxy); the client it names is the client for
# client_networks, auth.mode "address" and the audit line.  A listed peer
# without a valid header is closed; a PROXY header from any other address
# gets 400; nothing of either reaches the origin.
source "$(dirname "$0")/lib.sh"
command -v haproxy >/dev/null || die "haproxy is missing: make test-deps"

start_origin
write_hosts
AUDIT=$T/audit.jsonl
ADMIN=$(free_port)
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf 'proxy_protocol = [ "127.0.0.1/32" ];' \
    'client_networks = [ "127.0.0.2/32" ];' \
    'auth : { mode = "address"; };' \
    'addresses = ( { network = "127.0.0.2/32"; user = "floor-two"; } );' \
    "admin : { listen = \"127.0.0.1:$ADMIN\"; };" \
    "audit : { path = \"$AUDIT\"; };")"
V2=$(free_port)
V1=$(free_port)
conf=$(haproxy_conf "$V2" send-proxy-v2 "$PROXY_PORT:$ADMIN")
conf+=$'\n'"frontend aigate_v1
    bind 127.0.0.1:$V1
    default_backend aigate_v1
backend aigate_v1
    server n1 127.0.0.1:$PROXY_PORT send-proxy"
start_haproxy "$T/haproxy" "$conf"

O=http://origin.test:$ORIGIN_PORT
# through FRONT_PORT from SRC_ADDR
via() {
    curl -q -sS --max-time 10 --interface "$2" -x "http://127.0.0.1:$1" -o "$T/body" \
        -w '%{http_code}' "$3" 2>/dev/null
}
assert_eq "send-proxy-v2, client 127.0.0.2: served" 200 "$(via "$V2" 127.0.0.2 "$O/echo/v2")"
assert_eq "send-proxy (v1), client 127.0.0.2: served" 200 "$(via "$V1" 127.0.0.2 "$O/echo/v1")"
assert_eq "client 127.0.0.3 through HAProxy: client_networks applies to it (403)" 403 \
    "$(via "$V2" 127.0.0.3 "$O/echo/v2-outsider")"
assert_eq "audit: v2 line names the real client and its address user" 1 "$(wait_audit "$AUDIT" \
    'd["path"] == "/echo/v2" and d["client"] == "127.0.0.2" and d["user"] == "floor-two"')"
assert_eq "audit: v1 line names the real client" 1 "$(wait_audit "$AUDIT" \
    'd["path"] == "/echo/v1" and d["client"] == "127.0.0.2"')"
assert_eq "audit: the outsider's refusal names it" 1 "$(wait_audit "$AUDIT" \
    'd["client"] == "127.0.0.3" and d["status"] == 403 and d["action"] == "error"')"

# A listed peer (127.0.0.1) without a header: closed, nothing forwarded.
out=$(printf 'GET %s/echo/no-header HTTP/1.1\r\nHost: origin.test:%s\r\n\r\n' "$O" "$ORIGIN_PORT" |
    raw_req --timeout 3 --summary)
assert_eq "listed peer without a PROXY header: closed without an answer" "0 closed" "$out"
# A broken header from a listed peer: closed.
out=$(printf 'PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\nGET %s/echo/bad-header HTTP/1.1\r\nHost: origin.test:%s\r\n\r\n' \
    "$O" "$ORIGIN_PORT" | raw_req --timeout 3 --summary)
assert_eq "listed peer with an invalid PROXY header: closed" "0 closed" "$out"
assert_match "/metrics counts the refusals" '^aigate_proxy_protocol_refused_total [2-9]' \
    "$(curl -q -sS "http://127.0.0.1:$ADMIN/metrics")"

# A header from an address not in proxy_protocol: 400.
stop_proxy
mkdir -p "$T/b"
start_proxy "$T/b" "$(proxy_conf 'proxy_protocol = [ "10.0.0.0/8" ];' \
    "audit : { path = \"$T/b/audit.jsonl\"; };")"
out=$(printf 'PROXY TCP4 10.9.9.9 127.0.0.1 5555 80\r\nGET %s/echo/unlisted HTTP/1.1\r\nHost: origin.test:%s\r\n\r\n' \
    "$O" "$ORIGIN_PORT" | raw_req --timeout 3 --summary)
assert_eq "PROXY header from an unlisted address: 400" "400 closed" "$out"
out=$("$PY" -c 'import sys; sys.stdout.buffer.write(b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11, 0, 12]) + bytes([10,9,9,9,127,0,0,1,0x15,0xb3,0,80]))' |
    raw_req --timeout 3 --summary)
assert_eq "PROXY v2 header from an unlisted address: 400" "400 closed" "$out"
assert_eq "nothing of the refused connections reached the origin" 0 \
    "$(origin_count '/echo/(no-header|bad-header|unlisted)')"
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
