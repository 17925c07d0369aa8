-- The storm answers of a hostile server (issue 28, point 1): what a broken server, or a proxy in
-- front of one, can answer every request with after a normal first snapshot, each of which once
-- got one subscription 1,000-24,000 requests a second. As fault specs of the local server
-- (server/README.md, `status` faults), for spec/request_budget_spec.lua, the nginx suite
-- (spec/openresty/run.sh) and the soak's hostile mode (tools/soak/hostile.lua).
--
--   local storms = require "spec.storms"
--   for _, s in ipairs(storms.ANSWERS) do srv:fault(storms.fault(s, path, ctx)) end
local cjson = require "cjson"

local M = {}

local MUST_REFETCH = '[{"headers":{"control":"must-refetch"}}]'
local UP_TO_DATE = '[{"headers":{"control":"up-to-date"}}]'

--- Every storm answer: `name`, and the `status` fault that gives it (`body` may be a function
-- of the context: the same run under a new handle needs the run's row).
M.ANSWERS = {
  { name = "409 must-refetch, a new handle each time",
    fault = { status = 409, fresh_handle = true, body = MUST_REFETCH } },
  { name = "409 without a handle", fault = { status = 409, body = MUST_REFETCH } },
  { name = "200 whose body is must-refetch", fault = { status = 200, echo = true, body = MUST_REFETCH } },
  { name = "400 offset out of bounds",
    fault = { status = 400, body = '{"message":"offset 1_0 out of bounds"}' } },
  { name = "204 at once", fault = { status = 204 } },
  { name = "up-to-date at once, header only", fault = { status = 200, echo = true, up_to_date = true,
    body = "[]" } },
  { name = "up-to-date at once, body only", fault = { status = 200, echo = true, body = UP_TO_DATE } },
  { name = "up-to-date at once, header and body", fault = { status = 200, echo = true,
    up_to_date = true, body = UP_TO_DATE } },
  { name = "[] at the same offset, never up to date", fault = { status = 200, echo = true,
    body = "[]" } },
  { name = "the same run under a new handle each time", same_run = true,
    fault = { status = 200, echo = true, fresh_handle = true } },
}

--- By name.
M.BY_NAME = {}
for _, a in ipairs(M.ANSWERS) do M.BY_NAME[a.name] = a end

--- The body of "the same run under a new handle": the run's row (`row`: as `srv:get_run` gives
-- it, wire form) as an insert, then up-to-date.
-- @tparam table row
-- @tparam string internal_id the run's internal id (the row key)
function M.same_run_body(row, internal_id)
  local value = {}
  for k, v in pairs(row) do
    if k ~= "batchId" then value[k] = v end
  end
  return cjson.encode({
    { key = '"public"."TaskRun"/"' .. internal_id .. '"', value = value,
      headers = { operation = "insert" } },
    { headers = { control = "up-to-date" } },
  })
end

--- The fault spec of `answer` for the requests under `path_prefix`, `count` times (default:
-- every request from now on). `ctx.row`, `ctx.internal_id`: the run for the same-run answer;
-- `ctx.native`: the server speaks the native dialect (up to date said in the body only).
function M.fault(answer, path_prefix, ctx, count)
  local f = { kind = "status", match = { path_prefix = path_prefix }, count = count or 1e9 }
  for k, v in pairs(answer.fault) do f[k] = v end
  if answer.same_run then
    f.body = M.same_run_body(ctx.row, ctx.internal_id)
    f.up_to_date = not ctx.native
  end
  return f
end

return M
