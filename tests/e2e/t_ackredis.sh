#!/bin/bash
# SPEC 10, ack.store = "redis://...": the shared acknowledgement store against a real
# redis-server (password, database 2), driven by two store instances in two processes,
# "node A" and "node B" (tests/e2e/ackstore_driver.c, linked against the proxy's library,
# each with its own worker loop and connection): an acknowledgement granted through one
# is honoured by the other; a used token is refused on both, and of two nodes committing
# one token at once exactly one wins; keys carry the acknowledgement's TTL and expire in
# Redis; with redis-server stopped lookups say unavailable, commits fail and the store
# reports itself down; restarted on the same port, both nodes recover without a restart.
# A wrong password leaves the store down with the server's reason.
. "$(dirname "$0")/lib.sh"

command -v redis-cli >/dev/null || die "redis-cli is missing: make test-deps (redis-tools)"

# ---- the driver, built by make e2e against the library of the proxy under test ----
# next to the proxy binary: build/e2e/ackstore_driver or build/asan/e2e/ackstore_driver
DRV=$(dirname "$AIGATE")/e2e/ackstore_driver
if [ ! -x "$DRV" ]; then
    make -C "$ROOT" "${DRV#"$ROOT"/}" >"$T/make.log" 2>&1 ||
        die "cannot build $DRV: $(tail -n 5 "$T/make.log")"
fi

REDIS_ARGS="--requirepass s3cret"
start_redis "$T/redis"
URL="redis://:s3cret@127.0.0.1:$REDIS_PORT/2"
rcli() {
    redis-cli -p "$REDIS_PORT" -a s3cret -n 2 --no-auth-warning "$@"
}

# node NAME URL: start a driver on its own command pipe (fd in NODE_FD[NAME]); its
# answers go to $T/NAME.out, its diagnostics to $T/NAME/driver.log
declare -A NODE_FD NODE_PID
node() {
    local name=$1 fd
    mkdir -p "$T/$name"
    mkfifo "$T/$name/in"
    : >"$T/$name.out"
    exec {fd}<>"$T/$name/in" # opened first, so the driver's end opens without waiting
    NODE_FD[$name]=$fd
    spawn "$DRV" "$2" "$T/$name/in" >"$T/$name.out" 2>"$T/$name/driver.log"
    NODE_PID[$name]=$LAST_PID
}

# ask NAME COMMAND...: send one command, print its answer (waits up to 20 s)
ask() {
    local name=$1 n i
    shift
    n=$(wc -l <"$T/$name.out")
    echo "$*" >&"${NODE_FD[$name]}"
    for ((i = 0; i < 400; i++)); do
        if [ "$(wc -l <"$T/$name.out")" -gt "$n" ]; then
            sed -n "$((n + 1))p" "$T/$name.out"
            return
        fi
        sleep 0.05
    done
    echo "(no answer)"
}

# send NAME COMMAND...: send without waiting (for racing two nodes)
send() {
    local name=$1
    shift
    echo "$*" >&"${NODE_FD[$name]}"
}

node A "$URL"
node B "$URL"
assert_eq "node A connects (AUTH, SELECT 2, PING)" up "$(ask A wait up 10)"
assert_eq "node B connects" up "$(ask B wait up 10)"

# ---- granted through A, honoured through B ----
tok=$(ask A token alice deepseek)
assert_match "a token" '^[0-9]+\.[0-9a-f]{24}\.[A-Za-z0-9_-]{43}$' "$tok"
nonce=$(cut -d. -f2 <<<"$tok")
assert_eq "B: not acknowledged yet" no "$(ask B lookup alice deepseek)"
assert_eq "A: the commit is recorded" ok "$(ask A commit "$tok" alice deepseek 4)"
assert_eq "B honours the acknowledgement made through A" yes "$(ask B lookup alice deepseek)"
assert_eq "A honours it too" yes "$(ask A lookup alice deepseek)"
assert_eq "B: another service is not acknowledged" no "$(ask B lookup alice claude)"
assert_eq "B: another user is not acknowledged" no "$(ask B lookup bob deepseek)"

# ---- a used token is refused on every node ----
assert_eq "B refuses the token used through A" "already used" "$(ask B commit "$tok" alice deepseek 4)"
assert_eq "A refuses it too" "already used" "$(ask A commit "$tok" alice deepseek 4)"
assert_eq "a malformed token never reaches the store" malformed "$(ask B commit junk alice deepseek 4)"

# ---- the keys in Redis: names, values and TTLs ----
assert_eq "the acknowledgement's key holds its expiry" 1 \
    "$(($(rcli GET ack:alice:deepseek) > $(date +%s)))"
