#!/usr/bin/env bash
# contrib/bench/ackstore.sh — the warn path with the acknowledgement store
# local (file store, the default) against shared (Redis, `ack.store`), issue
# 15.  A benchmark, not a test.  See contrib/bench/README.md.
#
# A local nginx serves /1k on 127.0.0.1; api.openai.com (catalogued,
# openai-api) is mapped to 127.0.0.1 by aigate's dns.hosts_file.  Three
# cases, each in its own aigate run (1 worker, CPU 0; wrk, nginx, redis-server
# on CPU 1), rounds interleaved:
#   allow       a policy that allows openai-api (the baseline)
#   warn-file   a warn rule on openai-api, acknowledged once with curl before
#               the load; the default file store
#   warn-redis  the same with ack.store = "redis://127.0.0.1:REDIS_PORT/5"
# Every request the load sends needs the acknowledgement store's answer.
#
# Knobs (environment): ROUNDS (2), DURATION (s per wrk run, 10), AIGATE
# (binary, build/aigate), ORIGIN_HTTP (28180), PROXY_PORT (23228), REDIS_PORT
# (26379), KEEP=1 (keep the scratch directory).
set -eu
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AIGATE=${AIGATE:-$root/build/aigate}
ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-10}
HTTP=${ORIGIN_HTTP:-28180} PORT=${PROXY_PORT:-23228} RPORT=${REDIS_PORT:-26379}
AI_HOST=api.openai.com # catalogued: service openai-api
URL=http://$AI_HOST:$HTTP/1k
CASES="allow warn-file warn-redis"
PROXY_CPU=0 LOAD_CPU=1

for t in nginx wrk curl python3 taskset redis-server redis-cli; do
    command -v "$t" >/dev/null || { echo "ackstore: $t missing (apt-get install wrk nginx-light redis-server curl python3)" >&2; exit 2; }
done
[ -x "$AIGATE" ] || { echo "ackstore: $AIGATE missing (make build/aigate)" >&2; exit 2; }
for p in $HTTP $PORT $RPORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "ackstore: port $p is in use; set ORIGIN_HTTP, PROXY_PORT or REDIS_PORT" >&2
        exit 2
    fi
done

work=$(mktemp -d /tmp/aigate-ackstore.XXXXXX)
chmod 755 "$work"
cp "$AIGATE" "$work/aigate.bin" # a rebuild during the run must not change what is measured
AIGATE=$work/aigate.bin
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
raw="$here/results/ackstore-$stamp.raw"
table="$here/results/ackstore-$stamp.txt"
origin=$work/origin
proxy_pid= redis_pid=
tck=$(getconf CLK_TCK)

stop_pid() { # PID: TERM, wait up to 10 s, KILL
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    local i
    for i in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
stop_proxy() { stop_pid "$proxy_pid"; proxy_pid=; }
cleanup() {
    stop_proxy
    stop_pid "$redis_pid"
    [ -f "$origin/nginx.pid" ] && kill "$(cat "$origin/nginx.pid")" 2>/dev/null
    [ "${KEEP:-0}" = 1 ] && echo "scratch kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "ackstore: $*" >&2; }


# ---- origin and Redis ------------------------------------------------------
start_origin() {
    mkdir -p "$origin/www" "$origin/tmp"
    chmod 755 "$origin" "$origin/www"
    head -c 1024 /dev/urandom >"$origin/www/1k"
    cat >"$origin/nginx.conf" <<CONF
worker_processes 1;
pid $origin/nginx.pid;
error_log $origin/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $origin/tmp; proxy_temp_path $origin/tmp;
  fastcgi_temp_path $origin/tmp; uwsgi_temp_path $origin/tmp; scgi_temp_path $origin/tmp;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server { listen 127.0.0.1:$HTTP; root $origin/www; }
}
CONF
    taskset -c $LOAD_CPU nginx -c "$origin/nginx.conf"
    wait_port "$HTTP" || { log "nginx did not start"; exit 1; }
}

start_redis() {
    mkdir -p "$work/redis"
    taskset -c $LOAD_CPU redis-server --bind 127.0.0.1 --port "$RPORT" --save '' \
        --appendonly no --dir "$work/redis" --daemonize no >"$work/redis/out" 2>&1 &
    redis_pid=$!
    wait_port "$RPORT" || { log "redis-server did not start:"; cat "$work/redis/out" >&2; exit 1; }
}
rcli() { redis-cli -h 127.0.0.1 -p "$RPORT" "$@"; }

# ---- aigate ----------------------------------------------------------------
# start_proxy CASE: a fresh directory (no acknowledgement, no audit log) and
# config for CASE, aigate on CPU 0 -> proxy_pid
start_proxy() {
    local c=$1 d=$work/$1 action=warn store=
    rm -rf "$d"
    mkdir -p "$d"
    case $c in
    allow) action=allow ;;
    warn-redis) store="store = \"redis://127.0.0.1:$RPORT/5\";" ;;
    esac
    echo "127.0.0.1 $AI_HOST" >"$d/hosts"
    cat >"$d/aigate.conf" <<CONF
