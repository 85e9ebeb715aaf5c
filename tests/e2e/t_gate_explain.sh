#!/bin/bash
# The live proxy and --explain decide alike: a few hundred generated requests
# (a seeded mix of Basic users and anonymous clients, methods, hosts from the
# shipped catalog and outside it, paths, plain HTTP, HTTPS through
# interception and blind tunnels, bodies with and without a resident
# registration or card number) go through the proxy running the shipped
# catalog and a policy that uses every condition; for each, the decision in
# the audit log (action and rule) must equal the verdict line of
# `aigate --explain USER METHOD URL [BODY]` for the same request.  Then the
# same for users identified by address (`@ADDRESS`).
source "$(dirname "$0")/lib.sh"

SEED=${GATE_SEED:-20261123}
COUNT=${GATE_COUNT:-300}

# ---- origins: every catalogued name the generator uses, over HTTP and HTTPS ------
NAMES="chatgpt.com chat.deepseek.com api.deepseek.com claude.ai api.openai.com perplexity.ai
midjourney.com cursor.com genspark.ai elevenlabs.io clova-x.naver.com mistral.ai huggingface.co
www.example.test bot.ai.corp.test"
# shellcheck disable=SC2086
make_cert "$T/pki" good $NAMES
start_nginx_servers "$T/nginx" PLAIN= GOOD="$T/pki/good"
"$AIGATE" --gen-ca "$T/ca" >"$T/genca.out" 2>&1 || die "--gen-ca: $(cat "$T/genca.out")"

