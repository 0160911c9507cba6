-- wrk script: customer search with rotating name prefixes and a page size of 20.
-- usage: wrk -t2 -c64 -d15s --latency -s scripts/wrk/search.lua \
--          -H "Authorization: Bearer $KEY" http://127.0.0.1:8080
local queries = { "ma", "el", "so", "jo", "an", "ka", "lu", "ni", "ro", "wi" }
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/v1/customers?limit=20&q=" .. queries[(i % #queries) + 1])
end
