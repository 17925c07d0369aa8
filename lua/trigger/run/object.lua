--- From a stored TaskRun row (Postgres text values) to the documented public run object.
-- @module trigger.run.object
local core = require "trigger.core"
local json = require "trigger.json"
local superjson = require "trigger.run.superjson"

local M = {}

local null, array_mt = json.null, json.array_mt
local run_fields, json_decode, max_depth = core.run_fields, core.json_decode, json.max_depth
local superjson_decode = superjson.decode

--- Public statuses after which a run never changes again.
M.FINAL = {
  COMPLETED = true, CANCELED = true, FAILED = true, CRASHED = true, SYSTEM_FAILURE = true,
  EXPIRED = true, TIMED_OUT = true,
}

-- TaskRunError → the SDK's SerializedError shape.
local function run_error(v)
  local e = json.decode(v)
  if type(e) ~= "table" then return { message = v }, "is not a TaskRunError object" end
  local t = e.type
  if t == "BUILT_IN_ERROR" then
    return { name = e.name, message = e.message, stackTrace = e.stackTrace }
  elseif t == "STRING_ERROR" or t == "CUSTOM_ERROR" then
    return { message = e.raw }
  elseif t == "INTERNAL_ERROR" then
    return { message = "trigger.dev internal error (" .. tostring(e.code) .. ")" }
  end
  return { message = e.message ~= nil and e.message or v }
end

--- Decode packet data by its content type.
-- @tparam string|nil data the stored packet data
-- @tparam string|nil ptype the packet type column
-- @tparam[opt] function fetch `fetch()` → data, content_type for `application/store` packets
-- @return the decoded value (nil when there is no data), and a warning message when the data
--   did not decode (then the value is the raw text)
function M.packet(data, ptype, fetch)
  if data == nil or data == null or data == "" then return nil end
  if ptype == nil or ptype == null then ptype = "application/json" end
  if ptype == "application/store" then
    if not fetch then return data end
    local body, ctype = fetch(data)
    if body == nil then return data, ctype end
    return M.packet(body, ctype or "application/json")
  end
  local value, err
  if ptype == "application/json" then
    value, err = json.decode(data)
  elseif ptype == "application/super+json" then
    value, err = superjson.decode(data)
  else
    return data -- text/plain and unknown types: the string as it is
  end
  if err then return data, ptype .. " packet does not decode: " .. err end
  return value
end

-- NULL and absent are nil; a bad value is reported.
local function error_col(v, warn)
  if v == nil or v == null then return nil end
  local value, problem = run_error(v)
  if problem and warn then warn("error " .. problem) end
  return value
end

local function packet_col(field, data, ptype, fetch_packet, warn)
  local value, problem
  -- The common cases, as M.packet does them without the extra calls.
  if ptype == "application/json" and type(data) == "string" and data ~= "" then
    value, problem = json_decode(data, null, max_depth, array_mt) -- json.decode
    if problem then value, problem = data, ptype .. " packet does not decode: " .. problem end
  elseif ptype == "application/super+json" and type(data) == "string" and data ~= "" then
    value, problem = superjson_decode(data)
    if problem then value, problem = data, ptype .. " packet does not decode: " .. problem end
  else
    local fetch
    if fetch_packet and ptype == "application/store" then
      fetch = function(d) return fetch_packet(field, d) end
    end
    value, problem = M.packet(data, ptype, fetch)
  end
  if problem and warn then warn(field .. ": " .. problem) end
  return value
end

--- Build a public run object.
-- @tparam table|string row column name → text value (or json.null), or a row blob
--   (`trigger.shape.rows`)
-- @tparam[opt] function fetch_packet `fetch_packet(field, data)` for store packets
-- @tparam[opt] function warn called with a message when a value does not decode
-- @treturn table a fresh run table
function M.build(row, fetch_packet, warn)
  -- The plain fields (status mapping and helpers, renames, timestamps, numbers, arrays) come
  -- from C in one call: this runs for every run handed out, the hot path of an initial sync.
  -- (tags, realtimeStreams: marked arrays; error and the packets come as stored)
  local run, problems, err, payload, payload_type, output, output_type, metadata, metadata_type =
    run_fields(row, null, array_mt)
  if problems and warn then
    for i = 1, #problems do warn(problems[i]) end
  end
  if err ~= nil and err ~= null then run.error = error_col(err, warn) end
  if payload ~= nil and payload ~= null then
    run.payload = packet_col("payload", payload, payload_type, fetch_packet, warn)
  end
  if output ~= nil and output ~= null then
    run.output = packet_col("output", output, output_type, fetch_packet, warn)
  end
  if metadata_type ~= nil and metadata_type ~= null then
    run.metadata = packet_col("metadata", metadata, metadata_type, fetch_packet, warn)
  end
  return run
end

return M
