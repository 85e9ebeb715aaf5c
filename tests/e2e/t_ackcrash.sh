#!/bin/bash
# Acknowledgements survive kill -9 (issue 18, defect 5): a 303 to the
# acknowledgement POST means the used token and the acknowledgement are on
# disk (ack.state_file plus its .journal).  Each try fetches caution pages
# for fresh anonymous users (one source address each: 127.0.N.M), POSTs their
# acknowledgements and kills the proxy with SIGKILL the moment a chosen 303
# status line arrives; after a restart every acknowledgement whose 303 was
# received must still let its user through, and its token must be refused as
# used.  Tries: single acknowledgements right after another one (so the state
# file writer has just written and is pausing), and a burst of parallel
# acknowledgements killed halfway.  Clients that hang up while their
# acknowledgement is being recorded leave their token used and nothing
# dangling.  Finally a burst of 200 parallel ack POSTs without a kill is
# timed, and the fsyncs it took are read from the proxy's stop line.
source "$(dirname "$0")/lib.sh"

start_origin
printf '127.0.0.1 chatgpt.com\n' >"$T/hosts"
PROXY_PORT=$(free_port)
GPT=http://chatgpt.com:$ORIGIN_PORT
D=$T/p
mkdir -p "$D"

cat >"$T/policy.conf" <<'EOF'
policy = (
  { name = "caution-gpt"; action = "warn"; services = [ "chatgpt" ]; },
  { name = "default"; action = "allow"; }
);
EOF
CONF=$(proxy_conf \
    "audit : { path = \"$D/audit.jsonl\"; };" \
    "ack : { state_file = \"$D/acks.state\"; secret_file = \"$D/ack.secret\"; };" \
    "pages_dir = \"$ROOT/rules/pages\";" \
    "@include \"$ROOT/rules/services.conf\"" \
    "@include \"$T/policy.conf\"")

# The client: raw HTTP/1.1 through the proxy from a chosen source address, so
# each address is its own anonymous user ("@127.0.N.M").
cat >"$T/ackc.py" <<'EOF'
import json, os, re, signal, socket, sys, threading, time, urllib.parse
from html.parser import HTMLParser

PORT = int(os.environ["PROXY_PORT"])
GPT = os.environ["GPT"]
HOST = GPT.split("//", 1)[1]

