#!/usr/bin/env lua5.4
--- Watch the runs of a tag and print one line per update.
--
--   lua5.4 examples/watch_tag.lua [TAG] [--until-finished]
--
-- Uses TRIGGER_SECRET_KEY (or TRIGGER_ACCESS_TOKEN) and TRIGGER_API_URL from the environment,
-- so the same script follows Trigger.dev cloud, a self-hosted server, or the bundled local one
-- (`make demo`). With --until-finished it exits once every run it has seen is finished.
local trigger = require "trigger"
local json = require "trigger.json"

local tag, until_finished = "user:1234", false
for _, a in ipairs(arg) do
  if a == "--until-finished" then until_finished = true else tag = a end
end

local function short(v)
  if v == nil then return "-" end
  local s = type(v) == "table" and json.encode(v) or tostring(v)
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

print(string.format("following runs tagged %q on %s", tag,
  os.getenv("TRIGGER_API_URL") or "https://api.trigger.dev"))
for run in trigger.runs.subscribe_to_tag(tag, {
  on_error = function(err) io.stderr:write("retrying after: ", tostring(err), "\n") end,
}) do
  seen[run.id] = true
  local line = string.format("%s  %-28s %-12s %-10s", run.updatedAt, run.id, run.taskIdentifier,
    run.status)
  if run.isSuccess then
    line = line .. " output=" .. short(run.output)
  elseif run.error then
    line = line .. " error=" .. short(run.error.message)
  else
    line = line .. " payload=" .. short(run.payload)
  end
  if run.metadata then line = line .. " metadata=" .. short(run.metadata) end
  print(line)
  io.stdout:flush()
  if run.isCompleted or run.isCancelled then finished[run.id] = true end
  if until_finished and all_finished() then break end
end
print("every run has finished")
