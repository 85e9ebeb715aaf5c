#!/usr/bin/env bash
# contrib/bench/intercept.sh — aigate intercepting TLS against Squid ssl_bump
# (Debian's squid-openssl: peek+bump and bump at step 1) and mitmproxy
# (Debian's mitmproxy, mitmdump), with a direct-TLS reference, on this machine.
# GitHub issue 19.  See contrib/bench/README.md ("intercept.sh").
#
# A local nginx origin serves /1k and /100m over TLS 1.2/1.3 with a
# certificate from a test CA made for the run, for api.openai.com and a few
# other catalogued API names (all mapped to 127.0.0.1 by a hosts file the
# proxies read); each proxy in turn listens on 127.0.0.1, pinned to CPU 0,
# with its own interception CA; tls_load (contrib/bench/tls_load.c), curl and
# nginx run on CPU 1.  Per round: direct, aigate, squid-bump, squid-bumpall,
# mitmproxy (interleaved), each a fresh process with empty caches.  Raw lines
# and the table go to contrib/bench/results/intercept-STAMP.{raw,txt}.
#
# Knobs (environment): ROUNDS (3), DURATION (s per load run, 5), CONC (50
# connections), FIRST_N (host names for the first-connection latency, 6),
# DL_RUNS (100 MiB downloads per round, median, 3), QUICK=1 (1 round, 2 s
# runs, 1 download, 3 names: a smoke test), PEERS (which proxies, default
# "aigate squid-bump squid-bumpall mitmproxy"), AIGATE (build/aigate),
# SQUID_BIN (a Squid built with OpenSSL; default: unpacked from Debian's
# squid-openssl into $SQUID_CACHE, default /var/tmp/aigate-bench),
# ORIGIN_HTTPS (28453), PROXY_PORT (23140: proxies on 23140..23143), KEEP=1 (keep the
# scratch directory).
set -eu
source "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
AIGATE=${AIGATE:-$root/build/aigate}
if [ "${QUICK:-0}" = 1 ]; then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-2} DL_RUNS=${DL_RUNS:-1} FIRST_N=${FIRST_N:-3}
fi
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} CONC=${CONC:-50} FIRST_N=${FIRST_N:-6} DL_RUNS=${DL_RUNS:-3}
PEERS=${PEERS:-aigate squid-bump squid-bumpall mitmproxy}
HTTPS=${ORIGIN_HTTPS:-28453}
PORT0=${PROXY_PORT:-23140}
AI_HOST=api.openai.com # catalogued (openai-api, category api): intercepted, allowed for staff
# first-connection names: catalogued API hosts; those aigate would not
# intercept and allow for bench-user (checked with --explain) are dropped
FIRST_CANDIDATES="api.anthropic.com api.mistral.ai api.groq.com api.perplexity.ai api.x.ai
  api.cohere.com api.llama.com api.poe.com api.stability.ai api.elevenlabs.io platform.openai.com
  console.anthropic.com api.deepl.com api.upstage.ai"
PROXY_CPU=0 LOAD_CPU=1

log() { echo "intercept: $*" >&2; }
die() { log "$*"; exit 2; }

for t in nginx curl openssl cc taskset sha256sum; do
    command -v "$t" >/dev/null || die "$t missing (apt-get install nginx-light curl openssl gcc libssl-dev util-linux)"
done
[ -x "$AIGATE" ] || die "$AIGATE missing (make build/aigate)"
[ -f /usr/include/openssl/ssl.h ] || die "libssl-dev missing (apt-get install libssl-dev)"
[ "$(id -u)" = 0 ] || case " $PEERS " in *" squid"*) die "Squid peers need root (Squid drops to the user proxy)" ;; esac

