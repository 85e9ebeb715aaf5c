#!/bin/bash
# README's own commands, run as a new user would after `make run`: every command
# in the fenced blocks from the top of README.md to the end of its
# "## Quick start" section (backslash-continued lines joined), against the
# shipped configuration (shipped_conf in lib.sh; `make run` runs
# build/aigate -f -c rules/aigate.conf), each checked against what README says
# next to it.  A command without a check here fails the test, so a new
# command in README needs one.
#
# Each command runs verbatim except for these substitutions (ports and paths):
#   127.0.0.1:3128        -> 127.0.0.1:$PROXY_PORT (the proxy's ephemeral port)
#   certs/ca.pem          -> the CA shipped_conf made with --gen-ca (what `make run`
#                            makes in certs/)
#   rules/aigate.conf     -> the test's copy of it ($T/rules/aigate.conf)
#   build/aigate          -> $AIGATE (at the start of a command)
#   http://HOST/          -> http://HOST:$PLAIN/, and https://HOST/ -> https://HOST:$GOOD/:
#                            every HOST named in a URL is mapped to 127.0.0.1 by the
#                            test hosts file and served by a local nginx, plain
#                            HTTP on $PLAIN and HTTPS on $GOOD (a certificate for
#                            every HOST from the test PKI)
# and curl runs with CURL_CA_BUNDLE=the test PKI's CA, which stands in for the
# system trust store (so a blind tunnel verifies the origin's own certificate;
# an intercepted one would not).  Not run: `make run` and `make test` (the
# proxy set-up above is `make run`, and this test is part of `make test`) and
# `chromium` (an interactive browser; t_shipped_browser.sh does that).
#
# What README says and what is checked:
#   "# allowed"        curl succeeds with the origin's page; the audit log has the
#                      request as the proxy user's, action allow, status 200
#   "# CONNECT tunnel" curl succeeds with the origin's page; the audit log has a
#                      blind tunnel (tls "tunnel") of the proxy user, allowed
#   "# 403 block page" curl prints the block page naming the rule; the audit log
#                      has the request, intercepted, action block, status 403
#   --explain USER M URL  exits 0 and names the same rule and action the proxy
#                      applied to USER's request for that URL above
source "$(dirname "$0")/lib.sh"

