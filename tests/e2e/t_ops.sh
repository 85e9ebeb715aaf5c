#!/bin/bash
# Operations: what `make install` ships and how it is run.
#  - make install DESTDIR=... PREFIX=/usr: files where the unit and the snippet expect
#    them, no sample passwords, the installed aigate.conf's state and log under the
#    unit's StateDirectory= and LogsDirectory=, it passes `aigate -t`, and a second
#    install keeps the operator's files.
#  - systemd-analyze verify on the installed unit (no diagnostics at all; a broken
#    copy must produce some, so the check can fail), and LimitNOFILE against the
#    shipped limits.max_connections.
#  - logrotate -d on the installed snippet, then real rotations through the snippet
#    with aigate running as the service user: aigate reopens on SIGUSR1 into a fresh
#    file, the older rotated file is gzipped, and --verify-log verifies across
#    every rotation and across a restart.
#  - README's number of catalogued services and the runtime package list (make deps).
source "$(dirname "$0")/lib.sh"

CFGGET=$T/cfgget
cc -o "$CFGGET" "$E2E/cfgget.c" $(pkg-config --cflags --libs libconfig) ||
    die "cannot build cfgget"

# ---- README's count of catalogued services ------------------------------------------
nservices=$("$CFGGET" "$ROOT/rules/services.conf" services) || die "services.conf does not parse"
stated=$(grep -oE '[0-9][0-9,]* (AI )?services\b' "$ROOT/README.md" | grep -oE '^[0-9,]+' | tr -d ,)
[ -n "$stated" ] || fail "README states no number of services"
for n in $stated; do
    assert_eq "README's number of services is the catalog's" "$nservices" "$n"
done

# ---- make deps installs only what building and running needs -------------------------
deb_pkgs=$(make -s -C "$ROOT" -np 2>/dev/null | sed -n 's/^DEB_PKGS :\?= //p' | head -n 1)
[ -n "$deb_pkgs" ] || fail "no DEB_PKGS in the Makefile"
for p in chromium clang check nginx-light fonts-noto-cjk; do
    assert_not_contains "make deps (run time) does not install $p" " $deb_pkgs " " $p "
done

# ---- make install into a staging root -----------------------------------------------
R=$T/root
if ! make -s -C "$ROOT" install DESTDIR="$R" PREFIX=/usr >"$T/install.out" 2>&1; then
    cat "$T/install.out" >&2
    die "make install DESTDIR=$R PREFIX=/usr failed"
fi
UNIT=$R/usr/lib/systemd/system/aigate.service
SNIPPET=$R/etc/logrotate.d/aigate
ETC=$R/etc/aigate
for f in usr/bin/aigate usr/lib/systemd/system/aigate.service etc/logrotate.d/aigate \
    usr/share/doc/aigate/README.md etc/aigate/aigate.conf etc/aigate/services.conf \
    etc/aigate/policy.conf etc/aigate/users.htpasswd etc/aigate/pages/block.html \
    etc/aigate/pages/caution.html etc/aigate/pages/error.html; do
    if [ -e "$R/$f" ]; then pass "installed /$f"; else fail "/$f not installed"; fi
done
[ -x "$R/usr/bin/aigate" ] || fail "/usr/bin/aigate is not executable"
[ -d "$ETC/certs" ] || fail "/etc/aigate/certs not made"
assert_eq "the installed snippet is contrib/logrotate/aigate" "" \
    "$(cmp "$ROOT/contrib/logrotate/aigate" "$SNIPPET" 2>&1)"
assert_contains "the unit runs the installed binary" "$(cat "$UNIT")" \
    "ExecStart=/usr/bin/aigate -f -c /etc/aigate/aigate.conf"
doc=$(sed -n 's#^Documentation=file://##p' "$UNIT")
if [ -n "$doc" ] && [ -e "$R$doc" ]; then pass "the unit's Documentation= exists ($doc)"; else
    fail "the unit's Documentation= ($doc) is not installed"; fi