# ---- hours and days relative to now: one window holds now, one does not --------
H=$((10#$(date +%H)))
hh() { printf '%02d:00' $((($1 + 48) % 24)); }
DAYS=(sun mon tue wed thu fri sat)
D=$(date +%w)
IN_HOURS="$(hh $((H - 3)))-$(hh $((H + 4)))"
OUT_HOURS="$(hh $((H + 6)))-$(hh $((H + 9)))"
TODAY_TOMORROW="\"${DAYS[D]}\", \"${DAYS[(D + 1) % 7]}\""
LATER="\"${DAYS[(D + 3) % 7]}\""

# Every condition of SPEC 5 at least once; no rule without conditions, so
# "no rule matched" happens too.
cat >"$T/policy.conf" <<EOF
policy = (
  { name = "lab-net"; action = "allow"; networks = [ "10.99.0.0/16" ]; },
  { name = "carol-claude"; action = "allow"; users = [ "carol" ]; services = [ "claude" ]; },
  { name = "ban-cn-ai"; action = "block"; vendor_countries = [ "CN" ]; },
  { name = "local-search-posts"; action = "block"; networks = [ "127.0.0.0/8" ];
    categories = [ "search" ]; methods = [ "POST" ]; },
  { name = "no-uploads"; action = "block"; categories = [ "chat", "image", "code" ];
    methods = [ "POST", "PUT" ]; paths = [ "*/upload*", "*/files*" ]; },
  { name = "no-personal-data"; action = "block"; dlp = [ "kr-rrn", "credit-card" ]; },
  { name = "intranet-ai"; action = "warn"; hosts = [ "*.ai.corp.test" ]; },
  { name = "images-off-hours"; action = "block"; categories = [ "image" ]; hours = "$OUT_HOURS"; },
  { name = "images-busy"; action = "warn"; categories = [ "image" ]; hours = "$IN_HOURS";
    days = [ $TODAY_TOMORROW ]; },
  { name = "agents-later"; action = "block"; categories = [ "agent" ]; days = [ $LATER ]; },
  { name = "security-free"; action = "allow"; groups = [ "security" ]; },
  { name = "staff-no-delete"; action = "block"; groups = [ "staff" ]; methods = [ "DELETE" ]; },
  { name = "caution"; action = "warn"; categories = [ "chat", "code" ]; },
  { name = "apis"; action = "allow"; categories = [ "api" ]; }
);
EOF

# ---- the requests -------------------------------------------------------------------
"$PY" - "$SEED" "$COUNT" "$T/reqs.json" <<'EOF'
import json, random, sys
rnd = random.Random(int(sys.argv[1]))
catalogued = ["chatgpt.com", "chat.deepseek.com", "api.deepseek.com", "claude.ai",
              "api.openai.com", "perplexity.ai", "midjourney.com", "cursor.com", "genspark.ai",
              "elevenlabs.io", "clova-x.naver.com", "mistral.ai", "huggingface.co"]
outside = ["www.example.test", "bot.ai.corp.test"]
users = ["alice", "bob", "carol", "-"]
paths = ["/", "/backend-api/conversation", "/api/upload/7", "/v1/files/x", "/search",
         "/chat/new", "/v1/chat/completions"]
bodies = ["json-rrn", "form-card", "json-clean", "text-clean", "none"]
reqs = []
for i in range(int(sys.argv[2])):
    host = rnd.choice(catalogued) if rnd.random() < 0.8 else rnd.choice(outside)
    scheme = rnd.choice(["http", "https"])
    method = rnd.choice(["GET", "GET", "POST", "POST", "PUT", "DELETE"])
    body = rnd.choice(bodies) if method in ("POST", "PUT") else "none"
    r = {"i": i, "user": rnd.choice(users), "method": method, "host": host, "scheme": scheme,
         "path": rnd.choice(paths) + "?rid=%d" % i, "body": body}
    if scheme == "https" and host in outside:
        # A blind tunnel: one name per request, so its CONNECT line is its own.
        r["host"] = "r%d.%s" % (i, host)
        r["connect_form"] = rnd.random() < 0.5
    reqs.append(r)
json.dump(reqs, open(sys.argv[3], "w"))
EOF
[ -s "$T/reqs.json" ] || die "request generator failed"
echo "127.0.0.1 $NAMES $("$PY" -c 'import json,sys; print(" ".join(sorted({r["host"] for r in json.load(open(sys.argv[1]))})))' "$T/reqs.json")" |
    tr '\n' ' ' >"$T/hosts"
echo >>"$T/hosts"
ln -s "$ROOT/rules/users.htpasswd" "$T/users.htpasswd"

# gate_conf AUTH_LINES: the proxy's config (the shipped catalog and groups, our policy)
gate_conf() {
    CONNECT_PORTS="443, $GOOD" proxy_conf "$@" \
        "groups = ( { name = \"security\"; members = [ \"carol\" ]; }," \
        "           { name = \"staff\"; members = [ \"alice\", \"bob\", \"desk-user\" ]; } );" \
        "tls : { intercept = true; ca_cert = \"$T/ca/ca.pem\"; ca_key = \"$T/ca/ca.key\";" \
        "        upstream_ca_file = \"$T/pki/ca.pem\"; warn_fallback = \"block\"; };" \
        "audit : { path = \"$AUDIT\"; log_query = true; };" \
        "ack : { state_file = \"$T/acks.state\"; secret_file = \"$T/ack.secret\"; };" \
        "pages_dir = \"$ROOT/rules/pages\";" \
        "@include \"$ROOT/rules/services.conf\"" \
        "@include \"$T/policy.conf\""
}

# compare: send $T/reqs.json through the proxy, ask --explain for each, compare
compare() {
    "$PY" - "$T" "$AIGATE" "$PROXY_PORT" "$PLAIN" "$GOOD" "$AUDIT" "$1" <<'EOF'
import base64, concurrent.futures, json, os, socket, ssl, subprocess, sys, time
T, AIGATE, PORT, PLAIN, GOOD, AUDIT, MODE = sys.argv[1:8]
PLAIN, GOOD, PORT = int(PLAIN), int(GOOD), int(PORT)
reqs = json.load(open(os.path.join(T, "reqs.json")))
tls = ssl.create_default_context(cafile=os.path.join(T, "ca", "ca.pem"))
BODIES = {
    "json-rrn": ("application/json", b'{"prompt":"my number is 900101-1234568, summarise"}'),
    "form-card": ("application/x-www-form-urlencoded", b"q=card+4111+1111+1111+1111&x=1"),
    "json-clean": ("application/json", b'{"prompt":"write a haiku about proxies"}'),
    "text-clean": ("text/plain", b"nothing personal in here"),
}
for k, (_, b) in BODIES.items():
    open(os.path.join(T, "body-" + k), "wb").write(b)

def user_of(r):
    return r["user"] if MODE == "basic" else "@127.0.0.1"

def auth_header(r):
    if MODE != "basic" or r["user"] == "-":
        return ""
    cred = base64.b64encode(("%s:%s-pass" % (r["user"], r["user"])).encode()).decode()
    return "Proxy-Authorization: Basic %s\r\n" % cred

def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    return buf

def read_all(s):
    while True:
        try:
            if not s.recv(65536):
                return
        except (ConnectionError, ssl.SSLError, socket.timeout):
            return

def request_bytes(r, target, hostport):
    head = "%s %s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\nConnection: close\r\n" % (
        r["method"], target, hostport)
    body = b""
    if r["body"] != "none":
        ctype, body = BODIES[r["body"]]
        head += "Content-Type: %s\r\n" % ctype
    if r["method"] in ("POST", "PUT"):
        head += "Content-Length: %d\r\n" % len(body)
    return head, body

def send(r):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
    try:
        if r["scheme"] == "http":
            hp = "%s:%d" % (r["host"], PLAIN)
            head, body = request_bytes(r, "http://%s%s" % (hp, r["path"]), hp)
            s.sendall((head + auth_header(r) + "\r\n").encode() + body)
            read_all(s)
            return
        hp = "%s:%d" % (r["host"], GOOD)
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (hp, hp, auth_header(r))).encode())
        h = read_head(s)
        if not h.startswith(b"HTTP/1.1 200") or r.get("connect_form") is not None:
            return  # refused, or a blind tunnel: its CONNECT line decides
        t = tls.wrap_socket(s, server_hostname=r["host"])
        head, body = request_bytes(r, r["path"], hp)
        t.sendall(head.encode() + b"\r\n" + body)
        read_all(t)
        t.close()
    finally:
        s.close()

for r in reqs:
    send(r)

def explain(r):
    port = PLAIN if r["scheme"] == "http" else GOOD
    if r.get("connect_form"):
        method, url = "CONNECT", "%s:%d" % (r["host"], port)
    else:
        method, url = r["method"], "%s://%s:%d%s" % (r["scheme"], r["host"], port, r["path"])
    argv = [AIGATE, "-c", os.path.join(T, "aigate.conf"), "--explain", user_of(r), method, url]
    if r["body"] != "none" and r.get("connect_form") is None:
        argv.append(os.path.join(T, "body-" + r["body"]))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [l for l in out.stdout.splitlines() if l.startswith("verdict: ")]
    if out.returncode != 0 or len(lines) != 1:
        return None, " ".join(argv) + " -> rc %d: %s" % (out.returncode, out.stdout + out.stderr)
    v = dict(kv.split("=", 1) for kv in lines[0][len("verdict: "):].split())
    return (v["action"], v["rule"]), None

with concurrent.futures.ThreadPoolExecutor(2) as ex:
    verdicts = list(ex.map(explain, reqs))

# The audit lines: requests by their rid, CONNECT-level decisions by (user, host).
def audit_lines():
    out = []
    for line in open(AUDIT, encoding="utf-8"):
        out.append(json.loads(line))
    return out

def decisive(lines):
    by_rid, by_connect = {}, {}
    for d in lines:
        if d["method"] == "CONNECT":
            if d["tls"] == "intercept":
                continue  # the tunnel's own line: the requests inside decide
            by_connect.setdefault((d["user"], d["host"]), []).append(d)
        elif d["path"] and "?rid=" in d["path"]:
            by_rid[int(d["path"].split("?rid=")[1])] = d
    return by_rid, by_connect

def connect_level(r):
    return r["scheme"] == "https" and (r.get("connect_form") is not None or
                                        (MODE == "basic" and r["user"] == "-"))

deadline = time.time() + 10
while True:
    by_rid, by_connect = decisive(audit_lines())
    need_rid = sum(1 for r in reqs if not connect_level(r))
    need_conn = sum(1 for r in reqs if connect_level(r))
    if (len(by_rid) >= need_rid and sum(map(len, by_connect.values())) >= need_conn) or \
            time.time() > deadline:
        break
    time.sleep(0.2)

ACTION = {"auth-needed": "auth-fail"}
bad = 0
counts = {}
for r, (v, err) in zip(reqs, verdicts):
    name = "#%d %s %s %s://%s%s body=%s" % (r["i"], user_of(r), r["method"], r["scheme"],
                                            r["host"], r["path"], r["body"])
    if err:
        print("not ok - %s: explain failed: %s" % (name, err[:400]))
        bad += 1
        continue
    want = (ACTION.get(v[0], v[0]), None if v[1] == "-" else v[1])
    if connect_level(r):
        user = None if want[0] == "auth-fail" else (r["user"] if MODE == "basic" else "desk-user")
        lst = by_connect.get((user, r["host"]), [])
        got = [(d["action"], d["rule"]) for d in lst]
        ok = bool(got) and all(g == want for g in got)
    else:
        d = by_rid.get(r["i"])
        got = (d["action"], d["rule"]) if d else None
        ok = got == want
    counts[want] = counts.get(want, 0) + 1
    if not ok:
        print("not ok - %s: live %s, --explain %s" % (name, got, want))
        bad += 1
print("decisions compared: %d, mismatches: %d" % (len(reqs), bad))
print("verdicts seen: " + ", ".join("%s/%s=%d" % (a, r or "-", n)
                                    for (a, r), n in sorted(counts.items(), key=str)))
open(os.path.join(T, "kinds-" + MODE), "w").write(
    "\n".join(sorted({"%s %s" % (a, r or "-") for (a, r) in counts})) + "\n")
sys.exit(1 if bad else 0)
EOF
}

