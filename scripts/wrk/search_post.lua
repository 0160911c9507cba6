-- wrk script: the same searches as search.lua, sent as POST /v1/customers/search
-- with the query in the JSON body (what the dashboard does).
-- usage: wrk -t2 -c64 -d15s --latency -s scripts/wrk/search_post.lua \
--          -H "Authorization: Bearer $KEY" http://127.0.0.1:8080
local queries = { "ma", "el", "so", "jo", "an", "ka", "lu", "ni", "ro", "wi" }
local i = 0
-- A headers table given to wrk.format replaces the command line's -H headers.
local headers = {}
for k, v in pairs(wrk.headers) do headers[k] = v end
headers["Content-Type"] = "application/json"
request = function()
  i = i + 1
  local body = '{"q":"' .. queries[(i % #queries) + 1] .. '","limit":20}'
  return wrk.format("POST", "/v1/customers/search", headers, body)
end
