-- Request-body checks of the management API, worded as the real server words them.
--
-- Trigger.dev checks bodies with zod 3 and turns the issues into one line with
-- zod-validation-error 1.5 (`Validation error: <issue> at "<path>"; <issue> …`, union alternatives
-- joined by `, or `). This is a small combinator set that gives the same issues for the schemas
-- the emulator serves (management-api.md §1.3, §2.1, §3.2, §3.3). Objects are not strict: unknown
-- keys are dropped, as zod does. Only the shapes are checked here; the service rules that come
-- after (10 tags, metadata size, debounce durations) are api.lua's.
local json = require "trigger_realtime_server.json"

local schema = {}

local NULL = json.null

-- zod's name for what it received (tables: array or object).
local function kind_of(v)
  if v == nil then return "undefined" end
  if v == NULL then return "null" end
  if type(v) == "number" and v ~= v then return "nan" end
  if type(v) == "table" then return json.is_array(v) and "array" or "object" end
  return type(v) -- string, number, boolean
end
schema.kind_of = kind_of

local function issue(path, message, code)
  return { path = path, message = message, code = code or "custom" }
end

local function sub(path, key)
  local p = {}
  for i, k in ipairs(path) do p[i] = k end
  p[#p + 1] = key
  return p
end

local function type_issue(path, expected, v)
  return issue(path, ("Expected %s, received %s"):format(expected, kind_of(v)), "invalid_type")
end

-- Each checker: fn(value, path, issues) -> adds issues; returns true when the type matched
-- (so a union can tell "wrong type" from "right type, refinement failed").

function schema.any() return function() return true end end

-- opts: max, max_message, min, min_message, nonempty
function schema.string(opts)
  opts = opts or {}
  return function(v, path, issues)
    if type(v) ~= "string" then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or type_issue(path, "string", v)
      return false
    end
    local len = utf8.len(v) or #v
    if opts.min and len < opts.min then
      issues[#issues + 1] = issue(path, opts.min_message or
        ("String must contain at least %d character(s)"):format(opts.min), "too_small")
    end
    if opts.max and len > opts.max then
      issues[#issues + 1] = issue(path, opts.max_message or
        ("String must contain at most %d character(s)"):format(opts.max), "too_big")
    end
    return true
  end
end

-- opts: int, min (>=), gt (>), max (<=)
function schema.number(opts)
  opts = opts or {}
  return function(v, path, issues)
    if type(v) ~= "number" or v ~= v then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or type_issue(path, "number", v)
      return false
    end
    if opts.int and v ~= math.floor(v) then
      issues[#issues + 1] = issue(path, "Expected integer, received float", "invalid_type")
    end
    if opts.min and v < opts.min then
      issues[#issues + 1] = issue(path, ("Number must be greater than or equal to %s")
        :format(json.number_text(opts.min)), "too_small")
    end
    if opts.gt and v <= opts.gt then
      issues[#issues + 1] = issue(path, ("Number must be greater than %s")
        :format(json.number_text(opts.gt)), "too_small")
    end
    if opts.max and v > opts.max then
      issues[#issues + 1] = issue(path, ("Number must be less than or equal to %s")
        :format(json.number_text(opts.max)), "too_big")
    end
    return true
  end
end

function schema.boolean()
  return function(v, path, issues)
    if type(v) ~= "boolean" then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or type_issue(path, "boolean", v)
      return false
    end
    return true
  end
end

function schema.enum(list)
  local set, quoted = {}, {}
  for i, name in ipairs(list) do
    set[name] = true
    quoted[i] = "'" .. name .. "'"
  end
  local expected = table.concat(quoted, " | ")
  return function(v, path, issues)
    if type(v) ~= "string" then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or issue(path, ("Expected %s, received %s"):format(expected, kind_of(v)), "invalid_type")
      return false
    end
    if not set[v] then
      issues[#issues + 1] = issue(path, ("Invalid enum value. Expected %s, received '%s'")
        :format(expected, v), "invalid_enum_value")
    end
    return true
  end
end

function schema.array(element)
  return function(v, path, issues)
    if kind_of(v) ~= "array" then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or type_issue(path, "array", v)
      return false
    end
    for i = 1, #v do element(v[i], sub(path, i - 1), issues) end
    return true
  end
end

-- fields: { name = checker }; optional: { name = true } for keys that may be absent; nullable:
-- { name = true } for keys that may be JSON null.
function schema.object(fields, optional, nullable)
  optional, nullable = optional or {}, nullable or {}
  return function(v, path, issues)
    if kind_of(v) ~= "object" then
      issues[#issues + 1] = v == nil and issue(path, "Required", "invalid_type")
        or type_issue(path, "object", v)
      return false
    end
    local names = {}
    for name in pairs(fields) do names[#names + 1] = name end
    table.sort(names) -- issues in a stable order (zod: declaration order)
    for _, name in ipairs(names) do
      local x = v[name]
      if not ((x == nil and optional[name]) or (x == NULL and nullable[name])) then
        fields[name](x, sub(path, name), issues)
      end
    end
    return true
  end
end

-- The first alternative whose type matches decides (its refinement issues are reported); when
-- none matches, one issue listing every alternative's (zod's invalid_union).
function schema.union(...)
  local alts = { ... }
  return function(v, path, issues)
    local all = {}
    for _, alt in ipairs(alts) do
      local mine = {}
      local matched = alt(v, path, mine)
      if matched then
        for _, i in ipairs(mine) do issues[#issues + 1] = i end
        return true
      end
      all[#all + 1] = mine
    end
    issues[#issues + 1] = { path = path, union = all, code = "invalid_union" }
    return false
  end
end

-- z.coerce.date(): anything `new Date(x)` makes a valid date (numbers, booleans, null, date
-- strings); objects and arrays are "Invalid date".
function schema.coerce_date()
  return function(v, path, issues)
    local k = kind_of(v)
    if k == "object" or k == "array" or v == nil or (type(v) == "number" and v ~= v) then
      issues[#issues + 1] = issue(path, "Invalid date", "invalid_date")
      return false
    end
    return true
  end
end

-- A custom rule over the value: fn(v) -> nil or message.
function schema.refine(checker, fn, at)
  return function(v, path, issues)
    local ok = checker(v, path, issues)
    if ok then
      local message = fn(v)
      if message then issues[#issues + 1] = issue(at and sub(path, at) or path, message) end
    end
    return ok
  end
end

---------------------------------------------------------------------------------------------------
-- Formatting (zod-validation-error 1.5)

local function path_text(path)
  if #path == 1 and math.type(path[1]) == "integer" then return "index " .. path[1] end
  local out = {}
  for i, k in ipairs(path) do
    if math.type(k) == "integer" then
      out[#out + 1] = "[" .. k .. "]"
    else
      out[#out + 1] = (i > 1 and "." or "") .. k
    end
  end
  return '"' .. table.concat(out) .. '"'
end

local function issue_text(i)
  if i.union then
    local parts = {}
    for _, list in ipairs(i.union) do
      for _, u in ipairs(list) do parts[#parts + 1] = issue_text(u) end
    end
    return table.concat(parts, ", or ")
  end
  if #i.path == 0 then return i.message end
  return i.message .. " at " .. path_text(i.path)
end

-- issues -> "Validation error: …"
function schema.message(issues)
  local parts = {}
  for k, i in ipairs(issues) do parts[k] = issue_text(i) end
  return "Validation error: " .. table.concat(parts, "; ")
end

-- issues -> zod's issue objects (for `details` and the items route's pretty-printed list).
function schema.details(issues)
  local out = {}
  for k, i in ipairs(issues) do
    local path = json.array({})
    for n, p in ipairs(i.path) do path[n] = p end
    out[k] = json.ordered({ code = i.code, message = i.union and issue_text(i) or i.message,
                            path = path }, { "code", "message", "path" })
  end
  return json.array(out)
end

-- Check `value` against `checker`. -> nil, or the list of issues
function schema.check(checker, value)
  local issues = {}
  checker(value, {}, issues)
  if #issues > 0 then return issues end
end

---------------------------------------------------------------------------------------------------
-- The management API's bodies

local S = schema

schema.MACHINES = { "micro", "small-1x", "small-2x", "medium-1x", "medium-2x", "large-1x", "large-2x" }

local function tag_string()
  return S.string({ max = 128, max_message = "Tags must be less than 128 characters" })
end

-- The options shared by a trigger (TriggerTaskRequestBody.options) and a batch item.
local function option_fields(item)
  local f = {
    payloadType = S.string(),
    payloadSize = S.number({ int = true, min = 0 }),
    tags = S.union(tag_string(), S.array(tag_string())),
    idempotencyKey = S.string({ max = 2048,
      max_message = "idempotencyKey must be 2048 characters or less" }),
    idempotencyKeyTTL = S.string(),
    idempotencyKeyOptions = S.object({ key = S.string(),
                                       scope = S.enum({ "run", "attempt", "global" }) }),
    delay = S.union(S.string(), S.coerce_date()),
    ttl = S.union(S.string(), S.number({ int = true, min = 0 })),
    queue = item and S.object({ name = S.string() })
      or S.object({ name = S.string(), concurrencyLimit = S.number({ int = true }) },
                  { concurrencyLimit = true }),
    concurrencyKey = S.union(S.string(), S.number()),
    maxAttempts = S.number({ int = true }),
    maxDuration = S.number(),
    priority = S.number(),
    machine = S.enum(schema.MACHINES),
    region = S.string(),
    lockToVersion = S.string(),
    externalDeploymentId = S.string({ max = 128 }),
    metadata = S.any(),
    metadataType = S.string(),
    test = S.boolean(),
    debounce = S.object({ key = S.string({ max = 512 }), delay = S.string(),
                          mode = S.enum({ "leading", "trailing" }), maxDelay = S.string() },
                        { mode = true, maxDelay = true }),
  }
  if not item then
    f.parentRunId = S.string()
    f.resumeParentOnCompletion = S.boolean()
    f.parentBatch = S.string()
    f.dependentAttempt = S.string()
    f.parentAttempt = S.string()
    f.dependentBatch = S.string()
    f.bulkActionId = S.string()
  end
  local optional = {}
  for name in pairs(f) do optional[name] = true end
  return f, optional
end

local function store_rule(body)
  local opts = type(body.options) == "table" and body.options or {}
  if opts.payloadType == "application/store" and
     (type(body.payload) ~= "string" or body.payload == "") then
    return "payload must be a non-empty string when options.payloadType is application/store"
  end
end

local trigger_options, trigger_optional = option_fields(false)
schema.TRIGGER = S.refine(S.object({
  payload = S.any(), context = S.any(),
  options = S.object(trigger_options, trigger_optional, { externalDeploymentId = true }),
}, { payload = true, context = true, options = true }), store_rule, "payload")

local item_options, item_optional = option_fields(true)
schema.BATCH_ITEM = S.refine(S.object({
  index = S.number({ int = true, min = 0 }),
  task = S.string({ min = 1 }),
  payload = S.any(),
  options = S.object(item_options, item_optional, { externalDeploymentId = true }),
}, { payload = true, options = true }), store_rule, "payload")

schema.CREATE_BATCH = S.object({
  runCount = S.number({ int = true, gt = 0 }),
  taskIdentifiers = S.array(S.string({ min = 1 })),
  idempotencyKey = S.string({ max = 2048,
    max_message = "idempotencyKey must be 2048 characters or less" }),
  idempotencyKeyOptions = S.object({ key = S.string(),
                                     scope = S.enum({ "run", "attempt", "global" }) }),
  parentRunId = S.string(),
  resumeParentOnCompletion = S.boolean(),
}, { taskIdentifiers = true, idempotencyKey = true, idempotencyKeyOptions = true,
     parentRunId = true, resumeParentOnCompletion = true })

return schema
