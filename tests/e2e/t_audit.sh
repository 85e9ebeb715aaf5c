#!/bin/bash
# The audit log (SPEC section 7): one JSON line per request and per CONNECT
# tunnel with the fields in order and the right values, the hash chain and
# --verify-log (tampering, deleting, swapping, truncating), scope "ai" and
# log_query, kill -9 under load, rotation under load (.gz files plus the live
# file verify, no line lost, keep), SIGUSR1 reopening, and --report.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
start_origin
printf '127.0.0.1 origin.test chat.deepseek.com chatgpt.com\n' >"$T/hosts"
N=http://origin.test:$NGINX_HTTP_PORT
S=https://origin.test:$NGINX_HTTPS_PORT
O=http://origin.test:$ORIGIN_PORT
DS=http://chat.deepseek.com:$ORIGIN_PORT
GPT=http://chatgpt.com:$ORIGIN_PORT
CA=$T/nginx/certs/ca.pem

cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "ban-cn-ai"; action = "block"; vendor_countries = [ "CN" ]; },
  { name = "no-secrets"; action = "block"; hosts = [ "origin.test" ]; paths = [ "/secret*" ]; }
);
EOF

# conf DIR [LINE...]: DIR/policy.conf and the config for a proxy writing DIR/audit.jsonl
conf() {
    local dir=$1
    shift
    mkdir -p "$dir"
    cp "$T/policy.conf" "$dir/policy.conf"
    CONNECT_PORTS="443, $NGINX_HTTPS_PORT" LIMITS='header_timeout_ms = 2000; idle_timeout_ms = 10000;' \
        proxy_conf "@include \"$ROOT/rules/services.conf\"" '@include "policy.conf"' "$@"
}

# nlines FILE: complete lines in FILE (0 if missing)
nlines() {
    if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# settle FILE N: wait (5 s) until FILE has N lines, then 1.2 s more (the writer
# syncs at least once a second) so that a surplus line would show too
settle() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(nlines "$1")" -ge "$2" ] && break
        sleep 0.1
    done
    sleep 1.2
}

# verify FILE...: "$AIGATE --verify-log" with the current proxy's config; output
# in $VOUT, status in $VRC
verify() {
    VOUT=$("$AIGATE" -c "$CONF_DIR/aigate.conf" --verify-log "$@" 2>&1)
    VRC=$?
}

# report_checks: turn "ok - ..." / "not ok - ..." lines on stdin into assertions
report_checks() {
    local line
    while IFS= read -r line; do
        case $line in
        "ok - "*) pass "${line#ok - }" ;;
        "not ok - "*) fail "${line#not ok - }" ;;
        *) fail "checker said: $line" ;;
        esac
    done
}

cat >"$T/load.py" <<'EOF'
"""load.py PORT URL THREADS SECONDS MAXREQ: keep-alive GETs through the proxy from
THREADS threads until SECONDS pass, MAXREQ requests were made, or the proxy goes
away.  Prints "completed errors elapsed_s" (elapsed up to the last completion)."""
import http.client, sys, threading, time

port, url, nthreads, seconds, maxreq = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
lock = threading.Lock()
state = {"tickets": 0, "done": 0, "errors": 0, "last": 0.0}
start = time.monotonic()

def worker():
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    while time.monotonic() - start < seconds:
        with lock:
            if state["tickets"] >= maxreq:
                return
            state["tickets"] += 1
        try:
            conn.request("GET", url)
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except (OSError, http.client.HTTPException):
            with lock:
                state["errors"] += 1
            return
        with lock:
            if ok:
                state["done"] += 1
                state["last"] = time.monotonic()
            else:
                state["errors"] += 1

