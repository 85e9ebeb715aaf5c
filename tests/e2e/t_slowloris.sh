#!/bin/bash
# Timeouts: a head trickling in one byte every 300 ms is cut after
# header_timeout_ms (1 s) while other clients are served promptly; an idle
# keep-alive connection is closed after idle_timeout_ms (3 s); a connection
# that never sends a byte does not stay open either.
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(LIMITS='header_timeout_ms = 1000; idle_timeout_ms = 3000;' proxy_conf)"

"$PY" - "$E2E" "$PROXY_PORT" "http://origin.test:$ORIGIN_PORT" <<'EOF' || fail "timeouts"
import select, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import httpc

port, o = int(sys.argv[2]), sys.argv[3].encode()
ok = True


def say(good, msg):
    global ok
    print(("ok - " if good else "not ok - ") + msg)
    ok = ok and good


def wait_close(s, limit):
    """Seconds until the peer closes s (None if it stays open for limit s), and the bytes read."""
    t0 = time.monotonic()
    data = b""
    s.settimeout(0.05)
    while time.monotonic() - t0 < limit:
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0, data
        if not b:
            return time.monotonic() - t0, data
        data += b
    return None, data


slow_result = {}


def slowloris():
    s = httpc.connect(port)
    t0 = time.monotonic()
    s.sendall(b"GET " + o + b"/echo/slowloris HTTP/1.1\r\nHost: " + o[7:] + b"\r\nX-Slow: ")
    data = b""
    while time.monotonic() - t0 < 6:
        r, _, _ = select.select([s], [], [], 0.3)
        if r:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                b = b""
            if not b:
                slow_result["t"] = time.monotonic() - t0
                break
            data += b
            continue
        try:
            s.send(b"a")
        except (BrokenPipeError, ConnectionResetError):
            slow_result["t"] = time.monotonic() - t0
            break
    slow_result["data"] = data


th = threading.Thread(target=slowloris)
th.start()
worst = 0.0
for i in range(5):  # meanwhile, normal clients on their own connections
    time.sleep(0.25)
    t0 = time.monotonic()
    s = httpc.connect(port, timeout=2)
    s.sendall(b"GET " + o + b"/echo/normal HTTP/1.1\r\nHost: " + o[7:] + b"\r\nConnection: close\r\n\r\n")
    try:
        st = httpc.Reader(s).response()[0]
    except (OSError, EOFError) as e:
        st = repr(e)
    s.close()
    worst = max(worst, time.monotonic() - t0)
    say(st == 200, "normal client %d served during the slowloris (%s)" % (i + 1, st))
say(worst < 0.5, "normal clients answered promptly (slowest %.3f s)" % worst)
th.join()
t = slow_result.get("t")
st = httpc.status_of(slow_result.get("data", b""))
say(t is not None and 0.8 <= t <= 3.0,
    "slowloris cut after %s s (want 0.8-3.0 s after its first byte)" % (None if t is None else "%.2f" % t))
say(st in (0, 408), "slowloris answer: status %d (nothing or 408)" % st)

# Idle keep-alive connection: closed about idle_timeout_ms after the last response
s = httpc.connect(port)
s.sendall(b"GET " + o + b"/echo/idle HTTP/1.1\r\nHost: " + o[7:] + b"\r\n\r\n")
st = httpc.Reader(s).response()[0]
say(st == 200, "keep-alive request served (%s)" % st)
t, extra = wait_close(s, 6)
s.close()
say(t is not None and 2.5 <= t <= 4.5,
    "idle keep-alive connection closed after %s s (want 2.5-4.5 s, idle_timeout_ms = 3000)"
    % (None if t is None else "%.2f" % t))

# A connection that never sends anything is closed by one of the timers
s = httpc.connect(port)
t, extra = wait_close(s, 6)
s.close()
say(t is not None and t <= 4.5,
    "silent connection closed after %s s (want <= 4.5 s)" % (None if t is None else "%.2f" % t))
sys.exit(0 if ok else 1)
EOF
sleep 0.2
assert_eq "the slowloris request never reached the origin" 0 "$(origin_count slowloris)"