assert_eq "users.htpasswd is mode 0640" 640 "$(stat -c %a "$ETC/users.htpasswd")"
assert_eq "users.htpasswd has no users" "" "$(grep -v '^#' "$ETC/users.htpasswd" | grep -v '^[[:space:]]*$')"
samples=$(grep -v '^#' "$ROOT/rules/users.htpasswd" | cut -d: -f2)
[ -n "$samples" ] || die "no sample hashes in rules/users.htpasswd"
leaked=$(grep -rlF "$samples" "$R" 2>/dev/null)
assert_eq "no sample password hash anywhere in the install" "" "$leaked"
assert_contains "make install tells the operator to add users" "$(cat "$T/install.out")" \
    "users.htpasswd has none"

# The installed configuration writes only where the unit lets it.
logs_dir=/var/log/$(sed -n 's/^LogsDirectory=//p' "$UNIT")
state_dir=/var/lib/$(sed -n 's/^StateDirectory=//p' "$UNIT")
audit_path=$("$CFGGET" "$ETC/aigate.conf" audit.path)
assert_eq "audit.path is in the unit's LogsDirectory=" "$logs_dir" "$(dirname "$audit_path")"
for k in audit.chain_key_file ack.state_file ack.secret_file; do
    assert_eq "$k is in the unit's StateDirectory=" "$state_dir" \
        "$(dirname "$("$CFGGET" "$ETC/aigate.conf" "$k")")"
done
assert_eq "the installed aigate.conf leaves rotation to logrotate (rotate_bytes = 0)" 0 \
    "$("$CFGGET" "$ETC/aigate.conf" audit.rotate_bytes)"
assert_eq "the snippet rotates the installed audit.path" "$audit_path {" \
    "$(grep -m1 -E '^/' "$SNIPPET")"
assert_eq "the service user of the unit rotates the log" \
    "su $(sed -n 's/^User=//p' "$UNIT") $(sed -n 's/^Group=//p' "$UNIT")" \
    "$(grep -m1 -oE '^ *su .*' "$SNIPPET" | sed 's/^ *//')"
"$R/usr/bin/aigate" --gen-ca "$ETC/certs" >/dev/null || die "aigate --gen-ca failed"
out=$("$R/usr/bin/aigate" -t -c "$ETC/aigate.conf" 2>&1)
assert_eq "aigate -t accepts the installed configuration (users file without users): exit 0" \
    0 "$?"
assert_contains "aigate -t on the installed configuration" "$out" "configuration OK"

# A second install keeps what the operator changed.
echo 'ops:$6$xyz$notarealhash' >>"$ETC/users.htpasswd"
sed -i 's/^workers = 0;/workers = 4;/' "$ETC/aigate.conf"
make -s -C "$ROOT" install DESTDIR="$R" PREFIX=/usr >"$T/install2.out" 2>&1 ||
    fail "a second make install failed: $(oneline "$(cat "$T/install2.out")")"
assert_contains "a second install keeps the operator's users" "$(cat "$ETC/users.htpasswd")" "ops:"
assert_contains "a second install keeps the operator's aigate.conf" "$(cat "$ETC/aigate.conf")" \
    "workers = 4;"
if [ -e "$ETC/aigate.conf.dist" ]; then pass "the new aigate.conf goes beside it (.dist)"; else
    fail "no aigate.conf.dist after a second install over a changed aigate.conf"; fi
[ -e "$ETC/policy.conf.dist" ] && fail "policy.conf.dist made although policy.conf is unchanged"

