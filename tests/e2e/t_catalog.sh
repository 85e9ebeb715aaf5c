#!/bin/bash
# The service catalog's upkeep:
#  - contrib/catalog/compare.py on a made-up copy of the v2fly format
#    (tests/e2e/catalog/): candidate additions through nested and filtered
#    include: lines, full:, domain:, bare domains, partly covered domains,
#    keyword:/regexp: reported as not comparable, @ads skipped (and compared
#    with --with-ads), left-out notes honoured, stale notes found, catalog
#    hosts the lists lack; an include loop, a missing list and a broken catalog
#    are errors (exit 2).  It reads the shipped catalog too: the same number of
#    services as libconfig, no left-out note contradicting an entry.
#  - aigate -t names FILE:LINE for a bad catalog_version or checked date in an
#    included services file; -V prints the catalog version.
#  - --explain names the intended service for hosts that once slipped past the
#    shipped catalog (kimi.ai, Coze, Dola/Cici, Trae, copilot.com, ...), and
#    huggingface.co is the hub, not a chat.
source "$(dirname "$0")/lib.sh"

CMP=$ROOT/contrib/catalog/compare.py
FIX=$E2E/catalog

# cmp_run ARGS...: compare.py's output in $OUT, status in $RC
cmp_run() {
    OUT=$("$PY" "$CMP" "$@" 2>&1)
    RC=$?
    echo "---- compare.py $*"
    echo "$OUT"
}

# has DESC ERE: a line of $OUT matches ERE
has() {
    assert_match "$1" "$2" "$OUT"
}

# hasnt DESC WORD: no line of $OUT names WORD (as a whole field)
hasnt() {
    if grep -qE -- "(^|[[:space:]:])$2([[:space:]]|$)" <<<"$OUT"; then
        fail "$1: [$2] unexpectedly in the report"
    else
        pass "$1"
    fi
}

# ---- compare.py on the fixture ---------------------------------------------------------
cmp_run --catalog "$FIX/services.conf" "$FIX/data"
assert_eq "fixture: exit 0" 0 "$RC"
has "fixture: header counts the catalog" '^catalog: .*\(10 services, 13 host patterns, catalog_version 2026-12-01\)'
has "fixture: 7 list files read through the includes" '^lists: category-ai-!cn, category-ai-cn in .*\(7 files, 17 rules\)'
has "domain: rule not covered is a candidate" '^add +newai\.example +category-ai-!cn:8$'
has "full: rule not covered is a candidate, marked full:" '^add +full:upload\.cdn\.example +category-ai-!cn:10$'
has "nested include (category-ai-cn -> vendor-d -> vendor-e) is followed" '^add +deep\.example +vendor-e:1$'
has "include:vendor-b @!cn keeps the @!cn entry" '^add +intl\.example +vendor-b:1 @!cn$'
hasnt "include:vendor-b @!cn drops the @cn entry" domestic.example
hasnt "include:vendor-c @-ads drops its @ads entry even with the default" c-track.example
has "a domain with only a host below it catalogued: candidate, partly covered" \
    '^add +under\.example +.*partly: app\.under\.example -> under$'
has "catalog has only *.wideonly.example: bare domain not covered" \
    '^part +wideonly\.example .*bare domain not covered \(wide\)$'
has "catalog has only exactonly.example: subdomains not covered" \
    '^part +exactonly\.example .*subdomains not covered \(exact\)$'
has "keyword: is not comparable, with the catalog hosts containing it" \
    '^keyword +gpt +category-ai-!cn:11 +catalog hosts containing it: mygpt\.example$'
has "regexp: is not comparable" '^regexp +\^rt-\[0-9\]\+.*category-ai-!cn:12$'
hasnt "@ads entry skipped by default" tracker.example
hasnt "left-out note honoured" skipme.example
for covered in chat.example api.single.example vendor-a.example static.vendor-a.example cnai.example; do
    hasnt "covered $covered is not reported" "$covered"
