-- wrk script for contrib/bench/bench.sh: absolute-form GETs, as a browser
-- sends them to a forward proxy.  TARGET is the URL the proxy fetches; CLOSE=1
-- adds "Connection: close" so every request pays for a new connection.  BODY
-- names a file to send as the body of a POST (a JSON prompt) instead of a GET.
-- Only 2xx/3xx answers count as requests: a proxy that fails fast must not
-- look fast.  Prints one "RESULT key=value ..." line.
local target = os.getenv("TARGET")
local close = os.getenv("CLOSE") == "1"
local host = target:match("^https?://([^/]+)")
local body = nil
if (os.getenv("BODY") or "") ~= "" then
  local f = assert(io.open(os.getenv("BODY"), "rb"))
  body = f:read("*a")
  f:close()
end

request = function()
  local h = { ["Host"] = host }
  if close then h["Connection"] = "close" end
  if body then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", target, h, body)
  end
  return wrk.format("GET", target, h)
end

done = function(summary, latency, requests)
  local ok = summary.requests - summary.errors.status
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d sock_errors=%d\n",
    ok / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
