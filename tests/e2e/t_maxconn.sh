#!/bin/bash
# limits.max_connections (SPEC 12): it counts open client connections over
# all workers; beyond it a new connection is closed at once, and as soon as
# the count drops below it new connections are served again -- also when the
# connections that filled it were waiting out an authentication back-off
# (their held 407s must not keep the slots once the clients are gone).
source "$(dirname "$0")/lib.sh"

start_origin
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(LIMITS='max_connections = 20; header_timeout_ms = 10000; idle_timeout_ms = 30000;' \
    proxy_conf "auth : { mode = \"basic\"; htpasswd = \"$ROOT/rules/users.htpasswd\"; };" \
    "audit : { path = \"$T/audit.jsonl\"; };")"

"$PY" - "$PROXY_PORT" "$ORIGIN_PORT" <<'PYEOF' || fail "max_connections"
import base64, socket, sys, time

port, oport = int(sys.argv[1]), int(sys.argv[2])
good = base64.b64encode(b"alice:alice-pass")
bad = base64.b64encode(b"alice:wrong")
ok = True


def check(desc, cond, got=""):
    global ok
    print("%s - %s%s" % ("ok" if cond else "not ok", desc, "" if cond else ": got %r" % (got,)))
    ok = ok and cond


def conn():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(s, cred):
    s.sendall(b"GET http://origin.test:%d/echo/x HTTP/1.1\r\nHost: origin.test:%d\r\n"
              b"Proxy-Authorization: Basic %s\r\n\r\n" % (oport, oport, cred))


def closed_at_once(s):
    s.settimeout(2)
    try:
        return s.recv(100) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def served_within(limit_s):
    """Seconds until a new connection gets an HTTP answer (no credentials: 407), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        s = conn()
        s.settimeout(2)
        try:
            s.sendall(b"GET http://origin.test:%d/echo/y HTTP/1.1\r\nHost: origin.test:%d\r\n\r\n"
                      % (oport, oport))
            if s.recv(12).startswith(b"HTTP/1.1"):
                return time.monotonic() - t0
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.01)
    return None


# 1. Twenty idle connections fill it; the 21st is closed at once.
held = [conn() for _ in range(20)]
time.sleep(0.3)
extra = conn()
check("21st connection closed at once", closed_at_once(extra))
extra.close()
for s in held:
    s.close()
t = served_within(3)
check("served again at once after the clients left (%s s)" % (t and round(t, 3)),
      t is not None and t < 0.5, t)

# 2. A served, authenticated keep-alive connection counts too.
held = []
for _ in range(20):
    s = conn()
    request(s, good)
    held.append(s)
for s in held:
    s.settimeout(10)
    check("authenticated request answered", s.recv(100).startswith(b"HTTP/1.1 200"))
extra = conn()
check("21st connection closed at once (20 keep-alive clients)", closed_at_once(extra))
extra.close()
for s in held:
    s.close()
t = served_within(3)
check("served again at once after keep-alive clients left (%s s)" % (t and round(t, 3)),
      t is not None and t < 0.5, t)

# 3. Twenty wrong passwords from one address: after three, each 407 is held
# back (250 ms doubling to 8 s).  The clients give up; all twenty slots must
# be free again at once: twenty new clients are all answered.
held = []
for _ in range(20):
    s = conn()
    request(s, bad)
    held.append(s)
time.sleep(2.5)
for s in held:
    s.close()
time.sleep(0.3)
fresh = []
for _ in range(20):
    s = conn()
    s.sendall(b"GET http://origin.test:%d/echo/z HTTP/1.1\r\nHost: origin.test:%d\r\n\r\n"
              % (oport, oport))
    fresh.append(s)
answered = 0
for s in fresh:
    s.settimeout(2)
    try:
        if s.recv(12).startswith(b"HTTP/1.1"):
            answered += 1
    except OSError:
        pass
    s.close()
check("all 20 slots free once the clients with held 407s left", answered == 20, answered)
sys.exit(0 if ok else 1)
PYEOF
stop_proxy
assert_eq "proxy exit status" 0 "$PROXY_RC"
