#!/usr/bin/env bash
# contrib/bench/bench.sh — aigate against Squid, tinyproxy and Privoxy on this
# machine, in one run (what `make bench` runs).  See contrib/bench/README.md.
#
# A local nginx origin serves /1k /64k /1m /100m over HTTP and HTTPS; each
# proxy in turn listens on 127.0.0.1, pinned to CPU 0 (wrk, curl and nginx on
# CPU 1); rounds are interleaved (all proxies, then all again) and the table
# quotes medians, each as a ratio to the direct (no proxy) figure of the same
# round.  Raw lines and the table go to contrib/bench/results/ (git-ignored).
#
# Knobs (environment): ROUNDS (3), DURATION (s per wrk run, 5), IDLE_CONNS
# (5000), QUICK=1 (1 round, 2 s runs, 1000 idle connections: a smoke test),
# AIGATE (binary, build/aigate), KEEP=1 (keep the scratch directory).
set -eu
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AIGATE=${AIGATE:-$root/build/aigate}
if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2} IDLE_CONNS=${IDLE_CONNS:-1000}
    ICPT_N=${ICPT_N:-2000}
fi
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} IDLE_CONNS=${IDLE_CONNS:-5000}
ICPT_N=${ICPT_N:-10000}
HTTP=${ORIGIN_HTTP:-28080} HTTPS=${ORIGIN_HTTPS:-28443}
PORT0=${PROXY_PORT:-23128} # proxies on PORT0 .. PORT0+7
AI_HOST=api.openai.com # catalogued (service openai-api, category api: allowed)
PROXY_CPU=0 LOAD_CPU=1

for t in nginx wrk curl python3 taskset squid tinyproxy privoxy openssl; do
    command -v "$t" >/dev/null || { echo "bench: $t missing (apt-get install squid tinyproxy privoxy wrk nginx-light curl python3)" >&2; exit 2; }
done
[ -x "$AIGATE" ] || { echo "bench: $AIGATE missing (make build/aigate)" >&2; exit 2; }
for p in $HTTP $HTTPS $(seq "$PORT0" $((PORT0 + 7))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "bench: port $p is in use; set ORIGIN_HTTP, ORIGIN_HTTPS or PROXY_PORT" >&2
        exit 2
    fi
done
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE_CONNS * 2 + 100)) ] || echo "bench: ulimit -n $(ulimit -n) is low for $IDLE_CONNS idle connections" >&2

work=$(mktemp -d /tmp/aigate-bench.XXXXXX)
chmod 755 "$work"
cp "$AIGATE" "$work/aigate.bin" # a rebuild during the run must not change what is measured
AIGATE=$work/aigate.bin
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
raw="$here/results/$stamp.raw"
table="$here/results/$stamp.txt"
origin=$work/origin
proxy_pid=

cleanup() {
    stop_proxy
    [ -f "$origin/nginx.pid" ] && kill "$(cat "$origin/nginx.pid")" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] && echo "scratch kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }
emit() { echo "$round $*" | tee -a "$raw"; } # VARIANT SCENARIO key=value...

# ---- origin ----------------------------------------------------------------
start_origin() {
    mkdir -p "$origin/www" "$origin/tmp"
    chmod 755 "$origin" "$origin/www"
    for s in 1k:1024 64k:65536 1m:1048576 100m:104857600; do
        head -c "${s#*:}" /dev/urandom >"$origin/www/${s%%:*}"
    done
    # a 16 KiB chat prompt without personal data: aigate reads and scans it
    # (the shipped policy blocks card and resident registration numbers), then
    # forwards it; the origin answers with a small JSON
    python3 -c 'import json, itertools
words = "please draft a reply to the customer about the delivery schedule and the budget".split()
text = " ".join(itertools.islice(itertools.cycle(words), 2850))
print(json.dumps({"model": "bench", "messages": [{"role": "user", "content": text}]}))' >"$origin/prompt.json"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$origin/key.pem" -out "$origin/cert.pem" -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,DNS:$AI_HOST,IP:127.0.0.1" 2>/dev/null
    cat >"$origin/nginx.conf" <<CONF
worker_processes 1;
pid $origin/nginx.pid;
error_log $origin/error.log;
events { worker_connections 30000; }
worker_rlimit_nofile 30000;
http {
  access_log off;
  client_body_temp_path $origin/tmp; proxy_temp_path $origin/tmp;
  fastcgi_temp_path $origin/tmp; uwsgi_temp_path $origin/tmp; scgi_temp_path $origin/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server { listen 127.0.0.1:$HTTP; root $origin/www;
           location = /v1/chat/completions { return 200 '{"choices":[]}'; } }
  server { listen 127.0.0.1:$HTTPS ssl; root $origin/www;
           ssl_certificate $origin/cert.pem; ssl_certificate_key $origin/key.pem; }
}
CONF
    taskset -c $LOAD_CPU nginx -c "$origin/nginx.conf"
    wait_port $HTTP && wait_port $HTTPS || { log "nginx did not start"; exit 1; }
}


