-- Live latency, bare baseline: the same shape followed by hand with luasocket (one keep-alive
-- connection, blocking reads) and plain cjson — no library. Measures what the server and the
-- loopback cost, so the client's own share is the difference.
-- usage: lua5.4 bench/latency_bare.lua PORT TAG
local cjson = require "cjson"
local util = require "util"
local http = require "http_min"
local port, tag = tonumber(arg[1]), arg[2]

local headers = http.REALTIME_HEADERS
local path = http.tag_path(tag)
local conn = http.connect("127.0.0.1", port)
local handle, offset, cursor, live = nil, "-1", "", false
local latencies, started, done = {}, false, false
while not done do
  local q = path .. "&offset=" .. offset .. (handle and ("&handle=" .. handle) or "")
  if live then q = q .. "&live=true&cursor=" .. cursor end
  local status, h, body = conn:request("GET", q, nil, headers)
  assert(status == 200, body)
  handle, offset = h["electric-handle"], h["electric-offset"]
  cursor = h["electric-cursor"] or cursor
  for _, m in ipairs(cjson.decode(body)) do
    local v = m.value
    if v and v.metadata and v.metadata ~= cjson.null then
      local meta = cjson.decode(v.metadata)
      if meta.t then latencies[#latencies + 1] = (util.now() - meta.t) * 1000 end
    end
    if v and v.status == "COMPLETED_SUCCESSFULLY" then done = true end
  end
  if h["electric-up-to-date"] then
    live = true
    if not started then
      started = true
      http.request("127.0.0.1", port, "PATCH", "/_emulator/runs/run_bench_latency",
        '{"status":"EXECUTING"}')
    end
  end
end
conn:close()
util.emit { latencies_ms = latencies }
