#!/bin/bash
# SPEC 10: a log shipper gathers every node's audit.jsonl into one place, and each node's
# chain still verifies there.  Two real aigate processes ("node1", "node2", audit.node
# set, checkpoints to a file) serve some requests; rsyslogd runs the shipped
# contrib/fleet/rsyslog-local.conf unprivileged (paths rewritten into the test folder)
# and must deliver: per node a byte-identical copy of its audit.jsonl that passes
# `aigate --verify-log`, also against the node's last checkpoint (and fails it when the
# copy loses its last line or a line is altered); and one combined file holding every
# line of both nodes, each saying its node, from which each node's chain can be split
# out again and verified.
. "$(dirname "$0")/lib.sh"

write_hosts
start_origin

# ---- two nodes ----
declare -A PORT PID
for n in node1 node2; do
    mkdir -p "$T/$n" "$T/ckpt"
    PROXY_PORT=$(free_port)
    start_proxy "$T/$n" "$(proxy_conf \
        "audit : { path = \"$T/$n/audit.jsonl\"; chain_key_file = \"$T/$n/audit.key\";" \
        "          node = \"$n\"; checkpoint_s = 1; checkpoint_file = \"$T/ckpt/$n.ckpt\"; };" \
        "ack : { state_file = \"$T/$n/acks.state\"; secret_file = \"$T/$n/ack.secret\"; };")"
    PORT[$n]=$PROXY_PORT
    PID[$n]=$PROXY_PID
done

# ---- the shipper: contrib/fleet/rsyslog-local.conf, its paths moved into $T ----
mkdir -p "$T/rs" "$T/rs/work" "$T/fleet"
conf=$T/rs/rsyslog.conf
cp "$ROOT/contrib/fleet/rsyslog-local.conf" "$conf" || die "cannot copy rsyslog-local.conf"
# sub FIXED REPLACEMENT: replace every FIXED (a path) in the settings; it must be there
sub() {
    grep -v '^[[:space:]]*#' "$conf" | grep -qF -- "$1" ||
        die "contrib/fleet/rsyslog-local.conf no longer names $1: update this test"
    local d=$'\001'
    sed -i "/^[[:space:]]*#/!s$d$(sed 's/[.[\*^$]/\\&/g' <<<"$1")$d$2${d}g" "$conf"
}
sub /var/spool/rsyslog "$T/rs/work"
sub /var/log/aigate/node1/ "$T/node1/"
sub /var/log/aigate/node2/ "$T/node2/"
sub /var/log/aigate-fleet "$T/fleet"
while IFS= read -r p; do
    [[ $p == "\"$T/"* ]] || die "rsyslog-local.conf names $p, which the test does not move into $T"
done < <(grep -v '^[[:space:]]*#' "$conf" | grep -oE '"/[^"]*"')
start_rsyslog "$T/rs"

# ---- traffic through both nodes ----
req() { # NODE PATH
    curl -q -sS -o /dev/null --max-time 10 -x "http://127.0.0.1:${PORT[$1]}" \
        "http://origin.test:$ORIGIN_PORT$2"
}
for i in 1 2 3 4 5; do req node1 "/one/$i?q=x"; done
for i in 1 2 3 4 5 6 7; do req node2 "/two/$i"; done
req node1 "/%ED%95%9C%EA%B8%80/%22quoted%22"
req node2 "/$(head -c 3000 /dev/zero | tr '\0' a)" # a long line
printf 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n' | raw_req >/dev/null 2>&1 # node2: an error line

# SIGTERM: each node writes its last lines and a final checkpoint
for n in node1 node2; do
    PROXY_PID=${PID[$n]}
    stop_proxy TERM
    assert_eq "$n stops cleanly" 0 "$PROXY_RC"
done
n1=$(wc -l <"$T/node1/audit.jsonl")
n2=$(wc -l <"$T/node2/audit.jsonl")
assert_eq "node1 wrote its lines" 6 "$n1"
assert_eq "node2 wrote its lines" 9 "$n2"

