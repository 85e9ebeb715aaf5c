#!/bin/bash
# A 100 MiB download streams through the proxy: the bytes are intact and the
# proxy's resident memory stays bounded, also behind a slow reader.
#
# Under ASan, freed memory sits in a quarantine (256 MiB by default) and stays
# resident, which would count every byte that ever went through; a small
# quarantine keeps the measure about what the proxy holds at once.
source "$(dirname "$0")/lib.sh"

BOUND_KB=$((60 * 1024)) # growth allowed over the idle RSS

start_nginx "$T/nginx"
make_big "$NGINX_HTML/big.bin"
write_hosts
PROXY_PORT=$(free_port)
ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=16"
start_proxy "$T" "$(LIMITS='idle_timeout_ms = 30000;' proxy_conf)"
N=http://origin.test:$NGINX_HTTP_PORT

# sample_rss FILE: the proxy's VmRSS (KiB) every 20 ms while it runs
sample_rss() {
    while alive "$PROXY_PID"; do
        rss_kb "$PROXY_PID" >>"$1" 2>/dev/null
        sleep 0.02
    done
}

pcurl -o /dev/null -o /dev/null "$N/small.txt" "$N/64k.bin" || fail "warm-up request"
idle=$(rss_kb "$PROXY_PID")
echo "idle RSS ${idle} KiB"

spawn sample_rss "$T/rss1"
sampler=$LAST_PID
pcurl --max-time 60 -o "$T/big.out" "$N/big.bin" || fail "download: curl failed"
kill "$sampler"
wait "$sampler" 2>/dev/null
assert_eq "100 MiB body intact" "$(sha256sum <"$NGINX_HTML/big.bin")" "$(sha256sum <"$T/big.out")"
rm -f "$T/big.out"
peak=$(sort -n "$T/rss1" | tail -n1)
echo "peak RSS during the download ${peak} KiB ($(wc -l <"$T/rss1") samples)"
assert_le "RSS growth during a 100 MiB download (KiB)" $((peak - idle)) "$BOUND_KB"

# A slow reader: the proxy must stop reading from the origin, not buffer
spawn sample_rss "$T/rss2"
sampler=$LAST_PID
spawn curl -q -sS -x "http://127.0.0.1:$PROXY_PORT" --limit-rate 2M -o /dev/null "$N/big.bin"
slow=$LAST_PID
sleep 4
alive "$slow" || fail "slow reader ended early"
kill "$slow"
wait "$slow" 2>/dev/null
sleep 0.3
kill "$sampler"
wait "$sampler" 2>/dev/null
peak=$(sort -n "$T/rss2" | tail -n1)
echo "peak RSS behind a 2 MB/s reader ${peak} KiB"
assert_le "RSS growth behind a slow reader (KiB)" $((peak - idle)) "$BOUND_KB"

assert_eq "proxy still serves after the slow reader left" one "$(pcurl "$N/one.txt")"