# ---- the unit: systemd-analyze verify --------------------------------------------------
# verify_unit ROOT: systemd-analyze's diagnostics for aigate.service under ROOT (which
# gets the host's units, for the targets it names); prints them and returns its status.
verify_unit() {
    mkdir -p "$1/usr/lib/systemd/system"
    cp -an /lib/systemd/system/. "$1/usr/lib/systemd/system/" 2>/dev/null
    systemd-analyze verify --root="$1" aigate.service 2>&1
}
cp -a "$R" "$T/vroot"
out=$(verify_unit "$T/vroot")
rc=$?
assert_eq "systemd-analyze verify on the installed unit: exit 0" 0 "$rc"
assert_eq "systemd-analyze verify on the installed unit: no diagnostics" "" "$out"
cp -a "$R" "$T/vroot-broken"
sed -i 's/^LogsDirectory=/LogDirectory=/' "$T/vroot-broken/usr/lib/systemd/system/aigate.service"
rm "$T/vroot-broken/usr/bin/aigate"
out=$(verify_unit "$T/vroot-broken")
assert_contains "systemd-analyze verify notices a misspelt key" "$out" "LogDirectory"
assert_contains "systemd-analyze verify notices a missing binary" "$out" "/usr/bin/aigate"

# LimitNOFILE holds every client, its origin and the idle origin pool (16 workers).
maxconn=$("$CFGGET" "$ROOT/rules/aigate.conf" limits.max_connections)
pool=$(sed -n 's/^#define POOL_MAX_TOTAL \([0-9]*\).*/\1/p' "$ROOT/proxy/net/upstream.c")
nofile=$(sed -n 's/^LimitNOFILE=//p' "$ROOT/contrib/systemd/aigate.service")
[ -n "$maxconn" ] && [ -n "$pool" ] && [ -n "$nofile" ] ||
    die "max_connections ($maxconn), POOL_MAX_TOTAL ($pool) or LimitNOFILE ($nofile) not found"
assert_le "LimitNOFILE >= 2 x max_connections + 16 x $pool pooled origins + 1000" \
    $((2 * maxconn + 16 * pool + 1000)) "$nofile"
assert_contains "the unit's LimitNOFILE comment names the shipped max_connections" \
    "$(cat "$ROOT/contrib/systemd/aigate.service")" "max_connections = $maxconn:"

# ---- logrotate ---------------------------------------------------------------------------
# The snippet rotates as the service user (su aigate aigate).  As root with mount
# namespaces, the test runs it verbatim: logrotate sees a private /etc/passwd naming
# "aigate" (a free uid) and aigate itself runs as that uid.  Otherwise the su line is
# pointed at the current user.
SVC_UID=
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
    for ((n = 64000; n > 63000; n--)); do
        getent passwd "$n" >/dev/null || getent group "$n" >/dev/null || {
            SVC_UID=$n
            break
        }
    done
fi
if [ -n "$SVC_UID" ]; then
    { grep -v '^aigate:' /etc/passwd; echo "aigate:x:$SVC_UID:$SVC_UID::/nonexistent:/usr/sbin/nologin"; } >"$T/passwd"
    { grep -v '^aigate:' /etc/group; echo "aigate:x:$SVC_UID:"; } >"$T/group"
    pass "rotating as user aigate = uid $SVC_UID (private /etc/passwd)"
else
    echo "# no mount namespace: the snippet's su line names $(id -un) instead of aigate"
fi

# lr ARGS...: logrotate, where the service user "aigate" exists
lr() {
    if [ -n "$SVC_UID" ]; then
        # unshare(1) makes the namespace's mounts private: the host's files stay.
        unshare -m sh -c 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group &&
            shift 2 && exec logrotate "$@"' lr "$T/passwd" "$T/group" "$@"
    else
        logrotate "$@"
    fi
}

# logrotate -d on the snippet as installed
if [ -n "$SVC_UID" ]; then cp "$SNIPPET" "$T/snippet-d"; else
    sed "s/^\( *\)su aigate aigate\$/\1su $(id -un) $(id -gn)/" "$SNIPPET" >"$T/snippet-d"
