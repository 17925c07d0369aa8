--- Trigger tasks: one run (`trigger`), or many in one batch (`batch_trigger`,
-- `batch_trigger_by_id`), through Trigger.dev's management API, as the TypeScript SDK 4.8.3 does.
--
-- **Options are checked here**, where the server would take them silently the wrong way: a
-- `delay` that does not parse or lies in the past (the run would start now), an
-- `idempotency_key_ttl` it cannot read (the key would live 30 days), a `ttl` it cannot read, a
-- `max_duration` it would raise to 5 s, more than 10 tags, an unknown machine. A mistake is an
-- error at the call, never a run that does something else.
--
-- **Idempotency keys and retries.** A trigger whose answer was lost (a reset connection, a
-- 5xx after the run was made) cannot tell whether the run exists, and the server's own
-- per-request check does not work at the version read (§2.6). So every trigger carries an
-- idempotency key: the caller's (`idempotency_key`), or, when none is given, one of the
-- library's own, random per call and kept for `1h` (`OWN_KEY_TTL`). A retry of the same call
-- then finds the run the lost answer was about instead of making a second one, so failed
-- requests can be retried (`max_retries`, 4 by default). What a key of your own buys beyond
-- that: the same key from another call, another process or the TypeScript SDK (the key is
-- hashed as the SDK hashes it) finds the same run for as long as the key lives
-- (`idempotency_key_ttl`, 30 days by default) and the run did not fail, and the handle says so
-- (`isCached = true`). `idempotency_key = false` sends no key at all: then only a 429 (the
-- server refused before doing anything) is retried. The library's own key shows on the run
-- (`idempotencyKey` of `trigger.runs.retrieve`, a 64-digit hash).
--
-- Batches need no key for safe retries: the server creates no run until the items come,
-- and items are deduplicated by their index in the batch.
-- @module trigger.tasks
local api = require "trigger.api"
local config = require "trigger.config"
local core = require "trigger.core"
local errors = require "trigger.errors"
local json = require "trigger.json"

local M = {}

--- Payloads of this many bytes of JSON or more are uploaded to object storage first, as the
-- SDK does (`OFFLOAD_IO_PACKET_LENGTH_LIMIT`).
M.OFFLOAD_BYTES = 131072

--- How long the library's own idempotency key (no `idempotency_key` given) is kept.
M.OWN_KEY_TTL = "1h"

