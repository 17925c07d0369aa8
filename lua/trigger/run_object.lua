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

local function present(v)
  return v ~= nil and v ~= null
end

-- Value decoders: each returns the Lua value, or nil and a problem for `warn`.
local function timestamp(v)
  local iso = core.pg_timestamp(v)
  if iso then return iso end
  return v, "is not a timestamp: " .. v -- passed on as the server's text
end

local SPECIAL_NUMBERS = { NaN = 0 / 0, Infinity = math.huge, ["-Infinity"] = -math.huge }

local function number(v)
  local n = tonumber(v) or SPECIAL_NUMBERS[v]
  if n then return n end
  return nil, "is not a number: " .. v
end

local function bool(v)
  if v == "t" or v == "true" then return true end
  if v == "f" or v == "false" then return false end
  return nil, "is not a boolean: " .. v
end

local function text_array(v)
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
  if not present(data) or data == "" then return nil end
  if not present(ptype) then ptype = "application/json" end
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

--- Build a public run object.
-- @tparam table row column name → text value (or json.null)
-- @tparam[opt] function fetch_packet `fetch_packet(field, data)` for store packets
-- @tparam[opt] function warn called with a message when a value does not decode
-- @treturn table a fresh run table
function M.build(row, fetch_packet, warn)
  local status = M.STATUS[row.status] or "QUEUED"
  -- Decode column `name` with `decode`; NULL and absent are nil; a bad value is reported.
  local function col(name, decode)
    local v = row[name]
    if v == nil or v == null then return nil end
    local value, problem = decode(v)
    if problem and warn then warn(name .. " " .. problem) end
    return value
  end
  local function packet(field, ptype)
    local fetch = fetch_packet and function(data) return fetch_packet(field, data) end
    local value, problem = M.packet(row[field], row[ptype], fetch)
    if problem and warn then warn(field .. ": " .. problem) end
    return value
  end
  local run = {
    id = row.friendlyId,
    taskIdentifier = row.taskIdentifier,
    status = status,
    createdAt = col("createdAt", timestamp),
    updatedAt = col("updatedAt", timestamp),
    startedAt = col("startedAt", timestamp),
    queuedAt = col("queuedAt", timestamp),
    expiredAt = col("expiredAt", timestamp),
    finishedAt = col("completedAt", timestamp),
    delayedUntil = col("delayUntil", timestamp),
    number = col("number", number),
    durationMs = col("usageDurationMs", number) or 0,
    costInCents = col("costInCents", number) or 0,
    baseCostInCents = col("baseCostInCents", number) or 0,
    tags = col("runTags", text_array) or {},
    realtimeStreams = col("realtimeStreams", text_array) or {},
    isTest = col("isTest", bool) or false,
    error = col("error", run_error),
    isQueued = QUEUED[status] or false,
    isExecuting = EXECUTING[status] or false,
    isWaiting = status == "WAITING",
    isSuccess = status == "COMPLETED",
    isFailed = FAILED[status] or false,
    isCancelled = status == "CANCELED",
  }
  run.isCompleted = run.isSuccess or run.isFailed
  if present(row.ttl) then run.ttl = row.ttl end
  if present(row.idempotencyKey) then run.idempotencyKey = row.idempotencyKey end
  if present(row.payload) then run.payload = packet("payload", "payloadType") end
  if present(row.output) then run.output = packet("output", "outputType") end
  if present(row.metadataType) then run.metadata = packet("metadata", "metadataType") end
  return run
end

return M
