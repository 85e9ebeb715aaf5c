#!/bin/bash
# A full audit disk and cut-off logs (issue 18, SPEC section 7), with real
# processes and a small tmpfs (mounted here, so it needs root):
#   (a) the disk fills while aigate serves: requests still answered, the file
#       never holds a partial line, not even after a stop while full; after
#       space returns and a restart the chain verifies;
#   (b) a partial line left by a crash and a start on a full disk: aigate starts
#       and serves; once there is room the piece goes to PATH.partial-* and a
#       line records it; --verify-log passes;
#   (c) rotation (gzip) and SIGUSR1 while the disk is full: nothing lost, every
#       file whole, the set verifies;
#   (d) a log that cannot even be created (no inode left): start, serve, create
#       it once there is room;
#   (e) checkpoints (at stop, at rotation, periodic) and --verify-log
#       --checkpoint FILE|-: an untouched log passes, deleting the last line or
#       truncating fails naming the lines missing; audit.node in every line;
#       the new keys are checked by -t.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
    echo "skip: needs root to mount a tmpfs"
    exit 0
fi

M=$T/mnt
mkdir -p "$M" "$T/ck"
mount -t tmpfs -o size=256k,mode=0755 tmpfs "$M" || die "cannot mount a tmpfs on $M"
M2=
# Unmount at exit: stop every process first (they hold files open), then lib.sh's teardown.
fault_exit() {
    local rc=$?
    stop_all
    umount "$M" 2>/dev/null || umount -l "$M"
    if [ -n "$M2" ]; then umount "$M2" 2>/dev/null || umount -l "$M2"; fi
    (exit "$rc")
    on_exit
}
trap fault_exit EXIT

start_nginx "$T/nginx"
N=http://origin.test:$NGINX_HTTP_PORT
write_hosts
L=$M/audit.jsonl
CK=$T/ck/checkpoints
ADMIN_PORT=$(free_port)

# conf AUDIT_KEYS: the proxy config with the audit section's keys AUDIT_KEYS
conf() {
    proxy_conf "audit : { chain_key_file = \"$T/ck/audit.key\"; node = \"gw1\";" \
        "checkpoint_file = \"$CK\"; $1 };" \
        "admin : { listen = \"127.0.0.1:$ADMIN_PORT\"; };"
}

# start DIR AUDIT_KEYS: start the proxy with its config in DIR
start() {
    mkdir -p "$1"
    CONF_DIR=$1
    PROXY_PORT=$(free_port)
    start_proxy "$1" "$(conf "$2")"
}

# requests N: N GETs through the proxy; prints how many were answered 200
requests() {
    local i ok=0
    for ((i = 0; i < $1; i++)); do
        [ "$(pcurl -o /dev/null -w '%{http_code}' "$N/small.txt")" = 200 ] && ok=$((ok + 1))
    done
    echo "$ok"
}

# fill: take every free block of the tmpfs (the log keeps the rest of its last page)
fill() {
    local i=0
    while head -c 1048576 /dev/zero >"$M/fill.$i" 2>/dev/null; do i=$((i + 1)); done
    sync
}

unfill() {
    rm -f "$M"/fill.*
}

