#!/usr/bin/env lua5.4
--- Subscriptions inside a luv (libuv) program: nothing blocks, libuv waits.
--
--   lua5.4 examples/luv.lua TAG [TAG...]
--
-- Every subscription of a Lua state shares one descriptor (`sub:pollfd()`, the library's
-- connection hub): a `uv.new_poll` on it wakes the loop when the network has something, and a
-- timer covers what a descriptor cannot say (a retry's backoff, libcurl's own timers:
-- `sub:timeout()`). Each wakeup takes what is ready with `sub:poll()`, which never blocks.
-- A heartbeat timer shows the loop stays free. Stops once each tag has a finished run.
local uv = require "luv"
local trigger = require "trigger"

local tags = #arg > 0 and arg or { "user:1234" }
local subs, tag_of = {}, {}
for i, tag in ipairs(tags) do
  subs[i] = trigger.runs.subscribe_to_tag(tag)
  tag_of[subs[i]] = tag
end

local poll = uv.new_poll(subs[1]:pollfd()) -- one descriptor for every subscription
local timer = uv.new_timer()
local heartbeat = uv.new_timer()

local function stop()
  for _, sub in ipairs(subs) do sub:close() end
  poll:stop()
  timer:stop()
  heartbeat:stop()
  print("every followed tag saw a finished run")
end

local wake -- what the poll and the timer call

-- Arm the timer for the soonest moment any subscription needs attention without I/O.
local function arm()
  local soonest
  for _, sub in ipairs(subs) do
    local t = sub:timeout()
    if t and (not soonest or t < soonest) then soonest = t end
  end
  timer:stop()
  if soonest then timer:start(math.ceil(soonest * 1000), 0, wake) end
end

function wake()
  local open = 0
  for _, sub in ipairs(subs) do
    -- poll() hands out what arrived, never waiting; it raises a fatal error (a 401, …)
    for run in function() return sub:poll() end do
      print(string.format("[%s] %-28s %s", tag_of[sub], run.id, run.status))
      io.stdout:flush()
      if run.isCompleted or run.isCancelled then sub:close() end
    end
    if not sub.closed then open = open + 1 end
  end
  if open == 0 then return stop() end
  arm()
end

poll:start("r", wake)
local beats = 0
heartbeat:start(1000, 1000, function()
  beats = beats + 1
  print(string.format("heartbeat %d: the loop is alive", beats))
  io.stdout:flush()
end)
wake() -- the first requests are started by the first poll
uv.run()
