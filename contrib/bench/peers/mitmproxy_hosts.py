"""mitmproxy addon for contrib/bench/intercept.sh: resolve names from a hosts file.

mitmproxy has no hosts-file setting, and the benchmark must not touch the
machine's /etc/hosts.  This addon reads the file named by the environment
variable BENCH_HOSTS (lines "ADDRESS NAME..."), and when mitmproxy is about
to connect to one of those names, it connects to the address instead.  The
name stays the server's SNI, so the origin's certificate is still verified
against the name the client asked for.
"""
import os

TABLE = {}
with open(os.environ["BENCH_HOSTS"]) as f:
    for line in f:
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            TABLE.setdefault(name.lower(), fields[0])


def server_connect(data):
    host, port = data.server.address
    addr = TABLE.get(str(host).lower())
    if addr:
        if data.server.sni is None:
            data.server.sni = host
        data.server.address = (addr, port)