# ---- everything arrives ----
for ((i = 0; i < 150; i++)); do
    [ "$(cat "$T/fleet/node1/audit.jsonl" 2>/dev/null | wc -l)" = "$n1" ] &&
        [ "$(cat "$T/fleet/node2/audit.jsonl" 2>/dev/null | wc -l)" = "$n2" ] &&
        [ "$(cat "$T/fleet/all.jsonl" 2>/dev/null | wc -l)" = "$((n1 + n2))" ] && break
    sleep 0.1
done

for n in node1 node2; do
    got=$T/fleet/$n/audit.jsonl
    if cmp -s "$T/$n/audit.jsonl" "$got"; then
        pass "$n: the collected copy is byte for byte the node's audit.jsonl"
    else
        fail "$n: the collected copy differs: $(diff "$T/$n/audit.jsonl" "$got" 2>&1 | head -c 400)"
    fi
    out=$("$AIGATE" -c "$T/$n/aigate.conf" --verify-log "$got" 2>&1)
    rc=$?
    assert_eq "$n: the collected chain verifies: $(oneline "$out")" 0 "$rc"
    assert_contains "$n: every line verified" "$out" "$(wc -l <"$T/$n/audit.jsonl")"
    out=$("$AIGATE" -c "$T/$n/aigate.conf" --verify-log --checkpoint "$T/ckpt/$n.ckpt" "$got" 2>&1)
    rc=$?
    assert_eq "$n: and it reaches the node's last checkpoint: $(oneline "$out")" 0 "$rc"
    assert_eq "$n: every line says its node" "$(wc -l <"$got")" "$(grep -cF ",\"node\":\"$n\"," "$got")"
done

# The checkpoint catches a copy that lost its newest line; the chain catches an altered one.
mkdir -p "$T/short" "$T/altered"
head -n -1 "$T/fleet/node1/audit.jsonl" >"$T/short/audit.jsonl"
out=$("$AIGATE" -c "$T/node1/aigate.conf" --verify-log --checkpoint "$T/ckpt/node1.ckpt" \
    "$T/short/audit.jsonl" 2>&1)
rc=$?
assert_eq "a copy missing its last line fails against the checkpoint" 1 "$rc"
assert_contains "and says so" "$out" "1 line missing"
sed '2s/"status":200/"status":201/' "$T/fleet/node2/audit.jsonl" >"$T/altered/audit.jsonl"
cmp -s "$T/fleet/node2/audit.jsonl" "$T/altered/audit.jsonl" && die "the test did not alter line 2"
"$AIGATE" -c "$T/node2/aigate.conf" --verify-log "$T/altered/audit.jsonl" >/dev/null 2>&1
assert_eq "an altered copy fails the chain" 1 "$?"

# ---- the combined file ----
all=$T/fleet/all.jsonl
assert_eq "the combined file has every line of both nodes" "$((n1 + n2))" "$(wc -l <"$all")"
assert_eq "each line names node1 or node2" "$((n1 + n2))" \
    "$(grep -cE ',"node":"node[12]",' "$all")"
for n in node1 node2; do
    mkdir -p "$T/split/$n"
    grep -F ",\"node\":\"$n\"," "$all" >"$T/split/$n/audit.jsonl"
    if cmp -s "$T/$n/audit.jsonl" "$T/split/$n/audit.jsonl"; then
        pass "$n's lines split out of the combined file are its audit.jsonl, in order"
    else
        fail "$n's lines in the combined file differ from its audit.jsonl"
    fi
    out=$("$AIGATE" -c "$T/$n/aigate.conf" --verify-log --checkpoint "$T/ckpt/$n.ckpt" \
        "$T/split/$n/audit.jsonl" 2>&1)
    rc=$?
    assert_eq "$n's split-out chain verifies against its checkpoint: $(oneline "$out")" 0 "$rc"
done
exit 0
