#!/usr/bin/env bash
# contrib/bench/ws_bench.sh — WebSocket echo through aigate against a blind
# CONNECT tunnel (through the same aigate) and no proxy at all, in one run.
# See contrib/bench/README.md.
#
# ws_bench (ws_bench.c) is both the echo origin (plain on one port, TLS with a
# throw-away certificate for api.openai.com on another) and the load
# generator.  aigate runs twice, workers = 1: without a dlp rule (policy:
# allow everything) and with the shipped no-personal-data rule (every
# message the client sends is parsed, reassembled and scanned).  Scenarios:
#   ws       ws:// to 127.0.0.1: direct; CONNECT tunnel; aigate's WebSocket
#            relay (absolute-form upgrade), without and with the dlp rule
#   wss      wss://: direct; CONNECT tunnel to 127.0.0.1 (not decrypted);
#            intercepted (api.openai.com is catalogued), without and with dlp
# each with small messages (128 B, 8 connections, 32 in flight each: msgs/s)
# and large ones (64 KiB, 4 connections, 4 in flight: MB/s).  aigate on CPU 0,
# the generator and the origin on CPU 1; ROUNDS interleaved rounds, medians.
#
# Knobs: ROUNDS (3), DURATION (s per run, 5), QUICK=1 (1 round of 2 s runs),
# AIGATE (build/aigate), PORT0 (first of 4 ports, 24128), KEEP=1.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AIGATE=${AIGATE:-$root/build/aigate}
if [ "${QUICK:-0}" = 1 ]; then ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2}; fi
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5}
PORT0=${PORT0:-24128}
WS=$PORT0 WSS=$((PORT0 + 1)) PA=$((PORT0 + 2)) PB=$((PORT0 + 3))
AI_HOST=api.openai.com # catalogued (openai-api): intercepted
PROXY_CPU=0 LOAD_CPU=1

for t in cc pkg-config taskset openssl; do
    command -v "$t" >/dev/null || { echo "ws_bench: $t missing" >&2; exit 2; }
done
[ -x "$AIGATE" ] || { echo "ws_bench: $AIGATE missing (make build/aigate)" >&2; exit 2; }
for p in $WS $WSS $PA $PB; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "ws_bench: port $p is in use; set PORT0" >&2
        exit 2
    fi
done

work=$(mktemp -d /tmp/aigate-wsbench.XXXXXX)
cp "$AIGATE" "$work/aigate.bin" # a rebuild during the run must not change what is measured
AIGATE=$work/aigate.bin
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
raw="$here/results/ws-$stamp.raw"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ "${KEEP:-0}" = 1 ] && echo "scratch kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck disable=SC2046 # pkg-config prints several words
cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$work/ws_bench" "$here/ws_bench.c" \
    $(pkg-config --cflags --libs libevent libevent_openssl openssl)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$work/key.pem" -out "$work/cert.pem" -subj "/CN=$AI_HOST" \
    -addext "subjectAltName=DNS:$AI_HOST,DNS:localhost,IP:127.0.0.1" 2>/dev/null
"$AIGATE" --gen-ca "$work/ca" >/dev/null
echo "127.0.0.1 $AI_HOST" >"$work/hosts"

taskset -c $LOAD_CPU "$work/ws_bench" server "$WS" &
pids+=($!)
taskset -c $LOAD_CPU "$work/ws_bench" server "$WSS" "$work/cert.pem" "$work/key.pem" &
pids+=($!)

# proxy NAME PORT POLICY: aigate (1 worker, audit on) on CPU 0
proxy() {
    mkdir -p "$work/$1"
    cat >"$work/$1/aigate.conf" <<EOF
listen = [ "127.0.0.1:$2" ];
workers = 1;
connect_ports = [ $WS, $WSS ];
limits : { idle_timeout_ms = 600000; shutdown_grace_ms = 1000; };
tls : { intercept = true; ca_cert = "$work/ca/ca.pem"; ca_key = "$work/ca/ca.key";
        upstream_ca_file = "$work/cert.pem"; };
audit : { path = "$work/$1/audit.jsonl"; };
dns : { hosts_file = "$work/hosts"; };
@include "$root/rules/services.conf"
policy = ( $3 { name = "default"; action = "allow"; } );
EOF
    taskset -c $PROXY_CPU "$AIGATE" -f -c "$work/$1/aigate.conf" 2>"$work/$1/log" &
    pids+=($!)
}
proxy nodlp "$PA" ""
proxy dlp "$PB" '{ name = "no-personal-data"; action = "block"; dlp = [ "kr-rrn", "credit-card" ]; },'
for p in $WS $WSS $PA $PB; do
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break; sleep 0.1; done
done

# run ROUND SCENARIO VARIANT SIZE ARGS...: one ws_bench client run, a raw line
run() {
    local round=$1 scen=$2 var=$3 size=$4 conns=8 window=32 out
    shift 4
    [ "$size" -gt 4096 ] && conns=4 window=4
    out=$(taskset -c $LOAD_CPU "$work/ws_bench" client "$@" --size "$size" --conns "$conns" \
        --window "$window" --seconds "$DURATION") || out="failed"
    echo "$round $scen-$size $var $out" | tee -a "$raw"
}

for round in $(seq "$ROUNDS"); do
    for size in 128 65536; do
        run "$round" ws direct "$size" 127.0.0.1 "$WS"
        run "$round" ws tunnel "$size" 127.0.0.1 "$WS" --proxy "127.0.0.1:$PA" --connect
        run "$round" ws relay "$size" 127.0.0.1 "$WS" --proxy "127.0.0.1:$PA"
        run "$round" ws relay-dlp "$size" 127.0.0.1 "$WS" --proxy "127.0.0.1:$PB"
        run "$round" wss direct "$size" "$AI_HOST" "$WSS" --tls
        run "$round" wss tunnel "$size" 127.0.0.1 "$WSS" --proxy "127.0.0.1:$PA" --connect --tls
        run "$round" wss relay "$size" "$AI_HOST" "$WSS" --proxy "127.0.0.1:$PA" --connect --tls
        run "$round" wss relay-dlp "$size" "$AI_HOST" "$WSS" --proxy "127.0.0.1:$PB" --connect --tls
    done
done

# The table: medians per scenario and variant; relay and relay-dlp also as a ratio to the tunnel.
python3 - "$raw" <<'EOF' | tee "${raw%.raw}.txt"
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) < 3:
        continue
    kv = dict(re.findall(r"(\w+)=([\d.]+)", line))
    key = "mb_s" if f[1].endswith("65536") else "msgs_s"
    if key in kv:
        rows.setdefault(f[1], {}).setdefault(f[2], []).append(float(kv[key]))
cols = ["direct", "tunnel", "relay", "relay-dlp"]
print("%-10s %-7s" % ("scenario", "unit") + "".join("%12s" % c for c in cols) +
      "%14s%18s" % ("relay/tunnel", "relay-dlp/tunnel"))
for scen in sorted(rows, key=lambda s: (s.split("-")[0], int(s.split("-")[1]))):
    med = {c: statistics.median(rows[scen][c]) for c in cols if c in rows[scen]}
    unit = "MB/s" if scen.endswith("65536") else "msgs/s"
    line = "%-10s %-7s" % (scen, unit) + "".join(
        "%12s" % ("%.0f" % med[c] if c in med else "-") for c in cols)
    t = med.get("tunnel")
    for c, width in (("relay", 14), ("relay-dlp", 18)):
        line += "%*s" % (width, "%.0f%%" % (100 * med[c] / t) if t and c in med else "-")
    print(line)
EOF
echo "raw: $raw"
