# Helpers for the end-to-end tests; every tests/e2e/t_*.sh sources this file.
#
# Each test gets its own scratch directory $T (removed at exit unless KEEP=1)
# and starts its own servers on ephemeral 127.0.0.1 ports: nginx (static
# files, keep-alive, HTTPS), origin.py (echo and odd framings) and the proxy
# ($AIGATE, default build/aigate).  Every process a test starts is recorded by
# pid and stopped by pid when the test exits.
#
# Assertions do not stop the test: each prints "ok - ..." or "not ok - ...",
# and the test exits 1 if any failed, so one run shows every failure.  die()
# is for broken set-up and stops at once.  A sanitizer report in the proxy's
# log fails the test too.

set -u
E2E=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$E2E/../.." && pwd)
: "${AIGATE:=$ROOT/build/aigate}"
# The system python, not a pyenv shim: starts fast and $! is python itself.
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
# A wedged proxy that allocates without end must not take the machine with it.
export ASAN_OPTIONS="detect_leaks=1:hard_rss_limit_mb=2048${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the tree

T=$(mktemp -d "${TMPDIR:-/tmp}/aigate-e2e.XXXXXX")
PIDS=()
PROXY_PIDS=()
FAILED=0
PROXY_PID=
PROXY_PORT=
PROXY_LOG=
PROXY_RC=

# ---- assertions ---------------------------------------------------------------
die() {
    echo "FATAL: $*" >&2
    exit 1
}

fail() {
    echo "not ok - $*" >&2
    FAILED=1
}

pass() {
    echo "ok - $*"
}

# oneline TEXT: TEXT shortened to one line for a message
oneline() {
    head -c 600 <<<"$1" | tr -d '\r' | tr '\n' '|'
}

# assert_eq DESC EXPECTED GOT
assert_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# assert_contains DESC HAYSTACK NEEDLE (fixed string)
assert_contains() {
    if grep -qF -- "$3" <<<"$2"; then
        pass "$1"
    else
        fail "$1: [$3] not found in: $(oneline "$2")"
    fi
}

# assert_not_contains DESC HAYSTACK NEEDLE (fixed string, case-insensitive)
assert_not_contains() {
    if grep -qiF -- "$3" <<<"$2"; then
        fail "$1: [$3] unexpectedly found in: $(oneline "$2")"
    else
        pass "$1"
    fi
}

# assert_match DESC ERE STRING
assert_match() {
    if grep -qE -- "$2" <<<"$3"; then
        pass "$1"
    else
        fail "$1: /$2/ does not match: $(oneline "$3")"
    fi
}

# assert_le DESC A B: integer A <= B
assert_le() {
    if [ "$2" -le "$3" ]; then pass "$1 ($2 <= $3)"; else fail "$1: $2 > $3"; fi
}

# ---- small utilities ---------------------------------------------------------
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ms() {
    date +%s%3N
}

