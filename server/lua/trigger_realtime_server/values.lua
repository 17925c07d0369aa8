-- The TaskRun columns, their Electric schema and their Postgres text forms.
--
-- Rows are stored with Lua values (numbers, booleans, epoch milliseconds, arrays); a missing key is
-- SQL NULL. `encode_row` turns a row into what Electric puts on the wire: every value a string in
-- Postgres' text output, or JSON null.
local json = require "trigger_realtime_server.json"

local values = {}

local NULL = json.null
values.NULL = NULL

-- Column order follows the TaskRun table as Trigger.dev selects it for realtime.
-- kind: how a value is checked and printed; type: what electric-schema says.
values.COLUMNS = {
  { name = "id", kind = "text", type = "text", not_null = true, pk_index = 0 },
  { name = "taskIdentifier", kind = "text", type = "text", not_null = true },
  { name = "createdAt", kind = "timestamp", type = "timestamp", not_null = true },
  { name = "updatedAt", kind = "timestamp", type = "timestamp", not_null = true },
  { name = "startedAt", kind = "timestamp", type = "timestamp" },
  { name = "delayUntil", kind = "timestamp", type = "timestamp" },
  { name = "queuedAt", kind = "timestamp", type = "timestamp" },
  { name = "expiredAt", kind = "timestamp", type = "timestamp" },
  { name = "completedAt", kind = "timestamp", type = "timestamp" },
  { name = "friendlyId", kind = "text", type = "text", not_null = true },
  { name = "number", kind = "int4", type = "int4", not_null = true },
  { name = "isTest", kind = "bool", type = "bool", not_null = true },
  { name = "status", kind = "status", type = "TaskRunStatus", not_null = true },
  { name = "usageDurationMs", kind = "int4", type = "int4", not_null = true },
  { name = "costInCents", kind = "float8", type = "float8", not_null = true },
  { name = "baseCostInCents", kind = "float8", type = "float8", not_null = true },
  { name = "ttl", kind = "text", type = "text" },
  { name = "payload", kind = "text", type = "text", not_null = true },
  { name = "payloadType", kind = "text", type = "text", not_null = true },
  { name = "metadata", kind = "text", type = "text" },
  { name = "metadataType", kind = "text", type = "text", not_null = true },
  { name = "output", kind = "text", type = "text" },
  { name = "outputType", kind = "text", type = "text", not_null = true },
  { name = "runTags", kind = "text[]", type = "text", dims = 1 },
  { name = "error", kind = "jsonb", type = "jsonb" },
  { name = "realtimeStreams", kind = "text[]", type = "text", dims = 1 },
  { name = "idempotencyKey", kind = "text", type = "text" },
}

values.BY_NAME = {}
for _, col in ipairs(values.COLUMNS) do values.BY_NAME[col.name] = col end

-- Stored with the run but not part of the realtime column list (Trigger.dev does not select it);
-- the batch route filters on it.
values.EXTRA = { batchId = { name = "batchId", kind = "text" },
  -- streams.lua: the run's stream framing ("v1"|"v2"), and the friendlyIds a writer's
  -- `parent` / `root` target resolves to
  realtimeStreamsVersion = { name = "realtimeStreamsVersion", kind = "text" },
  parentRunId = { name = "parentRunId", kind = "text" },
  rootRunId = { name = "rootRunId", kind = "text" } }

-- Columns the server always sends, whatever skipColumns says.
values.UNSKIPPABLE = { id = true, taskIdentifier = true, friendlyId = true, status = true, createdAt = true }

-- Friendlier names accepted by the scenario API.
values.ALIASES = { tags = "runTags" }

values.STATUSES = {}
for s in ([[PENDING DELAYED WAITING_FOR_DEPLOY PENDING_VERSION DEQUEUED EXECUTING
  RETRYING_AFTER_FAILURE PAUSED WAITING_TO_RESUME CANCELED COMPLETED_SUCCESSFULLY SYSTEM_FAILURE
  CRASHED INTERRUPTED COMPLETED_WITH_ERRORS EXPIRED TIMED_OUT]]):gmatch("%S+") do
  values.STATUSES[s] = true
end

---------------------------------------------------------------------------------------------------
-- Time

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil), so that
-- parsing never depends on the local time zone the way os.time does.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = (y >= 0 and y or y - 399) // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- ISO-8601 / Postgres timestamp text -> epoch milliseconds (UTC unless a zone is given).
function values.parse_timestamp(s)
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, sec, frac, zone = 0, 0, 0, "", ""
  if rest ~= "" then
    h, mi, sec, frac, zone = rest:match("^[T ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
    if not h then return nil end
  end
  local offset_min = 0
  if zone ~= "" and zone ~= "Z" and zone ~= "z" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d?%d?)$")
    if not sign then return nil end
    offset_min = tonumber(zh) * 60 + (tonumber(zm) or 0)
    if sign == "-" then offset_min = -offset_min end
  end
  local ms = 0
  if #frac > 1 then ms = tonumber((frac:sub(2) .. "00"):sub(1, 3)) end
  local days = days_from_civil(tonumber(y), tonumber(mo), tonumber(d))
  local seconds = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  return (seconds - offset_min * 60) * 1000 + ms
end