# ---- Basic users and anonymous clients ----------------------------------------------
AUDIT=$T/audit.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(gate_conf "auth : { mode = \"basic\"; htpasswd = \"users.htpasswd\"; };")"
if compare basic; then pass "basic: live decisions equal --explain for $COUNT requests"; else fail "basic: live decisions differ from --explain"; fi
kinds=$(cat "$T/kinds-basic" 2>/dev/null)
for k in "auth-fail -" "allow -" "allow apis" "allow security-free" "allow carol-claude" \
    "block ban-cn-ai" "block no-uploads" "block no-personal-data" "block local-search-posts" \
    "block staff-no-delete" "warn caution" "warn images-busy" "warn intranet-ai" \
    "block intranet-ai"; do
    assert_contains "basic: the mix reaches [$k]" "$kinds" "$k"
done
stop_proxy

# ---- users by address ----------------------------------------------------------------
"$PY" - "$T/reqs.json" <<'EOF'
import json, sys
reqs = json.load(open(sys.argv[1]))[:80]
json.dump(reqs, open(sys.argv[1], "w"))
EOF
AUDIT=$T/audit-address.jsonl
PROXY_PORT=$(free_port)
start_proxy "$T" "$(gate_conf "auth : { mode = \"address\"; };" \
    "addresses = ( { network = \"127.0.0.0/8\"; user = \"desk-user\"; } );")"
if compare address; then pass "address: live decisions equal --explain for @127.0.0.1"; else fail "address: live decisions differ from --explain"; fi
stop_proxy
