#!/usr/bin/env lua5.4
--- A fixed-rate game loop that follows runs without ever blocking a tick.
--
--   lua5.4 examples/game_loop.lua TAG [TAG...]
--
-- Each tick does the game's own work, then takes whatever run updates have arrived with
-- `sub:poll()` (never blocks), then sleeps until the next tick with `trigger.step`, which
-- keeps the network moving while it waits. Stops once every run seen has finished.
local trigger = require "trigger"

local TICK = 1 / 20 -- 20 ticks a second
local tags = #arg > 0 and arg or { "user:1234" }

local subs = {}
for i, tag in ipairs(tags) do subs[i] = trigger.runs.subscribe_to_tag(tag) end

local finished, seen, ticks = {}, {}, 0
local function all_finished()
  for id in pairs(seen) do if not finished[id] then return false end end
  return next(seen) ~= nil
end

local next_tick = trigger.now()
while not all_finished() do
  ticks = ticks + 1
  -- ... the game's own work for this tick goes here ...
  for _, sub in ipairs(subs) do
    for run in function() return sub:poll() end do
      seen[run.id] = true
      if run.isCompleted or run.isCancelled then finished[run.id] = true end
      print(string.format("tick %5d  %-28s %s", ticks, run.id, run.status))
      io.stdout:flush()
    end
  end
  next_tick = next_tick + TICK
  local left = next_tick - trigger.now()
  if left > 0 then trigger.step(left) end
end
for _, sub in ipairs(subs) do sub:close() end
print(string.format("all runs finished after %d ticks", ticks))