threads = [threading.Thread(target=worker) for _ in range(nthreads)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(state["done"], state["errors"], "%.3f" % max(state["last"] - start, 0.001))
EOF

# ---- (a) a traffic mix: one line per request, fields in order, right values ---
CONF_DIR=$T/a
PROXY_PORT=$(free_port)
start_proxy "$T/a" "$(conf "$T/a" \
    "auth : { mode = \"basic\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    "audit : { path = \"$T/a/audit.jsonl\"; };")"
A=$T/a/audit.jsonl
U=(-U alice:alice-pass)
head -c 1000 /dev/urandom >"$T/post.bin"
t_start=$(date -u +%s)
assert_eq "GET" 200 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' "$N/one.txt")"
assert_eq "POST" 200 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' --data-binary "@$T/post.bin" "$O/body/post")"
assert_eq "HEAD" 200 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' -I "$N/small.txt")"
assert_eq "404" 404 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' "$N/missing.txt")"
assert_eq "blocked" 403 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' "$DS/blocked?secret=s3cr3t-q")"
assert_eq "catalogued, allowed" 200 "$(pcurl "${U[@]}" -o /dev/null -w '%{http_code}' "$GPT/chat?q=hello-q")"
assert_eq "CONNECT tunnel" "$(sha256sum <"$NGINX_HTML/small.txt")" \
    "$(pcurl "${U[@]}" -p --cacert "$CA" "$S/small.txt" | sha256sum)"
printf 'POST %s/body/x HTTP/1.1\r\nHost: origin.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' "$O" |
    raw_req --timeout 3 >"$T/malformed.raw"
assert_match "malformed request: 400" '^HTTP/1\.1 400' "$(head -n1 "$T/malformed.raw")"
assert_eq "auth-fail" 407 "$(pcurl -U alice:wrong-pass -o /dev/null -w '%{http_code}' "$N/two.txt")"
# User names with a quote, a backslash and invalid UTF-8, and with control
# bytes and a newline: each auth-fail line stays one valid JSON line
evil=$(printf 'a"b\\c\377d:pw' | base64 -w0)
assert_eq "auth-fail with a quote, a backslash and invalid UTF-8 in the name" 407 \
    "$(pcurl -H "Proxy-Authorization: Basic $evil" -o /dev/null -w '%{http_code}' "$N/three.txt")"
evil=$(printf 'x\001\n{"y":1}:pw' | base64 -w0)
assert_eq "auth-fail with control bytes and a newline in the name" 407 \
    "$(pcurl -H "Proxy-Authorization: Basic $evil" -o /dev/null -w '%{http_code}' "$N/four.txt")"
settle "$A" 11
assert_eq "exactly one line per request (11)" 11 "$(nlines "$A")"
assert_eq "the file ends with a newline" "0a" "$(tail -c 1 "$A" | od -An -tx1 | tr -d ' ')"

"$PY" - "$A" "$t_start" "$ORIGIN_PORT" "$NGINX_HTTP_PORT" "$NGINX_HTTPS_PORT" <<'EOF' | report_checks
import json, re, sys, datetime
path, t_start, oport, nport, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
KEYS = ["ts", "id", "client", "user", "method", "scheme", "host", "port", "path", "service",
        "category", "rule", "action", "status", "bytes_in", "bytes_out", "ms", "tls", "chain"]
def check(cond, what):
    print(("ok - " if cond else "not ok - ") + what)
recs = []
for i, line in enumerate(open(path, encoding="utf-8"), 1):
    try:
        d = json.loads(line, object_pairs_hook=lambda kv: kv)
    except ValueError as e:
        check(False, "line %d is valid JSON (%s): %s" % (i, e, line[:200]))
        continue
    keys = [k for k, _ in d]
    check(keys == KEYS, "line %d: keys in SPEC order (got %s)" % (i, ",".join(keys)))
    recs.append(dict(d))
check(len(recs) == 11, "11 JSON lines (got %d)" % len(recs))
now = datetime.datetime.now(datetime.timezone.utc).timestamp()
for i, d in enumerate(recs, 1):
    ts = d.get("ts") or ""
    ok = re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts) is not None
    check(ok, "line %d: ts is RFC 3339 UTC with milliseconds (%s)" % (i, ts))
    if ok:
        t = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
        check(t_start - 1 <= t <= now + 1, "line %d: ts %s within the test's run" % (i, ts))
    check(re.fullmatch(r"[0-9a-f]{64}", d.get("chain") or "") is not None, "line %d: chain is 64 hex digits" % i)
    check(d.get("client") == "127.0.0.1", "line %d: client 127.0.0.1 (got %r)" % (i, d.get("client")))
    check(isinstance(d.get("ms"), int) and d["ms"] >= 0, "line %d: ms is a number (got %r)" % (i, d.get("ms")))
    for k in ("bytes_in", "bytes_out"):
        check(isinstance(d.get(k), int) and d[k] > 0, "line %d: %s > 0 (got %r)" % (i, k, d.get(k)))
ids = [d.get("id") for d in recs]
check(all(isinstance(x, str) and x for x in ids) and len(set(ids)) == len(ids), "ids present and unique")

def find(desc, **want):
    m = [d for d in recs if all(d.get(k) == v for k, v in want.items())]
    check(len(m) == 1, "%s: exactly one line with %s (found %d)" % (desc, want, len(m)))
    return m[0] if len(m) == 1 else None

def expect(desc, d, **want):
    if d is None:
        return
    for k, v in want.items():
        check(d.get(k) == v, "%s: %s = %r (got %r)" % (desc, k, v, d.get(k)))

null = None
d = find("GET", method="GET", path="/one.txt")
expect("GET", d, user="alice", scheme="http", host="origin.test", port=nport, service=null,
       category=null, rule=null, action="allow", status=200, tls="none")
d = find("POST", method="POST", path="/body/post")
expect("POST", d, user="alice", port=oport, action="allow", status=200, tls="none")
if d:
    check(d["bytes_in"] >= 1000, "POST: bytes_in counts the 1000-byte body (got %r)" % d["bytes_in"])
    check(d["bytes_out"] >= 1000, "POST: bytes_out counts the echoed body (got %r)" % d["bytes_out"])
d = find("HEAD", method="HEAD", path="/small.txt")
expect("HEAD", d, action="allow", status=200, tls="none")
if d:
    check(d["bytes_out"] < 1024, "HEAD: bytes_out has no body (got %r)" % d["bytes_out"])
d = find("404", path="/missing.txt")
expect("404", d, method="GET", action="allow", status=404)
d = find("blocked", host="chat.deepseek.com")
expect("blocked", d, user="alice", method="GET", path="/blocked", service="deepseek",
       category="chat", rule="ban-cn-ai", action="block", status=403, port=oport, tls="none")
d = find("catalogued, allowed", host="chatgpt.com")
expect("catalogued, allowed", d, path="/chat", service="chatgpt", category="chat", rule=null,
       action="allow", status=200)
d = find("CONNECT", method="CONNECT")
expect("CONNECT", d, user="alice", host="origin.test", port=sport, path=null, service=null,
       action="allow", status=200, tls="tunnel")
if d:
    check(d["bytes_out"] > 1024, "CONNECT: bytes_out counts the tunnelled bytes (got %r)" % d["bytes_out"])
d = find("malformed", action="error")
expect("malformed", d, status=400, tls="none")
d = find("auth-fail", action="auth-fail", user="alice")
expect("auth-fail", d, status=407, path="/two.txt")
d = find("auth-fail, quote and invalid UTF-8", action="auth-fail", path="/three.txt")
if d:
    u = d.get("user")
    check(isinstance(u, str) and u.startswith('a"b\\c') and u.endswith("d"),
          "user name with a quote, a backslash and invalid UTF-8 escaped (got %r)" % u)
d = find("auth-fail, control bytes", action="auth-fail", path="/four.txt")
if d:
    u = d.get("user")
    check(u is None or u == 'x\x01\n{"y":1}', "user name with control bytes null or escaped (got %r)" % u)
EOF
assert_not_contains "query strings dropped by default" "$(cat "$A")" "-q"
verify "$A"
assert_eq "--verify-log on the live file: exit 0" 0 "$VRC"
assert_match "--verify-log counts 11 lines" '\b11 lines verified' "$VOUT"

# ---- (b) tampering --------------------------------------------------------------
# A copy with one byte of line 5 changed (a digit of its id), line 5 deleted,
# lines 4 and 5 swapped, the last line cut short: each named by FILE:LINE.
"$PY" - "$A" "$T/b.tampered" "$T/b.deleted" "$T/b.swapped" "$T/b.truncated" <<'EOF'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
t = list(lines)
i = t[4].index(b'"id":"') + 6
t[4] = t[4][:i] + (b"1" if t[4][i:i + 1] != b"1" else b"2") + t[4][i + 1:]
open(sys.argv[2], "wb").write(b"\n".join(t) + b"\n")
open(sys.argv[3], "wb").write(b"\n".join(lines[:4] + lines[5:]) + b"\n")
open(sys.argv[4], "wb").write(b"\n".join(lines[:3] + [lines[4], lines[3]] + lines[5:]) + b"\n")
open(sys.argv[5], "wb").write(b"\n".join(lines)[:-40] + b"\n")
EOF
for c in tampered:5 deleted:5 swapped:4 truncated:11; do
    kind=${c%:*} line=${c#*:}
    verify "$T/b.$kind"
    assert_eq "--verify-log on a $kind copy: exit 1" 1 "$VRC"
    assert_match "--verify-log on a $kind copy names line $line" "b\\.$kind:$line\\b" "$VOUT"
done
verify "$T/b.deleted" "$A"
assert_eq "--verify-log over two files that do not chain: exit 1" 1 "$VRC"

# ---- (g) --report ------------------------------------------------------------------
rep=$("$AIGATE" -c "$T/a/aigate.conf" --report "$A" 2>&1)
assert_eq "--report: exit 0" 0 "$?"
echo "$rep"
assert_match "--report: deepseek with its block" '^ *deepseek\b.*\b1\b' "$rep"
assert_match "--report: chatgpt" '^ *chatgpt\b' "$rep"
assert_match "--report: user alice" '^ *alice\b' "$rep"
assert_match "--report: says block somewhere" '\bblock\b' "$rep"
stop_proxy

# ---- (c) scope "ai" and log_query ----------------------------------------------------
CONF_DIR=$T/c
PROXY_PORT=$(free_port)
start_proxy "$T/c" "$(conf "$T/c" "audit : { path = \"$T/c/audit.jsonl\"; scope = \"ai\"; log_query = true; };")"
C=$T/c/audit.jsonl
pcurl -o /dev/null "$N/one.txt?plain=1"
pcurl -o /dev/null "$N/missing.txt"
pcurl -p --cacert "$CA" -o /dev/null "$S/one.txt"
pcurl -o /dev/null "$GPT/chat?q=kept"
pcurl -o /dev/null "$DS/blocked?x=1"
pcurl -o /dev/null "$N/secret.txt?y=2"
settle "$C" 3
assert_eq "scope ai: only the 3 AI or blocked requests are logged" 3 "$(nlines "$C")"
assert_not_contains "scope ai: no line for one.txt" "$(cat "$C")" one.txt
assert_not_contains "scope ai: no line for the blind tunnel" "$(cat "$C")" CONNECT
assert_contains "log_query: the query is kept" "$(cat "$C")" '"path":"/chat?q=kept"'
assert_contains "scope ai: the blocked AI request" "$(cat "$C")" '"rule":"ban-cn-ai"'
assert_contains "scope ai: a block by a non-AI rule" "$(cat "$C")" '"path":"/secret.txt?y=2"'
verify "$C"
assert_eq "scope ai: the file verifies" 0 "$VRC"
stop_proxy

# ---- (d) kill -9 under load ------------------------------------------------------------
CONF_DIR=$T/d
PROXY_PORT=$(free_port)
start_proxy "$T/d" "$(conf "$T/d" "audit : { path = \"$T/d/audit.jsonl\"; };")"
spawn "$PY" "$T/load.py" "$PROXY_PORT" "$N/one.txt" 4 30 1000000000 >"$T/d/load.out"
load=$LAST_PID
sleep 3
stop_proxy KILL
wait "$load" 2>/dev/null
read -r ndone errors elapsed <"$T/d/load.out"
echo "load before kill -9: $ndone requests in $elapsed s ($errors broken by the kill)"
per_s=$(awk -v n="$ndone" -v t="$elapsed" 'BEGIN { printf "%d", n / t + 1 }')
[ "$ndone" -ge 1000 ] || fail "load too small to show anything: $ndone requests in 3 s"
# the complete lines of a copy (a partial last line dropped)
"$PY" -c 'import sys; b = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(b[:b.rfind(b"\n") + 1])' \
    "$T/d/audit.jsonl" "$T/d/complete.jsonl"
got=$(nlines "$T/d/complete.jsonl")
echo "complete lines after kill -9: $got (one second of load: $per_s)"
assert_le "kill -9 loses at most one second of lines: $ndone completed - $per_s" $((ndone - per_s)) "$got"
assert_le "no more lines than requests started" "$got" $((ndone + 4))
verify "$T/d/complete.jsonl"
assert_eq "after kill -9 the complete lines verify" 0 "$VRC"
assert_match "after kill -9 every complete line is verified" "\\b$got lines verified" "$VOUT"

# ---- (e) rotation under load ----------------------------------------------------------------
# rotated DIR: the rotated files of DIR/audit.jsonl, oldest first by the naming
# scheme (PATH.STAMP, PATH.STAMP.1, PATH.STAMP.2, ...; .gz or not yet compressed)
rotated() {
    "$PY" - "$1" <<'EOF2'
import os, re, sys
d = sys.argv[1]
key = {}
for f in os.listdir(d):
    m = re.fullmatch(r"audit\.jsonl\.(\d{8}T\d{6}Z)(?:\.(\d+))?(\.gz)?", f)
    if m:
        key[f] = (m.group(1), int(m.group(2) or 0))
for f in sorted(key, key=key.get):
    print(os.path.join(d, f))
EOF2
}
CONF_DIR=$T/e
PROXY_PORT=$(free_port)
start_proxy "$T/e" "$(conf "$T/e" "audit : { path = \"$T/e/audit.jsonl\"; rotate_bytes = 20000; keep = 1000; };")"
"$PY" "$T/load.py" "$PROXY_PORT" "$N/one.txt" 4 40 3000 >"$T/e/load.out"
read -r ndone errors elapsed <"$T/e/load.out"
echo "rotation load: $ndone requests in $elapsed s, $errors errors"
assert_eq "rotation load: 3000 requests answered 200" "3000 0" "$ndone $errors"
stop_proxy
assert_eq "proxy exited 0 after the rotation load" 0 "$PROXY_RC"
mapfile -t rot < <(rotated "$T/e")
ngz=$(printf '%s\n' "${rot[@]}" | grep -c '\.gz$')
echo "rotated files: ${#rot[@]} (${ngz} compressed)"
assert_le "rotation happened (at least 20 .gz files for ~1.3 MB at 20000 bytes)" 20 "$ngz"
bad_names=$(cd "$T/e" && printf '%s\n' audit.jsonl.* |
    grep -vE '^audit\.jsonl\.[0-9]{8}T[0-9]{6}Z(\.[0-9]+)?(\.gz)?$')
assert_eq "rotated files are named audit.jsonl.YYYYMMDDTHHMMSSZ[.N].gz" "" "$bad_names"
total=$(for f in "${rot[@]}"; do
    case $f in *.gz) gzip -dc "$f" ;; *) cat "$f" ;; esac
done | cat - "$T/e/audit.jsonl" | wc -l)
assert_eq "rotated + live lines = requests (no line lost or doubled)" 3000 "$total"
verify "${rot[@]}" "$T/e/audit.jsonl"
assert_eq "--verify-log over the rotated files (oldest first) and the live file: exit 0" 0 "$VRC"
assert_match "--verify-log over the rotated files counts every line" '\b3000 lines verified' "$VOUT"
# README: "aigate --verify-log audit.jsonl.*.gz audit.jsonl" (shell glob order, oldest first)
verify "$T"/e/audit.jsonl.*.gz "$T/e/audit.jsonl"
assert_eq "README's command, --verify-log audit.jsonl.*.gz audit.jsonl: exit 0 ($(head -c 200 <<<"$VOUT"))" \
    0 "$VRC"

