#!/usr/bin/env lua5.4
--- Follow one run and its realtime streams: its status as it changes, and the chunks its task
-- writes (AI tokens, progress lines, logs) as they come.
--
--   lua5.4 examples/stream_run.lua RUN_ID
--
-- Uses TRIGGER_SECRET_KEY (or TRIGGER_ACCESS_TOKEN) and TRIGGER_API_URL from the environment.
-- Ends by itself once the run is finished and its streams are drained.
local trigger = require "trigger"

local run_id = arg[1] or "run_demo_stream"
local at_line_start = true
local function line(s)
  if not at_line_start then io.write("\n") end
  io.write(s, "\n")
  at_line_start = true
end

local last_status
for item in trigger.runs.subscribe_to_run(run_id):with_streams() do -- luacheck: ignore 512
  if item.type == "run" then
    if item.run.status ~= last_status then
      last_status = item.run.status
      line(("%-24s %s %s"):format(item.run.updatedAt, item.run.id, item.run.status))
    end
  else
    if at_line_start then io.write(("%-24s   stream %-8s "):format("", item.stream)) end
    io.write(type(item.chunk) == "string" and item.chunk or trigger.encode_json(item.chunk))
    io.flush()
    at_line_start = false
  end
end
line("run " .. run_id .. " is finished and its streams are drained")
