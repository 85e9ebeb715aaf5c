#!/bin/bash
# GET, HEAD and POST (Content-Length and chunked) through the proxy; Via both
# ways; hop-by-hop request headers removed; Host rewritten to the URL authority.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
start_origin
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf)"
N=http://origin.test:$NGINX_HTTP_PORT
O=http://origin.test:$ORIGIN_PORT

# GET: the body is identical, the response carries our Via
pcurl -D "$T/get.h" -o "$T/get.body" "$N/small.txt" || fail "GET small.txt: curl failed"
assert_eq "GET small.txt body" "$(sha256sum <"$NGINX_HTML/small.txt")" "$(sha256sum <"$T/get.body")"
assert_match "GET status 200" '^HTTP/1\.1 200' "$(head -n1 "$T/get.h")"
assert_match "response Via" '^Via:.*1\.1 aigate' "$(tr -d '\r' <"$T/get.h")"
assert_eq "nginx saw the GET" 1 "$(nginx_requests '"GET /small.txt HTTP/1.1" 200' | grep -c .)"

# Chunked and close-delimited responses arrive whole
pcurl -o "$T/chunked.out" "$O/chunked?bytes=300000" || fail "GET /chunked: curl failed"
assert_eq "chunked response body" \
    "$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import origin
sys.stdout.buffer.write(origin.pattern(300000))' "$E2E" | sha256sum)" "$(sha256sum <"$T/chunked.out")"
assert_eq "close-delimited response body" "closed-delimited body" "$(pcurl "$O/close")"

# The request the origin saw carries our Via
pcurl -o "$T/echo.json" "$O/echo/get" || fail "GET /echo: curl failed"
assert_match "request Via at the origin" '1\.1 aigate' \
    "$(jget '[v for n, v in d["headers"] if n.lower() == "via"]' <"$T/echo.json")"
assert_eq "origin saw an origin-form target" /echo/get "$(jget 'd["target"]' <"$T/echo.json")"

# HEAD: headers, no body; the connection stays usable for the next request
out=$(pcurl -sS -I "$N/small.txt" --next -x "http://127.0.0.1:$PROXY_PORT" -o "$T/after-head" \
    -w '%{http_code} %{num_connects}' "$N/one.txt")
assert_match "HEAD status" '^HTTP/1\.1 200' "$(head -n1 <<<"$out")"
assert_match "HEAD Content-Length" '^Content-Length: 1024' "$(tr -d '\r' <<<"$out")"
assert_eq "GET after HEAD on the same connection" "200 0" "$(tail -n1 <<<"$out")"
assert_eq "GET after HEAD body" one "$(cat "$T/after-head")"
printf 'HEAD %s/small.txt HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$N" "${N#http://}" |
    raw_req --timeout 3 >"$T/head.raw"
assert_match "raw HEAD answered 200 with Content-Length" '^Content-Length: 1024' \
    "$(tr -d '\r' <"$T/head.raw")"
assert_eq "raw HEAD answer ends with the header section (no body)" "$(printf '\r\n\r\n' | od -An -tx1)" \
    "$(tail -c 4 "$T/head.raw" | od -An -tx1)"

# POST with Content-Length, echoed back intact
pcurl -o "$T/post.out" --data-binary "@$NGINX_HTML/64k.bin" \
    -H 'Content-Type: application/octet-stream' "$O/body/cl" || fail "POST CL: curl failed"
assert_eq "POST Content-Length echoed" "$(sha256sum <"$NGINX_HTML/64k.bin")" "$(sha256sum <"$T/post.out")"

# POST chunked, echoed back intact; the origin got the whole body
pcurl -o "$T/postc.out" -H 'Transfer-Encoding: chunked' --data-binary "@$NGINX_HTML/64k.bin" \
    -H 'Content-Type: application/octet-stream' "$O/body/chunked" || fail "POST chunked: curl failed"
assert_eq "POST chunked echoed" "$(sha256sum <"$NGINX_HTML/64k.bin")" "$(sha256sum <"$T/postc.out")"
rec=$(origin_reqs '"/body/chunked"')
assert_eq "origin got the chunked body" 65536 "$(jget 'd["body_len"]' <<<"$rec")"

# Hop-by-hop request headers do not reach the origin; end-to-end ones do
pcurl -o "$T/hop.json" -H 'Connection: X-Foo' -H 'X-Foo: 1' -H 'Keep-Alive: timeout=5' \
    -H 'Proxy-Authorization: Basic Zm9vOmJhcg==' -H 'Proxy-Connection: keep-alive' \
    -H 'X-Keep: yes' "$O/echo/hop" || fail "hop-by-hop: curl failed"
names=$(jget '" ".join(n.lower() for n, v in d["headers"])' <"$T/hop.json")
for h in x-foo keep-alive proxy-authorization proxy-connection; do
    assert_not_contains "hop-by-hop $h removed" " $names " " $h "
done
assert_contains "end-to-end header kept" " $names " " x-keep "
assert_not_contains "Connection does not name X-Foo at the origin" \
    "$(jget '[v for n, v in d["headers"] if n.lower() == "connection"]' <"$T/hop.json")" x-foo

# Host is rewritten to the authority of the absolute URL (one that names another
# authority is refused: t_framing)
printf 'GET %s/echo/host HTTP/1.1\r\nHost: ORIGIN.Test.:%s\r\nConnection: close\r\n\r\n' "$O" "$ORIGIN_PORT" |
    raw_req --timeout 3 >"$T/host.raw"
assert_match "Host rewrite: status" '^HTTP/1\.1 200' "$(head -n1 "$T/host.raw")"
assert_eq "Host rewritten to the URL authority" "[['Host', 'origin.test:$ORIGIN_PORT']]" \
    "$(jget '[[n, v] for n, v in d["headers"] if n.lower() == "host"]' <<<"$(origin_reqs '"/echo/host"')")"
