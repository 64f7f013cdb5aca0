-- wrk script for bench/compare-etcd.sh: sends the same JSON POST over and over
-- and counts every answer that is not 200, so a run that "went fast" because
-- it was refusing requests cannot pass for a result.
--
-- Inputs come from the environment because wrk has no other way to hand
-- arguments to the Lua state of each of its threads:
--   WRK_BODY  request body (required)
--   WRK_AUTH  value of the Authorization header (optional)
-- The path and query are taken from the URL given to wrk.
--
-- At the end it prints one machine-readable line, which the shell script
-- parses (wrk's own --latency table rounds and changes units):
--   RESULT requests=N duration_us=N non200=N errors=N p50_us=N p99_us=N first_bad=...

wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or error("WRK_BODY is not set")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("WRK_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

-- Each wrk thread has its own Lua state; keep a handle on each so done() can
-- add up their counters.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  first_bad = ""
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if first_bad == "" then
      -- Keep the first refusal for the error message; one line, bounded.
      first_bad = (tostring(status) .. " " .. tostring(body)):gsub("%s+", " "):sub(1, 300)
    end
  end
end

function done(summary, latency, requests)
  local non200_total = 0
  local bad = ""
  for _, thread in ipairs(threads) do
    non200_total = non200_total + thread:get("non200")
    if bad == "" then
      bad = thread:get("first_bad")
    end
  end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "RESULT requests=%d duration_us=%d non200=%d errors=%d p50_us=%d p99_us=%d first_bad=%s\n",
    summary.requests, summary.duration, non200_total, errors,
    latency:percentile(50), latency:percentile(99), bad))
end
