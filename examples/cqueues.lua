#!/usr/bin/env lua5.4
--- Subscriptions inside a cqueues program: each `for run in …` loop runs in its own cqueues
-- coroutine and, while it waits, yields to cqueues instead of blocking the thread, so a timer
-- (or a server, or anything else) in the same loop keeps running.
--
--   lua5.4 examples/cqueues.lua TAG [TAG...]
local cqueues = require "cqueues"
local trigger = require "trigger"

local tags = #arg > 0 and arg or { "user:1234" }
local cq = cqueues.new()
local following = #tags

for _, tag in ipairs(tags) do
  cq:wrap(function()
    for run in trigger.runs.subscribe_to_tag(tag) do
      print(string.format("[%s] %-28s %s", tag, run.id, run.status))
      io.stdout:flush()
      if run.isCompleted or run.isCancelled then break end
    end
    following = following - 1
  end)
end

cq:wrap(function()
  local beats = 0
  while following > 0 do
    beats = beats + 1
    cqueues.sleep(1)
    print(string.format("heartbeat %d: the loop is alive", beats))
    io.stdout:flush()
  end
end)

assert(cq:loop())
print("every followed tag saw a finished run")