-- epoch ms -> `2025-01-10 12:00:00.123`. Like Postgres, trailing zeros of the fraction are dropped
-- (`.12`, or no fraction at all), so clients must not assume three digits.
function values.format_timestamp(ms, style)
  local seconds, millis = ms // 1000, ms % 1000
  local text = os.date("!%Y-%m-%d" .. (style == "T" and "T" or " ") .. "%H:%M:%S", seconds)
  if millis > 0 then
    text = text .. (".%03d"):format(millis):gsub("0+$", "")
  end
  return text
end

-- A duration like `1h`, `2d12hr`, `90s` -> milliseconds; nil when it doesn't parse.
local UNIT_MS = { w = 604800000, d = 86400000, hr = 3600000, h = 3600000, m = 60000, s = 1000 }
function values.parse_duration(s)
  if type(s) ~= "string" or s == "" then return nil end
  local total, pos = 0, 1
  while pos <= #s do
    local digits, unit, next_pos = s:match("^(%d+)(%a+)()", pos)
    if not digits or not UNIT_MS[unit] then return nil end
    total = total + tonumber(digits) * UNIT_MS[unit]
    pos = next_pos
  end
  return total
end

---------------------------------------------------------------------------------------------------
-- Text forms

-- An element of a Postgres array literal: quoted when empty, when it could be read as NULL or when
-- it holds a delimiter, brace, quote, backslash or white space; `"` and `\` backslash-escaped.
local function array_element(v)
  if v == NULL then return "NULL" end
  local s = tostring(v)
  if s == "" or s:upper() == "NULL" or s:find('[{},"\\%s]') then
    return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
  end
  return s
end

function values.array_literal(list)
  local parts = {}
  for i, v in ipairs(list) do parts[i] = array_element(v) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local ENCODERS = {
  text = function(v) return v end,
  status = function(v) return v end,
  int4 = function(v) return ("%d"):format(v) end,
  float8 = json.number_text,
  bool = function(v, opts)
    if opts.bool_style == "true" then return v and "true" or "false" end
    return v and "t" or "f"
  end,
  timestamp = function(v, opts) return values.format_timestamp(v, opts.timestamp_style) end,
  ["text[]"] = values.array_literal,
  jsonb = json.encode_jsonb,
}

-- A stored row -> { column = "text" | json.null } with every column of values.COLUMNS.
function values.encode_row(row, opts)
  local out = {}
  for _, col in ipairs(values.COLUMNS) do
    local v = row[col.name]
    if v == nil then
      out[col.name] = NULL
    else
      out[col.name] = ENCODERS[col.kind](v, opts)
    end
  end
  return out
end

-- electric-schema for the given columns (a list of column names).
function values.schema_json(names)
  local schema, order = {}, {}
  for _, name in ipairs(names) do
    local col = values.BY_NAME[name]
    local entry = json.ordered({ type = col.type, dims = col.dims, not_null = col.not_null,
                                 pk_index = col.pk_index }, { "type", "dims", "not_null", "pk_index" })
    schema[name] = entry
    order[#order + 1] = name
  end
  return json.encode(json.ordered(schema, order))
end

---------------------------------------------------------------------------------------------------
-- Input: friendly scenario fields -> stored values

local function check_text(v) if type(v) == "string" then return v end end
local function check_int4(v)
  local i = type(v) == "number" and math.tointeger(v)
  if i and i >= -2147483648 and i <= 2147483647 then return i end
end
local function check_float8(v) if type(v) == "number" then return v + 0.0 end end
local function check_bool(v) if type(v) == "boolean" then return v end end
local function check_status(v) if values.STATUSES[v] then return v end end

local function check_timestamp(v)
  if type(v) == "number" then return math.tointeger(v) or math.floor(v) end
  if type(v) == "string" then return values.parse_timestamp(v) end
end

local function check_text_array(v)
  if type(v) ~= "table" then return nil end
  local out = {}
  for k, e in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 then return nil end
    if type(e) ~= "string" and e ~= NULL then return nil end
    out[k] = e
  end
  for i = 1, #out do if out[i] == nil then return nil end end
  return out
end

-- jsonb takes any JSON-able value; a string is read as JSON text.
local function check_jsonb(v)
  if type(v) == "string" then return json.decode(v) end
  if type(v) == "table" or type(v) == "number" or type(v) == "boolean" then return v end
end

local CHECKS = {
  text = check_text, status = check_status, int4 = check_int4, float8 = check_float8,
  bool = check_bool, timestamp = check_timestamp, ["text[]"] = check_text_array, jsonb = check_jsonb,
}

local EXPECTED = {
  text = "a string", status = "a TaskRunStatus", int4 = "a 32-bit integer", float8 = "a number",
  bool = "a boolean", timestamp = "an ISO-8601 string or epoch milliseconds",
  ["text[]"] = "an array of strings", jsonb = "a JSON value or JSON text",
}

-- Friendly fields -> { column = value | NULL } (NULL meaning "set to NULL"), or nil, message.
function values.normalize(fields)
  if type(fields) ~= "table" then return nil, "fields must be an object" end
  local out = {}
  for key, v in pairs(fields) do
    local name = values.ALIASES[key] or key
    local col = values.BY_NAME[name] or values.EXTRA[name]
    if not col then return nil, ("unknown field %q"):format(tostring(key)) end
    if v == NULL then
      if col.not_null then return nil, ("field %q cannot be NULL"):format(name) end
      out[name] = NULL
    else
      local checked = CHECKS[col.kind](v)
      if checked == nil then
        return nil, ("field %q must be %s"):format(name, EXPECTED[col.kind])
      end
      out[name] = checked
    end
  end
  return out
end

return values