# keep = 2: at most two rotated files stay; they and the live file verify from the first kept one
CONF_DIR=$T/k
PROXY_PORT=$(free_port)
start_proxy "$T/k" "$(conf "$T/k" "audit : { path = \"$T/k/audit.jsonl\"; rotate_bytes = 20000; keep = 2; };")"
"$PY" "$T/load.py" "$PROXY_PORT" "$N/one.txt" 4 40 1500 >"$T/k/load.out"
stop_proxy
mapfile -t rot < <(rotated "$T/k")
echo "keep = 2: rotated files left: ${rot[*]##*/}"
assert_le "keep = 2: at most 2 rotated files remain" "${#rot[@]}" 2
assert_le "keep = 2: rotation happened" 1 "${#rot[@]}"
verify --from-any "${rot[@]}" "$T/k/audit.jsonl"
assert_eq "keep = 2: --verify-log --from-any over what is kept: exit 0" 0 "$VRC"

# ---- (f) SIGUSR1 after mv: a fresh file, the chain continues --------------------------------
CONF_DIR=$T/f
PROXY_PORT=$(free_port)
start_proxy "$T/f" "$(conf "$T/f" "audit : { path = \"$T/f/audit.jsonl\"; };")"
for i in 1 2 3 4 5; do pcurl -o /dev/null "$N/one.txt?before=$i"; done
settle "$T/f/audit.jsonl" 5
mv "$T/f/audit.jsonl" "$T/f/audit.jsonl.1"
kill -USR1 "$PROXY_PID"
sleep 0.5
for i in 1 2 3; do pcurl -o /dev/null "$N/two.txt"; done
settle "$T/f/audit.jsonl" 3
assert_eq "SIGUSR1: the moved file keeps the 5 earlier lines" 5 "$(nlines "$T/f/audit.jsonl.1")"
assert_eq "SIGUSR1: the 3 later lines go to a fresh audit.jsonl" 3 "$(nlines "$T/f/audit.jsonl")"
verify "$T/f/audit.jsonl.1" "$T/f/audit.jsonl"
assert_eq "SIGUSR1: --verify-log audit.jsonl.1 audit.jsonl: exit 0" 0 "$VRC"
assert_match "SIGUSR1: 8 lines verified" '\b8 lines verified' "$VOUT"
verify "$T/f/audit.jsonl"
assert_eq "SIGUSR1: the fresh file alone does not verify (it chains from the old one)" 1 "$VRC"
verify --from-any "$T/f/audit.jsonl"
assert_eq "SIGUSR1: the fresh file alone verifies with --from-any" 0 "$VRC"