listen = [ "127.0.0.1:$PORT" ];
workers = 1;
client_networks = [ "127.0.0.0/8" ];
limits : { max_connections = 1000; idle_timeout_ms = 600000; shutdown_grace_ms = 1000; };
auth : { mode = "address"; };
addresses = ( { network = "127.0.0.0/8"; user = "bench-user"; } );
ack : { state_file = "$d/acks.state"; secret_file = "$d/ack.secret"; $store };
audit : { path = "$d/audit.jsonl"; scope = "all"; rotate_bytes = 0; };
pages_dir = "$root/rules/pages";
dns : { hosts_file = "$d/hosts"; };
@include "$root/rules/services.conf"
policy = ( { name = "bench-$c"; action = "$action"; services = [ "openai-api" ];
             reason = "ackstore bench"; } );
CONF
    taskset -c $PROXY_CPU "$AIGATE" -f -c "$d/aigate.conf" >"$work/$c.out" 2>&1 &
    proxy_pid=$!
    wait_port "$PORT" || { log "aigate ($c) did not start:"; cat "$work/$c.out" >&2; exit 1; }
}

pcurl() { curl -q -sS --max-time 10 --interface 127.0.0.2 -x "http://127.0.0.1:$PORT" "$@" 2>/dev/null; }

# acknowledge: caution page (403) -> its token -> POST /__aigate/ack (303)
acknowledge() {
    local d=$1 code token
    code=$(pcurl -H 'Accept: text/html' -o "$d/page.html" -w '%{http_code}' "$URL" || true)
    [ "$code" = 403 ] || { log "caution page: got $code, not 403"; return 1; }
    token=$(python3 - "$d/page.html" <<'EOF'
import sys
from html.parser import HTMLParser
class P(HTMLParser):
    value = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") == "token" and self.value is None:
            self.value = a.get("value", "")
p = P()
p.feed(open(sys.argv[1], encoding="utf-8", errors="replace").read())
print(p.value or "")
EOF
    )
    [ -n "$token" ] || { log "no token on the caution page"; return 1; }
    code=$(pcurl -H 'Accept: text/html' --data-urlencode "url=$URL" --data-urlencode "token=$token" \
        -o "$d/ack.out" -w '%{http_code}' "http://$AI_HOST:$HTTP/__aigate/ack" || true)
    [ "$code" = 303 ] || { log "acknowledgement: got $code, not 303"; return 1; }
}


