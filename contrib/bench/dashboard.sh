#!/usr/bin/env bash
# contrib/bench/dashboard.sh — the audit index and the dashboard API on a large log.  Not a
# test: it prints numbers (and keeps them in contrib/bench/results/dashboard-*.txt).
#
#  1. an audit log of LINES lines over DAYS days (contrib/bench/auditgen.py), laid out as aigate
#     leaves it: rotated files of ~100 MB, gzip'ed, and the live file;
#  2. index build on one core (aigate --report, pinned to CPU 0): over the log as one plain
#     file, and over the gzip'ed rotated files; wall time, lines/s, peak RSS;
#  3. GET /api/usage over the whole period (period=DAYSd) for every by=, QUERIES times each,
#     with the index built by a running aigate (the index thread's own memory too);
#  4. the proxy's keep-alive requests/s (wrk, 50 connections, a 1 KiB page from nginx; aigate
#     with one worker on CPU 0, wrk and nginx on CPU 1), ROUNDS rounds alternating without and
#     with the dashboard being queried once a second (the page's own queries: by=service,
#     by=rule, /api/recent, and by=hour for the busiest service).
#
# Targets (issue 16): build >= 500k lines/s on one core; a 30-day query < 200 ms; throughput
# with the dashboard within 5 % of without.
# Knobs: LINES (10000000), DAYS (30), QUERIES (20), DURATION (s per wrk run, 10), ROUNDS (3),
# AIGATE (build/aigate), KEEP=1 (keep the scratch directory: the log is ~4.4 GB plain),
# REUSE=DIR (a scratch directory kept by an earlier run: use its log/, skip steps 1 and 2).
set -eu
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AIGATE=${AIGATE:-$root/build/aigate}
LINES=${LINES:-10000000} DAYS=${DAYS:-30} QUERIES=${QUERIES:-20}
DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3}
HTTP=${ORIGIN_HTTP:-28180} PORT=${PROXY_PORT:-23228} ADMIN=${ADMIN_PORT:-23229}
PER_FILE=230000 # lines in one rotated file: ~100 MB, audit.rotate_bytes' default

for t in python3 wrk nginx curl taskset gzip openssl split; do
    command -v "$t" >/dev/null || { echo "dashboard bench: $t missing" >&2; exit 2; }
done
[ -x "$AIGATE" ] || { echo "dashboard bench: $AIGATE missing (make build/aigate)" >&2; exit 2; }