--- At most this many items in one batch (the server's `STREAMING_BATCH_MAX_ITEMS`).
M.MAX_BATCH_ITEMS = 1000

local MAX_TAGS, MAX_TAG_LENGTH, MAX_KEY_LENGTH = 10, 128, 2048
local MAX_METADATA_BYTES = 262144
local MACHINES = { micro = true, ["small-1x"] = true, ["small-2x"] = true, ["medium-1x"] = true,
  ["medium-2x"] = true, ["large-1x"] = true, ["large-2x"] = true }

-- Options of one run (trigger's opts, a batch item's options) → type.
local RUN_OPTIONS = {
  tags = "any", idempotency_key = "any", idempotency_key_ttl = "any", delay = "any",
  ttl = "any", queue = "string", concurrency_key = "any", max_attempts = "number",
  max_duration = "number", priority = "number", machine = "string", region = "string",
  version = "string", metadata = "any", test = "boolean",
}
-- Options of a whole batch.
local BATCH_OPTIONS = { idempotency_key = "any", idempotency_key_ttl = "any" }

local function is_duration(s)
  return require("trigger.runs")._is_duration(s)
end

-- Days since 1970-01-01 of a civil date (proleptic Gregorian; no `//`: LuaJIT reads this too).
local function days_from_civil(y, m, d)
  local function idiv(x, q) return math.floor(x / q) end
  y = m <= 2 and y - 1 or y
  local era = idiv(y >= 0 and y or y - 399, 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = idiv(153 * mp + 2, 5) + d - 1
  local doe = yoe * 365 + idiv(yoe, 4) - idiv(yoe, 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch of an ISO 8601 date-time with `Z` or an offset, or nil.
-- @local
function M._iso_time(s)
  local y, mo, d, h, mi, sec, rest = s:match(
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  rest = rest:gsub("^%.%d+", "")
  local offset
  if rest == "Z" then
    offset = 0
  else
    local sign, oh, om = rest:match("^([%+%-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "-" and -1 or 1)
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
    tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or sec > 60 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
end

local function whole(v) return type(v) == "number" and v == v and v >= 0 and v < 2^53
  and v == math.floor(v) end

-- A duration option: a duration string, or whole seconds (→ "Ns"). -> wire string
local function duration(fn, n, name, v)
  if whole(v) then return string.format("%ds", v) end
  if type(v) == "string" and is_duration(v) then return v end
  errors.bad_argument(fn, n, string.format("%s must be a duration such as \"30s\", \"10m\", "
    .. "\"2h\", \"1d\" or \"1h30m\", or whole seconds, got %s", name,
    type(v) == "string" and ("\"" .. v .. "\"") or tostring(v)))
end

--- The wire key of an idempotency key as the TypeScript SDK makes it outside a task
-- (`idempotencyKeys.create` with scope `run`): 64 characters are taken as a hash already, any other string is
-- hashed with SHA-256, a list is joined with `-` first.
-- @tparam string|{string,...} key
-- @treturn string the key to send (64 hex digits, or the 64 characters given)
-- @treturn string the user's key as given (joined), sent beside it
function M.idempotency_key(key)
  local joined = type(key) == "table" and table.concat(key, "-") or key
  if #joined == 64 then return joined, joined end
  return api.sha256_hex(joined), joined
end

local function check_key(fn, n, name, v)
  if type(v) == "string" and v ~= "" and #v <= MAX_KEY_LENGTH then return v end
  if type(v) == "table" and #v > 0 then
    for i, part in ipairs(v) do
      if type(part) ~= "string" then
        errors.bad_argument(fn, n, string.format("%s[%d] must be a string", name, i))
      end
    end
    return v
  end
  errors.bad_argument(fn, n, name .. " must be a non-empty string (at most 2048 characters) "
    .. "or a list of strings, or false for no key")
end

-- Check the options of one run and turn them into the wire's `options` (management-api.md
-- §2.1). `where` prefixes argument errors ("opts." or "items[3].options.").
-- -> options table, the user's key (or nil)
local function run_options(fn, n, o, where)
  local out = {}
  local function bad(msg) errors.bad_argument(fn, n, where .. msg) end
  if o.tags ~= nil then
    local tags = type(o.tags) == "string" and { o.tags } or o.tags
    if type(tags) ~= "table" then bad("tags must be a string or a list of strings") end
    if #tags > MAX_TAGS then
      bad(string.format("tags: at most %d tags, got %d", MAX_TAGS, #tags))
    end
    local list = setmetatable({}, json.array_mt)
    for i, t in ipairs(tags) do
      if type(t) ~= "string" or t == "" or #t > MAX_TAG_LENGTH then
        bad(string.format("tags[%d] must be a non-empty string of at most %d characters", i,
          MAX_TAG_LENGTH))
      end
      list[i] = t
    end
    out.tags = list
  end
  local user_key
  if o.idempotency_key ~= nil and o.idempotency_key ~= false then
    user_key = check_key(fn, n, where .. "idempotency_key", o.idempotency_key)
    local wire, joined = M.idempotency_key(user_key)
    out.idempotencyKey = wire
    out.idempotencyKeyOptions = { key = joined, scope = "run" }
  end
  if o.idempotency_key_ttl ~= nil then
    if not user_key then bad("idempotency_key_ttl needs an idempotency_key") end
    local v = o.idempotency_key_ttl
    if whole(v) and v > 0 then v = string.format("%ds", v) end
    -- the server reads one number and one unit; anything else silently becomes 30 days
    if type(v) ~= "string" or not v:match("^%d+[smhd]$") or v:match("^0+[smhd]$") then
      bad("idempotency_key_ttl must be a number and one unit s, m, h or d (\"10m\", \"24h\"),"
        .. " or whole seconds, got " .. tostring(o.idempotency_key_ttl))
    end
    out.idempotencyKeyTTL = v
  end
  if o.delay ~= nil then
    local v = o.delay
    if type(v) == "string" and v:match("^%d%d%d%d%-") then
      local t = M._iso_time(v)
      if not t then
        bad("delay: \"" .. v .. "\" is not an ISO 8601 date-time with Z or an offset")
      end
      if t <= os.time() then bad("delay: " .. v .. " is in the past (the run would start now)") end
      out.delay = v
    else
      out.delay = duration(fn, n, where .. "delay", v)
    end
  end
  if o.ttl ~= nil then out.ttl = duration(fn, n, where .. "ttl", o.ttl) end
  if o.queue ~= nil then
    if o.queue == "" then bad("queue must be a non-empty queue name") end
    out.queue = { name = o.queue }
  end
  if o.concurrency_key ~= nil then
    local v = o.concurrency_key
    if type(v) == "number" and whole(v) then v = string.format("%d", v) end
    if type(v) ~= "string" or v == "" then bad("concurrency_key must be a non-empty string") end
    out.concurrencyKey = v
  end
  if o.max_attempts ~= nil then
    if not (whole(o.max_attempts) and o.max_attempts >= 1) then
      bad("max_attempts must be a whole number of at least 1, got " .. tostring(o.max_attempts))
    end
    out.maxAttempts = o.max_attempts
  end
  if o.max_duration ~= nil then
    -- the server raises anything under 5 s to 5 s
    if not (o.max_duration >= 5 and o.max_duration < 2^31) then
      bad("max_duration must be at least 5 seconds, got " .. tostring(o.max_duration))
    end
    out.maxDuration = o.max_duration
  end
  if o.priority ~= nil then
    if not (o.priority >= 0 and o.priority < 2^31 / 1000) then
      bad("priority must be a non-negative number of seconds, got " .. tostring(o.priority))
    end
    out.priority = o.priority
  end
  if o.machine ~= nil then
    if not MACHINES[o.machine] then
      bad("machine must be one of micro, small-1x, small-2x, medium-1x, medium-2x, large-1x, "
        .. "large-2x, got \"" .. o.machine .. "\"")
    end
    out.machine = o.machine
  end
  if o.region ~= nil then
    if o.region == "" then bad("region must be a non-empty string") end
    out.region = o.region
  end
  if o.version ~= nil then
    if o.version == "" then bad("version must be a non-empty string") end
    out.lockToVersion = o.version
  end
  if o.metadata ~= nil then
    if type(o.metadata) ~= "table" then bad("metadata must be a table (a JSON object)") end
    local ok, text = pcall(json.encode, o.metadata)
    if not ok then bad("metadata cannot be written as JSON: " .. tostring(text)) end
    if #text > MAX_METADATA_BYTES then
      bad(string.format("metadata is %d bytes of JSON, more than the %d the server keeps",
        #text, MAX_METADATA_BYTES))
    end
    out.metadata = o.metadata
  end
  if o.test ~= nil then out.test = o.test end
  return out, user_key
end

-- Split a call's opts into run options and settings (the options of `trigger.configure`).
local function split(fn, n, opts, own)
  if opts ~= nil and type(opts) ~= "table" then
    errors.bad_argument(fn, n, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  config.check(opts, fn, own)
  local settings_opts, mine = {}, {}
  for k, v in pairs(opts) do
    if own[k] then mine[k] = v else settings_opts[k] = v end
  end
  local settings, err = config.resolve(settings_opts)
  if not settings then error(err, 3) end
  return mine, settings
end

local function encode_payload(fn, n, payload)
  if payload == nil then return nil end
  local ok, text = pcall(json.encode, payload)
  if not ok then
    errors.bad_argument(fn, n, "payload cannot be written as JSON: " .. tostring(text))
  end
  return text
end

local PACKET_ALPHABET = "123456789abcdefghijkmnopqrstuvwxyz"

-- packet_ + 21 characters of the SDK's alphabet (generateFriendlyId("packet")).
local function packet_id()
  local bytes = core.random_bytes(21)
  local out = {}
  for i = 1, 21 do
    local k = bytes:byte(i) % #PACKET_ALPHABET + 1
    out[i] = PACKET_ALPHABET:sub(k, k)
  end
  return "packet_" .. table.concat(out)
end

--- Upload a payload to object storage as the SDK does (management-api.md §2.5): ask for a
-- presigned URL, PUT the bytes there.
-- @local
-- @return the storage path, or nil and an error object
function M._offload(settings, text)
  local filename = "trigger/" .. packet_id() .. "/payload.json"
  local doc, err = api.call(settings, { method = "PUT",
    path = "/api/v2/packets/" .. core.url_encode(filename) })
  if not doc then return nil, err end
  if type(doc.presignedUrl) ~= "string" or type(doc.storagePath) ~= "string" then
    return nil, errors.new("protocol", "the packet answer has no presignedUrl or storagePath",
      { request = "PUT " .. settings.base_url .. "/api/v2/packets/…", fatal = true })
  end
  local uploaded, failure = api.call(settings, { method = "PUT", url = doc.presignedUrl,
    auth = false, body = text, content_type = "application/json", json = false })
  if not uploaded then
    failure.message = "uploading the payload: " .. failure.message
    return nil, failure
  end
  return doc.storagePath
end

-- payload text → the body fields: payload (JSON text), and options.payloadType/payloadSize.
local function payload_fields(settings, text, options)
  if text == nil then return nil end
  if #text >= M.OFFLOAD_BYTES then
    local path, err = M._offload(settings, text)
    if not path then return nil, err end
    options.payloadType = "application/store"
    options.payloadSize = #text
    return json.encode(path)
  end
  options.payloadType = "application/json"
  options.payloadSize = #text
  return text
end

-- {"payload": <raw JSON text>, "options": {...}} (the payload is already JSON text).
local function body_of(payload_text, options, extra)
  local parts = {}
  if payload_text then parts[#parts + 1] = '"payload":' .. payload_text end
  parts[#parts + 1] = '"options":' .. json.encode(options)
  for k, v in pairs(extra or {}) do parts[#parts + 1] = json.encode(k) .. ":" .. v end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- The public access token of a run or batch: the server's `x-trigger-jwt`; else signed here
-- with a root secret key (older servers), from the claims of `x-trigger-jwt-claims`.
local function public_token(settings, headers, scope)
  local jwt = headers["x-trigger-jwt"]
  if jwt and jwt ~= "" then return jwt end
  local claims = json.decode(headers["x-trigger-jwt-claims"] or "")
  if type(claims) ~= "table" or not settings.access_token:match("^tr_%w+_")
      or settings.access_token:match("^tr_%w+_sk_") then
    return nil
  end
  local now = os.time()
  claims.pub, claims.iat, claims.exp = true, now, now + 3600
  claims.scopes = setmetatable({ scope }, json.array_mt)
  return require("trigger.auth").sign(settings.access_token, claims)
end

local TRIGGER_OPTIONS = {}
for k, v in pairs(RUN_OPTIONS) do TRIGGER_OPTIONS[k] = v end

--- The handle of a triggered run: what `trigger` returns. Every `trigger.runs.subscribe_to_run`,
-- `trigger.runs.wait`, `retrieve` and `cancel` takes it in place of the id, and uses its
-- `publicAccessToken` when no access token is configured.
-- @table Handle
-- @field id string: the run's id (`run_…`)
-- @field isCached boolean: true when an idempotency key of yours found an existing run (no new
--   run was made, no option of this call was applied); never true for the library's own key
-- @field publicAccessToken string or nil: a token that can read this run (and write its input
--   streams) for one hour (`read:runs:<id>`): hand it to a browser or another script
-- @field taskIdentifier string: the task's id

--- Trigger a task: one new run (or, with an idempotency key that found one, an existing run).
-- The payload is sent as JSON (a Lua string as a JSON string); one of 128 KiB or more is first
-- uploaded to object storage, as the SDK does.
--
-- Nothing checks that the task exists: an unknown task id makes a run that waits until its
-- `ttl` expires it (the server's way).
-- @tparam string task_id the task's id
-- @param[opt] payload any value JSON can hold (nil: no payload)
-- @tparam[opt] table opts the options (all optional):
-- @tparam string|{string,...} opts.tags up to 10 tags of up to 128 characters each
-- @tparam string|{string,...}|false opts.idempotency_key a key that makes the trigger
--   idempotent: hashed as the TypeScript SDK hashes it (SHA-256; a list is joined with `-`;
--   64 characters are sent as they are), so the same key finds the same run whichever
--   client triggered it. false: no key at all, not even the library's own (see above: then
--   only 429s are retried)
-- @param opts.idempotency_key_ttl how long the key holds: a number and one unit
--   (`"30s"`, `"10m"`, `"24h"`, `"7d"`) or whole seconds; default 30 days (the server's)
-- @param opts.delay start the run later: a duration (`"30s"`, `"1h30m"`, units w d h/hr m s),
--   whole seconds, or an ISO 8601 date-time in the future (`"2026-12-24T18:00:00Z"`); anything
--   else is an error here (the server would start the run now)
-- @param opts.ttl expire the run if it has not started within this duration (as `delay`), or
--   whole seconds; `0`: no time to live (the server's default is the task's, else 10m in a
--   dev environment)
-- @tparam string opts.queue the name of a queue declared in the task's code
-- @tparam string|number opts.concurrency_key a key that gives the run its own copy of the queue
-- @tparam integer opts.max_attempts attempts before the run fails
-- @tparam number opts.max_duration seconds of compute before the run is stopped (at least 5)
-- @tparam number opts.priority seconds of head start in the queue
-- @tparam string opts.machine `micro`, `small-1x`, `small-2x`, `medium-1x`, `medium-2x`,
--   `large-1x` or `large-2x`
-- @tparam string opts.region the region to run in
-- @tparam string opts.version the deployed version to run (`"20250208.1"`)
-- @tparam table opts.metadata the run's metadata (JSON, at most 256 KiB)
-- @tparam boolean opts.test mark the run as a test run
-- @param opts.... and every option of `trigger.configure` (`access_token`, `base_url`,
--   `preview_branch`, `max_retries`, `on_error`…) for this call
-- @treturn[1] Handle the run's handle `{id, isCached, publicAccessToken, taskIdentifier}`
-- @treturn[2] nil
-- @treturn[2] table an error object (`trigger.errors`): `auth`, `forbidden`, `bad_request`
--   (the server refused: more than 10 tags, a full queue…), `rate_limited` or `network` once
--   the retries are used up
-- @raise (a string) when an argument or option is wrong (see above), at the caller's line
-- @usage
-- local handle = assert(trigger.tasks.trigger("send-email", { to = "ada@example.com" },
--   { tags = { "user:1234" }, idempotency_key = "welcome-1234", delay = "10m" }))
-- local run = trigger.runs.wait(handle)
function M.trigger(task_id, payload, opts)
  local fn = "trigger"
  if type(task_id) ~= "string" or task_id == "" then
    errors.bad_argument(fn, 1, "task id string expected")
  end
  local mine, settings = split(fn, 3, opts, TRIGGER_OPTIONS)
  local options, user_key = run_options(fn, 3, mine, "opts.")
  local text = encode_payload(fn, 2, payload)
  local own = false
  if not user_key and mine.idempotency_key ~= false then
    own = true
    options.idempotencyKey = api.sha256_hex(api.uuid4())
    options.idempotencyKeyTTL = M.OWN_KEY_TTL
  end
  local payload_text, err = payload_fields(settings, text, options)
  if err then return nil, err end
  local path = "/api/v1/tasks/" .. core.url_encode(task_id) .. "/trigger"
  local doc, headers = api.call(settings, {
    method = "POST", path = path, body = body_of(payload_text, options),
    headers = { "x-trigger-request-idempotency-key: " .. api.uuid4(),
      "x-trigger-realtime-streams-version: v2" },
    retry = options.idempotencyKey and "all" or "rate_limit",
  })
  if not doc then return nil, headers end
  if type(doc) ~= "table" or type(doc.id) ~= "string" then
    return nil, errors.new("protocol", "the trigger answer has no run id",
      { request = "POST " .. settings.base_url .. path, fatal = true })
  end
  return {
    id = doc.id,
    isCached = (not own) and doc.isCached == true,
    publicAccessToken = public_token(settings, headers, "read:runs:" .. doc.id),
    taskIdentifier = task_id,
  }
end

--- The handle of a batch: what `batch_trigger` returns. `trigger.runs.subscribe_to_batch`
-- takes it in place of the id (and uses its token when no access token is configured): its
-- runs appear there as the server makes them.
-- @table BatchHandle
-- @field id string: the batch's id (`batch_…`)
-- @field runCount integer: how many runs it makes
-- @field isCached boolean: phase 1 found an existing batch by its idempotency key
-- @field publicAccessToken string or nil: a token that can read the batch and its runs for
--   one hour (`read:batch:<id>`)

-- items → NDJSON lines (payloads offloaded when large), the task ids.
local function batch_lines(fn, n, settings, items, task_of, batch_key, batch_ttl)
  local lines, tasks = {}, {}
  for i, item in ipairs(items) do
    local where = string.format("items[%d].", i)
    if type(item) ~= "table" then errors.bad_argument(fn, n, where:sub(1, -2)
      .. " must be a table {payload = …, options = {…}}") end
    local task = task_of(i, item)
    for k in pairs(item) do
      if k ~= "payload" and k ~= "options" and k ~= "id" then
        errors.bad_argument(fn, n, where .. tostring(k) .. ": unknown field (payload, options"
          .. ", id)")
      end
    end
    local o = item.options or {}
    if type(o) ~= "table" then errors.bad_argument(fn, n, where .. "options must be a table") end
    config.check(o, fn, RUN_OPTIONS)
    for k in pairs(o) do
      if not RUN_OPTIONS[k] then
        errors.bad_argument(fn, n, where .. "options." .. k .. " applies to the whole call")
      end
    end
    local options, user_key = run_options(fn, n, o, where .. "options.")
    if not user_key and batch_key then
      options.idempotencyKey = api.sha256_hex(batch_key .. "-" .. (i - 1))
      options.idempotencyKeyOptions = { key = batch_key .. "-" .. (i - 1), scope = "run" }
      if not options.idempotencyKeyTTL then options.idempotencyKeyTTL = batch_ttl end
    end
    local text = encode_payload(fn, n, item.payload)
    lines[i] = { index = i - 1, task = task, text = text, options = options }
    tasks[task] = true
  end
  for _, line in ipairs(lines) do
    local payload_text, err = payload_fields(settings, line.text, line.options)
    if err then return nil, err end
    line.json = body_of(payload_text, line.options, { index = tostring(line.index),
      task = json.encode(line.task) })
  end
  local ids = {}
  for t in pairs(tasks) do ids[#ids + 1] = t end
  table.sort(ids)
  return lines, ids
end

local function batch(fn, n, items, opts, task_of)
  if type(items) ~= "table" or #items == 0 then
    errors.bad_argument(fn, n, "non-empty list of items expected")
  end
  if #items > M.MAX_BATCH_ITEMS then
    errors.bad_argument(fn, n, string.format("at most %d items in a batch, got %d",
      M.MAX_BATCH_ITEMS, #items))
  end
  local mine, settings = split(fn, n + 1, opts, BATCH_OPTIONS)
  local batch_key, batch_joined, batch_ttl
  if mine.idempotency_key ~= nil then
    local key = check_key(fn, n + 1, "opts.idempotency_key", mine.idempotency_key)
    batch_key, batch_joined = M.idempotency_key(key)
  end
  if mine.idempotency_key_ttl ~= nil then
    if not batch_key then
      errors.bad_argument(fn, n + 1, "idempotency_key_ttl needs an idempotency_key")
    end
    local o = run_options(fn, n + 1, { idempotency_key = "x", idempotency_key_ttl =
      mine.idempotency_key_ttl }, "opts.")
    batch_ttl = o.idempotencyKeyTTL
  end
  local lines, ids = batch_lines(fn, n, settings, items, task_of, batch_joined, batch_ttl)
  if not lines then return nil, ids end
  -- phase 1: the batch (no run yet: a retry that makes a second, empty batch runs nothing)
  local create = { runCount = #lines, taskIdentifiers = setmetatable(ids, json.array_mt) }
  if batch_key then
    create.idempotencyKey = batch_key
    create.idempotencyKeyOptions = { key = batch_joined, scope = "run" }
  end
  local doc, headers = api.call(settings, { method = "POST", path = "/api/v3/batches",
    body = json.encode(create) })
  if not doc then return nil, headers end
  if type(doc.id) ~= "string" then
    return nil, errors.new("protocol", "the batch answer has no id",
      { request = "POST " .. settings.base_url .. "/api/v3/batches", fatal = true })
  end
  local handle = { id = doc.id, runCount = doc.runCount or #lines, isCached = doc.isCached == true,
    publicAccessToken = public_token(settings, headers, "read:batch:" .. doc.id) }
  -- phase 2: the items, deduplicated by index, so every retry is safe; sent even when phase 1
  -- said isCached (an earlier phase 2 may have been lost: this seals the batch)
  local ndjson = {}
  for i, line in ipairs(lines) do ndjson[i] = line.json end
  local body = table.concat(ndjson, "\n") .. "\n"
  local path = "/api/v3/batches/" .. core.url_encode(doc.id) .. "/items"
  local tries = (settings.max_retries or api.DEFAULT_RETRIES) + 1
  for attempt = 1, tries do
    local sealed, err = api.call(settings, { method = "POST", path = path, body = body,
      content_type = "application/x-ndjson" })
    if not sealed then
      err.message = "sending the items of " .. doc.id .. ": " .. err.message
      return nil, err
    end
    if sealed.sealed ~= false then return handle end
    if attempt == tries then
      return nil, errors.new("protocol", string.format("batch %s is not sealed after %d tries "
        .. "(%s of %s items)", doc.id, tries, tostring(sealed.enqueuedCount),
        tostring(sealed.expectedCount)), { request = "POST " .. settings.base_url .. path,
        fatal = true })
    end
    api._pause(settings.transport or require("trigger.transport").current(),
      require("trigger.retry").delay(settings, attempt)) -- the batch is not sealed yet
  end
end

--- Trigger one task many times in one batch (at most 1,000 runs), as SDK 4.8.3 does: the batch
-- first, then its items. The runs appear on `trigger.runs.subscribe_to_batch(handle)` as the
-- server makes them (they have no ids here).
-- @tparam string task_id the task's id
-- @tparam {table,...} items one per run: `{payload = …, options = {…}}`, the options those
--   of `trigger` (tags, idempotency_key, delay, ttl, …)
-- @tparam[opt] table opts `idempotency_key` (the batch's key: an item without its own key gets
--   `<key>-<index>`, as the SDK does), `idempotency_key_ttl`, and the options of
--   `trigger.configure` for this call
-- @treturn[1] BatchHandle `{id, runCount, isCached, publicAccessToken}`
-- @treturn[2] nil
-- @treturn[2] table an error object
-- @raise (a string) when an argument, an item or an option is wrong, at the caller's line
-- @usage
-- local batch = assert(trigger.tasks.batch_trigger("resize", {
--   { payload = { url = "a.png" } }, { payload = { url = "b.png" }, options = { tags = "b" } },
-- }))
-- for run in trigger.runs.subscribe_to_batch(batch) do print(run.id, run.status) end
function M.batch_trigger(task_id, items, opts)
  if type(task_id) ~= "string" or task_id == "" then
    errors.bad_argument("batch_trigger", 1, "task id string expected")
  end
  return batch("batch_trigger", 2, items, opts, function(i, item)
    if item.id ~= nil then
      errors.bad_argument("batch_trigger", 2, string.format("items[%d].id: the task is "
        .. "argument #1 here (batch_trigger_by_id takes one per item)", i))
    end
    return task_id
  end)
end

--- Trigger several tasks in one batch: each item names its task (`batch.trigger` of SDK
-- 4.8.3, items `{id, payload, options}`).
-- @tparam {table,...} items one per run: `{id = "task-id", payload = …, options = {…}}`
-- @tparam[opt] table opts as for `batch_trigger`
-- @treturn[1] BatchHandle
-- @treturn[2] nil
-- @treturn[2] table an error object
-- @raise (a string) when an argument, an item or an option is wrong
-- @usage
-- local batch = assert(trigger.tasks.batch_trigger_by_id {
--   { id = "send-email", payload = { to = "ada@example.com" } },
--   { id = "resize", payload = { url = "a.png" } },
-- })
function M.batch_trigger_by_id(items, opts)
  local fn = "batch_trigger_by_id"
  if type(items) ~= "table" then errors.bad_argument(fn, 1, "list of items expected") end
  for i, item in ipairs(items) do
    if type(item) ~= "table" or type(item.id) ~= "string" or item.id == "" then
      errors.bad_argument(fn, 1, string.format("items[%d].id must be the task's id", i))
    end
  end
  return batch(fn, 1, items, opts, function(_, item) return item.id end)
end

return M