# a Squid built with OpenSSL: Debian's squid-openssl conflicts with squid
# (which bench.sh runs), so its package is unpacked into a cache, not
# installed.  Not under $HOME: Squid runs its helpers as the user proxy, who
# must be able to reach them.
squid_openssl() {
    local cache=${SQUID_CACHE:-/var/tmp/aigate-bench} squid t
    if [ -n "${SQUID_BIN:-}" ]; then echo "$SQUID_BIN"; return; fi
    if squid -v 2>/dev/null | grep -q -- --with-openssl; then command -v squid; return; fi
    squid=$cache/squid-openssl/usr/sbin/squid
    if [ ! -x "$squid" ]; then
        log "unpacking Debian's squid-openssl into $cache/squid-openssl (not installed)"
        t=$(mktemp -d)
        (cd "$t" && { apt-get download squid-openssl >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get download squid-openssl >/dev/null; }; }) || { rm -rf "$t"; return 1; }
        mkdir -p "$cache/squid-openssl"
        chmod 755 "$cache"
        dpkg-deb -x "$t"/squid-openssl_*.deb "$cache/squid-openssl"
        rm -rf "$t"
    fi
    echo "$squid"
}
case " $PEERS " in *" squid"*)
    SQUID_BIN=$(squid_openssl) && "$SQUID_BIN" -v 2>/dev/null | grep -q -- --with-openssl ||
        die "no Squid built with OpenSSL (SQUID_BIN, or apt-get download squid-openssl failed)"
    SQUID_LIB=$(cd "$(dirname "$SQUID_BIN")/../lib/squid" && pwd)
    ;;
esac
case " $PEERS " in *" mitmproxy "*)
    command -v mitmdump >/dev/null || die "mitmdump missing (apt-get install mitmproxy)" ;;
esac

port_of() { # VARIANT -> its port
    case $1 in aigate) echo "$PORT0" ;; squid-bump) echo $((PORT0 + 1)) ;;
    squid-bumpall) echo $((PORT0 + 2)) ;; mitmproxy) echo $((PORT0 + 3)) ;; *) die "unknown peer $1" ;; esac
}
for p in $HTTPS $(seq "$PORT0" $((PORT0 + 3))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        die "port $p is in use; set ORIGIN_HTTPS or PROXY_PORT"
    fi
done
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d /tmp/aigate-icpt.XXXXXX)
chmod 755 "$work" # Squid's helpers run as proxy and read the CA and hosts file here
www=$(mktemp -d /dev/shm/aigate-icpt.XXXXXX 2>/dev/null || mktemp -d "$work/www.XXXXXX")
chmod 755 "$www"
cp "$AIGATE" "$work/aigate.bin" # a rebuild during the run must not change what is measured
AIGATE=$work/aigate.bin
mkdir -p "$here/results"
stamp=$(date +%Y%m%d-%H%M%S)
raw=$here/results/intercept-$stamp.raw
table=$here/results/intercept-$stamp.txt
proxy_pid='' nginx_pid=''