# ---- proxies ---------------------------------------------------------------
# fill NAME PORT -> path of the config made from peers/NAME.conf.in
fill() {
    local d=$work/$1
    mkdir -p "$d"
    case $1 in
    squid*) chown proxy: "$d" ;;
    tinyproxy*) chown nobody: "$d" ;;
    esac
    sed -e "s#@PORT@#$2#g; s#@HTTPS@#$HTTPS#g; s#@DIR@#$d#g; s#@ROOT@#$root#g" \
        -e "s#@ORIGIN@#$origin#g; s#@CA@#$work/ca#g; s#@WORKERS@#${WORKERS:-1}#g; s#@SCOPE@#${SCOPE:-all}#g" \
        "$here/peers/${1%%-*}.conf.in" >"$d/${1%%-*}.conf"
    echo "$d/${1%%-*}.conf"
}

# start_proxy NAME PORT CPUS -> proxy_pid
start_proxy() {
    local name=$1 port=$2 cpus=$3 conf cmd
    conf=$(fill "$name" "$port")
    case $name in
    aigate*)
        [ -f "$work/ca/ca.pem" ] || "$AIGATE" --gen-ca "$work/ca" >/dev/null
        echo "127.0.0.1 $AI_HOST" >"$work/$name/hosts"
        rm -f "$work/$name/audit.jsonl"*
        cmd=("$AIGATE" -f -c "$conf")
        ;;
    squid) cmd=(squid -N -f "$conf") ;;
    tinyproxy) cmd=(tinyproxy -d -c "$conf") ;;
    privoxy) cmd=(privoxy --no-daemon "$conf") ;;
    esac
    taskset -c "$cpus" "${cmd[@]}" >"$work/$name.out" 2>&1 &
    proxy_pid=$!
    wait_port "$port" || { log "$name did not start:"; cat "$work/$name.out" >&2; exit 1; }
}

stop_proxy() {
    [ -n "$proxy_pid" ] || return 0
    kill "$proxy_pid" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    proxy_pid=
}

# ---- scenarios -------------------------------------------------------------
# wrk_run VARIANT SCENARIO URL_TO_WRK TARGET CLOSE [BODY_FILE]
wrk_run() {
    local out
    out=$(TARGET=$4 CLOSE=$5 BODY=${6:-} taskset -c $LOAD_CPU wrk -t1 -c50 -d"${DURATION}s" \
        -s "$here/absolute.lua" "$3" 2>&1 | grep '^RESULT' || echo "RESULT rps=0 failed=1")
    emit "$1 $2 ${out#RESULT }"
}

# tput VARIANT [PROXYPORT]: 100 MiB HTTPS download, median of 3, MB/s
tput() {
    local px=() b
    [ -n "${2:-}" ] && px=(-x "http://127.0.0.1:$2")
    b=$(for _ in 1 2 3; do
        taskset -c $LOAD_CPU curl -s --cacert "$origin/cert.pem" "${px[@]}" -o /dev/null \
            -w '%{speed_download}\n' "https://127.0.0.1:$HTTPS/100m" || echo 0
    done | sort -n | sed -n 2p)
    emit "$1 connect_tput_100m MBps=$(awk -v b="$b" 'BEGIN{printf "%.0f", b/1e6}')"
}

crate() { # VARIANT PORT|direct
    local out
    out=$(taskset -c $LOAD_CPU python3 "$here/connect_rate.py" "$2" "127.0.0.1:$HTTPS" 3)
    emit "$1 connect_rate ${out#RESULT }"
}

idle() { # VARIANT PORT
    local out
    out=$(taskset -c $LOAD_CPU python3 "$here/idle.py" "$2" "$IDLE_CONNS" \
        "http://127.0.0.1:$HTTP/1k" "$proxy_pid")
    emit "$1 idle_rss ${out#RESULT }"
}

# icpt VARIANT SCENARIO CLOSE [PROXYPORT]: HTTPS GETs of /1k on $AI_HOST, 50 in
# parallel; through aigate the TLS is terminated and re-originated by it.
icpt() {
    local n=$ICPT_N args t0 t1 ok
    [ "$3" = 1 ] && n=$((ICPT_N / 5))
    args=(-s --parallel --parallel-immediate --parallel-max 50 -o /dev/null -w '%{http_code}\n')
    if [ -n "${4:-}" ]; then
        args+=(-x "http://127.0.0.1:$4" --cacert "$work/ca/ca.pem")
    else
        args+=(--resolve "$AI_HOST:$HTTPS:127.0.0.1" --cacert "$origin/cert.pem")
    fi
    [ "$3" = 1 ] && args+=(-H "Connection: close")
    t0=$(date +%s.%N)
    ok=$(taskset -c $LOAD_CPU curl "${args[@]}" "https://$AI_HOST:$HTTPS/1k?[1-$n]" 2>/dev/null | grep -c '^200$' || true)
    t1=$(date +%s.%N)
    emit "$1 $2 rps=$(awk -v n="$ok" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", n/(b-a)}') ok=$ok of=$n"
}

origin_url=http://127.0.0.1:$HTTP/1k
post_url=http://127.0.0.1:$HTTP/v1/chat/completions

