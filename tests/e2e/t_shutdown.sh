#!/bin/bash
# SIGTERM: stop accepting at once, let running requests finish within
# shutdown_grace_ms, then exit 0 -- also when a request cannot finish in time.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
make_big "$NGINX_HTML/big.bin"
write_hosts
N=http://origin.test:$NGINX_HTTP_PORT

# connect_refused PORT: "refused", or what happened when the connection was accepted
connect_refused() {
    "$PY" - "$1" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
except ConnectionRefusedError:
    print("refused")
    sys.exit()
s.sendall(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
s.settimeout(2)
try:
    print("accepted, answered %r" % s.recv(40))
except OSError as e:
    print("accepted, then %s" % e.__class__.__name__)
EOF
}

# wait_exit T0 SECONDS: wait up to SECONDS for the proxy to exit; prints the ms
# from T0 (now_ms at the signal) to its exit, or "timeout"
wait_exit() {
    local i
    for ((i = 0; i < $2 * 50; i++)); do
        alive "$PROXY_PID" || break
        sleep 0.02
    done
    if alive "$PROXY_PID"; then echo timeout; else echo $(($(now_ms) - $1)); fi
}

# 1. A download that fits in the grace period completes
mkdir -p "$T/a"
PROXY_PORT=$(free_port)
start_proxy "$T/a" "$(LIMITS='shutdown_grace_ms = 5000; idle_timeout_ms = 10000;' proxy_conf)"
spawn curl -q -sS -x "http://127.0.0.1:$PROXY_PORT" --limit-rate 50M -o "$T/big.out" "$N/big.bin"
dl=$LAST_PID
sleep 0.5
kill -TERM "$PROXY_PID"
t0=$(now_ms)
sleep 0.2
assert_eq "new connection right after SIGTERM" refused "$(connect_refused "$PROXY_PORT")"
t=$(wait_exit "$t0" 8)
if [ "$t" = timeout ]; then
    fail "proxy still running 8 s after SIGTERM (grace 5 s)"
else
    assert_le "proxy exited within grace + 1 s of SIGTERM (ms)" "$t" 6000
fi
stop_proxy KILL # reaps it (kills it only if it is still running) and sets PROXY_RC
assert_eq "exit status after SIGTERM" 0 "$PROXY_RC"
wait "$dl"
assert_eq "download running at SIGTERM completed (curl status)" 0 "$?"
assert_eq "download running at SIGTERM: size" 104857600 "$(stat -c %s "$T/big.out" 2>/dev/null)"
assert_eq "download running at SIGTERM: sha256" "$(sha256sum <"$NGINX_HTML/big.bin")" \
    "$(sha256sum <"$T/big.out")"
rm -f "$T/big.out"

# 2. A download that cannot finish within the grace period does not hold the exit
mkdir -p "$T/b"
PROXY_PORT=$(free_port)
start_proxy "$T/b" "$(LIMITS='shutdown_grace_ms = 1000; idle_timeout_ms = 10000;' proxy_conf)"
spawn curl -q -sS -x "http://127.0.0.1:$PROXY_PORT" --limit-rate 5M -o /dev/null "$N/big.bin"
dl=$LAST_PID
sleep 0.5
kill -TERM "$PROXY_PID"
t0=$(now_ms)
t=$(wait_exit "$t0" 5)
if [ "$t" = timeout ]; then
    fail "proxy still running 5 s after SIGTERM (grace 1 s)"
else
    assert_le "proxy exited within grace + 1 s despite a slow download (ms)" "$t" 2000
fi
stop_proxy KILL
assert_eq "exit status after the grace period ran out" 0 "$PROXY_RC"
kill "$dl" 2>/dev/null || true # curl may already have given up when the proxy closed