stop_proxy() {
    [ -n "$proxy_pid" ] || return 0
    local kids p
    kids=$(tree "$proxy_pid")
    kill "$proxy_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$proxy_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$proxy_pid" 2>/dev/null || true
    wait "$proxy_pid" 2>/dev/null || true
    sleep 0.3
    for p in $kids; do # helpers it started (Squid's certificate generators, log daemon)
        [ "$p" = "$proxy_pid" ] || kill -KILL "$p" 2>/dev/null || true
    done
    proxy_pid=
}
cleanup() {
    stop_proxy
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null
    rm -rf "$www"
    [ "${KEEP:-0}" = 1 ] && echo "scratch kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

emit() { echo "$round $*" | tee -a "$raw"; } # ROUND VARIANT SCENARIO key=value...
on_load() { taskset -c $LOAD_CPU "$@"; }
tree() { # PID and its descendants
    local c
    echo "$1"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do tree "$c"; done
}
tree_cpu_ticks() { # utime+stime of the proxy's processes (all threads)
    local p t=0
    for p in $(tree "$proxy_pid"); do
        t=$((t + $(cpu_ticks "$p")))
    done
    echo "$t"
}

# ---- client, CAs, origin ---------------------------------------------------
cc -O2 -Wall -pthread -o "$work/tls_load" "$here/tls_load.c" -lssl -lcrypto
load=$work/tls_load

mkca() { # DIR "SUBJECT"
    mkdir -p "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$1/ca.key" -out "$1/ca.pem" -subj "$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
mkca "$work/ca/origin" "/O=aigate-bench/CN=aigate-bench origin test CA"
"$AIGATE" --gen-ca "$work/ca/aigate" >/dev/null
mkca "$work/ca/squid" "/O=aigate-bench/CN=squid-bump bench CA"
chown -R proxy: "$work/ca/squid" 2>/dev/null || true
mkca "$work/ca/mitmproxy" "/O=aigate-bench/CN=mitmproxy bench CA"
cat "$work/ca/mitmproxy/ca.key" "$work/ca/mitmproxy/ca.pem" >"$work/ca/mitmproxy/mitmproxy-ca.pem"
cp "$work/ca/mitmproxy/ca.pem" "$work/ca/mitmproxy/mitmproxy-ca-cert.pem"

{
    echo "127.0.0.1 localhost"
    for h in $AI_HOST $FIRST_CANDIDATES; do echo "127.0.0.1 $h"; done
} >"$work/hosts"

# peer config from peers/TEMPLATE for VARIANT on PORT -> its path
fill() { # VARIANT PORT TEMPLATE
    local d=$work/$1
    rm -rf "$d"
    mkdir -p "$d"
    sed -e "s#@PORT@#$2#g; s#@HTTPS@#$HTTPS#g; s#@DIR@#$d#g; s#@ROOT@#$root#g; s#@WORK@#$work#g" \
        -e "s#@SQUID_LIB@#${SQUID_LIB:-}#g" "$here/peers/$3" >"$d/${3%.in}"
    echo "$d/${3%.in}"
}

# the first-connection names: those aigate intercepts and allows
conf=$(fill aigate "$PORT0" aigate-intercept.conf.in)
first_hosts=
for h in $FIRST_CANDIDATES; do
    x=$("$AIGATE" -c "$conf" --explain bench-user GET "https://$h:$HTTPS/1k" 2>&1 | grep '^verdict:' || true)
    case $x in *action=allow*tls=intercept*) first_hosts="$first_hosts $h" ;; esac
    [ "$(echo $first_hosts | wc -w)" -ge "$FIRST_N" ] && break
done
[ -n "$first_hosts" ] || die "none of the candidate names is intercepted and allowed by aigate's shipped rules"
first_hosts=${first_hosts# }

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca/origin/leaf.key" \
    -subj "/CN=$AI_HOST" -out "$work/ca/origin/leaf.csr" 2>/dev/null
{
    printf 'subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1' "$AI_HOST"
    for h in $first_hosts; do printf ',DNS:%s' "$h"; done
    printf '\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n'
} >"$work/ca/origin/leaf.ext"
openssl x509 -req -in "$work/ca/origin/leaf.csr" -CA "$work/ca/origin/ca.pem" -CAkey "$work/ca/origin/ca.key" \
    -CAcreateserial -days 30 -extfile "$work/ca/origin/leaf.ext" -out "$work/ca/origin/leaf.pem" 2>/dev/null

head -c 1024 /dev/urandom >"$www/1k"
head -c 104857600 /dev/urandom >"$www/100m"
sum_100m=$(sha256sum <"$www/100m" | cut -d' ' -f1)
mkdir -p "$work/origin/tmp"
cat >"$work/origin/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/origin/nginx.pid;
error_log $work/origin/error.log;
events { worker_connections 20000; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  client_body_temp_path $work/origin/tmp; proxy_temp_path $work/origin/tmp;
  fastcgi_temp_path $work/origin/tmp; uwsgi_temp_path $work/origin/tmp; scgi_temp_path $work/origin/tmp;
  sendfile on;
  keepalive_requests 10000000;
  keepalive_timeout 600s;
  server { listen 127.0.0.1:$HTTPS ssl; root $www;
           ssl_protocols TLSv1.2 TLSv1.3;
           ssl_certificate $work/ca/origin/leaf.pem; ssl_certificate_key $work/ca/origin/leaf.key; }
}
CONF
taskset -c $LOAD_CPU nginx -c "$work/origin/nginx.conf" >"$work/origin/nginx.out" 2>&1 &
nginx_pid=$!
wait_port "$HTTPS" 300 || { cat "$work/origin/nginx.out" >&2; die "nginx did not start"; }

# ---- proxies -----------------------------------------------------------------
ca_of() { # VARIANT -> the CA its leaves come from
    case $1 in aigate) echo "$work/ca/aigate/ca.pem" ;; squid*) echo "$work/ca/squid/ca.pem" ;;
    mitmproxy) echo "$work/ca/mitmproxy/ca.pem" ;; direct) echo "$work/ca/origin/ca.pem" ;; esac
}

