#!/usr/bin/env lua5.4
--- Watch the runs of a tag and print one line per update.
--
--   lua5.4 examples/watch_tag.lua [TAG] [--until-finished]
--
-- Uses TRIGGER_SECRET_KEY (or TRIGGER_ACCESS_TOKEN) and TRIGGER_API_URL from the environment,
-- so the same script follows Trigger.dev cloud, a self-hosted server, or the bundled local one
-- (`make demo`). With --until-finished it exits once every run it has seen is finished.
local trigger = require "trigger"

local tag, until_finished = "user:1234", false
for _, a in ipairs(arg) do
  if a == "--until-finished" then until_finished = true else tag = a end
end

local function short(v)
  if v == nil then return "-" end
  local s = type(v) == "table" and trigger.encode_json(v) or tostring(v)
  if #s > 60 then s = s:sub(1, 57) .. "..." end
  return s
end

local finished, seen = {}, {}
local function all_finished()
  for id in pairs(seen) do
    if not finished[id] then return false end
  end
  return next(seen) ~= nil
end

-- Fixed-width columns, so that the lines of one run line up whatever its task is called:
-- updatedAt (always 24 characters), run id, task (cut to its column), status (the longest is
-- PENDING_VERSION), then the detail.
local TASK_WIDTH = 20
local function cut(s, width)
  if #s > width then s = s:sub(1, width - 3) .. "..." end
  return s
end
local ROW = "%-24s  %-25s  %-" .. TASK_WIDTH .. "s  %-15s  %s"

print(string.format("following runs tagged %q on %s: one line each time a run changes", tag,
  os.getenv("TRIGGER_API_URL") or "https://api.trigger.dev"))
print(string.format(ROW, "updatedAt", "run", "task", "status", "payload / output / error"))
for run in trigger.runs.subscribe_to_tag(tag, {
  on_error = function(err) io.stderr:write("retrying after: ", tostring(err), "\n") end,
}) do
  seen[run.id] = true
  local detail
  if run.isSuccess then
    detail = "output=" .. short(run.output)
  elseif run.error then
    detail = "error=" .. short(run.error.message)
  else
    detail = "payload=" .. short(run.payload)
  end
  if run.metadata then detail = detail .. " metadata=" .. short(run.metadata) end
  print(string.format(ROW, run.updatedAt, run.id, cut(run.taskIdentifier, TASK_WIDTH), run.status,
    detail))
  io.stdout:flush()
  if run.isCompleted or run.isCancelled then finished[run.id] = true end
  if until_finished and all_finished() then break end
end
print("every run has finished")
