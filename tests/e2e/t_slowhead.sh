#!/bin/bash
# A head sent slowly costs CPU in proportion to its size, not its square
# (issue 18, defect 3): the parser keeps its place between reads instead of
# re-parsing from byte 0.  Heads of ~6 KB and ~60 KB are sent in 20-byte
# pieces, one send every 0.2 ms; the proxy's CPU per byte for the big one
# must stay within 3x of the small one's (re-parsing made it ~6x, and 60x in
# total).  Each piece also costs a wakeup and a read, whatever the parser does:
# that per-read cost is what is left, and it is the same per byte.
source "$(dirname "$0")/lib.sh"

PROXY_PORT=$(free_port)
start_proxy "$T" "$(WORKERS=1 LIMITS='header_timeout_ms = 60000;' proxy_conf)"

"$PY" - "$PROXY_PORT" "$PROXY_PID" <<'PY' || fail "slow heads"
import os, socket, sys, time

port, pid = int(sys.argv[1]), int(sys.argv[2])


def cpu_ns():
    """CPU time of all the proxy's threads so far, in ns (schedstat)."""
    tot = 0
    for t in os.listdir("/proc/%d/task" % pid):
        tot += int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[0])
    return tot


def head_of(n):
    h = b"GET http://127.0.0.1:1/x HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"
    i = 0
    while len(h) < n - 700:
        h += b"X-H%d: %s\r\n" % (i, b"v" * 590)
        i += 1
    return h + b"\r\n"


def run(n, piece=20):
    head = head_of(n)
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    time.sleep(0.05)
    c0 = cpu_ns()
    for i in range(0, len(head), piece):
        s.send(head[i:i + piece])
        time.sleep(0.0002)
    s.settimeout(20)
    answer = s.recv(100)
    time.sleep(0.1)
    c1 = cpu_ns()
    s.close()
    return (c1 - c0) / len(head), answer


small, a1 = run(6000)
big, a2 = run(60000)
ok = a1.startswith(b"HTTP/1.1 502") and a2.startswith(b"HTTP/1.1 502")
print("%s - both heads parsed and answered (%r, %r)" % ("ok" if ok else "not ok", a1[:12], a2[:12]))
flat = big <= 3 * small
print("%s - CPU per byte flat: %.0f ns/byte for 60 KB vs %.0f ns/byte for 6 KB" %
      ("ok" if flat else "not ok", big, small))
sys.exit(0 if ok and flat else 1)
PY
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