# wait_port PORT [SECONDS]: until 127.0.0.1:PORT accepts a connection
wait_port() {
    local i n=$((${2:-10} * 20))
    for ((i = 0; i < n; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# wait_file FILE [SECONDS]
wait_file() {
    local i n=$((${2:-10} * 20))
    for ((i = 0; i < n; i++)); do
        [ -e "$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# alive PID
alive() {
    kill -0 "$1" 2>/dev/null
}

# rss_kb PID: resident set size in KiB
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# sample_rss FILE: append the proxy's VmRSS (KiB) to FILE every 20 ms while it runs (spawn it,
# kill it by pid when done)
sample_rss() {
    while alive "$PROXY_PID"; do
        rss_kb "$PROXY_PID" >>"$1" 2>/dev/null
        sleep 0.02
    done
}

# jget EXPR: evaluate a Python expression on the JSON document read from stdin (d)
jget() {
    "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

# spawn CMD...: start a background process and remember its pid in $LAST_PID
spawn() {
    "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# audit_count FILE PYEXPR: lines of FILE (JSON) for which PYEXPR on d holds
audit_count() {
    "$PY" - "$1" "$2" <<'EOF'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if eval(sys.argv[2]):
        n += 1
print(n)
EOF
}

# wait_audit FILE PYEXPR [MIN]: until at least MIN (1) lines of FILE match PYEXPR
# (5 s at most), then print the count
wait_audit() {
    local i n=0
    for ((i = 0; i < 50; i++)); do
        [ -e "$1" ] && n=$(audit_count "$1" "$2")
        [ "$n" -ge "${3:-1}" ] && break
        sleep 0.1
    done
    echo "$n"
}

# form_field FILE NAME: the (unescaped) value of the form input NAME in the HTML FILE
form_field() {
    "$PY" - "$1" "$2" <<'EOF'
import sys
from html.parser import HTMLParser

class P(HTMLParser):
    value = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") == sys.argv[2] and self.value is None:
            self.value = a.get("value", "")

p = P()
p.feed(open(sys.argv[1], encoding="utf-8").read())
print(p.value if p.value is not None else "")
EOF
}

# ---- certificates --------------------------------------------------------------
# make_cert DIR NAME...: DIR/ca.pem (made once) signs DIR/NAME.pem + DIR/NAME.key,
# a server certificate for every NAME as a DNS subjectAltName (an IPv4 address as an IP one).
make_cert() {
    local dir=$1 first=$2 san="" n
    shift
    mkdir -p "$dir"
    if [ ! -e "$dir/ca.pem" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=aigate e2e test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ||
            die "openssl: cannot make the test CA"
    fi
    for n in "$@"; do
        if [[ $n =~ ^[0-9.]+$ ]]; then san="${san:+$san,}IP:$n"; else san="${san:+$san,}DNS:$n"; fi
    done
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" \
        >"$dir/$first.ext"
    if ! openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$first.key" -out "$dir/$first.csr" -subj "/CN=$first" 2>/dev/null ||
        ! openssl x509 -req -in "$dir/$first.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days 2 -extfile "$dir/$first.ext" -out "$dir/$first.pem" 2>/dev/null; then
        die "openssl: cannot make the certificate for $first"
    fi
}

# nginx_conf_head DIR LOGFORMAT: the start of a test nginx.conf up to the open http
# block: one worker, everything under DIR, the access log in LOGFORMAT.
nginx_conf_head() {
    # As root, nginx's workers would switch to nobody and could not read the test folders.
    if [ "$(id -u)" = 0 ]; then echo "user root root;"; fi
    cat <<EOF
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log info;
events { worker_connections 512; }
http {
    log_format e2e $2;
    access_log $1/access.log e2e;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
EOF
}

# ---- nginx ---------------------------------------------------------------------
# start_nginx DIR: HTTP on $NGINX_HTTP_PORT and HTTPS (certificate for origin.test,
# signed by DIR/certs/ca.pem) on $NGINX_HTTPS_PORT, serving $NGINX_HTML:
# small.txt (1 KiB), 64k.bin, one.txt two.txt three.txt.  $NGINX_ACCESS_LOG has
# one line per request: "$connection $connection_requests "$request" $status $bytes".
start_nginx() {
    local dir=$1
    mkdir -p "$dir/html" "$dir/tmp" "$dir/certs"
    NGINX_HTML=$dir/html
    NGINX_ACCESS_LOG=$dir/access.log
    NGINX_HTTP_PORT=$(free_port)
    NGINX_HTTPS_PORT=$(free_port)
    head -c 1024 /dev/urandom >"$dir/html/small.txt"
    head -c 65536 /dev/urandom >"$dir/html/64k.bin"
    echo one >"$dir/html/one.txt"
    echo two >"$dir/html/two.txt"
    echo three >"$dir/html/three.txt"
    make_cert "$dir/certs" origin.test
    {
        nginx_conf_head "$dir" \
            "'\$connection \$connection_requests \"\$request\" \$status \$body_bytes_sent'"
        cat <<EOF
    types { text/plain txt; application/octet-stream bin; }
    default_type application/octet-stream;
    keepalive_timeout 60s;
    keepalive_requests 10000;
    sendfile on;
    server {
        listen 127.0.0.1:$NGINX_HTTP_PORT;
        server_name origin.test;
        root $dir/html;
    }
    server {
        listen 127.0.0.1:$NGINX_HTTPS_PORT ssl;
        server_name origin.test;
        ssl_certificate $dir/certs/origin.test.pem;
        ssl_certificate_key $dir/certs/origin.test.key;
        root $dir/html;
    }
}
EOF
    } >"$dir/nginx.conf"
    spawn nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
    if ! wait_port "$NGINX_HTTP_PORT" 10 || ! wait_port "$NGINX_HTTPS_PORT" 10; then
        die "nginx did not start: $(tail -n 5 "$dir/error.log" 2>/dev/null)"
    fi
}

# make_expired_cert DIR NAME...: like make_cert, but DIR/NAME.pem was valid only
# from 2020-01-01 to 2020-01-02 (openssl ca sets the dates; x509 -req cannot
# backdate on OpenSSL 3.0).
make_expired_cert() {
    local dir=$1 first=$2
    make_cert "$@"
    mkdir -p "$dir/ca-db"
    : >"$dir/ca-db/index.txt"
    echo 1000 >"$dir/ca-db/serial"
    cat >"$dir/ca-db/ca.cnf" <<EOF
[ ca ]
default_ca = e2e
[ e2e ]
database = $dir/ca-db/index.txt
new_certs_dir = $dir/ca-db
serial = $dir/ca-db/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
EOF
    openssl ca -batch -notext -config "$dir/ca-db/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca.key" \
        -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$dir/$first.ext" \
        -in "$dir/$first.csr" -out "$dir/$first.pem" 2>/dev/null ||
        die "openssl ca: cannot make the expired certificate for $first"
}

# start_nginx_servers DIR VAR=CERT...: nginx serving DIR/html, one server per
# argument on a fresh port stored in $VAR: HTTPS presenting CERT.pem with
# CERT.key, or plain HTTP for an empty CERT (VAR=).  DIR/html/index.html is an
# HTML "origin page".  $NGINX_SERVERS_LOG has one line per request:
# "$server_port $ssl_server_name "$request" $status" (ssl_server_name is "-"
# for plain HTTP).
start_nginx_servers() {
    local dir=$1 arg var cert port servers="" waitfor=()
    shift
    mkdir -p "$dir/html" "$dir/tmp"
    NGINX_SERVERS_LOG=$dir/access.log
    cat >"$dir/html/index.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>origin page</title></head>
<body><h1 id="origin">origin page</h1><p>Served by the e2e test origin (nginx).</p></body></html>
EOF
    for arg in "$@"; do
        var=${arg%%=*}
        cert=${arg#*=}
        port=$(free_port)
        printf -v "$var" '%s' "$port"
        waitfor+=("$port")
        if [ -n "$cert" ]; then
            servers+="    server { listen 127.0.0.1:$port ssl; ssl_certificate $cert.pem; ssl_certificate_key $cert.key; root $dir/html; }
"
        else
            servers+="    server { listen 127.0.0.1:$port; root $dir/html; }
"
        fi
    done
    {
        nginx_conf_head "$dir" "'\$server_port \$ssl_server_name \"\$request\" \$status'"
        printf '    types { text/html html; text/plain txt; }\n'
        printf '    default_type application/octet-stream;\n%s}\n' "$servers"
    } >"$dir/nginx.conf"
    spawn nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/error.log"
    for port in "${waitfor[@]}"; do
        wait_port "$port" 10 || die "nginx did not start: $(tail -n 5 "$dir/error.log" 2>/dev/null)"
    done
}

# make_big FILE [MIB]: a file of MIB (default 100) MiB of random bytes
make_big() {
    head -c "$((${2:-100} * 1024 * 1024))" /dev/urandom >"$1"
}

# nginx_requests PATTERN: access log lines whose request matches PATTERN (ERE)
nginx_requests() {
    grep -E -- "$1" "$NGINX_ACCESS_LOG" 2>/dev/null || true
}

# ---- origin.py -------------------------------------------------------------------
# start_origin: HTTP origin on $ORIGIN_PORT recording to $ORIGIN_LOG
start_origin() {
    ORIGIN_PORT=$(free_port)
    ORIGIN_LOG=$T/origin.jsonl
    : >"$ORIGIN_LOG"
    spawn "$PY" "$E2E/origin.py" --mode http --port "$ORIGIN_PORT" --log "$ORIGIN_LOG" \
        --ready "$T/origin.ready"
    wait_file "$T/origin.ready" 10 || die "origin.py did not start"
}

# start_echo: TCP echo-at-EOF server on $ECHO_PORT recording to $ECHO_LOG
start_echo() {
    ECHO_PORT=$(free_port)
    ECHO_LOG=$T/echo.jsonl
    : >"$ECHO_LOG"
    spawn "$PY" "$E2E/origin.py" --mode tcp-echo --port "$ECHO_PORT" --log "$ECHO_LOG" \
        --ready "$T/echo.ready"
    wait_file "$T/echo.ready" 10 || die "echo server did not start"
}

# start_dns_nx: UDP DNS server answering NXDOMAIN on $DNS_PORT
start_dns_nx() {
    DNS_PORT=$("$PY" -c 'import socket; s = socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    spawn "$PY" "$E2E/origin.py" --mode dns-nx --port "$DNS_PORT" --ready "$T/dns.ready"
    wait_file "$T/dns.ready" 10 || die "DNS server did not start"
}

# origin_reqs [ERE]: the requests origin.py received (JSON lines), optionally filtered
origin_reqs() {
    grep -F '"ev": "req"' "$ORIGIN_LOG" | grep -E -- "${1:-.}" || true
}

# origin_count [ERE]: how many requests origin.py received
origin_count() {
    origin_reqs "${1:-.}" | grep -c . || true
}

# ---- the proxy -------------------------------------------------------------------
# write_hosts: $T/hosts maps the test names to 127.0.0.1
write_hosts() {
    printf '127.0.0.1 origin.test chat.deepseek.com api.deepseek.com www.example.test\n' >"$T/hosts"
}

# proxy_conf [LINE...]: the usual test config for $PROXY_PORT and $T/hosts, plus the
# given lines.  CONNECT_PORTS, LIMITS and DNS (the insides of connect_ports = [ ],
# limits : { } and dns : { }) and WORKERS (default 2) override parts.
proxy_conf() {
    local ports=${CONNECT_PORTS:-443}
    local limits=${LIMITS:-"header_timeout_ms = 1000; idle_timeout_ms = 3000; shutdown_grace_ms = 5000;"}
    local dns=${DNS:-"hosts_file = \"$T/hosts\";"}
    printf '%s\n' "listen = [ \"127.0.0.1:$PROXY_PORT\" ];" "workers = ${WORKERS:-2};" \
        "connect_ports = [ $ports ];" "dns : { $dns };" "limits : { $limits };" "$@"
}

# start_proxy DIR CONFIG_TEXT: write DIR/aigate.conf, start "$AIGATE -f" on it with
# stderr to DIR/proxy.log and wait until the first listen port accepts.
start_proxy() {
    local dir=$1 port
    [ -x "$AIGATE" ] || die "proxy binary not found: $AIGATE"
    printf '%s\n' "$2" >"$dir/aigate.conf"
    port=$(grep -oE 'listen *= *\[ *"127\.0\.0\.1:[0-9]+' "$dir/aigate.conf" | grep -oE '[0-9]+$')
    [ -n "$port" ] || die "start_proxy: no 127.0.0.1 listen address in the config"
    PROXY_LOG=$dir/proxy.log
    # Without ASan (which has its own RSS limit), cap the address space instead.
    if ldd "$AIGATE" 2>/dev/null | grep -q libasan; then
        spawn "$AIGATE" -f -c "$dir/aigate.conf" 2>>"$PROXY_LOG" >>"$dir/proxy.out"
    else
        spawn bash -c 'ulimit -v 4194304 && exec "$@"' aigate \
            "$AIGATE" -f -c "$dir/aigate.conf" 2>>"$PROXY_LOG" >>"$dir/proxy.out"
    fi
    PROXY_PID=$LAST_PID
    PROXY_PIDS+=("$PROXY_PID")
    PROXY_PORT=$port
    if ! wait_port "$port" 15; then
        alive "$PROXY_PID" || die "proxy exited at start: $(tail -n 20 "$PROXY_LOG")"
        die "proxy does not accept on $port: $(tail -n 20 "$PROXY_LOG")"
    fi
}

# stop_proxy [SIGNAL [SECONDS]]: signal the proxy (TERM), wait for it to exit (10 s,
# then it is killed and the test fails); its exit status is in $PROXY_RC.
stop_proxy() {
    local i
    kill "-${1:-TERM}" "$PROXY_PID" 2>/dev/null
    for ((i = 0; i < ${2:-10} * 20; i++)); do
        alive "$PROXY_PID" || break
        sleep 0.05
    done
    if alive "$PROXY_PID"; then
        fail "proxy did not exit within ${2:-10} s of SIG${1:-TERM}"
        kill -KILL "$PROXY_PID" 2>/dev/null
    fi
    wait "$PROXY_PID" 2>/dev/null
    PROXY_RC=$?
}

# pcurl ARGS...: curl through the proxy
pcurl() {
    curl -q -sS --max-time 20 -x "http://127.0.0.1:$PROXY_PORT" "$@"
}

# raw_req [HTTPC OPTIONS]: send stdin to the proxy byte for byte (see httpc.py)
raw_req() {
    "$PY" "$E2E/httpc.py" "$PROXY_PORT" "$@"
}

# ---- teardown --------------------------------------------------------------------
stop_all() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 140; i++)); do
            alive "$pid" || break
            sleep 0.05
        done
        if alive "$pid"; then
            if [[ " ${PROXY_PIDS[*]} " == *" $pid "* ]]; then
                fail "proxy (pid $pid) still running 7 s after SIGTERM at the end of the test"
            else
                echo "pid $pid ignored SIGTERM for 7 s, killing it" >&2
            fi
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    PIDS=()
}

# sanitizer reports in any proxy log fail the test
check_sanitizers() {
    local f
    while IFS= read -r f; do
        if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:|AddressSanitizer:DEADLYSIGNAL' "$f"; then
            fail "sanitizer report in ${f#"$T"/}: $(grep -m1 -E 'Sanitizer|runtime error' "$f")"
            sed -n '1,60p' "$f" >&2
        fi
    done < <(find "$T" -name proxy.log)
}

on_exit() {
    local rc=$?
    trap - EXIT
    stop_all
    check_sanitizers
    [ "$FAILED" = 0 ] || rc=1
    if [ "$rc" != 0 ] && [ -n "$PROXY_LOG" ] && [ -s "$PROXY_LOG" ]; then
        echo "---- last lines of $PROXY_LOG" >&2
        tail -n 25 "$PROXY_LOG" >&2
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "scratch kept in $T" >&2; else rm -rf "$T"; fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 143' TERM INT

# ---- the shipped configuration ---------------------------------------------------
# shipped_conf DIR UPSTREAM_CA HOSTS_FILE PORT...: DIR/aigate.conf, a copy of the
# SHIPPED rules/aigate.conf with only these settings changed:
#   listen            -> [ "127.0.0.1:$PROXY_PORT" ]
#   connect_ports     -> the shipped list plus PORT... (the test origins' ephemeral ports)
#   tls.ca_cert/ca_key -> DIR/ca/ca.pem, DIR/ca/ca.key, a CA made here with --gen-ca
#                        ($SHIPPED_CA names the certificate clients must trust)
#   tls.upstream_ca_file -> UPSTREAM_CA (the test PKI's CA, so nginx origins with
#                        certificates for the AI host names verify)
#   dns.hosts_file    -> HOSTS_FILE (the test names mapped to 127.0.0.1)
#   dns.nameservers   -> [ "127.0.0.1:$DNS_PORT" ], a local server answering NXDOMAIN
#                        (start_dns_nx), so nothing the test or a browser asks for
#                        is ever resolved or fetched outside the machine
#   ack.state_file, ack.secret_file, audit.path, audit.chain_key_file -> files in DIR
#                        ($SHIPPED_AUDIT names the audit log)
# Everything else is the shipped file's text, and the rule files it names by a
# relative path (users.htpasswd, pages, services.conf, policy.conf) are symlinks
# into rules/, so the test runs the shipped Basic users, groups, interception,
# catalog, policy and pages, and a change to any of them is tested.  Each change
# must apply to exactly one setting of the shipped file; if its structure
# changes so that one matches nothing or more than one, or the result still
# names an absolute path outside the test folder $T or a host:port other than the listen
# address, the test stops (die) rather than run something else.
SHIPPED_LINKS="users.htpasswd pages services.conf policy.conf"
shipped_conf() {
    local dir=$1 upstream_ca=$2 hosts=$3 conf f p ports
    shift 3
    [ -n "${PROXY_PORT:-}" ] || die "shipped_conf: PROXY_PORT is not set"
    [ $# -gt 0 ] || die "shipped_conf: no origin port for connect_ports"
    [ -e "$upstream_ca" ] || die "shipped_conf: no $upstream_ca"
    [ -e "$hosts" ] || die "shipped_conf: no $hosts"
    ports=$(printf '%s, ' "$@")
    ports=${ports%, }
    [ -n "${DNS_PORT:-}" ] || start_dns_nx
    mkdir -p "$dir"
    conf=$dir/aigate.conf
    cp "$ROOT/rules/aigate.conf" "$conf" || die "shipped_conf: cannot copy rules/aigate.conf"
    for f in $SHIPPED_LINKS; do
        [ -e "$ROOT/rules/$f" ] || die "shipped_conf: rules/$f is missing"
        ln -s "$ROOT/rules/$f" "$dir/$f" || die "shipped_conf: cannot link rules/$f"
    done
    "$AIGATE" --gen-ca "$dir/ca" >"$dir/genca.out" 2>&1 ||
        die "shipped_conf: --gen-ca: $(cat "$dir/genca.out")"
    SHIPPED_CA=$dir/ca/ca.pem
    SHIPPED_AUDIT=$dir/audit.jsonl
    shipped_sub "$conf" 'listen *= *\[[^]]*\]' "listen = [ \"127.0.0.1:$PROXY_PORT\" ]"
    shipped_sub "$conf" '(connect_ports *= *\[ *)([^] ][^]]*[^] ]|[^] ]) *\]' "\\1\\2, $ports ]"
    shipped_sub "$conf" 'ca_cert *= *"[^"]*"' "ca_cert = \"$dir/ca/ca.pem\""
    shipped_sub "$conf" 'ca_key *= *"[^"]*"' "ca_key = \"$dir/ca/ca.key\""
    shipped_sub "$conf" 'upstream_ca_file *= *"[^"]*"' "upstream_ca_file = \"$upstream_ca\""
    shipped_sub "$conf" 'hosts_file *= *"[^"]*"' "hosts_file = \"$hosts\""
    shipped_sub "$conf" 'nameservers *= *\[[^]]*\]' "nameservers = [ \"127.0.0.1:$DNS_PORT\" ]"
    shipped_sub "$conf" 'state_file *= *"[^"]*"' "state_file = \"$dir/acks.state\""
    shipped_sub "$conf" 'secret_file *= *"[^"]*"' "secret_file = \"$dir/ack.secret\""
    shipped_sub "$conf" '(^|[{;[:space:]])path *= *"[^"]*"' "\\1path = \"$SHIPPED_AUDIT\""
    shipped_sub "$conf" 'chain_key_file *= *"[^"]*"' "chain_key_file = \"$dir/audit.key\""
    # Nothing left that reaches outside the test: no absolute path but ours, no other address.
    while IFS= read -r p; do
        [[ $p == "\"$T/"* ]] ||
            die "shipped_conf: rules/aigate.conf names $p, which shipped_conf does not redirect into the test"
    done < <(shipped_settings "$conf" | grep -oE '"/[^"]*"')
    while IFS= read -r p; do
        [ "$p" = "\"127.0.0.1:$PROXY_PORT\"" ] || [ "$p" = "\"127.0.0.1:$DNS_PORT\"" ] ||
            die "shipped_conf: rules/aigate.conf names the address $p, which shipped_conf does not rewrite"
    done < <(shipped_settings "$conf" | grep -oE '"[^"]*:[0-9]+"')
}

# shipped_settings FILE: FILE without its comment lines
shipped_settings() {
    grep -vE '^[[:space:]]*#' "$1"
}

# shipped_sub FILE ERE REPLACEMENT: sed -E "s/ERE/REPLACEMENT/" on FILE's settings
# (comment lines aside; the delimiter is \001, so neither may contain that);
# dies unless ERE matches exactly once there
shipped_sub() {
    local n
    n=$(shipped_settings "$1" | grep -oE -- "$2" | wc -l)
    [ "$n" = 1 ] || die "shipped_conf: /$2/ matches $n settings of rules/aigate.conf, not 1: its structure changed; update shipped_conf in tests/e2e/lib.sh"
    local d=$'\001'
    sed -E -i "/^[[:space:]]*#/!s$d$2$d$3$d" "$1" || die "shipped_conf: sed failed"
}

# start_shipped NAME...: the shipped configuration running, with origins for NAME...:
# nginx (start_nginx_servers in $T/nginx) serving its origin page over HTTPS on
# $GOOD, with a certificate for every NAME signed by the test PKI ($T/pki/ca.pem),
# and over plain HTTP on $PLAIN; $T/hosts maps every NAME to 127.0.0.1; the proxy
# runs shipped_conf "$T/rules" on $PROXY_PORT with $GOOD added to connect_ports.
start_shipped() {
    make_cert "$T/pki" good "$@"
    start_nginx_servers "$T/nginx" PLAIN= GOOD="$T/pki/good"
    echo "127.0.0.1 $*" >"$T/hosts"
    PROXY_PORT=$(free_port)
    shipped_conf "$T/rules" "$T/pki/ca.pem" "$T/hosts" "$GOOD"
    start_proxy "$T/rules" "$(cat "$T/rules/aigate.conf")"
}

# ---- the browser -------------------------------------------------------------------
# need_browser: Debian's Chromium and playwright-core (npm ci in tests/e2e/browser
# when node_modules is missing) are there, or the test stops
need_browser() {
    [ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing: run 'make deps' (Debian package chromium)"
    command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are needed for the browser test"
    if [ ! -d "$E2E/browser/node_modules/playwright-core" ]; then
        (cd "$E2E/browser" && npm ci --no-audit --no-fund) >"$T/npm.log" 2>&1 ||
            die "npm ci in tests/e2e/browser failed: $(tail -n 5 "$T/npm.log")"
    fi
}

# spki_hash CERT: base64 SHA-256 of CERT's SubjectPublicKeyInfo (what Chromium's
# --ignore-certificate-errors-spki-list takes)
spki_hash() {
    openssl x509 -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER |
        openssl dgst -sha256 -binary | base64
}

# ---- Kerberos: a real MIT KDC ----------------------------------------------------------
# start_kdc DIR: krb5kdc on 127.0.0.1:$KDC_PORT (TCP and UDP) serving two realms made
# here with kdb5_util and kadmin.local:
#   AIGATE.TEST ($KRB5_REALM): users alice, bob, carol (password NAME-pass), the proxy's
#     service principal HTTP/$PROXY_HOST (proxy.aigate.test, mapped to 127.0.0.1 for
#     clients by curl --resolve; curl --proxy-negotiate asks for HTTP/<proxy host name>)
#     and another service, HTTP/other.aigate.test.
#   OTHER.TEST ($KRB5_OTHER_REALM): a realm AIGATE.TEST trusts (cross-realm
#     krbtgt/AIGATE.TEST@OTHER.TEST): its own alice (password other-alice-pass) and its
#     own HTTP/proxy.aigate.test, whose key the proxy does not have.
# Keytabs (mode 0600): $KDC_KEYTAB holds HTTP/proxy.aigate.test@AIGATE.TEST only,
# $KDC_BOTH_KEYTAB that and HTTP/other.aigate.test.  Exported for every client and the
# proxy: KRB5_CONFIG (DIR/krb5.conf: aigate.test hosts are in AIGATE.TEST; $KRB5_OTHER_CONFIG
# maps them to OTHER.TEST instead), KRB5_KDC_PROFILE, and KRB5RCACHEDIR (the acceptor's
# replay cache, DIR/rcache).  Stopped by pid with the other servers.
start_kdc() {
    local dir=$1 r
    mkdir -p "$dir/rcache"
    KDC_DIR=$dir
    KDC_PORT=$(free_port)
    KRB5_REALM=AIGATE.TEST
    KRB5_OTHER_REALM=OTHER.TEST
    PROXY_HOST=proxy.aigate.test
    KDC_KEYTAB=$dir/proxy.keytab
    KDC_BOTH_KEYTAB=$dir/both.keytab
    KRB5_OTHER_CONFIG=$dir/krb5-other.conf
    krb5_conf() {
        cat <<CONF
[libdefaults]
    default_realm = $KRB5_REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
[realms]
    $KRB5_REALM = {
        kdc = 127.0.0.1:$KDC_PORT
    }
    $KRB5_OTHER_REALM = {
        kdc = 127.0.0.1:$KDC_PORT
    }
[domain_realm]
    .aigate.test = $1
    aigate.test = $1
[capaths]
    $KRB5_OTHER_REALM = {
        $KRB5_REALM = .
    }
CONF
    }
    krb5_conf "$KRB5_REALM" >"$dir/krb5.conf"
    krb5_conf "$KRB5_OTHER_REALM" >"$KRB5_OTHER_CONFIG"
    {
        printf '[kdcdefaults]\n    kdc_listen = 127.0.0.1:%s\n    kdc_tcp_listen = 127.0.0.1:%s\n' \
            "$KDC_PORT" "$KDC_PORT"
        printf '[realms]\n'
        for r in "$KRB5_REALM" "$KRB5_OTHER_REALM"; do
            printf '    %s = {\n        database_name = %s/db-%s\n        key_stash_file = %s/stash-%s\n' \
                "$r" "$dir" "$r" "$dir" "$r"
            printf '        acl_file = %s/kadm5.acl\n        supported_enctypes = aes256-cts-hmac-sha1-96:normal\n    }\n' "$dir"
        done
        printf '[logging]\n    kdc = FILE:%s/kdc.log\n' "$dir"
    } >"$dir/kdc.conf"
    : >"$dir/kadm5.acl"
    export KRB5_CONFIG=$dir/krb5.conf KRB5_KDC_PROFILE=$dir/kdc.conf KRB5RCACHEDIR=$dir/rcache
    kadm() { kadmin.local -r "$1" -q "$2" >>"$dir/kadmin.log" 2>&1 || die "kadmin.local -r $1 '$2' failed: $(tail -n 3 "$dir/kadmin.log")"; }
    for r in "$KRB5_REALM" "$KRB5_OTHER_REALM"; do
        kdb5_util create -s -r "$r" -P "master-$r" >>"$dir/kadmin.log" 2>&1 ||
            die "kdb5_util create -r $r failed: $(tail -n 3 "$dir/kadmin.log")"
        kadm "$r" "addprinc -pw cross-realm-pass krbtgt/$KRB5_REALM@$KRB5_OTHER_REALM"
        kadm "$r" "addprinc -randkey HTTP/$PROXY_HOST"
    done
    for r in alice bob carol; do kadm "$KRB5_REALM" "addprinc -pw $r-pass $r"; done
    kadm "$KRB5_OTHER_REALM" "addprinc -pw other-alice-pass alice"
    kadm "$KRB5_REALM" "addprinc -randkey HTTP/other.aigate.test"
    kadm "$KRB5_REALM" "ktadd -k $KDC_KEYTAB HTTP/$PROXY_HOST"
    kadm "$KRB5_REALM" "ktadd -k $KDC_BOTH_KEYTAB -norandkey HTTP/$PROXY_HOST HTTP/other.aigate.test"
    chmod 0600 "$KDC_KEYTAB" "$KDC_BOTH_KEYTAB"
    spawn krb5kdc -n -r "$KRB5_REALM" -r "$KRB5_OTHER_REALM" -P "$dir/kdc.pid" 2>>"$dir/kdc.err"
    KDC_PID=$LAST_PID
    wait_port "$KDC_PORT" 10 || die "krb5kdc did not start: $(tail -n 5 "$dir/kdc.log" "$dir/kdc.err" 2>/dev/null)"
}

# kinit_user NAME [REALM [PASSWORD]]: a ticket for NAME@REALM (default $KRB5_REALM, password
# NAME-pass) in its own cache $KDC_DIR/cc.NAME@REALM, made the current one (KRB5CCNAME)
kinit_user() {
    local realm=${2:-$KRB5_REALM}
    export KRB5CCNAME=FILE:$KDC_DIR/cc.$1@$realm
    echo "${3:-$1-pass}" | kinit "$1@$realm" >>"$KDC_DIR/kinit.log" 2>&1 ||
        die "kinit $1@$realm failed: $(tail -n 2 "$KDC_DIR/kinit.log")"
}

# ---- LDAP: a real OpenLDAP slapd ----------------------------------------------------------
# start_slapd DIR: slapd (mdb backend, memberof overlay) from DIR/slapd.conf, with
# ldap://127.0.0.1:$SLAPD_PORT ($SLAPD_URI) and ldaps://127.0.0.1:$SLAPD_TLS_PORT
# ($SLAPD_TLS_URI, certificate for IP 127.0.0.1 signed by $SLAPD_CA: libldap checks the
# name "localhost" against the machine's own name instead).  Suffix
# dc=aigate,dc=test ($SLAPD_BASE); users uid=NAME,ou=people (inetOrgPerson) for alice,
# bob, carol, dave and x(y) (whose name and DN need escaping in a filter); groups
# (groupOfNames with member DNs, under ou=groups) staff (alice, bob), ai-users (alice),
# security (carol) and "R&D (lab)" (bob, x(y)); dave is in none.  The overlay gives users
# memberOf.  The service account $SLAPD_BIND_DN
# (password in $SLAPD_PWFILE, mode 0600) may read everything; anonymous users nothing.
# Called again on the same DIR after stop_slapd, it starts the same directory again on
# the same ports.  The pid is $SLAPD_PID.
start_slapd() {
    local dir=$1 fresh=0 u ou
    SLAPD_BASE="dc=aigate,dc=test"
    SLAPD_BIND_DN="cn=aigate,ou=services,$SLAPD_BASE"
    SLAPD_PWFILE=$dir/ldap.secret
    SLAPD_CA=$dir/certs/ca.pem
    if [ ! -e "$dir/slapd.conf" ]; then
        fresh=1
        mkdir -p "$dir/db"
        SLAPD_PORT=$(free_port)
        SLAPD_TLS_PORT=$(free_port)
        make_cert "$dir/certs" ldap 127.0.0.1
        printf 'svc-secret\n' >"$SLAPD_PWFILE"
        chmod 0600 "$SLAPD_PWFILE"
        cat >"$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
TLSCACertificateFile $dir/certs/ca.pem
TLSCertificateFile $dir/certs/ldap.pem
TLSCertificateKeyFile $dir/certs/ldap.key
database mdb
maxsize 16777216
suffix "$SLAPD_BASE"
rootdn "cn=admin,$SLAPD_BASE"
rootpw admin-secret
directory $dir/db
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint TRUE
access to attrs=userPassword by anonymous auth by * none
access to * by dn.exact="$SLAPD_BIND_DN" read by * none
CONF
        printf 'SLAPD_PORT=%s\nSLAPD_TLS_PORT=%s\n' "$SLAPD_PORT" "$SLAPD_TLS_PORT" >"$dir/ports"
    fi
    . "$dir/ports"
    SLAPD_URI=ldap://127.0.0.1:$SLAPD_PORT
    SLAPD_TLS_URI=ldaps://127.0.0.1:$SLAPD_TLS_PORT
    spawn slapd -d 0 -f "$dir/slapd.conf" -h "$SLAPD_URI/ ldaps://127.0.0.1:$SLAPD_TLS_PORT/" \
        2>>"$dir/slapd.log"
    SLAPD_PID=$LAST_PID
    wait_port "$SLAPD_PORT" 10 || die "slapd did not start: $(tail -n 5 "$dir/slapd.log")"
    [ "$fresh" = 1 ] || return 0
    {
        printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: aigate\no: aigate test\n\n' "$SLAPD_BASE"
        for ou in people groups services; do
            printf 'dn: ou=%s,%s\nobjectClass: organizationalUnit\nou: %s\n\n' "$ou" "$SLAPD_BASE" "$ou"
        done
        printf 'dn: %s\nobjectClass: person\nobjectClass: simpleSecurityObject\ncn: aigate\nsn: aigate\nuserPassword: svc-secret\n\n' "$SLAPD_BIND_DN"
        for u in alice bob carol dave 'x(y)'; do
            printf 'dn: uid=%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\n\n' \
                "$u" "$SLAPD_BASE" "$u" "$u" "$u"
        done
        slapd_group() {
            local g=$1 m
            shift
            printf 'dn: cn=%s,ou=groups,%s\nobjectClass: groupOfNames\ncn: %s\n' "$g" "$SLAPD_BASE" "$g"
            for m in "$@"; do printf 'member: uid=%s,ou=people,%s\n' "$m" "$SLAPD_BASE"; done
            printf '\n'
        }
        slapd_group staff alice bob
        slapd_group ai-users alice
        slapd_group security carol
        slapd_group 'R&D (lab)' bob 'x(y)'
    } >"$dir/data.ldif"
    ldapadd -x -H "$SLAPD_URI" -D "cn=admin,$SLAPD_BASE" -w admin-secret -f "$dir/data.ldif" \
        >"$dir/ldapadd.log" 2>&1 || die "ldapadd failed: $(tail -n 5 "$dir/ldapadd.log")"
}

# stop_slapd: stop slapd (TERM, by pid) and wait until it has exited
stop_slapd() {
    local i
    kill -TERM "$SLAPD_PID" 2>/dev/null
    for ((i = 0; i < 100; i++)); do
        alive "$SLAPD_PID" || break
        sleep 0.05
    done
    alive "$SLAPD_PID" && kill -KILL "$SLAPD_PID" 2>/dev/null
    wait "$SLAPD_PID" 2>/dev/null
}

# freeze PID / thaw PID: SIGSTOP a server and wait until it is stopped (its threads on
# other CPUs may still answer for a moment after kill returns) / SIGCONT it
freeze() {
    local i
    kill -STOP "$1" || return 1
    for ((i = 0; i < 100; i++)); do
        [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ] && return 0
        sleep 0.01
    done
    return 1
}
thaw() {
    kill -CONT "$1"
}

# ---- a fleet: Redis, HAProxy, rsyslog ------------------------------------------------
# start_redis DIR [PORT]: redis-server on 127.0.0.1:$REDIS_PORT (a fresh port, or PORT to
# come back on the same one after stop_redis), nothing saved to disk, its folder and log
# in DIR; REDIS_ARGS adds options (e.g. "--requirepass s3cret").  $REDIS_PID is its pid.
start_redis() {
    local dir=$1
    command -v redis-server >/dev/null || die "redis-server is missing: make test-deps"
    mkdir -p "$dir"
    REDIS_PORT=${2:-$(free_port)}
    # shellcheck disable=SC2086 # REDIS_ARGS is a list of options
    spawn redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" --daemonize no ${REDIS_ARGS:-}
    REDIS_PID=$LAST_PID
    wait_port "$REDIS_PORT" 10 || die "redis-server did not start: $(tail -n 5 "$dir/redis.log" 2>/dev/null)"
}

# stop_redis: stop the redis-server of start_redis by its pid and wait for it
stop_redis() {
    local i
    kill -TERM "$REDIS_PID" 2>/dev/null
    for ((i = 0; i < 200; i++)); do
        alive "$REDIS_PID" || break
        sleep 0.05
    done
    alive "$REDIS_PID" && kill -KILL "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
}

# haproxy_conf FRONT_PORT SEND NODE...: an HAProxy configuration like
# contrib/fleet/haproxy.cfg for the test: TCP on 127.0.0.1:FRONT_PORT, round-robin
# over NODE... ("PROXY_PORT:ADMIN_PORT" each, on 127.0.0.1), SEND ("send-proxy-v2" or
# "send-proxy") on every server line, and a health check "GET /healthz" on each node's
# admin port every 500 ms (2 failures down, 2 successes up).
haproxy_conf() {
    local front=$1 send=$2 n=0 node
    shift 2
    cat <<EOF
global
    maxconn 4096
defaults
    mode tcp
    option redispatch
    retries 2
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend aigate_in
    bind 127.0.0.1:$front
    default_backend aigate_nodes
backend aigate_nodes
    balance roundrobin
    option httpchk
    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
EOF
    for node in "$@"; do
        n=$((n + 1))
        echo "    server node$n 127.0.0.1:${node%%:*} $send check port ${node##*:}"
    done
}

# start_haproxy DIR CONF: write DIR/haproxy.cfg, check it (haproxy -c), run haproxy in the
# foreground (-db) with its output in DIR/haproxy.log, and wait until the first
# "bind 127.0.0.1:PORT" accepts.  $HAPROXY_PID is its pid.
start_haproxy() {
    local dir=$1 port
    command -v haproxy >/dev/null || die "haproxy is missing: make test-deps"
    mkdir -p "$dir"
    printf '%s\n' "$2" >"$dir/haproxy.cfg"
    haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/haproxy.check" 2>&1 ||
        die "haproxy.cfg does not check: $(cat "$dir/haproxy.check")"
    port=$(grep -oE 'bind +127\.0\.0\.1:[0-9]+' "$dir/haproxy.cfg" | head -n 1 | grep -oE '[0-9]+$')
    [ -n "$port" ] || die "start_haproxy: no bind 127.0.0.1:PORT in the configuration"
    spawn haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1
    HAPROXY_PID=$LAST_PID
    wait_port "$port" 10 || die "haproxy did not start: $(tail -n 5 "$dir/haproxy.log")"
}

# start_rsyslog DIR: run rsyslogd in the foreground on DIR/rsyslog.conf (written by the
# test; it must set global(workDirectory=...) inside DIR and load only modules that need
# no privilege, such as imfile and omfile), pid file DIR/rsyslog.pid, its own messages in
# DIR/rsyslog.log.  Checks the configuration first (rsyslogd -N1).  $RSYSLOG_PID is its pid.
start_rsyslog() {
    local dir=$1
    command -v rsyslogd >/dev/null || die "rsyslogd is missing: make test-deps"
    rsyslogd -N1 -f "$dir/rsyslog.conf" >"$dir/rsyslog.check" 2>&1 ||
        die "rsyslog.conf does not check: $(tail -n 5 "$dir/rsyslog.check")"
    spawn rsyslogd -n -f "$dir/rsyslog.conf" -i "$dir/rsyslog.pid" >"$dir/rsyslog.log" 2>&1
    RSYSLOG_PID=$LAST_PID
    wait_file "$dir/rsyslog.pid" 10 || die "rsyslogd did not start: $(tail -n 5 "$dir/rsyslog.log")"
}
