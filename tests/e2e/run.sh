#!/bin/bash
# Run the end-to-end tests: every tests/e2e/t_*.sh, or those whose name contains
# one of the arguments (bash tests/e2e/run.sh keepalive framing).
#
# Each test runs in its own session (so whatever it leaves behind can be killed
# by its process group) with a time limit of E2E_TEST_TIMEOUT seconds (default
# 120).  Prints "PASS name" or "FAIL name" (with the tail of the test's output)
# per test and "N passed, M failed" at the end; exits 1 if any failed.
# AIGATE names the proxy binary (default build/aigate).

set -u
E2E=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$E2E/../.." && pwd)
export AIGATE="${AIGATE:-$ROOT/build/aigate}"
limit=${E2E_TEST_TIMEOUT:-120}

if [ ! -x "$AIGATE" ]; then
    echo "proxy binary not found: $AIGATE (make build/aigate)" >&2
    exit 2
fi

tests=()
for f in "$E2E"/t_*.sh; do
    name=$(basename "$f" .sh)
    if [ $# -gt 0 ]; then
        keep=0
        for pat in "$@"; do [[ $name == *"$pat"* ]] && keep=1; done
        [ $keep = 1 ] || continue
    fi
    tests+=("$name")
done
if [ ${#tests[@]} = 0 ]; then
    echo "no test matches: $*" >&2
    exit 2
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/aigate-e2e-logs.XXXXXX")
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0
for name in "${tests[@]}"; do
    log=$logs/$name.log
    # Not a process-group leader here (no job control), so setsid execs
    # directly and $! is the new session's (and process group's) id.
    setsid bash "$E2E/$name.sh" >"$log" 2>&1 </dev/null &
    pid=$!
    start=$SECONDS
    while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - start)) -lt "$limit" ]; do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "not ok - timed out after ${limit}s" >>"$log"
        kill -TERM -- "-$pid" 2>/dev/null
        sleep 3
    fi
    wait "$pid"
    rc=$?
    kill -KILL -- "-$pid" 2>/dev/null # anything the test left behind
    if [ "$rc" = 0 ]; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        grep -E '^(not ok|FATAL)' "$log" | sed 's/^/    /'
        echo "    ---- last lines of its output:"
        tail -n 15 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