README=$ROOT/README.md
# The commands, one a line (continuations joined)
mapfile -t LINES < <(awk '
    /^## / { if (qs) exit; if ($0 == "## Quick start") qs = 1 }
    /^```/ { fence = !fence; next }
    !fence { next }
    { line = $0
      if (sub(/\\[[:space:]]*$/, "", line)) { acc = acc line; next }
      print acc line; acc = "" }
    END { if (!qs) print "NO QUICK START" }
' "$README")
[ ${#LINES[@]} -gt 0 ] || die "no commands found in README.md"
[ "${LINES[-1]}" != "NO QUICK START" ] || die 'README.md has no "## Quick start" section'

mapfile -t HOSTS < <(printf '%s\n' "${LINES[@]}" | grep -oE 'https?://[A-Za-z0-9.-]+/' |
    sed -E 's#https?://##; s#/$##' | sort -u)
[ ${#HOSTS[@]} -gt 0 ] || die "no URL in README's quick start"
start_shipped "${HOSTS[@]}"
AUDIT=$SHIPPED_AUDIT

n=0
checked=0
for line in "${LINES[@]}"; do
    [ -n "${line//[[:space:]]/}" ] || continue
    n=$((n + 1))
    cmd=$line comment=
    if [[ $line =~ ^(.*[^[:space:]])[[:space:]]+#[[:space:]]*(.*)$ ]]; then
        cmd=${BASH_REMATCH[1]}
        comment=${BASH_REMATCH[2]}
    fi
    cmd=$(sed -E 's/[[:space:]]+/ /g' <<<"$cmd")
    case $cmd in
    "make run" | "make test" | chromium\ *)
        echo "# skip README command $n: $cmd (see the header)"
        continue
        ;;
    esac
    run=${cmd//127.0.0.1:3128/127.0.0.1:$PROXY_PORT}
    run=${run//certs\/ca.pem/$SHIPPED_CA}
    run=${run//rules\/aigate.conf/$T/rules/aigate.conf}
    [[ $run == build/aigate\ * ]] && run="$AIGATE ${run#build/aigate }"
    run=$(sed -E "s#(http://[A-Za-z0-9.-]+)/#\\1:$PLAIN/#g; s#(https://[A-Za-z0-9.-]+)/#\\1:$GOOD/#g" <<<"$run")
    what="README command $n ($cmd${comment:+  # $comment})"

    # The URL and the proxy user of a curl command, and the audit line README's comment promises
    url=$(grep -oE 'https?://[A-Za-z0-9.-]+:[0-9]+/[^ ]*' <<<"$run" | tail -n 1)
    host=$(sed -E 's#^https?://([^:/]+).*#\1#' <<<"$url")
    port=$(sed -E 's#^https?://[^:/]+:([0-9]+).*#\1#' <<<"$url")
    user=$(grep -oE -- '-x https?://[^:@ ]+:[^@ ]+@' <<<"$run" | sed -E 's#-x https?://([^:]+):.*#\1#')
    on="d['host'] == '$host' and d['port'] == ${port:-0} and d['user'] == '$user'"
    case $comment in
    allowed) line="$on and d['method'] == 'GET' and d['action'] == 'allow' and d['status'] == 200" ;;
    "CONNECT tunnel") line="$on and d['method'] == 'CONNECT' and d['tls'] == 'tunnel' and d['action'] == 'allow'" ;;
    "403 block page") line="$on and d['method'] == 'GET' and d['tls'] == 'intercept' and d['action'] == 'block' and d['status'] == 403" ;;
    *) line=False ;;
    esac
    before=$(audit_count "$AUDIT" "$line")

    echo "# README command $n: $cmd"
    echo "#   runs as: $run"
    out=$(cd "$T" && CURL_CA_BUNDLE=$T/pki/ca.pem timeout 30 bash -c "$run" 2>"$T/cmd$n.err")
    rc=$?
    assert_eq "$what: exit status" 0 "$rc"
    [ "$rc" = 0 ] || echo "#   stderr: $(oneline "$(cat "$T/cmd$n.err")")" >&2

    if [[ $cmd == curl\ * && $comment == allowed ]]; then
        assert_contains "$what: the origin's page" "$out" 'origin page'
        assert_eq "$what: audit: allowed as $user" $((before + 1)) \
            "$(wait_audit "$AUDIT" "$line" $((before + 1)))"
    elif [[ $cmd == curl\ * && $comment == "CONNECT tunnel" ]]; then
        assert_contains "$what: the origin's page" "$out" 'origin page'
        assert_eq "$what: audit: a blind tunnel of $user" $((before + 1)) \
            "$(wait_audit "$AUDIT" "$line" $((before + 1)))"
    elif [[ $cmd == curl\ * && $comment == "403 block page" ]]; then
        assert_eq "$what: audit: blocked (403) as $user, intercepted" $((before + 1)) \
            "$(wait_audit "$AUDIT" "$line" $((before + 1)))"
        seen=$(grep -F "\"host\":\"$host\"" "$AUDIT" | grep -F '"action":"block"' | tail -n 1)
        if [ -n "$seen" ]; then
            rule=$(jget 'd["rule"]' <<<"$seen")
            assert_contains "$what: the block page names the rule ($rule)" "$out" "$rule"
        fi
    elif [[ $cmd =~ --explain\ ([^ ]+)\ ([A-Z]+)\ (https?://([^:/ ]+)[^ ]*) ]]; then
        ehost=${BASH_REMATCH[4]}
        seen=$(grep -F "\"user\":\"${BASH_REMATCH[1]}\"" "$AUDIT" | grep -F "\"host\":\"$ehost\"" |
            grep -F "\"method\":\"${BASH_REMATCH[2]}\"" | tail -n 1)
        if [ -z "$seen" ]; then
            fail "$what: no request of README's for $ehost to compare with"
        else
            rule=$(jget 'd["rule"]' <<<"$seen")
            action=$(jget 'd["action"]' <<<"$seen")
            assert_contains "$what: names the rule and action the proxy applied" "$out" \
                "Effective action: $action (rule \"$rule\")"
        fi
    else
        fail "$what: t_readme.sh has no check for this command; add one"
        continue
    fi
    checked=$((checked + 1))
done
assert_le "README commands run and checked" 1 "$checked"