ttl=$(rcli TTL ack:alice:deepseek)
assert_match "the acknowledgement's key carries its TTL (4 s)" '^[1-4]$' "$ttl"
ttl=$(rcli TTL "nonce:$nonce")
assert_match "the nonce's key lives as long as the token could be used (600 s)" '^(59[0-9]|600)$' "$ttl"
assert_eq "the nonce's value" 1 "$(rcli GET "nonce:$nonce")"
assert_eq "nothing in database 0" 0 "$(redis-cli -p "$REDIS_PORT" -a s3cret -n 0 --no-auth-warning DBSIZE)"

# ---- names with ':' (anonymous users by address, hosts outside the catalog) ----
tok2=$(ask B token @::1 host:chat.example)
assert_eq "B: an anonymous IPv6 user's acknowledgement" ok "$(ask B commit "$tok2" @::1 host:chat.example 60)"
assert_eq "A honours it" yes "$(ask A lookup @::1 host:chat.example)"
assert_eq "its key escapes the colons" 1 "$(rcli EXISTS ack:@%3A%3A1:host%3Achat.example)"
assert_eq "A: a different split of the same characters is another key" no "$(ask A lookup @ :1:host:chat.example)"

# ---- two nodes commit one token at the same moment: exactly one wins ----
for i in 1 2 3 4 5; do
    t=$(ask A token "racer$i" deepseek)
    na=$(wc -l <"$T/A.out")
    nb=$(wc -l <"$T/B.out")
    send A commit "$t" "racer$i" deepseek 60
    send B commit "$t" "racer$i" deepseek 60
    for ((k = 0; k < 200; k++)); do
        [ "$(wc -l <"$T/A.out")" -gt "$na" ] && [ "$(wc -l <"$T/B.out")" -gt "$nb" ] && break
        sleep 0.05
    done
    answers=$( (sed -n "$((na + 1))p" "$T/A.out"; sed -n "$((nb + 1))p" "$T/B.out") | sort | tr '\n' '/')
    assert_eq "race $i: one commit wins, the other is refused" "already used/ok/" "$answers"
done

# ---- the acknowledgement expires in Redis, for every node ----
sleep 4.5
assert_eq "B: alice's acknowledgement has expired" no "$(ask B lookup alice deepseek)"
assert_eq "A: expired too" no "$(ask A lookup alice deepseek)"
assert_eq "the key is gone from Redis" 0 "$(rcli EXISTS ack:alice:deepseek)"

# ---- redis-server stopped: unavailable, failed, down; back: recovered ----
stop_redis
assert_eq "A reports the store down" down "$(ask A wait down 10)"
assert_eq "B reports the store down" down "$(ask B wait down 10)"
health=$(ask A health)
assert_match "the health says where and why" "^down: redis 127\.0\.0\.1:$REDIS_PORT/2: " "$health"
assert_eq "A: a lookup is unavailable (the caution page is shown again)" unavailable \
    "$(ask A lookup @::1 host:chat.example)"
tok3=$(ask A token carol deepseek)
assert_eq "A: a commit is not recorded (503)" "not recorded" "$(ask A commit "$tok3" carol deepseek 60)"
assert_match "errors are counted" 'errors [1-9]' "$(ask A metrics)"

start_redis "$T/redis" "$REDIS_PORT"
assert_eq "A reconnects by itself" up "$(ask A wait up 10)"
assert_eq "B reconnects by itself" up "$(ask B wait up 10)"
assert_eq "A: the token that failed can be used now" ok "$(ask A commit "$tok3" carol deepseek 60)"
assert_eq "B honours it" yes "$(ask B lookup carol deepseek)"

# ---- a wrong password: down, with the server's reason ----
node C "redis://:wrong@127.0.0.1:$REDIS_PORT/2"
assert_eq "a node with a wrong password is down" down "$(ask C wait down 10)"
assert_match "it says why" 'WRONGPASS|invalid password' "$(ask C health)"
assert_eq "C: lookups are unavailable" unavailable "$(ask C lookup carol deepseek)"

# ---- the drivers close their stores cleanly ----
for name in A B C; do
    send "$name" quit # each holds the others' pipes too: no end of file to wait for
done
for name in A B C; do
    for ((i = 0; i < 100; i++)); do
        alive "${NODE_PID[$name]}" || break
        sleep 0.05
    done
    wait "${NODE_PID[$name]}"
    assert_eq "node $name exits cleanly" 0 "$?"
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/$name/driver.log"; then
        fail "sanitizer report in node $name: $(grep -m1 -E 'Sanitizer|runtime error' "$T/$name/driver.log")"
    fi
done
exit 0