start_proxy() { # VARIANT PORT
    local v=$1 port=$2 conf cmd
    case $v in
    aigate)
        conf=$(fill aigate "$port" aigate-intercept.conf.in)
        cmd=("$AIGATE" -f -c "$conf")
        ;;
    squid-bump | squid-bumpall)
        conf=$(fill "$v" "$port" "$v.conf.in")
        "$SQUID_LIB/security_file_certgen" -c -s "$work/$v/ssl_db" -M 16MB >/dev/null
        chown -R proxy: "$work/$v"
        cmd=("$SQUID_BIN" -N -f "$conf")
        ;;
    mitmproxy)
        conf=$(fill mitmproxy "$port" mitmproxy.yaml.in)
        mv "$conf" "$work/mitmproxy/config.yaml"
        cp "$work/ca/mitmproxy/mitmproxy-ca.pem" "$work/ca/mitmproxy/mitmproxy-ca-cert.pem" "$work/mitmproxy/"
        cmd=(env BENCH_HOSTS="$work/hosts" mitmdump --set confdir="$work/mitmproxy" -s "$here/peers/mitmproxy_hosts.py")
        ;;
    esac
    taskset -c $PROXY_CPU "${cmd[@]}" >"$work/$v.out" 2>&1 </dev/null &
    proxy_pid=$!
    if ! wait_port "$port" 300 "$proxy_pid"; then
        log "$v did not start:"
        tail -20 "$work/$v.out" >&2
        stop_proxy
        return 1
    fi
    sleep 1 # helpers (Squid's certificate generators) come up
}

# ---- scenarios ---------------------------------------------------------------
# checks VARIANT PORT: intercepted (leaf from the proxy's CA, a client that
# trusts only the origin's CA is refused), 1 KiB and 100 MiB bodies intact
checks() {
    local v=$1 port=$2 ca out want issuer ok=1 code sum
    ca=$(ca_of "$v")
    want=$(openssl x509 -in "$ca" -noout -subject -nameopt compat | sed 's/^subject=//; s/ /_/g')
    out=$(on_load "$load" -x "$port" -t "$AI_HOST:$HTTPS" -C "$ca" -b "$www/1k" check 2>>"$work/$v.client" || true)
    issuer=$(echo "$out" | sed -n 's/.* issuer=\([^ ]*\).*/\1/p')
    [ "${out#CHECK pass}" != "$out" ] || ok=0
    [ "$issuer" = "$want" ] || ok=0
    if on_load "$load" -x "$port" -t "$AI_HOST:$HTTPS" -C "$work/ca/origin/ca.pem" check >/dev/null 2>&1; then
        ok=0 refused=no
    else
        refused=yes
    fi
    code=$(on_load curl -s -o /dev/null -w '%{http_code}:%{size_download}' --max-time 10 \
        -x "http://127.0.0.1:$port" --cacert "$ca" "https://$AI_HOST:$HTTPS/1k" || true)
    [ "$code" = 200:1024 ] || ok=0
    sum=$(on_load curl -s --max-time 120 -x "http://127.0.0.1:$port" --cacert "$ca" \
        "https://$AI_HOST:$HTTPS/100m" | sha256sum | cut -d' ' -f1)
    [ "$sum" = "$sum_100m" ] || ok=0
    emit "$v check pass=$ok issuer_is_proxy_ca=$([ "$issuer" = "$want" ] && echo yes || echo no)" \
        "origin_ca_only_refused=$refused curl_1k=$code body_100m=$([ "$sum" = "$sum_100m" ] && echo ok || echo bad)" \
        "${out#CHECK }"
    [ $ok = 1 ]
}

# load VARIANT SCENARIO MODE [PORT]
load_run() {
    local v=$1 sc=$2 mode=$3 port=${4:-} args out
    args=(-t "$AI_HOST:$HTTPS" -C "$(ca_of "$v")" -b "$www/1k" -d "$DURATION" -c "$CONC")
    [ -n "$port" ] && args+=(-x "$port" -p "$(tree "$proxy_pid" | paste -sd,)")
    out=$(on_load "$load" "${args[@]}" "$mode" 2>>"$work/$v.client" | grep '^RESULT' || echo "RESULT rate=0 failed=1")
    emit "$v $sc ${out#RESULT }"
    sleep 1
}