fi
out=$(lr -d -s "$T/lr-d.state" "$T/snippet-d" 2>&1)
assert_eq "logrotate -d on the snippet: exit 0" 0 "$?"
assert_not_contains "logrotate -d on the snippet: no error" "$out" "error"
assert_contains "logrotate -d reads the rotation of the audit log" "$out" \
    "rotating pattern: /var/log/aigate/audit.jsonl"

# A copy of the snippet for the test: only the log's path, the pid file and the systemd
# check differ (each replacement must happen).
LOGDIR=$T/var/log/aigate
STATEDIR=$T/var/lib/aigate
LOG=$LOGDIR/audit.jsonl
PIDFILE=$T/aigate.pid
cp "$SNIPPET" "$T/snippet"
# subst FROM TO: replace every FROM in the copy; fail the test if there is none
subst() {
    grep -qF -- "$1" "$T/snippet" || fail "the snippet no longer contains \"$1\""
    FROM=$1 TO=$2 "$PY" -c 'import os, sys
p = sys.argv[1]; s = open(p).read(); open(p, "w").write(s.replace(os.environ["FROM"], os.environ["TO"]))' \
        "$T/snippet"
}
subst /var/log/aigate/audit.jsonl "$LOG"
subst /run/aigate.pid "$PIDFILE"
subst /run/systemd/system "$T/no-systemd"
[ -n "$SVC_UID" ] || subst "su aigate aigate" "su $(id -un) $(id -gn)"
diff -u "$SNIPPET" "$T/snippet" | grep '^[-+] ' | sed 's/^/# snippet copy: /'

mkdir -p "$LOGDIR" "$STATEDIR"
chmod 0750 "$LOGDIR"
chmod 0700 "$STATEDIR"
if [ -n "$SVC_UID" ]; then
    chown "$SVC_UID:$SVC_UID" "$LOGDIR" "$STATEDIR"
    chmod 0711 "$T"
fi

# start_svc: the proxy on its own config, as the service user, its pid in $PIDFILE (as
# start-stop-daemon --make-pidfile writes it)
start_svc() {
    local run=()
    [ -n "$SVC_UID" ] && run=(setpriv --reuid="$SVC_UID" --regid="$SVC_UID" --clear-groups)
    PROXY_LOG=$T/proxy.log
    spawn "${run[@]}" "$AIGATE" -f -c "$T/aigate.conf" 2>>"$PROXY_LOG" >>"$T/proxy.out"
    PROXY_PID=$LAST_PID
    PROXY_PIDS+=("$PROXY_PID")
    echo "$PROXY_PID" >"$PIDFILE"
    wait_port "$PROXY_PORT" 15 || die "proxy did not start: $(tail -n 20 "$PROXY_LOG")"
}

# nlines FILE: its lines (0 if missing)
nlines() {
    if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi
}

# requests N PATH: N requests through the proxy; then wait until the live log has
# grown by N lines
requests() {
    local i before
    before=$(nlines "$LOG")
    for ((i = 0; i < $1; i++)); do
        pcurl -o /dev/null "http://origin.test:$ORIGIN_PORT$2$i" || fail "request $2$i failed"
    done
    for ((i = 0; i < 50; i++)); do
        [ "$(nlines "$LOG")" -ge $((before + $1)) ] && return
        sleep 0.1
    done
    fail "the live audit log has $(nlines "$LOG") lines, expected $((before + $1))"
}

# rotate: one forced run of the snippet copy (a second apart: names carry the second)
rotate() {
    sleep 1.1
    LR_OUT=$(lr -f -s "$T/lr.state" "$T/snippet" 2>&1)
    LR_RC=$?
}

# rotated: the rotated files, oldest first
rotated() {
    ls "$LOG".2* 2>/dev/null | sort
}

