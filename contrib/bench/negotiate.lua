-- wrk script for contrib/bench/negotiate.sh: absolute-form GETs of TARGET through the
-- proxy on one kept-alive connection per thread (run it with -c N -t N).  AUTHZ_FILE
-- (optional) holds one Proxy-Authorization value per thread; EVERY=1 sends it on every
-- request (Basic), otherwise on the first request only (Negotiate: the connection is
-- signed in from then on).  Only 2xx answers count.  Prints one "RESULT ..." line.
local target = os.getenv("TARGET")
local host = target:match("^https?://([^/]+)")
local every = os.getenv("EVERY") == "1"
local values = {}
if (os.getenv("AUTHZ_FILE") or "") ~= "" then
  for line in io.lines(os.getenv("AUTHZ_FILE")) do
    if line ~= "" then values[#values + 1] = line end
  end
end
local next_thread = 1

setup = function(thread)
  thread:set("authz", values[next_thread] or "")
  -- wrk calls request() once in the first thread, after setup, to check the script;
  -- that request is never sent, so it must not count as the connection's first.
  thread:set("checks", next_thread == 1 and 1 or 0)
  next_thread = next_thread + 1
end

local sent = false
request = function()
  local h = { ["Host"] = host }
  if authz ~= "" and (every or not sent) then
    h["Proxy-Authorization"] = authz
  end
  if checks > 0 then
    checks = checks - 1
  else
    sent = true
  end
  return wrk.format("GET", target, h)
end

done = function(summary, latency, requests)
  local ok = summary.requests - summary.errors.status
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%d sock_errors=%d\n",
    ok / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