done
has "catalog host the lists lack: to check" '^check +mygpt\.example +gpt-tool$'
has "catalog host the lists lack: to check (2)" '^check +korean-ai\.example +korean$'
has "left-out note for a domain no longer listed: stale" '^stale +gone\.example$'
has "summary" '^summary: 5 to add, 3 partly covered, 2 not comparable, 2 catalog hosts to check, 1 left out as reviewed, 1 tracking \(@ads\) skipped, 1 stale notes, 0 conflicts$'

cmp_run --with-ads --catalog "$FIX/services.conf" "$FIX/data"
has "--with-ads: the tracking entry is compared" '^add +tracker\.example +category-ai-!cn:17 @ads$'
has "--with-ads: summary" '^summary: 6 to add, .* 1 tracking \(@ads\) compared'
hasnt "--with-ads: include:vendor-c @-ads still drops its @ads entry" c-track.example

cmp_run --lists vendor-d --catalog "$FIX/services.conf" "$FIX/data"
has "--lists starts from the named list" '^lists: vendor-d in .*\(2 files, 1 rules\)'

# A left-out note that the catalog contradicts
sed 's/left-out: gone.example/left-out: cnai.example/' "$FIX/services.conf" >"$T/conflict.conf"
cmp_run --catalog "$T/conflict.conf" "$FIX/data"
has "left-out note for a catalogued domain is reported" '^both +cnai\.example +cn$'

# Errors
cmp_run --lists loop-a --catalog "$FIX/services.conf" "$FIX/data"
assert_eq "include loop: exit 2" 2 "$RC"
assert_contains "include loop: named" "$OUT" "include loop: loop-a -> loop-b -> loop-a"
cmp_run --lists no-such-list --catalog "$FIX/services.conf" "$FIX/data"
assert_eq "missing list: exit 2" 2 "$RC"
assert_contains "missing list: named" "$OUT" "no-such-list"
printf 'services = (\n  { id = "x"; hosts = [ "x.example" ;\n);\n' >"$T/broken.conf"
cmp_run --catalog "$T/broken.conf" "$FIX/data"
assert_eq "broken catalog: exit 2" 2 "$RC"
assert_match "broken catalog: FILE:LINE" "broken\.conf:[23]:" "$OUT"

# The shipped catalog parses alike in compare.py and libconfig
cc -o "$T/cfgget" "$E2E/cfgget.c" $(pkg-config --cflags --libs libconfig) || die "cannot build cfgget"
nservices=$("$T/cfgget" "$ROOT/rules/services.conf" services) || die "services.conf does not parse"
cmp_run --catalog "$ROOT/rules/services.conf" "$FIX/data"
assert_eq "shipped catalog: exit 0" 0 "$RC"
has "shipped catalog: compare.py counts what libconfig counts ($nservices)" \
    "^catalog: .*\\($nservices services, [0-9]+ host patterns, catalog_version [0-9]{4}-[0-9]{2}-[0-9]{2}\\)"
has "shipped catalog: no left-out note contradicts an entry" '^summary: .* 0 conflicts$'
nleft=$(grep -cE '^\s*#\s*left-out: ' "$ROOT/rules/services.conf")
assert_le "shipped catalog: reviewed left-out notes are present" 1 "$nleft"

# ---- aigate -t and -V on catalog dates ----------------------------------------------------
mkdir -p "$T/t"
cp "$FIX/services.conf" "$T/t/services.conf"
cat >"$T/t/aigate.conf" <<EOF
auth : { mode = "none"; };
audit : { path = "$T/t/audit.jsonl"; };
pages_dir = "$ROOT/rules/pages";
@include "services.conf"
EOF
out=$("$AIGATE" -t -c "$T/t/aigate.conf" 2>&1)
assert_eq "-t: catalog_version and checked accepted" 0 "$?"
out=$("$AIGATE" -V -c "$T/t/aigate.conf" 2>&1)
assert_eq "-V: exit 0" 0 "$?"
assert_match "-V: the program's version first" '^aigate [0-9]+\.[0-9]+' "$(head -n 1 <<<"$out")"
assert_contains "-V: the catalog version and size" "$out" "catalog 2026-12-01, 10 services ($T/t/aigate.conf)"