def src_of(i):
    return "127.0.%d.%d" % (10 + i // 200, 1 + i % 200)

def request(src, raw, on_status=None):
    """Send raw from src, read the answer to the end; (status, head, body)."""
    s = socket.create_connection(("127.0.0.1", PORT), timeout=20, source_address=(src, 0))
    s.sendall(raw)
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        first = b"\r\n" not in data
        data += chunk
        if first and b"\r\n" in data and on_status:
            on_status(int(data.split(b" ", 2)[1]))
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head.decode("latin-1"), body.decode("utf-8", "replace")

def get(src, path):
    return request(src, ("GET %s%s HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\n"
                         "Connection: close\r\n\r\n" % (GPT, path, HOST)).encode())

def post_ack(src, url, token, on_status=None):
    body = urllib.parse.urlencode({"url": url, "token": token}).encode()
    return request(src, ("POST %s/__aigate/ack HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\n"
                         "Content-Type: application/x-www-form-urlencoded\r\n"
                         "Content-Length: %d\r\nConnection: close\r\n\r\n"
                         % (GPT, HOST, len(body))).encode() + body, on_status)

class Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.f = {}
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name") in ("url", "token"):
            self.f[a["name"]] = a.get("value", "")

def tokens(first, n, out):
    """Caution pages for users first..first+n-1: one JSON line each."""
    with open(out, "w") as f:
        for i in range(first, first + n):
            src = src_of(i)
            st, _, body = get(src, "/u%d" % i)
            p = Form()
            p.feed(body)
            if st != 403 or "token" not in p.f:
                sys.exit("no caution page for %s: %d" % (src, st))
            f.write(json.dumps({"src": src, "url": p.f["url"], "token": p.f["token"]}) + "\n")

def load(path):
    return [json.loads(l) for l in open(path)]

def acks(path, out, pid, kill_at, threads):
    """POST every acknowledgement of path from `threads` parallel clients; with
    pid, SIGKILL it when the kill_at-th 303 status line arrives.  Writes each
    one's status (0: no answer) to out, prints elapsed ms."""
    items = load(path)
    lock = threading.Lock()
    seen = [0]
    nxt = [0]

    def on_status(st):
        if st == 303 and pid:
            with lock:
                seen[0] += 1
                if seen[0] == kill_at:
                    os.kill(pid, signal.SIGKILL)

    def run():
        while True:
            with lock:
                if nxt[0] >= len(items):
                    return
                it = items[nxt[0]]
                nxt[0] += 1
            try:
                it["status"] = post_ack(it["src"], it["url"], it["token"], on_status)[0]
            except OSError:
                it["status"] = 0

    t0 = time.monotonic()
    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ms = (time.monotonic() - t0) * 1000
    with open(out, "w") as f:
        for it in items:
            f.write(json.dumps(it) + "\n")
    print("%.0f" % ms)

def hangup(path):
    """POST every acknowledgement and end the connection at once (FIN right
    behind the form, so the proxy reads the whole form and then the end),
    never reading the answer."""
    socks = []
    for it in load(path):
        body = urllib.parse.urlencode({"url": it["url"], "token": it["token"]}).encode()
        s = socket.create_connection(("127.0.0.1", PORT), timeout=20,
                                     source_address=(it["src"], 0))
        s.sendall(("POST %s/__aigate/ack HTTP/1.1\r\nHost: %s\r\nAccept: text/html\r\n"
                   "Content-Type: application/x-www-form-urlencoded\r\n"
                   "Content-Length: %d\r\n\r\n" % (GPT, HOST, len(body))).encode() + body)
        s.shutdown(socket.SHUT_WR)
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        s.close()

def check(path):
    """After the restart: each acknowledgement answered 303 still holds and its
    token is refused as used.  Prints "answered held replay_refused"."""
    answered = held = refused = 0
    for it in load(path):
        if it["status"] != 303:
            continue
        answered += 1
        st, _, _ = get(it["src"], "/after")
        if st == 200:
            held += 1
        else:
            print("%s: warned URL after restart: %d" % (it["src"], st), file=sys.stderr)
        st, _, body = post_ack(it["src"], it["url"], it["token"])
        if st == 403 and re.search(r"already used", body):
            refused += 1
        else:
            print("%s: replayed token after restart: %d" % (it["src"], st), file=sys.stderr)
    print(answered, held, refused)

cmd = sys.argv[1]
if cmd == "tokens":
    tokens(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
elif cmd == "acks":
    acks(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
elif cmd == "check":
    check(sys.argv[2])
elif cmd == "hangup":
    hangup(sys.argv[2])
EOF
ackc() {
    PROXY_PORT=$PROXY_PORT GPT=$GPT "$PY" "$T/ackc.py" "$@"
}

# crash_try NAME FIRST N KILL_AT THREADS: users FIRST.. get caution pages, then
# N acknowledgements from THREADS clients; SIGKILL at the KILL_AT-th 303;
# restart and check every answered one.
crash_try() {
    local name=$1 first=$2 n=$3 kill_at=$4 threads=$5 out
    ackc tokens "$first" "$n" "$T/$name.tok" || die "$name: no caution pages"
    ackc acks "$T/$name.tok" "$T/$name.res" "$PROXY_PID" "$kill_at" "$threads" >/dev/null ||
        die "$name: ack client failed"
    wait "$PROXY_PID" 2>/dev/null
    if alive "$PROXY_PID"; then fail "$name: proxy survived SIGKILL"; fi
    start_proxy "$D" "$CONF"
    out=$(ackc check "$T/$name.res")
    read -r answered held refused <<<"$out"
    assert_le "$name: at least $kill_at acknowledgements answered 303 before the kill" \
        "$kill_at" "${answered:-0}"
    assert_eq "$name: every answered acknowledgement still holds after kill -9 ($answered)" \
        "$answered" "$held"
    assert_eq "$name: every answered token is refused as used after kill -9 ($answered)" \
        "$answered" "$refused"
}

start_proxy "$D" "$CONF"

# ---- one acknowledgement right after another, then kill -9 -------------------
# The first makes the state file writer write and pause; the second's 303
# triggers the kill while only the journal can have it.
for try in 1 2 3 4 5; do
    crash_try "single$try" $((try * 2)) 2 2 1
done

# ---- a burst of parallel acknowledgements, killed halfway ---------------------
crash_try burst 100 120 60 20

# ---- clients that hang up while their acknowledgement is being recorded -------
# The connection ends while its commit is in flight (conn_close cancels the
# answer): the commit still completes, nothing dangles (ASan watches), and the
# token stays used.
ackc tokens 300 30 "$T/hangup.tok" || die "hangup: no caution pages"
ackc hangup "$T/hangup.tok" || die "hangup: client failed"
sed 's/}$/, "status": 303}/' "$T/hangup.tok" >"$T/hangup.res"
out=$(ackc check "$T/hangup.res" 2>/dev/null)
read -r answered _ refused <<<"$out"
assert_eq "hangup: every token POSTed by a client that hung up is used" "$answered" "$refused"
alive "$PROXY_PID" || fail "hangup: the proxy died"
cancelled=$(audit_count "$D/audit.jsonl" \
    'd["action"] == "ack" and d["status"] == 303 and "\"%s\"" % d["client"] in open("'"$T"'/hangup.tok").read()')
echo "# hangup: $((30 - cancelled)) of 30 answers were dropped with their connection (the rest went out first)"
assert_eq "hangup: one ack audit line per acknowledgement, answered or not" 30 "$(audit_count \
    "$D/audit.jsonl" 'd["action"] == "ack" and "\"%s\"" % d["client"] in open("'"$T"'/hangup.tok").read()')"

# ---- throughput: 200 parallel ack POSTs, no kill -------------------------------
ackc tokens 400 200 "$T/rate.tok" || die "rate: no caution pages"
ms=$(ackc acks "$T/rate.tok" "$T/rate.res" 0 0 50) || die "rate: ack client failed"
ok=$(grep -c '"status": 303' "$T/rate.res")
assert_eq "rate: 200 parallel acknowledgements answered 303" 200 "$ok"
stop_proxy TERM
assert_eq "proxy stops cleanly" 0 "$PROXY_RC"
syncs=$(grep -oE 'ack: [0-9]+ acknowledgements journaled with [0-9]+ syncs' "$PROXY_LOG" | tail -n1)
echo "# 200 ack POSTs from 50 parallel clients: ${ms} ms ($((200 * 1000 / (ms > 0 ? ms : 1))) acks/s); since the last start: ${syncs#ack: }"
assert_match "the stop line counts the journal's syncs" 'journaled with [0-9]+ syncs' "$syncs"

# After a clean stop the state file holds everything and the journal is empty.
assert_eq "journal empty after a clean stop" 0 "$(stat -c %s "$D/acks.state.journal")"
start_proxy "$D" "$CONF"
out=$(ackc check "$T/rate.res")
assert_eq "rate: all 200 hold and are refused as used after a clean restart" "200 200 200" "$out"
