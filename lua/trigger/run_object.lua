--- From a stored TaskRun row (Postgres text values) to the documented public run object.
-- @module trigger.run_object
local core = require "trigger.core"
local json = require "trigger.json"
local superjson = require "trigger.superjson"

local M = {}

local null = json.null

--- Database status → public status.
M.STATUS = {
  DELAYED = "DELAYED",
  WAITING_FOR_DEPLOY = "PENDING_VERSION",
  PENDING_VERSION = "PENDING_VERSION",
  PENDING = "QUEUED",
  PAUSED = "WAITING",
  WAITING_TO_RESUME = "WAITING",
  DEQUEUED = "DEQUEUED",
  RETRYING_AFTER_FAILURE = "EXECUTING",
  EXECUTING = "EXECUTING",
  CANCELED = "CANCELED",
  COMPLETED_SUCCESSFULLY = "COMPLETED",
  SYSTEM_FAILURE = "SYSTEM_FAILURE",
  CRASHED = "CRASHED",
  INTERRUPTED = "FAILED",
  COMPLETED_WITH_ERRORS = "FAILED",
  EXPIRED = "EXPIRED",
  TIMED_OUT = "TIMED_OUT",
}

local QUEUED = { PENDING_VERSION = true, QUEUED = true, PENDING = true, DELAYED = true }
local EXECUTING = { DEQUEUED = true, EXECUTING = true }
local FAILED = {
  FAILED = true, CRASHED = true, SYSTEM_FAILURE = true, EXPIRED = true, TIMED_OUT = true,
}

--- Public statuses after which a run never changes again.
M.FINAL = {
  COMPLETED = true, CANCELED = true, FAILED = true, CRASHED = true, SYSTEM_FAILURE = true,
  EXPIRED = true, TIMED_OUT = true,
}

local SPECIAL_NUMBERS = { NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }

-- Value decoders: each returns the Lua value, or nil and a problem for `warn`.
local function bool(v)
  if v == "t" or v == "true" then return true end
  if v == "f" or v == "false" then return false end
  return nil, "is not a boolean: " .. v
end

local function text_array(v)
  if v == "{}" then return {} end -- the common empty array, without a C call
  local t, err = core.pg_array(v, null)
  if t then return t end
  return nil, err
end

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

-- The column helpers of `build` take the row and do the NULL check themselves: build runs once
-- for every run handed out (the hot path of an initial sync), so it avoids a closure per run
-- and a call per check.

-- Decode column `name` with `decode`; NULL and absent are nil; a bad value is reported.
local function col(row, name, decode, warn)
  local v = row[name]
  if v == nil or v == null then return nil end
  local value, problem = decode(v)
  if problem and warn then warn(name .. " " .. problem) end
  return value
end

local pg_timestamp = core.pg_timestamp

-- A timestamp column: ISO-8601 UTC with milliseconds; another form is passed on as it is.
local function timestamp_col(row, name, warn)
  local v = row[name]
  if v == nil or v == null then return nil end
  local iso = pg_timestamp(v)
  if iso then return iso end
  if warn then warn(name .. " is not a timestamp: " .. v) end
  return v -- passed on as the server's text
end

-- A number column (NaN and the infinities included).
local function number_col(row, name, warn)
  local v = row[name]
  if v == nil or v == null then return nil end
  local n = tonumber(v) or SPECIAL_NUMBERS[v]
  if n then return n end
  if warn then warn(name .. " is not a number: " .. v) end
  return nil
end

local function packet_col(row, field, ptype_col, fetch_packet, warn)
  local data, ptype = row[field], row[ptype_col]
  local value, problem
  if ptype == "application/json" and type(data) == "string" and data ~= "" then
    -- The common case, as M.packet does it without the extra calls.
    value, problem = json.decode(data)
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
-- @tparam table row column name → text value (or json.null)
-- @tparam[opt] function fetch_packet `fetch_packet(field, data)` for store packets
-- @tparam[opt] function warn called with a message when a value does not decode
-- @treturn table a fresh run table
function M.build(row, fetch_packet, warn)
  local status = M.STATUS[row.status] or "QUEUED"
  local run = {
    id = row.friendlyId,
    taskIdentifier = row.taskIdentifier,
    status = status,
    createdAt = timestamp_col(row, "createdAt", warn),
    updatedAt = timestamp_col(row, "updatedAt", warn),
    startedAt = timestamp_col(row, "startedAt", warn),
    queuedAt = timestamp_col(row, "queuedAt", warn),
    expiredAt = timestamp_col(row, "expiredAt", warn),
    finishedAt = timestamp_col(row, "completedAt", warn),
    delayedUntil = timestamp_col(row, "delayUntil", warn),
    number = number_col(row, "number", warn),
    durationMs = number_col(row, "usageDurationMs", warn) or 0,
    costInCents = number_col(row, "costInCents", warn) or 0,
    baseCostInCents = number_col(row, "baseCostInCents", warn) or 0,
    tags = col(row, "runTags", text_array, warn) or {},
    realtimeStreams = col(row, "realtimeStreams", text_array, warn) or {},
    isTest = col(row, "isTest", bool, warn) or false,
    error = col(row, "error", run_error, warn),
    isQueued = QUEUED[status] or false,
    isExecuting = EXECUTING[status] or false,
    isWaiting = status == "WAITING",
    isSuccess = status == "COMPLETED",
    isFailed = FAILED[status] or false,
    isCancelled = status == "CANCELED",
  }
  run.isCompleted = run.isSuccess or run.isFailed
  local v = row.ttl
  if v ~= nil and v ~= null then run.ttl = v end
  v = row.idempotencyKey
  if v ~= nil and v ~= null then run.idempotencyKey = v end
  v = row.payload
  if v ~= nil and v ~= null then
    run.payload = packet_col(row, "payload", "payloadType", fetch_packet, warn)
  end
  v = row.output
  if v ~= nil and v ~= null then
    run.output = packet_col(row, "output", "outputType", fetch_packet, warn)
  end
  v = row.metadataType
  if v ~= nil and v ~= null then
    run.metadata = packet_col(row, "metadata", "metadataType", fetch_packet, warn)
  end
  return run
end

return M