sed -i 's/catalog_version = "2026-12-01"/catalog_version = "2026-02-30"/' "$T/t/services.conf"
out=$("$AIGATE" -t -c "$T/t/aigate.conf" 2>&1)
assert_eq "-t: bad catalog_version: exit 2" 2 "$?"
assert_contains "-t: bad catalog_version: FILE:LINE" "$out" \
    "$T/t/services.conf:2: catalog_version must be a date \"YYYY-MM-DD\""

cp "$FIX/services.conf" "$T/t/services.conf"
sed -i 's/checked = "2026-12-01"/checked = "2026-12-1"/' "$T/t/services.conf"
out=$("$AIGATE" -t -c "$T/t/aigate.conf" 2>&1)
assert_eq "-t: bad checked: exit 2" 2 "$?"
assert_contains "-t: bad checked: FILE:LINE and the service" "$out" \
    "$T/t/services.conf:6: service \"chat\": checked must be a date \"YYYY-MM-DD\""

out=$("$AIGATE" -V -c "$T/t/aigate.conf" 2>&1)
assert_eq "-V with a configuration that does not load: exit 0" 0 "$?"
assert_contains "-V with a configuration that does not load: says why" "$out" "catalog version unknown"

# ---- --explain: the holes are closed in the shipped catalog --------------------------------
cat >"$T/explain.conf" <<EOF
auth : { mode = "none"; };
audit : { path = "$T/explain-audit.jsonl"; };
pages_dir = "$ROOT/rules/pages";
@include "$ROOT/rules/services.conf"
policy = ( { name = "default"; action = "allow"; } );
EOF
while read -r url want cat country; do
    out=$("$AIGATE" -c "$T/explain.conf" --explain - GET "$url" 2>&1)
    svc=$(awk '$1 == "service" { print $2 }' <<<"$out")
    assert_eq "--explain $url: service" "$want" "$svc"
    assert_eq "--explain $url: category" "$cat" "$(awk '$1 == "category" { print $2 }' <<<"$out")"
    assert_eq "--explain $url: vendor" "$country" "$(awk '$1 == "vendor" { print $2 }' <<<"$out")"
done <<'EOF'
https://kimi.ai/ kimi chat CN
https://www.kimi.ai/chat kimi chat CN
https://www.coze.com/store coze agent CN
https://www.coze.cn/ coze agent CN
https://www.cici.com/ dola chat CN
https://www.dola.com/chat/ dola chat CN
https://www.trae.ai/ trae code CN
https://www.marscode.com/ trae code CN
https://copilot.com/ copilot chat US
https://claudeusercontent.com/ claude chat US
https://abc.claudeusercontent.com/v1/design claude chat US
https://grok.x.com/2/grok/add_response.json grok chat US
https://ppl-ai-file-upload.s3.amazonaws.com/web/direct-files/x perplexity search US
https://chatgpt.livekit.cloud/rtc chatgpt chat US
https://chat.com/ chatgpt chat US
https://mate.kanana.ai/home kanana chat KR
https://adot.ai/multillm adot chat KR
https://duck.ai/ duck-ai chat US
https://huggingface.co/chat/ huggingface other US
https://huggingface.co/meta-llama/Llama-3.1-8B/resolve/main/model.safetensors huggingface other US
EOF
for url in https://x.com/home https://turn.livekit.cloud/ https://s3.amazonaws.com/other-bucket/x \
    https://duckduckgo.com/; do
    out=$("$AIGATE" -c "$T/explain.conf" --explain - GET "$url" 2>&1)
    assert_eq "--explain $url: shared host, no service" "" \
        "$(awk '$1 == "service" && $2 != "(none)" && $2 != "none" { print $2 }' <<<"$out")"
done
