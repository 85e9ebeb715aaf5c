// Proxy auto-configuration for aigate.  Serve it from an internal web server
// (Content-Type: application/x-ns-proxy-autoconfig) and point browsers at it
// by policy.  Internal sites go direct; everything else goes through aigate,
// with DIRECT as a fallback only if you accept unfiltered access when the
// proxy is down (remove "; DIRECT" to fail closed, which a ban usually wants).
function FindProxyForURL(url, host) {
    if (isPlainHostName(host) ||
        shExpMatch(host, "*.corp.example") ||
        isInNet(dnsResolve(host), "10.0.0.0", "255.0.0.0") ||
        isInNet(dnsResolve(host), "172.16.0.0", "255.240.0.0") ||
        isInNet(dnsResolve(host), "192.168.0.0", "255.255.0.0"))
        return "DIRECT";
    return "PROXY aigate.corp.example:3128";
}