run_direct() {
    wrk_run direct rps_keepalive_1k "http://127.0.0.1:$HTTP" "$origin_url" 0
    wrk_run direct rps_close_1k "http://127.0.0.1:$HTTP" "$origin_url" 1
    wrk_run direct post_16k "http://127.0.0.1:$HTTP" "$post_url" 0 "$origin/prompt.json"
    tput direct
    crate direct direct
    icpt direct intercept_keepalive 0
    icpt direct intercept_close 1
}

run_proxy() { # VARIANT NAME PORT CPUS [full|rps]
    local v=$1 port=$3
    start_proxy "$2" "$port" "$4"
    wrk_run "$v" rps_keepalive_1k "http://127.0.0.1:$port" "$origin_url" 0
    wrk_run "$v" rps_close_1k "http://127.0.0.1:$port" "$origin_url" 1
    wrk_run "$v" post_16k "http://127.0.0.1:$port" "$post_url" 0 "$origin/prompt.json"
    if [ "$5" = full ]; then
        tput "$v" "$port"
        crate "$v" "$port"
        case $v in aigate)
            icpt "$v" intercept_keepalive 0 "$port"
            icpt "$v" intercept_close 1 "$port"
            ;;
        esac
        idle "$v" "$port"
    fi
    stop_proxy
}

# profile: aigate (1 worker, CPU 0, rules and audit on) under the keep-alive
# load, with callgrind (instructions, user space) and perf (cpu-clock
# samples, kernel included); reports into results/STAMP-*.txt.
profile() {
    local port=$PORT0 conf
    start_origin
    round=profile
    WORKERS=1 SCOPE=all
    if command -v valgrind >/dev/null; then
        conf=$(fill aigate "$port")
        [ -f "$work/ca/ca.pem" ] || "$AIGATE" --gen-ca "$work/ca" >/dev/null
        echo "127.0.0.1 $AI_HOST" >"$work/aigate/hosts"
        taskset -c $PROXY_CPU valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
            "$AIGATE" -f -c "$conf" >"$work/callgrind.log" 2>&1 &
        proxy_pid=$!
        for _ in $(seq 100); do wait_port "$port" && break; done
        wrk_run aigate-callgrind rps_keepalive_1k "http://127.0.0.1:$port" "$origin_url" 0
        stop_proxy
        callgrind_annotate "$work/callgrind.out" >"$here/results/$stamp-callgrind-self.txt"
        callgrind_annotate --inclusive=yes "$work/callgrind.out" >"$here/results/$stamp-callgrind-inclusive.txt"
        cp "$work/callgrind.out" "$here/results/$stamp-callgrind.out"
        log "callgrind: results/$stamp-callgrind-{self,inclusive}.txt"
    fi
    if command -v perf >/dev/null; then
        start_proxy aigate "$port" $PROXY_CPU
        perf record -e cpu-clock -F 2000 -g -p "$proxy_pid" -o "$work/perf.data" \
            -- sleep "$DURATION" >/dev/null 2>&1 &
        wrk_run aigate-perf rps_keepalive_1k "http://127.0.0.1:$port" "$origin_url" 0
        wait $! || true
        stop_proxy
        perf report -i "$work/perf.data" --stdio --no-children --percent-limit 0.5 \
            >"$here/results/$stamp-perf-self.txt" 2>/dev/null
        perf report -i "$work/perf.data" --stdio --no-children -g none --sort dso \
            >"$here/results/$stamp-perf-dso.txt" 2>/dev/null
        perf report -i "$work/perf.data" --stdio --children -g none --percent-limit 2 \
            >"$here/results/$stamp-perf-inclusive.txt" 2>/dev/null
        log "perf: results/$stamp-perf-{self,dso,inclusive}.txt"
    fi
}

# ---- main ------------------------------------------------------------------
log "scratch $work; raw results $raw"
{
    echo "# aigate bench $stamp: ROUNDS=$ROUNDS DURATION=$DURATION IDLE_CONNS=$IDLE_CONNS ICPT_N=$ICPT_N"
    echo "# $(uname -srm); $(nproc) CPUs; aigate $("$AIGATE" -V 2>&1 | head -1)"
    echo "# $(squid -v | head -1); tinyproxy $(tinyproxy -v 2>&1 | awk '{print $2}'); $(privoxy --version | head -1)"
    echo "# $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
} >"$raw"
if [ "${1:-}" = profile ]; then
    profile
    exit 0
fi
start_origin
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    run_direct
    WORKERS=1 SCOPE=all run_proxy aigate aigate $((PORT0 + 0)) $PROXY_CPU full
    WORKERS=1 SCOPE=ai run_proxy aigate-audit-off aigate-audit-off $((PORT0 + 4)) $PROXY_CPU rps
    run_proxy squid squid $((PORT0 + 1)) $PROXY_CPU full
    run_proxy tinyproxy tinyproxy $((PORT0 + 2)) $PROXY_CPU full
    run_proxy privoxy privoxy $((PORT0 + 3)) $PROXY_CPU full
    WORKERS=2 SCOPE=all run_proxy aigate-w2 aigate-w2 $((PORT0 + 6)) 0-1 rps
done
python3 "$here/table.py" "$raw" | tee "$table"
log "table in $table"