# nlines FILE: complete lines in FILE
nlines() {
    if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# wait_lines FILE N: until FILE has N lines (10 s)
wait_lines() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(nlines "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

# ends_whole FILE: "yes" when FILE is empty or ends with a newline
ends_whole() {
    if [ ! -s "$1" ] || [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ]; then
        echo yes
    else
        echo "no: ends with $(tail -c 40 "$1" | od -An -c | tr -s ' ' | tail -n 2 | tr -d '\n')"
    fi
}

# verify ARGS...: "$AIGATE --verify-log ARGS" with the current config; $VOUT, $VRC
verify() {
    VOUT=$("$AIGATE" -c "$CONF_DIR/aigate.conf" --verify-log "$@" 2>&1)
    VRC=$?
}

# rotated: the rotated files of $L, oldest first
rotated() {
    "$PY" - "$M" <<'EOF'
import os, re, sys
d = sys.argv[1]
key = {}
for f in os.listdir(d):
    m = re.fullmatch(r"audit\.jsonl\.(\d{8}T\d{6}Z)\.(\d+)(\.gz)?", f)
    if m:
        key[f] = (m.group(1), int(m.group(2)), m.group(3) or "")
for f in sorted(key, key=key.get):
    print(os.path.join(d, f))
EOF
}

metric() {
    curl -sS --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# ---- (a) the disk fills while serving; stopped while full -------------------------------
start "$T/a" "path = \"$L\"; rotate_bytes = 0; checkpoint_s = 0;"
assert_eq "(a) 5 requests before the disk fills" 5 "$(requests 5)"
wait_lines "$L" 5 || fail "(a) the first 5 lines were not written"
fill
assert_eq "(a) 40 requests answered while the audit disk is full" 40 "$(requests 40)"
sleep 1.5
assert_match "(a) the writer warns that it cannot write" "audit: cannot write $L: No space left" \
    "$(cat "$PROXY_LOG")"
assert_eq "(a) no partial line in the log while the disk is full" yes "$(ends_whole "$L")"
full_lines=$(nlines "$L")
stop_proxy
assert_eq "(a) aigate stops with exit 0 while the disk is full" 0 "$PROXY_RC"
assert_eq "(a) no partial line after a stop while the disk is full" yes "$(ends_whole "$L")"
assert_eq "(a) nothing written after the disk filled" "$full_lines" "$(nlines "$L")"
assert_match "(a) the lines that could not be written are counted as dropped" \
    "audit: closed $L; [0-9]+ lines were dropped" "$(cat "$PROXY_LOG")"
verify "$L"
assert_eq "(a) --verify-log passes after a stop while full" 0 "$VRC"
assert_match "(a) --verify-log counts the lines written" "^$full_lines lines verified" "$VOUT"
tail -n 1 "$CK" >"$T/ck/last"
assert_match "(a) a checkpoint at stop counts the lines of the file" \
    "^aigate-checkpoint v1 ts=[0-9TZ:-]+ lines=$full_lines chain=[0-9a-f]{64} node=gw1 file=$L mac=[0-9a-f]{64}$" \
    "$(cat "$T/ck/last")"
verify --checkpoint "$CK" "$L"
assert_eq "(a) --verify-log --checkpoint passes on the untouched log" 0 "$VRC"
assert_match "(a) it names the checkpoint reached" "checkpoint of .* reached: $L line $full_lines" "$VOUT"

unfill
start "$T/a" "path = \"$L\"; rotate_bytes = 0; checkpoint_s = 0;"
assert_eq "(a) after space returns and a restart: 5 requests" 5 "$(requests 5)"
stop_proxy
assert_eq "(a) the restart logged the 5 new lines" $((full_lines + 5)) "$(nlines "$L")"
verify --checkpoint "$CK" "$L"
assert_eq "(a) --verify-log --checkpoint passes after the restart" 0 "$VRC"
assert_match "(a) every line verified" "^$((full_lines + 5)) lines verified" "$VOUT"
before_b=$(nlines "$L")

# ---- (b) a crash's partial line, and a start on a full disk -------------------------------
# The piece a crash left ends the file exactly at a page boundary, so the log's
# last page has no room left once the disk is full.
FRAG='{"ts":"2026-12-01T00:00:00.000Z","id":"5f2c","client":"10.1.2.3","path":"/'
pad=$(((4096 - ($(stat -c %s "$L") + ${#FRAG}) % 4096) % 4096))
FRAG=$FRAG$(head -c "$pad" /dev/zero | tr '\0' x)
printf '%s' "$FRAG" >>"$L"
assert_eq "(b) the log ends at a page boundary" 0 $(($(stat -c %s "$L") % 4096))
fill
start "$T/b" "path = \"$L\"; rotate_bytes = 0; checkpoint_s = 0;"
assert_eq "(b) aigate starts on a full disk and answers 10 requests" 10 "$(requests 10)"
sleep 1.5
assert_match "(b) it warns that the partial line cannot be moved aside yet" \
    "ends in a partial line that cannot be moved aside yet" "$(cat "$PROXY_LOG")"
assert_eq "(b) nothing written to the log while full" 0 "$(metric aigate_audit_lines_total)"
stop_proxy
assert_eq "(b) exit 0" 0 "$PROXY_RC"
assert_match "(b) the lines that could not be written are counted as dropped" \
    "audit: closed $L; 10 lines were dropped" "$(cat "$PROXY_LOG")"
assert_eq "(b) the log is as the crash left it" "$FRAG" "$(tail -n 1 "$L")"

unfill
start "$T/b" "path = \"$L\"; rotate_bytes = 0; checkpoint_s = 0;"
assert_eq "(b) after space returns: 3 requests" 3 "$(requests 3)"
stop_proxy
side=$(ls "$M"/audit.jsonl.partial-* 2>/dev/null)
assert_match "(b) the cut bytes are in one side file PATH.partial-YYYYMMDDTHHMMSSZ" \
    "^$L\.partial-[0-9]{8}T[0-9]{6}Z$" "$side"
assert_eq "(b) the side file holds exactly the cut bytes" "$FRAG" "$(cat "$side" 2>/dev/null)"
assert_eq "(b) one line records the cut" 1 \
    "$(audit_count "$L" "d['action'] == 'error' and d['rule'] == 'audit:partial-line' and d['path'] == '$side' and d['bytes_in'] == ${#FRAG}")"
assert_eq "(b) the log: old lines, the record of the cut, 3 new lines" $((before_b + 4)) \
    "$(nlines "$L")"
assert_eq "(b) no partial line" yes "$(ends_whole "$L")"
verify --checkpoint "$CK" "$L"
assert_eq "(b) --verify-log --checkpoint passes after the cut" 0 "$VRC"
assert_match "(b) every line verified" "^$((before_b + 4)) lines verified" "$VOUT"

# ---- (c) rotation and SIGUSR1 while full --------------------------------------------------
# rotate_bytes = 7192: a file rotates inside its second page (4096..8192), so
# with the disk filled while the live file is 4200..6700 bytes long, the
# lines up to the rotation still fit in that page: the rotation happens on a
# full disk and gzip has no room for the compressed file.
rm -f "$M"/audit.jsonl* "$CK"
start "$T/c" "path = \"$L\"; rotate_bytes = 7192; keep = 0; checkpoint_s = 0;"
sent=$(requests 40)
for ((i = 0; i < 40; i++)); do
    size=$(stat -c %s "$L")
    [ "$size" -gt 4200 ] && [ "$size" -lt 6700 ] && break
    sent=$((sent + $(requests 1)))
    sleep 0.05
done
sleep 1 # the compressor is done with the earlier rotations
rot_before=$(rotated | wc -l)
fill
sent_full=$(requests 30)
sleep 1.5
assert_eq "(c) 30 requests while full" 30 "$sent_full"
assert_eq "(c) a rotation happened while full" $((rot_before + 1)) "$(rotated | wc -l)"
assert_match "(c) gzip had no room and says so" "audit: cannot compress .*: No space left" \
    "$(cat "$PROXY_LOG")"
assert_eq "(c) the file rotated while full stays uncompressed" 1 "$(rotated | grep -vc '\.gz$')"
kill -USR1 "$PROXY_PID"
assert_eq "(c) 10 requests after SIGUSR1 while full" 10 "$(requests 10)"
sleep 1.5
unfill
assert_eq "(c) 30 requests after space returns" 30 "$(requests 30)"
sleep 2
stop_proxy
assert_eq "(c) exit 0" 0 "$PROXY_RC"
sent=$((sent + sent_full + 40))
assert_eq "(c) every rotated file compressed once there was room" 0 "$(rotated | grep -vc '\.gz$')"
mapfile -t rot < <(rotated)
echo "(c) rotated files: ${rot[*]##*/}"
assert_le "(c) at least 3 rotations" 3 "${#rot[@]}"
whole=yes
for f in "${rot[@]}" "$L"; do
    case $f in *.gz) ;; *) [ "$(ends_whole "$f")" = yes ] || whole="$f: $(ends_whole "$f")" ;; esac
done
assert_eq "(c) every file ends with a whole line" yes "$whole"
verify --checkpoint "$CK" "${rot[@]}" "$L"
assert_eq "(c) --verify-log --checkpoint over the rotated files and the live one" 0 "$VRC"
assert_match "(c) no line lost: $sent requests, $sent lines verified" "^$sent lines verified" "$VOUT"
assert_le "(c) a checkpoint at each rotation names the rotated file" "${#rot[@]}" \
    "$(grep -cE " file=$L\.[0-9]{8}T[0-9]{6}Z\.[0-9]{4} mac=" "$CK")"
assert_match "(c) the last checkpoint (at stop) names the live file" " lines=$(nlines "$L") chain=.* file=$L mac=" \
    "$(tail -n 1 "$CK")"
assert_match "(c) SIGUSR1 reopened the log" "audit: reopened $L" "$(cat "$PROXY_LOG")"

# ---- (d) no inode left for the log ----------------------------------------------------------
M2=$T/mnt2
mkdir -p "$M2"
mount -t tmpfs -o size=256k,nr_inodes=8,mode=0755 tmpfs "$M2" || die "cannot mount $M2"
i=0
while touch "$M2/f.$i" 2>/dev/null; do i=$((i + 1)); done
start "$T/d" "path = \"$M2/audit.jsonl\"; checkpoint_s = 0;"
assert_match "(d) aigate starts although the log cannot be created" \
    "audit: $M2/audit.jsonl: No space left on device; serving anyway" "$(cat "$PROXY_LOG")"
assert_eq "(d) 4 requests answered" 4 "$(requests 4)"
rm -f "$M2"/f.*
wait_lines "$M2/audit.jsonl" 4 || fail "(d) the log was not created once an inode was free"
assert_eq "(d) 2 more requests" 2 "$(requests 2)"
stop_proxy
verify "$M2/audit.jsonl"
assert_eq "(d) the late log verifies" 0 "$VRC"
assert_match "(d) with every line" "^6 lines verified" "$VOUT"

# ---- (e) checkpoints and cut-off logs, node -------------------------------------------------
rm -f "$CK"
start "$T/e" "path = \"$T/e/audit.jsonl\"; checkpoint_s = 1;"
E=$T/e/audit.jsonl
assert_eq "(e) 6 requests" 6 "$(requests 6)"
for ((i = 0; i < 40; i++)); do
    [ -s "$CK" ] && break
    sleep 0.1
done
assert_match "(e) a periodic checkpoint within checkpoint_s (+1 s) of the lines" " lines=6 chain=" \
    "$(cat "$CK" 2>/dev/null)"
assert_eq "(e) 2 more requests" 2 "$(requests 2)"
stop_proxy
assert_match "(e) the checkpoint at stop counts all 8 lines" " lines=8 chain=.* node=gw1 file=$E mac=" \
    "$(tail -n 1 "$CK")"
assert_eq "(e) every line carries node gw1 between tls and chain" 8 \
    "$(audit_count "$E" "list(d)[-3:] == ['tls', 'node', 'chain'] and d['node'] == 'gw1'")"
verify --checkpoint "$CK" "$E"
assert_eq "(e) untouched log: --verify-log --checkpoint exit 0" 0 "$VRC"
VOUT=$(grep -h aigate-checkpoint "$CK" | sed 's/^/Dec  6 06:00:00 host aigate[7]: /' |
    "$AIGATE" -c "$CONF_DIR/aigate.conf" --verify-log --checkpoint - "$E" 2>&1)
assert_eq "(e) --checkpoint - reads syslog lines from stdin: exit 0" 0 "$?"
assert_match "(e) and reaches the last checkpoint" "reached: $E line 8" "$VOUT"
cp "$E" "$T/e/whole.jsonl"
sed -i '$d' "$E"
verify "$E"
assert_eq "(e) without its last line the chain alone still verifies" 0 "$VRC"
verify --checkpoint "$CK" "$E"
assert_eq "(e) last line deleted: --verify-log --checkpoint exit 1" 1 "$VRC"
assert_match "(e) it names the one line missing" "^$E: 1 line missing: the checkpoint of .* counted 8, the file has 7$" "$VOUT"
head -n 3 "$T/e/whole.jsonl" >"$E"
verify --checkpoint "$CK" "$E"
assert_eq "(e) truncated to 3 lines: exit 1" 1 "$VRC"
assert_match "(e) it names the 5 lines missing" "^$E: 5 lines missing" "$VOUT"
: >"$E"
verify --checkpoint "$CK" "$E"
assert_eq "(e) truncated to nothing: exit 1" 1 "$VRC"
assert_match "(e) it names the 8 lines missing" "^$E: 8 lines missing" "$VOUT"
cp "$T/e/whole.jsonl" "$E"
verify --checkpoint "$CK" "$E"
assert_eq "(e) restored: exit 0" 0 "$VRC"

# the new keys are checked by -t
for bad in "checkpoint_s = -1;" "checkpoint_s = \"60\";" "node = \"gw 1\";" \
    "checkpoint_file = \"audit.jsonl\";"; do
    printf 'audit : {\n  path = "audit.jsonl";\n  %s\n};\n' "$bad" >"$T/e/bad.conf"
    out=$("$AIGATE" -t -c "$T/e/bad.conf" 2>&1)
    rc=$?
    assert_eq "(e) -t refuses audit { $bad }: exit 2" 2 "$rc"
    assert_match "(e) with FILE:LINE" "^$T/e/bad.conf:3: " "$out"
done
printf 'audit : { node = "gw-1.corp"; checkpoint_s = 0; checkpoint_file = "/var/log/x"; };\n' \
    >"$T/e/good.conf"
assert_eq "(e) -t accepts node, checkpoint_s = 0 and checkpoint_file" 0 \
    "$("$AIGATE" -t -c "$T/e/good.conf" >/dev/null 2>&1; echo $?)"
