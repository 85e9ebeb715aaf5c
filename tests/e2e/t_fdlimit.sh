#!/bin/bash
# Running out of file descriptors (issue 18, defect 1): with RLIMIT_NOFILE
# 256 and 1,000 connections held open, the proxy must not spin on accept()
# (it pauses accepting, re-arms on a short timer or as soon as a connection
# closes), must not flood its log, must count the pauses in /metrics, and must
# serve again at once when descriptors are free.  At start it warns that the
# hard limit is below what max_connections needs.
source "$(dirname "$0")/lib.sh"
command -v prlimit >/dev/null || die "prlimit (util-linux) is missing"

start_origin
write_hosts
ADMIN=$(free_port)
PROXY_PORT=$(free_port)
printf '%s\n' "$(WORKERS=1 LIMITS='header_timeout_ms = 30000; idle_timeout_ms = 30000;' proxy_conf \
    "admin : { listen = \"127.0.0.1:$ADMIN\"; };")" >"$T/aigate.conf"
PROXY_LOG=$T/proxy.log
spawn prlimit --nofile=256:256 "$AIGATE" -f -c "$T/aigate.conf" 2>"$PROXY_LOG"
PROXY_PID=$LAST_PID
PROXY_PIDS+=("$PROXY_PID")
wait_port "$PROXY_PORT" 15 || die "proxy did not start: $(tail -n 5 "$PROXY_LOG")"
assert_contains "start: warns that the descriptor limit is too low for max_connections" \
    "$(cat "$PROXY_LOG")" "below the"

# cpu_ticks PID: user + system clock ticks so far
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

"$PY" - "$PROXY_PORT" "$ORIGIN_PORT" "$PROXY_PID" "$ADMIN" <<'PY' || fail "descriptor exhaustion"
import socket, sys, time, urllib.request

port, oport, pid, admin = (int(a) for a in sys.argv[1:5])
ok = True


def check(desc, cond, got=""):
    global ok
    print("%s - %s%s" % ("ok" if cond else "not ok", desc, "" if cond else ": got %r" % (got,)))
    ok = ok and cond


def ticks():
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


held = []
for _ in range(1000):
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    held.append(s)
time.sleep(1)
t0, c0 = time.monotonic(), ticks()
time.sleep(3)
t1, c1 = time.monotonic(), ticks()
hz = 100.0
cpu = (c1 - c0) / hz / (t1 - t0)
check("out of descriptors: the proxy does not spin (%.0f%% CPU)" % (cpu * 100), cpu < 0.25, cpu)
for s in held:
    s.close()
t0 = time.monotonic()
served = None
while time.monotonic() - t0 < 5:
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.sendall(b"GET http://origin.test:%d/echo/after HTTP/1.1\r\nHost: origin.test:%d\r\n"
                  b"Connection: close\r\n\r\n" % (oport, oport))
        if c.recv(12).startswith(b"HTTP/1.1 200"):
            served = time.monotonic() - t0
            break
    except OSError:
        pass
    time.sleep(0.01)
check("served again once descriptors are free (%s s)" % (served and round(served, 3)),
      served is not None and served < 0.5, served)
# (the admin listener shares the descriptor limit: ask it once they are free)
m = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
paused = [l for l in m.splitlines() if l.startswith("aigate_accept_paused_total ")]
check("/metrics counts the pauses", paused and int(paused[0].split()[1]) > 0, paused)
sys.exit(0 if ok else 1)
PY
n=$(grep -c 'Too many open files' "$PROXY_LOG")
assert_le "the log says it a few times, not per accept" "$n" 10
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
