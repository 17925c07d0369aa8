-- Offline profile of the throughput test: the saved response bodies of a 20,000-run initial
-- sync, consumed either by the real Subscription (through a fake transport that hands out the
-- pages in order, no network) or by the bare baseline's cjson decoding. Meant to be run under
-- `valgrind --tool=callgrind`, which counts instructions repeatably where the clock is noisy:
--
--   make bench-profile            (bench/run.lua saves the pages into build/bench/pages/)
--   lua5.4 bench/profile_sync.lua build/bench/pages client|bare [N]
local dir, mode, n = arg[1], arg[2] or "client", tonumber(arg[3] or "20000")
local cjson = require "cjson"
local util = require "util"

local bodies = {}
for i = 1, math.huge do
  local f = io.open(("%s/page%d.json"):format(dir, i), "rb")
  if not f then break end
  bodies[i] = f:read("a")
  f:close()
end
assert(#bodies > 0, "no pages in " .. dir)

local t0, cpu0 = util.now(), os.clock()
local count = 0
if mode == "bare" then
  local decode = cjson.decode
  local rows = {} -- kept, as in bench/sync_bare.lua
  for _, body in ipairs(bodies) do
    for _, m in ipairs(decode(body)) do
      local v = m.value
      if v then
        rows[m.key] = v
        count = count + 1
        assert(rows[m.key])
        if v.payload ~= cjson.null then decode(v.payload) end
        if v.output ~= cjson.null then decode(v.output) end
        if v.metadata ~= cjson.null then decode(v.metadata) end
      end
    end
  end
else
  -- A transport whose k-th request answers with page k; later requests never finish.
  local served = 0
  local Pending = { done = function() return false end, close = function() end }
  local transport = {
    start = function()
      served = served + 1
      local body = bodies[served]
      if not body then return Pending end
      local headers = {
        ["electric-handle"] = "1-1",
        ["electric-offset"] = served .. "_0",
        ["electric-schema"] = "{}",
      }
      if served == #bodies then headers["electric-up-to-date"] = "" end
      return {
        done = function() return true end,
        result = function() return 200, headers, body end,
        close = function() end,
      }
    end,
    step = function() end,
    timeout = function() return nil end,
    pollfd = function() return -1 end,
  }
  local config = require "trigger.config"
  local subscription = require "trigger.subscription"
  local settings = assert(config.resolve { access_token = "tr_dev_x", base_url = "http://x" })
  local sub = subscription.new { settings = settings, path = "/realtime/v1/runs",
    params = { tags = "bench" }, transport = transport, version = "bench" }
  for run in sub do
    count = count + 1
    assert(run.id)
    if count == n then break end
  end
end
util.emit { mode = mode, runs = count, seconds = util.now() - t0, cpu = os.clock() - cpu0,
  hwm_kb = util.status_kb("VmHWM") }