# reopened N: until the proxy has logged its Nth reopen (5 s)
reopened() {
    local i
    for ((i = 0; i < 50; i++)); do
        [ "$(grep -c 'audit: reopened' "$PROXY_LOG")" -ge "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

write_hosts
start_origin
PROXY_PORT=$(free_port)
proxy_conf "audit : { path = \"$LOG\"; chain_key_file = \"$STATEDIR/audit.key\"; rotate_bytes = 0; };" \
    "ack : { state_file = \"$STATEDIR/acks.state\"; secret_file = \"$STATEDIR/ack.secret\"; };" \
    >"$T/aigate.conf"
start_svc
requests 3 /first-
[ -n "$SVC_UID" ] && assert_eq "the service user owns the audit log it made" \
    "$SVC_UID 640" "$(stat -c '%u %a' "$LOG")"

rotate
assert_eq "first rotation: logrotate exit 0" 0 "$LR_RC"
[ "$LR_RC" = 0 ] || echo "$LR_OUT" >&2
reopened 1 || fail "no 'audit: reopened' in the proxy's log after the first rotation"
R1=$(rotated | head -n 1)
[ -n "$R1" ] || die "the first rotation made no $LOG.YYYYMMDDTHHMMSSZ file: $(ls "$LOGDIR")"
assert_match "the rotated file is named like aigate's own rotation" \
    '/audit\.jsonl\.[0-9]{8}T[0-9]{6}Z$' "$R1"
assert_eq "the rotated file holds the 3 lines before the rotation" 3 "$(nlines "$R1")"
requests 2 /second-
assert_eq "after SIGUSR1 aigate writes into a fresh file" 2 "$(nlines "$LOG")"
assert_eq "the rotated file does not grow" 3 "$(nlines "$R1")"

rotate
assert_eq "second rotation: logrotate exit 0" 0 "$LR_RC"
[ "$LR_RC" = 0 ] || echo "$LR_OUT" >&2
reopened 2 || fail "no second 'audit: reopened' in the proxy's log"
requests 1 /third-
mapfile -t files < <(rotated)
assert_eq "two rotated files" "$R1.gz $(ls "$LOG".2* | grep -v '\.gz$')" "${files[*]}"
if gzip -t "$R1.gz" 2>/dev/null; then pass "the older rotated file is gzipped (delaycompress)"; else
    fail "$R1.gz missing or not gzip"; fi
[ -e "$R1" ] && fail "$R1 left beside $R1.gz"
[ -n "$SVC_UID" ] && assert_eq "the service user owns the compressed file" "$SVC_UID" \
    "$(stat -c %u "$R1.gz")"
assert_eq "the new live file holds the line after the second rotation" 1 "$(nlines "$LOG")"
vout=$("$AIGATE" -c "$T/aigate.conf" --verify-log "${files[@]}" "$LOG" 2>&1)
assert_eq "--verify-log across both rotations: exit 0" 0 "$?"
assert_match "--verify-log across both rotations counts every line" '\b6 lines verified' "$vout"

# Stopped during a rotation: the postrotate script says it could not signal, and the
# restarted proxy chains from the newest rotated file.
stop_proxy TERM
assert_eq "the proxy stopped cleanly" 0 "$PROXY_RC"
rm -f "$PIDFILE"
rotate
assert_eq "rotation with the proxy stopped and no pid file: logrotate reports it" 1 "$LR_RC"
assert_contains "the postrotate script says why" "$LR_OUT" "the audit log was not reopened"
[ -e "$LOG" ] && fail "the live file exists after a rotation with the proxy stopped (nocreate)"
start_svc
requests 2 /fourth-
mapfile -t files < <(rotated)
assert_eq "three rotated files" 3 "${#files[@]}"
vout=$("$AIGATE" -c "$T/aigate.conf" --verify-log "$LOG".2* "$LOG" 2>&1)
assert_eq "--verify-log FILE.2* FILE (the snippet's command) across a stop: exit 0" 0 "$?"
assert_match "--verify-log across a stop counts every line" '\b8 lines verified' "$vout"
