-- Offline profile of the throughput test: the saved response bodies of a 20,000-run initial
-- sync, consumed either by the real Subscription (through a fake transport that hands out the
-- pages in order, no network) or by the bare baseline's cjson decoding. Meant to be run under
-- `valgrind --tool=callgrind`, which counts instructions repeatably where the clock is noisy:
--
--   make bench-profile            (make bench saves the pages into bench/tmp/sync/pages/)
--   lua5.4 bench/profile_sync.lua bench/tmp/sync/pages client|bare [N]
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
  -- A fake background transport (the contract of lua/trigger/transport/init.lua) whose k-th
  -- request answers with page k, whole; later requests never finish. Given through the
  -- `transport` option, as any test double or event-loop adapter is.
  local served, steps = 0, 0
  local Pending = { done = function() return false end, close = function() end }
  local transport = {
    background = true,
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
      return { done = function() return true end, close = function() end,
        answer = { 200, headers, body } }
    end,
    result = function(h)
      if not h.answer then
        return nil, { kind = "network", permanent = false, message = "still pending" }
      end
      return table.unpack(h.answer)
    end,
    step = function()
      -- Waiting on a request past the last page: the pages hold fewer runs than asked for.
      if served > #bodies then error(("the pages hold %d runs, not %d"):format(count, n), 0) end
      steps = steps + 1
    end,
    steps = function() return steps end,
    timeout = function() return nil end,
    pollfd = function() return -1 end,
  }
  local trigger = require "trigger"
  local sub = trigger.runs.subscribe_to_tag("bench", { access_token = "tr_dev_x",
    base_url = "http://x", transport = transport })
  for run in sub do
    count = count + 1
    assert(run.id)
    if count == n then break end
  end
end
util.emit { mode = mode, runs = count, seconds = util.now() - t0, cpu = os.clock() - cpu0,
  hwm_kb = util.status_kb("VmHWM") }
