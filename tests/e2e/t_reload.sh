#!/bin/bash
# SIGHUP reload: a broken config is refused with FILE:LINE and the old one
# stays in force; a good one takes effect on the next request; an open
# keep-alive connection survives both.  Then -t, -V and -h.
source "$(dirname "$0")/lib.sh"

start_nginx "$T/nginx"
write_hosts
PROXY_PORT=$(free_port)
start_proxy "$T" "$(proxy_conf)"
N=http://origin.test:$NGINX_HTTP_PORT
S=https://origin.test:$NGINX_HTTPS_PORT
CA=$T/nginx/certs/ca.pem

connect_status() {
    pcurl -p --cacert "$CA" -o /dev/null -w '%{http_connect}' "$S/one.txt" 2>/dev/null
}

assert_eq "request before reload" one "$(pcurl "$N/one.txt")"
assert_eq "CONNECT to the HTTPS port before it is allowed" 403 "$(connect_status)"

# A keep-alive client connection that stays open across the reloads
exec {ka}<>"/dev/tcp/127.0.0.1/$PROXY_PORT"
ka_get() {
    printf 'GET %s/%s HTTP/1.1\r\nHost: %s\r\n\r\n' "$N" "$1" "${N#http://}" >&"$ka"
    local line body="" n=0
    while IFS= read -r -t 5 line <&"$ka"; do
        line=${line%$'\r'}
        [ -z "$line" ] && break
        case $line in [Cc]ontent-[Ll]ength:*) n=${line#*: } ;; esac
    done
    [ "$n" -gt 0 ] && IFS= read -r -t 5 -N "$n" body <&"$ka"
    printf '%s' "$body"
}
assert_eq "keep-alive connection before reload" one "$(ka_get one.txt)"

# A syntax error on line 3: refused, logged with FILE:LINE, old config in force
printf 'listen = [ "127.0.0.1:%s" ];\nworkers = 2;\nconnect_ports = [ 443, ;\n' "$PROXY_PORT" >"$T/aigate.conf"
kill -HUP "$PROXY_PID"
sleep 1
alive "$PROXY_PID" || fail "proxy died on a bad reload"
assert_match "bad reload logged with FILE:LINE" 'aigate\.conf:3: ' "$(cat "$PROXY_LOG")"
assert_eq "request after a bad reload" two "$(pcurl "$N/two.txt")"
assert_eq "CONNECT still refused (old config in force)" 403 "$(connect_status)"
assert_eq "keep-alive connection after a bad reload" two "$(ka_get two.txt)"

# An @include of a directory (libconfig's scanner would exit the process): refused the same way
{ proxy_conf; printf '@include "%s"\n' "$T"; } >"$T/aigate.conf"
line=$(wc -l <"$T/aigate.conf")
kill -HUP "$PROXY_PID"
sleep 1
alive "$PROXY_PID" || fail "proxy died on a reload that includes a directory"
assert_match "include of a directory logged with FILE:LINE" \
    "aigate\\.conf:$line: @include \"$T\": not a regular file" "$(cat "$PROXY_LOG")"
assert_eq "request after the refused include" two "$(pcurl "$N/two.txt")"

# A good config with a changed value: in force on the next request
CONNECT_PORTS="443, $NGINX_HTTPS_PORT" proxy_conf >"$T/aigate.conf"
kill -HUP "$PROXY_PID"
st=
for ((i = 0; i < 30; i++)); do
    st=$(connect_status)
    [ "$st" = 200 ] && break
    sleep 0.1
done
assert_eq "CONNECT allowed after the good reload" 200 "$st"
assert_eq "HTTPS body after the good reload" one \
    "$(pcurl -p --cacert "$CA" "$S/one.txt")"
assert_eq "keep-alive connection after a good reload" three "$(ka_get three.txt)"
exec {ka}>&-

# -t
printf 'workers = 2;\nlisten = [ "127.0.0.1:1" \n' >"$T/bad.conf"
err=$("$AIGATE" -t -c "$T/bad.conf" 2>&1)
assert_eq "-t on a syntax error exits 2" 2 "$?"
assert_match "-t prints FILE:LINE: message" 'bad\.conf:[0-9]+: .+' "$err"
printf 'workers = 2;\nno_such_key_xyz = 1;\n' >"$T/unknown.conf"
err=$("$AIGATE" -t -c "$T/unknown.conf" 2>&1)
assert_eq "-t on an unknown key exits 2" 2 "$?"
assert_match "-t names the unknown key with FILE:LINE" 'unknown\.conf:2: .*no_such_key_xyz' "$err"
: >"$T/empty.conf"
err=$("$AIGATE" -t -c "$T/empty.conf" 2>&1)
assert_eq "-t on an empty file exits 0 ($err)" 0 "$?"

# -V and -h
out=$("$AIGATE" -V 2>&1)
assert_eq "-V exits 0" 0 "$?"
assert_match "-V prints a version" '[0-9]+\.[0-9]+' "$out"
out=$("$AIGATE" -h 2>&1)
assert_eq "-h exits 0" 0 "$?"
assert_match "-h prints usage" '[Uu]sage:.*-c' "$out"
