#!/bin/bash
# Bodies of every size around the proxy's read limits come through
# interception whole and on time (curl, TLS origin.py echoing each body back).
# On an intercepted connection OpenSSL reads the sockets itself, and a read
# limit can stop the proxy half-way through a TLS record: the rest waits
# inside OpenSSL, where the socket never reports it.  Uploads (with a dlp rule,
# so each body is held for inspection first; fixed length and chunked) and
# downloads (fixed length and chunked) of sizes just below, at and above
# limits.max_header_bytes + 4096 and the inspection window must each finish
# within seconds, byte for byte, on new and on kept-alive connections.
source "$(dirname "$0")/lib.sh"

HEAD_MAX=16384 # limits.max_header_bytes: the client's read limit is 4096 above
INSPECT=8192   # limits.max_body_inspect_bytes

PKI=$T/pki
make_cert "$PKI" origin chatgpt.com
printf '127.0.0.1 chatgpt.com\n' >"$T/hosts"
TLS_PORT=$(free_port)
: >"$T/origin.jsonl"
spawn "$PY" "$E2E/origin.py" --mode http --port "$TLS_PORT" --log "$T/origin.jsonl" \
    --tls-cert "$PKI/origin.pem" --tls-key "$PKI/origin.key" --ready "$T/tls.ready"
wait_file "$T/tls.ready" 10 || die "origin.py (TLS) did not start"

"$AIGATE" --gen-ca "$T/ca" >/dev/null 2>&1 || die "--gen-ca failed"
CA=$T/ca/ca.pem
cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "no-cards"; action = "block"; dlp = [ "credit-card" ]; },
  { name = "default"; action = "allow"; }
);
EOF
PROXY_PORT=$(free_port)
start_proxy "$T" "$(CONNECT_PORTS="443, $TLS_PORT" \
    LIMITS="max_header_bytes = $HEAD_MAX; max_body_inspect_bytes = $INSPECT; idle_timeout_ms = 30000;" \
    proxy_conf \
    "tls : { intercept = true; ca_cert = \"$CA\"; ca_key = \"$T/ca/ca.key\";" \
    "        upstream_ca_file = \"$PKI/ca.pem\"; };" \
    "@include \"$ROOT/rules/services.conf\"" \
    '@include "policy.conf"')"
S=https://chatgpt.com:$TLS_PORT

LIMIT=$((HEAD_MAX + 4096))
SIZES="1 4096 $((INSPECT - 1)) $INSPECT $((INSPECT + 1)) 16383 16384 16385 $((LIMIT - 1)) $LIMIT
  $((LIMIT + 1)) $((LIMIT + 16384)) 32768 36864 40000 65536 69631 69632 69633 100000 262145 1048576
  3000001"
mkdir -p "$T/b"
# letters only: no digits a card-number scan could match
"$PY" - "$T/b" $SIZES <<'EOF'
import os, sys
alpha = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \n"
for n in sys.argv[2:]:
    n = int(n)
    with open(os.path.join(sys.argv[1], str(n)), "wb") as f:
        f.write(bytes(alpha[(i * 7 + i // 53) % len(alpha)] for i in range(n)))
EOF

# scurl ARGS...: curl through the proxy trusting only our CA, 15 s at most
scurl() {
    pcurl --cacert "$CA" --max-time 15 "$@"
}

# ---- uploads, each on a new connection (the origin connection is made meanwhile) ---
for n in $SIZES; do
    code=$(scurl -o "$T/up.$n" -w '%{http_code}' --data-binary "@$T/b/$n" "$S/body/up-$n")
    assert_eq "upload of $n bytes: 200 within 15 s" 200 "$code"
    cmp -s "$T/b/$n" "$T/up.$n" && pass "upload of $n bytes: echoed byte for byte" ||
        fail "upload of $n bytes: echo differs ($(stat -c %s "$T/up.$n" 2>/dev/null) bytes back)"
done
for n in $((LIMIT + 1)) 69633 1048576; do
    code=$(scurl -o "$T/upc.$n" -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
        --data-binary "@$T/b/$n" "$S/body/upc-$n")
    assert_eq "chunked upload of $n bytes: 200 within 15 s" 200 "$code"
    cmp -s "$T/b/$n" "$T/upc.$n" && pass "chunked upload of $n bytes: echoed byte for byte" ||
        fail "chunked upload of $n bytes: echo differs"
done

# ---- uploads one after another on one kept-alive connection -------------------------
args=()
for n in $SIZES; do
    args+=(--next --cacert "$CA" --max-time 15 -x "http://127.0.0.1:$PROXY_PORT" -s
        -o "$T/ka.$n" -w '%{num_connects}\n' --data-binary "@$T/b/$n" "$S/body/ka-$n")
done
curl "${args[@]:1}" >"$T/ka.connects" 2>"$T/ka.err"
ok=0
for n in $SIZES; do cmp -s "$T/b/$n" "$T/ka.$n" && ok=$((ok + 1)); done
assert_eq "kept-alive uploads: every body echoed byte for byte" "$(echo $SIZES | wc -w)" "$ok"
assert_eq "kept-alive uploads: one connection to the proxy" 1 "$(awk '{ n += $1 } END { print n }' "$T/ka.connects")"

# ---- chunked downloads, kept alive --------------------------------------------------
args=()
for n in 16385 $((LIMIT + 1)) 69633 262145; do
    args+=(--next --cacert "$CA" --max-time 15 -x "http://127.0.0.1:$PROXY_PORT" -s
        -o "$T/ch.$n" "$S/chunked?bytes=$n")
done
curl "${args[@]:1}" 2>"$T/ch.err"
for n in 16385 $((LIMIT + 1)) 69633 262145; do
    assert_eq "chunked download of $n bytes: all of it" "$n" "$(stat -c %s "$T/ch.$n" 2>/dev/null)"
done

stop_proxy
assert_eq "proxy exits 0 on SIGTERM" 0 "$PROXY_RC"