# first VARIANT [PORT]: one exchange to each name the proxy has not seen, then
# a second one to the same name; medians
first_run() {
    local v=$1 port=${2:-} args out
    args=(-t "$AI_HOST:$HTTPS" -C "$(ca_of "$v")" -b "$www/1k")
    [ -n "$port" ] && args+=(-x "$port")
    # shellcheck disable=SC2086
    out=$(on_load "$load" "${args[@]}" first $first_hosts 2>>"$work/$v.client" || true)
    echo "$out" | sed "s/^/# $round $v /" >>"$raw"
    emit "$v first_conn $(echo "$out" | awk '
        /first_ms/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "first_ms") a[n] = kv[2]; if (kv[1] == "second_ms") b[n] = kv[2] } n++ }
        /failed/ { bad++ }
        function med(x, n,   i, j, t) { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
            return n % 2 ? x[int(n / 2)] : (x[n / 2 - 1] + x[n / 2]) / 2 }
        END { if (n) printf "first_ms=%.2f second_ms=%.2f hosts=%d failed=%d", med(a, n), med(b, n), n, bad + 0
              else printf "first_ms=NA failed=%d", bad + 0 }')"
}

# download VARIANT [PORT]: 100 MiB, median of DL_RUNS, MB/s (1e6 B/s)
download() {
    local v=$1 port=${2:-} args=() t0 t1 r rates=() mbps
    if [ -n "$port" ]; then args=(-x "http://127.0.0.1:$port" --cacert "$(ca_of "$v")")
    else args=(--resolve "$AI_HOST:$HTTPS:127.0.0.1" --cacert "$work/ca/origin/ca.pem"); fi
    t0=$([ -n "$port" ] && tree_cpu_ticks || echo 0)
    for _ in $(seq "$DL_RUNS"); do
        r=$(on_load curl -s --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
            "${args[@]}" "https://$AI_HOST:$HTTPS/100m" || true)
        [ "${r% *}" = "200 104857600" ] || { emit "$v download_100m MBps=0 failed=1 got=${r// /:}"; return; }
        rates+=("$(awk -v b="${r##* }" 'BEGIN{printf "%.0f", b / 1e6}')")
    done
    t1=$([ -n "$port" ] && tree_cpu_ticks || echo 0)
    mbps=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    emit "$v download_100m MBps=$mbps runs=$(IFS=,; echo "${rates[*]}")$([ -n "$port" ] &&
        awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$DL_RUNS" 'BEGIN{printf " cpu_s_per_100m=%.2f", t / hz / n}')"
}

run_direct() {
    first_run direct
    load_run direct conn_full conn
    load_run direct conn_resume resume
    load_run direct keepalive keep
    download direct
}

run_peer() { # VARIANT
    local v=$1 port sc
    port=$(port_of "$v")
    if ! start_proxy "$v" "$port"; then
        for sc in first_conn conn_full conn_resume keepalive download_100m; do emit "$v $sc NA reason=did_not_start"; done
        return
    fi
    if ! checks "$v" "$port"; then
        for sc in first_conn conn_full conn_resume keepalive download_100m; do emit "$v $sc NA reason=check_failed"; done
        stop_proxy
        return
    fi
    first_run "$v" "$port"
    load_run "$v" conn_full conn "$port"
    load_run "$v" conn_resume resume "$port"
    load_run "$v" keepalive keep "$port"
    download "$v" "$port"
    kill -0 "$proxy_pid" 2>/dev/null || emit "$v exited NA reason=proxy_exited_during_run"
    stop_proxy
}

# ---- main --------------------------------------------------------------------
log "scratch $work; raw results $raw"
{
    echo "# aigate intercept bench $stamp: ROUNDS=$ROUNDS DURATION=$DURATION CONC=$CONC DL_RUNS=$DL_RUNS PEERS=$PEERS"
    echo "# $(uname -srm); $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); aigate $("$AIGATE" -V 2>&1 | head -1)"
    echo "# squid: $([ -n "${SQUID_BIN:-}" ] && "$SQUID_BIN" -v | head -1) (${SQUID_BIN:--})"
    echo "# mitmproxy: $(dpkg-query -W -f='${Version}' mitmproxy 2>/dev/null || echo -); $(nginx -v 2>&1); $(openssl version)"
    echo "# origin: nginx TLS 1.2+1.3, ECDSA P-256 leaf from a test CA; first-connection names: $first_hosts"
} >"$raw"
cat "$raw" >&2
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    run_direct
    for v in $PEERS; do run_peer "$v"; done
done
python3 "$here/intercept_table.py" "$raw" | tee "$table"
log "table in $table"