if [ -n "${REUSE:-}" ]; then
    work=$REUSE KEEP=1
    [ -d "$work/log" ] || { echo "dashboard bench: no $work/log to reuse" >&2; exit 2; }
    rm -rf "$work/www" "$work/tmp" "$work"/*.state "$work"/*.secret "$work/without" "$work/with"
else
    work=$(mktemp -d /tmp/aigate-dash-bench.XXXXXX)
fi
chmod 755 "$work" # nginx's workers (www-data) read www/
mkdir -p "$here/results" "$work/log" "$work/www"
out="$here/results/dashboard-$(date +%Y%m%d-%H%M%S).txt"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then echo "scratch kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "$*" | tee -a "$out"; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

say "# aigate dashboard bench: $(date -u +%FT%TZ), $(nproc) CPUs, $LINES lines over $DAYS days"
say "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"

# ---- 1. the log ---------------------------------------------------------------------
if [ -z "${REUSE:-}" ]; then
t0=$(date +%s)
python3 "$here/auditgen.py" "$LINES" "$DAYS" "$work/all.jsonl"
say "log: $(du -m "$work/all.jsonl" | cut -f1) MB plain, generated in $(($(date +%s) - t0)) s"
(cd "$work/log" && split -l "$PER_FILE" -d -a 4 "$work/all.jsonl" part.)
parts=("$work"/log/part.*)
n=${#parts[@]}
for ((i = 0; i < n - 1; i++)); do
    mv "${parts[$i]}" "$work/log/audit.jsonl.20260101T000000Z.$(printf %04d $((i + 1)))"
done
mv "${parts[$((n - 1))]}" "$work/log/audit.jsonl"
[ "$n" -gt 1 ] && gzip -1 "$work"/log/audit.jsonl.20260101T000000Z.*
say "log: $((n - 1)) rotated files ($(du -cm "$work"/log/*.gz | tail -1 | cut -f1) MB gzip'ed) and the live file"

# ---- 2. index build on one core ---------------------------------------------------
build() { # build NAME FILES...: one --report run on CPU 0
    local name=$1 t
    shift
    t=$( { /usr/bin/time -f '%e %M' taskset -c 0 "$AIGATE" --report "$@" >"$work/report.txt"; } 2>&1 | tail -1)
    read -r secs kb <<<"$t"
    say "$(printf 'build %-26s %6.2f s  %9.0f lines/s  peak RSS %5d MB' "$name" "$secs" \
        "$(awk -v l="$LINES" -v s="$secs" 'BEGIN { print l / s }')" $((kb / 1024)))"
}
cat "$work/all.jsonl" >/dev/null # the plain file in the page cache: measure parsing, not the disk
build "plain (one file)" "$work/all.jsonl"
build "gzip rotated + live" "$work"/log/audit.jsonl.*.gz "$work/log/audit.jsonl"
grep -E '^(lines|period):' "$work/report.txt" | sed 's/^/  /' | tee -a "$out"
t0=$(date +%s%3N)
cat "$work"/log/audit.jsonl.*.gz | taskset -c 0 gzip -dc >/dev/null
say "  (gzip -dc of the rotated files alone: $(($(date +%s%3N) - t0)) ms)"
rm -f "$work/all.jsonl"
fi

# ---- 3. the API ------------------------------------------------------------------------
printf 'bench:%s\n' "$(openssl passwd -6 bench-pass)" >"$work/admin.htpasswd"
cat >"$work/aigate.conf" <<CONF
listen = [ "127.0.0.1:$PORT" ];
workers = 1;
admin : { listen = "127.0.0.1:$ADMIN"; htpasswd = "admin.htpasswd"; };
audit : { path = "log/audit.jsonl"; rotate_bytes = 0; checkpoint_s = 0; };
ack : { state_file = "acks.state"; secret_file = "ack.secret"; };
limits : { idle_timeout_ms = 600000; };
CONF
t0=$(date +%s%3N)
taskset -c 0 "$AIGATE" -f -c "$work/aigate.conf" 2>"$work/aigate.log" &
pids+=($!)
aigate_pid=$!
wait_port "$ADMIN" 300 || { echo "aigate did not start: $(tail -3 "$work/aigate.log")" >&2; exit 1; }
A="http://127.0.0.1:$ADMIN"
api() { curl -s -u bench:bench-pass -o /dev/null -w '%{time_total}\n' "$A$1"; }
api "/api/usage?period=${DAYS}d" >/dev/null # waits for the first build
say "running aigate: index built and first answer after $(($(date +%s%3N) - t0)) ms;" \
    "RSS $(awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$aigate_pid/status") MB;" \
    "$(grep -o 'audit index: .*' "$work/aigate.log" | head -1)"
top=$(curl -s -u bench:bench-pass "$A/api/usage?period=${DAYS}d&limit=2" |
    python3 -c 'import json,sys; print([r["key"] for r in json.load(sys.stdin)["rows"] if r["key"]][0])')
for q in "by=service" "by=user" "by=group" "by=rule" "by=action" "by=category" "by=hour" "by=day" \
    "by=user&service=$top" "by=hour&service=$top&tz=%2B09:00" "by=service&format=csv"; do
    ms=$(for _ in $(seq "$QUERIES"); do api "/api/usage?period=${DAYS}d&$q"; done |
        awk '{ printf "%.1f\n", $1 * 1000 }' | sort -n | tr '\n' ' ')
    say "$(printf 'api %-34s median %7.1f ms  max %7.1f ms' "$q" \
        "$(tr ' ' '\n' <<<"$ms" | grep . | median)" "$(tr ' ' '\n' <<<"$ms" | grep . | tail -1)")"
done

# ---- 4. proxy throughput with and without the dashboard ---------------------------------
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 >"$work/www/1k"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000; keepalive_timeout 600s;
       client_body_temp_path $work/tmp; proxy_temp_path $work/tmp; fastcgi_temp_path $work/tmp;
       uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
       server { listen 127.0.0.1:$HTTP; root $work/www; } }
CONF
taskset -c 1 nginx -c "$work/nginx.conf"
wait_port "$HTTP" 300 || { echo "nginx did not start" >&2; exit 1; }
# The page's queries, once a second.  curl stands in for a browser elsewhere: on aigate's CPU (not
# the load's) at nice 19, so that its own start-up does not delay aigate's worker.
dashboard_loop() {
    while :; do
        for q in "usage?period=${DAYS}d&by=service" "usage?period=${DAYS}d&by=rule" \
            "recent?period=${DAYS}d&n=50" "usage?period=${DAYS}d&by=hour&service=$top"; do
            nice -n 19 taskset -c 0 curl -s -u bench:bench-pass -o /dev/null "$A/api/$q" &
        done
        sleep 1
    done
}
wrk_rps() {
    TARGET="http://127.0.0.1:$HTTP/1k" taskset -c 1 wrk -t1 -c50 -d"${DURATION}s" \
        -s "$here/absolute.lua" "http://127.0.0.1:$PORT" 2>&1 | grep -o 'rps=[0-9]*' | cut -d= -f2
}
# cpu_ms [THREAD]: CPU time (user + system, ms) of aigate, or of its thread named THREAD
cpu_ms() {
    local f tick
    tick=$(getconf CLK_TCK)
    for f in /proc/"$aigate_pid"/task/*; do
        [ -z "${1:-}" ] || [ "$(cat "$f/comm")" = "$1" ] || continue
        awk -v t="$tick" '{ print ($14 + $15) * 1000 / t }' "$f/stat"
    done | awk '{ s += $1 } END { print int(s) }'
}
wrk_rps >/dev/null # warm-up
for r in $(seq "$ROUNDS"); do
    i0=$(cpu_ms aigate-index) p0=$(cpu_ms)
    without=$(wrk_rps)
    i1=$(cpu_ms aigate-index) p1=$(cpu_ms)
    dashboard_loop &
    loop=$!
    with=$(wrk_rps)
    kill "$loop"
    wait "$loop" 2>/dev/null || true
    i2=$(cpu_ms aigate-index) p2=$(cpu_ms)
    echo "$without" >>"$work/without"
    echo "$with" >>"$work/with"
    say "round $r: keep-alive req/s without the dashboard $without, with it queried once a second $with"
    say "  CPU per second of the run: aigate $(((p1 - p0) / DURATION)) ms, of which the index thread" \
        "$(((i1 - i0) / DURATION)) ms (following the log) / aigate $(((p2 - p1) / DURATION)) ms," \
        "index $(((i2 - i1) / DURATION)) ms (following and answering)"
done
w=$(median <"$work/without")
d=$(median <"$work/with")
say "$(printf 'throughput median: %d req/s without, %d with (%+.1f %%)' "$w" "$d" \
    "$(awk -v a="$w" -v b="$d" 'BEGIN { print (b - a) * 100 / a }')")"
say "results: $out"