# run_case CASE: one proxy run, one line
run_case() {
    local c=$1 d=$work/$1 ready=1 code out t0 t1 n rcmds= extra=
    [ "$c" = warn-redis ] && rcli FLUSHALL >/dev/null
    start_proxy "$c"
    if [ "$c" != allow ]; then acknowledge "$d" || ready=0; fi
    # the acknowledged URL as wrk asks for it, and as a browser does
    for h in 'Accept: */*' 'Accept: text/html'; do
        code=$(pcurl -H "$h" -o /dev/null -w '%{http_code}' "$URL" || true)
        [ "$code" = 200 ] || { log "$c: $URL ($h) got $code, not 200"; ready=0; }
    done
    if [ $ready = 0 ]; then
        echo "$c req/s=NA p50_ms=NA p99_ms=NA non2xx=NA proxy_cpu_us_per_req=NA" | tee -a "$raw"
        stop_proxy
        return 0
    fi
    [ "$c" = warn-redis ] && rcli CONFIG RESETSTAT >/dev/null
    t0=$(cpu_ticks "$proxy_pid")
    out=$(TARGET=$URL CLOSE=0 taskset -c $LOAD_CPU wrk -t1 -c50 -d"${DURATION}s" \
        -s "$here/absolute.lua" "http://127.0.0.1:$PORT" 2>&1 | grep '^RESULT' || echo "RESULT rps=0 p50_ms=NA p99_ms=NA non2xx=NA")
    t1=$(cpu_ticks "$proxy_pid")
    # commands Redis executed during the load, by name (RESETSTAT and INFO left out)
    [ "$c" = warn-redis ] && rcmds=$(rcli INFO commandstats | tr -d '\r' |
        awk -F'[:=,]' '/^cmdstat_/ { c = substr($1, 9); if (c ~ /^(info|config)/) next; printf "%s%s=%s", (n++ ? " " : ""), c, $3 }')
    stop_proxy
    # requests the proxy answered during the load: wrk's audit lines (the
    # checks above come from 127.0.0.2), counting those still in flight at the end
    n=$(grep -c '"client":"127.0.0.1"' "$d/audit.jsonl" || true)
    rm -f "$d/audit.jsonl"
    if [ "$c" = warn-redis ]; then
        extra=$(echo "$rcmds" | awk -v n="$n" '{ l = $0; for (i = 1; i <= NF; i++) { split($i, kv, "="); t += kv[2] } }
            END { printf " redis_cmds_per_req=%s redis_cmds: %s", (n > 0 ? sprintf("%.3f", t / n) : "NA"), (l == "" ? "none" : l) }')
    fi
    echo "$out" | awk -v c="$c" -v t="$((t1 - t0))" -v tck="$tck" -v n="$n" -v x="$extra" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s req/s=%s p50_ms=%s p99_ms=%s non2xx=%s proxy_cpu_us_per_req=%s%s\n", c, v["rps"],
            v["p50_ms"], v["p99_ms"], v["non2xx"], (n > 0 ? sprintf("%.1f", t * 1e6 / tck / n) : "NA"), x }' |
        tee -a "$raw"
}

# ---- main ------------------------------------------------------------------
log "scratch $work; raw results $raw"
{
    echo "# aigate ackstore bench $stamp: ROUNDS=$ROUNDS DURATION=$DURATION"
    echo "# $(uname -srm); $(nproc) CPUs; aigate $("$AIGATE" -V 2>&1 | head -1); $(redis-server --version | cut -d' ' -f1-3)"
} >"$raw"
start_origin
start_redis
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    for c in $CASES; do run_case "$c"; done
done
python3 - "$raw" "$CASES" <<'EOF' | tee "$table"
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    f = line.split()
    kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
    rows.setdefault(f[0], []).append(kv)
keys = ["req/s", "p50_ms", "p99_ms", "non2xx", "proxy_cpu_us_per_req", "redis_cmds_per_req"]
def med(c, k):
    v = []
    for r in rows.get(c, []):
        try:
            v.append(float(r[k]))
        except (KeyError, ValueError):
            pass
    if not v:
        return "NA" if k != "redis_cmds_per_req" or c == "warn-redis" else "-"
    m = statistics.median(v)
    return "%.0f" % m if k in ("req/s", "non2xx") else "%.3f" % m if k == "redis_cmds_per_req" else "%.2f" % m if k.endswith("_ms") else "%.1f" % m
base = med("allow", "req/s")
print("| case | runs | " + " | ".join(keys) + " | req/s vs allow |")
print("|---" * (len(keys) + 3) + "|")
for c in sys.argv[2].split():
    r = med(c, "req/s")
    ratio = "%.2f" % (float(r) / float(base)) if "NA" not in (r, base) and float(base) > 0 else "NA"
    print("| %s | %d | %s | %s |" % (c, len(rows.get(c, [])), " | ".join(med(c, k) for k in keys), ratio))
EOF
log "table in $table"
