-- wrk script: POST /v1/customers/{id}/anonymize, each request to a different,
-- erasable customer. Ids come from the file named by $IDS (one per line, made by
-- prepare_erasable.py); each wrk thread takes every Nth id so no two requests
-- erase the same customer. Stop before the ids run out (a thread that runs out
-- repeats its last id, which is an idempotent replay).
NTHREADS = tonumber(os.getenv("NTHREADS") or "2")
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  ids = {}
  local n = 0
  for line in io.lines(os.getenv("IDS")) do
    if (n % NTHREADS) == tid then table.insert(ids, line) end
    n = n + 1
  end
  next_i = 0
end

request = function()
  next_i = math.min(next_i + 1, #ids)
  return wrk.format("POST", "/v1/customers/" .. ids[next_i] .. "/anonymize")
end

done = function(summary, latency, requests)
  io.write(string.format("anonymize: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
