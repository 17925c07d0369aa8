-- The management API: trigger, batches (both phases), run retrieve / list / cancel, batch
-- retrieve, packet presigning and the presigned object URLs themselves.
--
-- Written from ../shared/protocol/management-api.md (b082e44 server, SDK 4.8.3): the request
-- pipeline of §1.3 in its order (401 without Authorization, the rate limiter, authentication,
-- 413 Content-Length, header/query checks, body checks, authorization, the resource), its error
-- bodies, and the surprises §6 lists (an unknown task is accepted and waits for its TTL; a bad
-- delay starts the run now; unknown keys are dropped). Runs go into the store the realtime
-- routes read; worker.lua holds what the realtime columns don't, and runs the catalogue's tasks.
local hmac = require "openssl.hmac"
local auth = require "trigger_realtime_server.auth"
local http = require "trigger_realtime_server.http"
local json = require "trigger_realtime_server.json"
local realtime = require "trigger_realtime_server.realtime"
local schema = require "trigger_realtime_server.schema"
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"
local worker = require "trigger_realtime_server.worker"

local api = {}

local NULL = json.null

api.TASK_PAYLOAD_MAXIMUM_SIZE = 3145728
api.BATCH_MAXIMUM_SIZE = 131072
api.OFFLOAD_THRESHOLD = 524288
api.METADATA_MAXIMUM_SIZE = 262144
api.MAX_TAGS = 10
api.BATCH_MAX_ITEMS = 1000
api.PRESIGN_EXPIRES_S = 300
api.JWT_EXPIRES_S = 3600
api.API_VERSION = "2025-07-16"

local DAY_MS = 86400000

---------------------------------------------------------------------------------------------------
-- Small helpers

local function iso(ms)
  return os.date("!%Y-%m-%dT%H:%M:%S", ms // 1000) .. (".%03dZ"):format(ms % 1000)
end
api.iso = iso

local function respond(status, value, headers)
  return realtime.json_response(status, value, headers)
end

local function err(status, message)
  return { status = status, message = message }
end

local function sorted_copy(list)
  local out = {}
  for i, v in ipairs(list or {}) do out[i] = v end
  table.sort(out)
  return out
end

-- JSON.stringify(v, null, 2) for the problem+json bodies.
local function pretty(value, order)
  local lines = {}
  for _, k in ipairs(order) do
    lines[#lines + 1] = "  " .. json.quote(k) .. ": " .. json.encode(value[k])
  end
  return "{\n" .. table.concat(lines, ",\n") .. "\n}"
end

---------------------------------------------------------------------------------------------------
-- Rate limiting (§1.4): a token bucket per environment for the secret key, a fixed window per
-- public token. Every limited response carries x-ratelimit-* (reset in Unix milliseconds).

local function bucket_take(state, cfg, now, cost)
  if not state.last then state.tokens, state.last = cfg.limit, now end
  local intervals = (now - state.last) // cfg.interval_ms
  if intervals > 0 then
    state.tokens = math.min(cfg.limit, state.tokens + intervals * cfg.refill)
    state.last = state.last + intervals * cfg.interval_ms
  end
  local reset = state.last + cfg.interval_ms
  if state.tokens < cost then return false, state.tokens - cost, reset end
  state.tokens = state.tokens - cost
  return true, state.tokens, reset
end

local function window_take(state, cfg, now)
  local window = now // cfg.window_ms
  if state.window ~= window then state.window, state.count = window, 0 end
  state.count = state.count + 1
  local reset = (window + 1) * cfg.window_ms
  return state.count <= cfg.limit, cfg.limit - state.count, reset
end

local function rate_limit(srv, req)
  local eng = srv.tasks
  local now = srv.now_ms()
  local token = (req.headers["authorization"] or ""):match("^[Bb]earer%s+(%S+)") or ""
  local ok, remaining, reset, limit
  if token == srv.opts.secret_key or token:match("^tr_") then
    local cfg = eng.config.rate_limit
    eng.buckets.env = eng.buckets.env or {}
    ok, remaining, reset = bucket_take(eng.buckets.env, cfg, now, 1)
    limit = cfg.limit
  else
    local cfg = eng.config.jwt_rate_limit
    -- keyed by a digest: the token itself is kept nowhere
    local key = util.b64url_encode(hmac.new("rate", "sha256"):final(token))
    eng.buckets[key] = eng.buckets[key] or {}
    ok, remaining, reset = window_take(eng.buckets[key], cfg, now)
    limit = cfg.limit
  end
  local headers = {
    { "x-ratelimit-limit", tostring(limit) },
    { "x-ratelimit-remaining", tostring(math.max(0, remaining)) },
    { "x-ratelimit-reset", ("%d"):format(reset) },
  }
  if ok then return headers end
  local seconds = math.max(0, reset - now) / 1000
  local detail = ("Rate limit exceeded %d/%d requests remaining. Retry in %s seconds.")
    :format(math.max(0, remaining), limit, json.number_text(math.floor(seconds * 10 + 0.5) / 10))
  local body = pretty({ title = "Rate Limit Exceeded", status = 429,
    type = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/429", detail = detail,
    reset = reset, limit = limit, remaining = remaining,
    secondsUntilReset = math.floor(seconds * 10 + 0.5) / 10, error = detail },
    { "title", "status", "type", "detail", "reset", "limit", "remaining", "secondsUntilReset", "error" })
  local h = { { "content-type", "application/problem+json; charset=utf-8" } }
  for _, x in ipairs(headers) do h[#h + 1] = x end
  return nil, http.response(429, h, body)
end

-- The 429 body of the API limiter, for a `status` fault on an /api route (faults.lua).
function api.rate_limit_body(reset_ms, now_ms, limit)
  local seconds = math.max(0, reset_ms - now_ms) / 1000
  local s = json.number_text(math.floor(seconds * 10 + 0.5) / 10)
  local detail = ("Rate limit exceeded 0/%d requests remaining. Retry in %s seconds."):format(limit, s)
  return pretty({ title = "Rate Limit Exceeded", status = 429,
    type = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/429", detail = detail,
    reset = reset_ms, limit = limit, remaining = 0, secondsUntilReset = tonumber(s), error = detail },
    { "title", "status", "type", "detail", "reset", "limit", "remaining", "secondsUntilReset", "error" })
end

---------------------------------------------------------------------------------------------------
-- The pipeline (§1.3)

local Ctx = {}
Ctx.__index = Ctx

-- A response with the route's headers (rate limit first, as the limiter sets them).
function Ctx:reply(status, value, headers)
  local h = {}
  for _, x in ipairs(self.headers) do h[#h + 1] = x end
  for _, x in ipairs(headers or {}) do h[#h + 1] = x end
  return respond(status, value, h)
end

function Ctx:fail(e)
  return self:reply(e.status, { error = e.message })
end

function Ctx:forbidden()
  return self:reply(403, auth.FORBIDDEN)
end

local function headers_error(name, message, extra)
  local d = json.ordered({ code = extra.code, maximum = extra.maximum, type = extra.type,
    inclusive = extra.inclusive, exact = extra.exact, message = message,
    path = json.array({ name }) }, { "code", "maximum", "type", "inclusive", "exact", "message", "path" })
  return d
end

-- The trigger route's HeadersSchema.
local function check_headers(h)
  local details = {}
  local engine = h["x-trigger-engine-version"]
  if engine and engine ~= "V1" and engine ~= "V2" then
    details[#details + 1] = json.ordered({ received = engine, code = "invalid_enum_value",
      options = json.array({ "V1", "V2" }), path = json.array({ "x-trigger-engine-version" }),
      message = ("Invalid enum value. Expected 'V1' | 'V2', received '%s'"):format(engine) },
      { "received", "code", "options", "path", "message" })
  end
  local link = h["x-trigger-span-parent-as-link"]
  if link and not tonumber(link) then
    details[#details + 1] = json.ordered({ code = "invalid_type", expected = "number",
      received = "nan", path = json.array({ "x-trigger-span-parent-as-link" }),
      message = "Expected number, received nan" }, { "code", "expected", "received", "path", "message" })
  end
  local key = h["idempotency-key"]
  if key and (utf8.len(key) or #key) > 2048 then
    details[#details + 1] = headers_error("idempotency-key",
      "idempotency-key must be 2048 characters or less",
      { code = "too_big", maximum = 2048, type = "string", inclusive = true, exact = false })
  end
  if #details > 0 then return json.array(details) end
end

-- opts: jwt (public tokens allowed), limited (rate limiter; default true), max_length
-- (Content-Length required and at most this), headers (the trigger HeadersSchema), body (a
-- schema: the body must be JSON that passes it). -> ctx, or nil, response
local function pipeline(srv, req, opts)
  if not req.headers["authorization"] then
    local detail = "No authorization header provided"
    return nil, http.response(401, { { "content-type", "application/problem+json; charset=utf-8" } },
      json.encode(json.ordered({ title = "Unauthorized", status = 401,
        type = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/401", detail = detail,
        error = detail }, { "title", "status", "type", "detail", "error" })))
  end
  local ctx = setmetatable({ srv = srv, req = req, headers = {} }, Ctx)
  if opts.limited ~= false then
    local headers, limited = rate_limit(srv, req)
    if not headers then return nil, limited end
    ctx.headers = headers
  end
  local principal, why = auth.authenticate_api(req.headers, {
    secret_key = srv.opts.secret_key, environment_id = srv.opts.environment_id, now_ms = srv.now_ms,
  })
  if principal and principal.kind == "public" and not opts.jwt then
    principal, why = nil, "Invalid API key"
  end
  if not principal then return nil, ctx:reply(401, { error = why }) end
  ctx.principal = principal
  if opts.max_length then
    local n = tonumber((req.headers["content-length"] or ""):match("^%s*(%d+)%s*$") or "")
    if not n or n > opts.max_length then
      return nil, ctx:reply(413, { error = "Request body too large" })
    end
  end
  if opts.headers then
    local details = check_headers(req.headers)
    if details then return nil, ctx:reply(400, json.ordered({ error = "Headers Error", details = details },
                                                              { "error", "details" })) end
  end
  if opts.body then
    if req.body == "" then return nil, ctx:reply(400, { error = "Request body is empty" }) end
    local body = json.decode_exact(req.body)
    if body == nil or body == NULL or body == false or body == 0 then
      return nil, ctx:reply(400, { error = "Invalid JSON" })
    end
    local issues = schema.check(opts.body, body)
    if issues then return nil, ctx:reply(400, { error = schema.message(issues) }) end
    ctx.body = body
  end
  ctx.v2_status = req.headers["x-trigger-api-version"] == api.API_VERSION
  return ctx
end

---------------------------------------------------------------------------------------------------
-- Tokens handed out (§2.3, §3.2)

local function jwt_headers(srv, claims_order, claims)
  local now = srv.now_ms() // 1000
  local full = {}
  for k, v in pairs(claims) do full[k] = v end
  full.iss, full.aud, full.iat, full.exp = auth.ISSUER, auth.AUDIENCE, now, now + api.JWT_EXPIRES_S
  local order = {}
  for _, k in ipairs(claims_order) do order[#order + 1] = k end
  for _, k in ipairs({ "iat", "exp", "iss", "aud" }) do order[#order + 1] = k end
  return {
    { "x-trigger-jwt-claims", json.encode(json.ordered(claims, claims_order)) },
    { "x-trigger-jwt", auth.sign_jwt(json.ordered(full, order), srv.opts.secret_key) },
  }
end

local function run_jwt(srv, id, principal)
  return jwt_headers(srv, { "sub", "pub", "scopes", "realtime" }, {
    sub = srv.opts.environment_id, pub = true,
    scopes = json.array({ "read:runs:" .. id, "write:inputStreams:" .. id }),
    realtime = principal.realtime,
  })
end

---------------------------------------------------------------------------------------------------
-- Creating a run (the trigger service): shared by the trigger route and batch items

local function parse_delay(v, now)
  if type(v) == "string" then
    local d = values.parse_duration(v)
    if d then return now + d end
    local t = values.parse_timestamp(v)
    if t and t > now then return t end
  elseif type(v) == "number" and v > now then
    return math.floor(v)
  end
end

local function key_ttl_ms(text)
  local n, unit = (type(text) == "string" and text or ""):match("^(%d+)([smhd])$")
  if not n then return 30 * DAY_MS end
  return tonumber(n) * ({ s = 1000, m = 60000, h = 3600000, d = DAY_MS })[unit]
end

local function contains(list, v)
  for _, x in ipairs(list or {}) do if x == v then return true end end
  return false
end

local function waiting_count(srv)
  local n = 0
  for _, rec in pairs(srv.store.runs) do
    local s = rec.row.status
    if s == "PENDING" or s == "PENDING_VERSION" or s == "WAITING_FOR_DEPLOY" or s == "DELAYED" then
      n = n + 1
    end
  end
  return n
end

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89abAB]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

-- c: { headers, principal, batch_id, trigger_function }. -> { id, cached }, or nil, err
local function create_run(srv, task, body, c)
  local eng = srv.tasks
  local env = eng:environment()
  local opts = body.options or {}
  local now = srv.now_ms()
  local h = c.headers

  -- Request idempotency (§2.6): off by default, as the b082e44 check never matches.
  local request_slot
  local request_key = h["x-trigger-request-idempotency-key"]
  if eng.config.request_idempotency and request_key and request_key:match(UUID_V4) then
    request_slot = task .. "\n" .. request_key
    local e = eng.requests[request_slot]
    if e and e.expires_ms > now and srv.store:find(e.run) then return { id = e.run, cached = false } end
  end

  -- Tags: counted before blank ones are dropped.
  local tags = opts.tags
  if type(tags) == "string" then tags = { tags } end
  tags = tags or {}
  if #tags > api.MAX_TAGS then
    return nil, err(422, ("Runs can only have %d tags, you're trying to set %d."):format(api.MAX_TAGS, #tags))
  end
  local kept = {}
  for _, t in ipairs(tags) do
    if not t:match("^%s*$") then kept[#kept + 1] = t end
  end

  -- Metadata (JSON.stringify for application/json; falsy values mean none).
  local metadata, metadata_type
  local m = opts.metadata
  if m ~= nil and m ~= NULL and m ~= false and m ~= 0 and m ~= "" then
    metadata_type = opts.metadataType or "application/json"
    if metadata_type == "application/json" or type(m) ~= "string" then
      metadata = json.encode(m)
    else
      metadata = m
    end
    if #metadata > api.METADATA_MAXIMUM_SIZE then
      return nil, err(413, ("Metadata exceeds maximum size of %d bytes"):format(api.METADATA_MAXIMUM_SIZE))
    end
  end

  -- Idempotency key (§2.4): the headers beat the body.
  local key = h["idempotency-key"] or opts.idempotencyKey
  local key_ttl = h["idempotency-key-ttl"] or opts.idempotencyKeyTTL
  local slot
  if key then
    slot = task .. "\n" .. key
    local e = eng.keys[slot]
    if e then
      local rec = srv.store:find(e.run)
      if rec and e.expires_ms > now and not worker.KEY_RELEASING[rec.row.status] then
        return { id = e.run, cached = true }
      end
      if rec then -- the old run loses its key
        srv:update_run(e.run, { idempotencyKey = NULL })
        if eng.meta[e.run] then eng.meta[e.run].idempotency_key = nil end
      end
      eng.keys[slot] = nil
    end
  end

  -- Debounce: durations checked; a live delayed run with the same key is pushed back.
  local debounce_ms, debounce_slot
  if opts.debounce then
    local d = opts.debounce
    debounce_ms = values.parse_duration(d.delay)
    if not debounce_ms then
      return nil, err(422, ("Debounce requires a valid delay duration. Provided: %s"):format(d.delay))
    end
    if d.maxDelay then
      local max = values.parse_duration(d.maxDelay)
      if not max then return nil, err(422, ("Invalid debounce delay: %s"):format(d.maxDelay)) end
      if max <= debounce_ms then
        return nil, err(422, ("debounce.maxDelay (%s) must be longer than debounce.delay (%s)")
          :format(d.maxDelay, d.delay))
      end
    end
    debounce_slot = task .. "\n" .. d.key
    local id = eng.debounce and eng.debounce[debounce_slot]
    local rec = id and srv.store:find(id)
    if rec and rec.row.status == "DELAYED" then
      srv:update_run(id, { delayUntil = now + debounce_ms })
      return { id = id, cached = false }
    end
  end

  -- Version pinning, region, queue size.
  local version = opts.lockToVersion
  if version and not contains(eng.config.versions, version) then
    if h["x-trigger-engine-version"] == "V2" then
      return nil, err(422, ("Task locked to version '%s', but no worker found with that version.")
        :format(version))
    end
    return nil, err(500, "Something went wrong")
  end
  if opts.region and env.type ~= "DEVELOPMENT" and not contains(eng.config.regions, opts.region) then
    return nil, err(422, ("The region you specified doesn't exist (\"%s\")."):format(opts.region))
  end
  local limit = eng.config.queue_size_limit
  if limit and waiting_count(srv) >= limit then
    return nil, err(422, ("Cannot trigger %s as the queue size limit for this environment has been "
      .. "reached. The maximum size is %d"):format(task, limit))
  end

  -- Payload (§2.2): JSON.stringify for application/json, other types only as strings.
  local id = "run_" .. util.random_string(21)
  local ptype = opts.payloadType or "application/json"
  local packet
  if ptype == "application/json" then
    packet = body.payload ~= nil and json.encode(body.payload) or ""
  else
    packet = type(body.payload) == "string" and body.payload or ""
  end
  if ptype == "application/json" and #packet > api.OFFLOAD_THRESHOLD then
    local path = ("%s/%s/payload.json"):format(env.slug, id)
    srv.store:put_blob(path, "application/json", packet)
    packet, ptype = path, "application/store"
  end

  -- Delay and TTL: an unparseable or past delay is ignored; ttl 0 means none.
  local delay_until = parse_delay(opts.delay, now)
  if debounce_ms and not delay_until then delay_until = now + debounce_ms end
  local def = eng.catalogue[task]
  local ttl_text
  if opts.ttl == nil then
    ttl_text = def and def.ttl or (env.type == "DEVELOPMENT" and "10m" or "14d")
  elseif type(opts.ttl) == "number" then
    if opts.ttl > 0 then ttl_text = json.number_text(opts.ttl) .. "s" end
  elseif opts.ttl ~= "" then
    ttl_text = opts.ttl
  end
  local ttl_ms = ttl_text and values.parse_duration(ttl_text) or nil
  if ttl_ms == 0 then ttl_ms = nil end

  local streams_version = h["x-trigger-realtime-streams-version"]
  if streams_version ~= "v1" and streams_version ~= "v2" then
    streams_version = srv.streams.config.version
  end
  local max_duration = opts.maxDuration
  if max_duration then max_duration = math.max(5, math.min(2147483647, max_duration)) end
  local concurrency_key = opts.concurrencyKey
  if type(concurrency_key) == "number" then concurrency_key = json.number_text(concurrency_key) end

  srv:create_run({
    friendlyId = id, taskIdentifier = task,
    status = delay_until and "DELAYED" or eng:waiting_status(task),
    createdAt = now, updatedAt = now, queuedAt = delay_until and NULL or now,
    delayUntil = delay_until, ttl = ttl_text,
    payload = packet, payloadType = ptype,
    metadata = metadata, metadataType = metadata_type,
    runTags = kept, idempotencyKey = key, isTest = opts.test == true,
    batchId = c.batch_id, realtimeStreamsVersion = streams_version,
  })
  eng.meta[id] = {
    task = task, created = now,
    idempotency_key = key,
    idempotency_user_key = opts.idempotencyKeyOptions and opts.idempotencyKeyOptions.key,
    max_attempts = opts.maxAttempts, max_duration = max_duration, machine = opts.machine,
    queue = opts.queue and opts.queue.name or ("task/" .. task), concurrency_key = concurrency_key,
    priority = opts.priority, region = opts.region, version = version,
    context = body.context, trigger_function = c.trigger_function or "trigger",
    batch_id = c.batch_id, ttl_ms = ttl_ms, attempt_count = 0,
    source = h["x-trigger-source"], trigger_version = h["trigger-version"],
  }
  if slot then eng.keys[slot] = { run = id, expires_ms = now + key_ttl_ms(key_ttl) } end
  if request_slot then eng.requests[request_slot] = { run = id, expires_ms = now + DAY_MS } end
  if debounce_slot then
    eng.debounce = eng.debounce or {}
    eng.debounce[debounce_slot] = id
  end
  eng:touch()
  eng:start(id)
  return { id = id, cached = false }
end
api.create_run = create_run

---------------------------------------------------------------------------------------------------
-- Run objects (§4.2, §4.3)

local V2_STATUS = {
  PENDING = "QUEUED", DELAYED = "DELAYED", WAITING_FOR_DEPLOY = "PENDING_VERSION",
  PENDING_VERSION = "PENDING_VERSION", DEQUEUED = "DEQUEUED", EXECUTING = "EXECUTING",
  RETRYING_AFTER_FAILURE = "EXECUTING", PAUSED = "WAITING", WAITING_TO_RESUME = "WAITING",
  COMPLETED_SUCCESSFULLY = "COMPLETED", CANCELED = "CANCELED", COMPLETED_WITH_ERRORS = "FAILED",
  INTERRUPTED = "FAILED", CRASHED = "CRASHED", SYSTEM_FAILURE = "SYSTEM_FAILURE",
  EXPIRED = "EXPIRED", TIMED_OUT = "TIMED_OUT",
}
local LEGACY_STATUS = {
  PENDING = "QUEUED", DELAYED = "DELAYED", WAITING_FOR_DEPLOY = "WAITING_FOR_DEPLOY",
  PENDING_VERSION = "WAITING_FOR_DEPLOY", DEQUEUED = "EXECUTING", EXECUTING = "EXECUTING",
  RETRYING_AFTER_FAILURE = "REATTEMPTING", PAUSED = "FROZEN", WAITING_TO_RESUME = "FROZEN",
  COMPLETED_SUCCESSFULLY = "COMPLETED", CANCELED = "CANCELED", COMPLETED_WITH_ERRORS = "FAILED",
  INTERRUPTED = "INTERRUPTED", CRASHED = "CRASHED", SYSTEM_FAILURE = "SYSTEM_FAILURE",
  EXPIRED = "EXPIRED", TIMED_OUT = "TIMED_OUT",
}
api.V2_STATUS, api.LEGACY_STATUS = V2_STATUS, LEGACY_STATUS

local function set_of(text)
  local s = {}
  for w in text:gmatch("%S+") do s[w] = true end
  return s
end
local QUEUED = set_of("QUEUED WAITING_FOR_DEPLOY DELAYED PENDING_VERSION")
local EXECUTING = set_of("EXECUTING REATTEMPTING FROZEN DEQUEUED")
local WAITING = set_of("WAITING FROZEN")
local COMPLETED = set_of("COMPLETED CANCELED FAILED CRASHED INTERRUPTED SYSTEM_FAILURE")

local function flags(status)
  local completed = COMPLETED[status] == true
  return {
    isQueued = QUEUED[status] == true, isExecuting = EXECUTING[status] == true,
    isWaiting = WAITING[status] == true, isCompleted = completed,
    isSuccess = status == "COMPLETED", isFailed = completed and status ~= "COMPLETED",
    isCancelled = status == "CANCELED",
  }
end

local function presign(srv, method, path, ttl_s)
  local now = srv.now_ms()
  local date = os.date("!%Y%m%dT%H%M%SZ", now // 1000)
  local expires = ttl_s or api.PRESIGN_EXPIRES_S
  local sig = hmac.new(srv.opts.secret_key, "sha256")
    :final(("%s\n%s\n%s\n%d"):format(method, path, date, expires))
  local hex = sig:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)
  return ("%s/_blobs/%s?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=%s&X-Amz-Expires=%d"
    .. "&X-Amz-SignedHeaders=host&X-Amz-Signature=%s"):format(srv.base_url, util.path_encode(path),
    date, expires, hex)
end
api.presign = presign

-- A stored packet as retrieve shows it: the value, or a presigned URL. -> value, url
local function packet_value(srv, data, ptype)
  if data == nil or data == "" then return nil end
  if ptype == "application/store" then return nil, presign(srv, "GET", data) end
  if ptype == "application/json" or ptype == nil then
    local v = json.decode_exact(data)
    if v == nil then return data end
    return v
  elseif ptype == "application/super+json" then
    local v = json.decode_exact(data)
    if type(v) == "table" and v.json ~= nil then return v.json end
    return v
  end
  return data
end

local function api_error(e)
  if type(e) ~= "table" then return nil end
  if e.type == "BUILT_IN_ERROR" then
    return json.ordered({ message = e.message or "", name = e.name, stackTrace = e.stackTrace },
                        { "message", "name", "stackTrace" })
  elseif e.type == "INTERNAL_ERROR" then
    return { message = ("trigger.dev internal error (%s)"):format(tostring(e.code)) }
  elseif e.raw ~= nil then
    return { message = type(e.raw) == "string" and e.raw or json.encode(e.raw) }
  end
  return { message = e.message or json.encode(e) }
end

local COMMON = { "id", "status", "taskIdentifier", "idempotencyKey", "version", "createdAt",
  "updatedAt", "startedAt", "finishedAt", "expiredAt", "delayedUntil", "ttl", "costInCents",
  "baseCostInCents", "durationMs", "isTest", "depth", "tags", "isQueued", "isExecuting", "isWaiting",
  "isCompleted", "isSuccess", "isFailed", "isCancelled", "triggerFunction", "batchId", "metadata",
  "region" }

-- The fields every view shares. -> table, key order
local function common_fields(srv, row, v2)
  local meta = srv.tasks.meta[row.friendlyId] or {}
  local status = (v2 and V2_STATUS or LEGACY_STATUS)[row.status] or row.status
  local t = {
    id = row.friendlyId, status = status, taskIdentifier = row.taskIdentifier,
    idempotencyKey = meta.idempotency_user_key or row.idempotencyKey,
    version = meta.version or (row.startedAt and srv.tasks.config.versions[1]) or nil,
    createdAt = iso(row.createdAt), updatedAt = iso(row.updatedAt),
    startedAt = row.startedAt and iso(row.startedAt), finishedAt = row.completedAt and iso(row.completedAt),
    expiredAt = row.expiredAt and iso(row.expiredAt), delayedUntil = row.delayUntil and iso(row.delayUntil),
    ttl = row.ttl, costInCents = row.costInCents or 0, baseCostInCents = row.baseCostInCents or 0,
    durationMs = row.usageDurationMs or 0, isTest = row.isTest == true, depth = meta.depth or 0,
    tags = json.array(sorted_copy(row.runTags)), triggerFunction = meta.trigger_function or "trigger",
    batchId = row.batchId, region = meta.region,
  }
  for k, v in pairs(flags(status)) do t[k] = v end
  if row.metadata and row.metadata ~= "" then
    local md = json.decode_exact(row.metadata)
    if type(md) == "table" then t.metadata = md end
  end
  local order = {}
  for i, k in ipairs(COMMON) do order[i] = k end
  return t, order
end

local function retrieve_object(srv, row, v2)
  local t, order = common_fields(srv, row, v2)
  local meta = srv.tasks.meta[row.friendlyId] or {}
  t.payload, t.payloadPresignedUrl = packet_value(srv, row.payload, row.payloadType)
  if row.status == "COMPLETED_SUCCESSFULLY" then
    t.output, t.outputPresignedUrl = packet_value(srv, row.output, row.outputType)
  end
  if row.error ~= nil and row.error ~= NULL then t.error = api_error(row.error) end
  t.attemptCount = meta.attempt_count or (row.startedAt and 1 or 0)
  t.attempts = json.array({})
  t.relatedRuns = { children = json.array({}) }
  for _, k in ipairs({ "payload", "payloadPresignedUrl", "output", "outputPresignedUrl", "error",
                       "attemptCount", "attempts", "relatedRuns" }) do
    order[#order + 1] = k
  end
  return json.ordered(t, order)
end
api.retrieve_object = retrieve_object

local function run_scopes(row)
  local list = { "read:runs:" .. row.friendlyId, "read:tasks:" .. row.taskIdentifier }
  for _, tag in ipairs(row.runTags or {}) do list[#list + 1] = "read:tags:" .. tag end
  if row.batchId then list[#list + 1] = "read:batch:" .. row.batchId end
  return list
end

local function not_found(ctx)
  return ctx:reply(404, { error = "Not found" }, { { "x-should-retry", "true" } })
end

---------------------------------------------------------------------------------------------------
-- Routes

local function trigger_route(srv, req, task)
  if req.method ~= "POST" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true, max_length = api.TASK_PAYLOAD_MAXIMUM_SIZE,
                                        headers = true, body = schema.TRIGGER })
  if not ctx then return res end
  if not auth.has_scope(ctx.principal, { "trigger:tasks:" .. task }) then return ctx:forbidden() end
  local opts = ctx.body.options or {}
  -- A task-internal field: a token must be able to write the parent run it names.
  if opts.parentRunId and not auth.has_scope(ctx.principal, { "write:runs:" .. opts.parentRunId }) then
    return ctx:reply(403, { error = "Unauthorized" })
  end
  local run, e = create_run(srv, task, ctx.body, { headers = req.headers, principal = ctx.principal })
  if not run then return ctx:fail(e) end
  return ctx:reply(200, json.ordered({ id = run.id, isCached = run.cached }, { "id", "isCached" }),
                   run_jwt(srv, run.id, ctx.principal))
end

local function retrieve_route(srv, req, id)
  if req.method ~= "GET" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true })
  if not ctx then return res end
  local rec = srv.store:find(id)
  if not rec then return not_found(ctx) end
  local scopes = { "read:runs:" .. id }
  for _, s in ipairs(run_scopes(rec.row)) do scopes[#scopes + 1] = s end
  if not auth.has_scope(ctx.principal, scopes) then return ctx:forbidden() end
  return ctx:reply(200, retrieve_object(srv, rec.row, ctx.v2_status))
end

local function cancel_route(srv, req, id)
  if req.method ~= "POST" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true })
  if not ctx then return res end
  local rec = srv.store:find(id)
  local scopes = { "write:runs:" .. id }
  if rec then scopes[#scopes + 1] = "write:tasks:" .. rec.row.taskIdentifier end
  if not auth.has_scope(ctx.principal, scopes) then return ctx:forbidden() end
  if not rec then return ctx:reply(404, { error = "Resource not found" }) end
  srv.tasks:cancel(id) -- a finished run stays as it is; the answer is the same
  return ctx:reply(200, { id = id })
end

---------------------------------------------------------------------------------------------------
-- List (§5.3)

local MACHINE_SET = {}
for _, m in ipairs(schema.MACHINES) do MACHINE_SET[m] = true end

local function query_error(ctx, path, message, extra)
  local d = { code = extra.code or "custom", message = message, path = json.array({ path }) }
  local order = { "code" }
  for _, k in ipairs({ "minimum", "maximum", "expected", "received", "type", "inclusive", "exact" }) do
    if extra[k] ~= nil then
      d[k] = extra[k]
      order[#order + 1] = k
    end
  end
  order[#order + 1] = "message"
  order[#order + 1] = "path"
  return ctx:reply(400, json.ordered({ error = "Query Error",
    details = json.array({ json.ordered(d, order) }) }, { "error", "details" }))
end

local function cursor_of(row)
  return util.b64url_encode(("%d_%s"):format(row.createdAt, row.friendlyId))
end

local function cursor_key(text)
  local raw = util.b64url_decode(text or "")
  local at, id = (raw or ""):match("^(%d+)_(.+)$")
  if not at then return nil end
  return tonumber(at), id
end

-- newest first; ties by id, descending
local function before(a, b)
  if a.createdAt ~= b.createdAt then return a.createdAt > b.createdAt end
  return a.friendlyId > b.friendlyId
end

local function time_param(v)
  if v == nil or v == "" then return nil end
  if v:match("^%d+$") then return tonumber(v) end
  return values.parse_timestamp(v)
end

local function list_route(srv, req)
  if req.method ~= "GET" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true })
  if not ctx then return res end
  local p = req.params
  local size = 25
  if p["page[size]"] ~= nil then
    local n = tonumber(p["page[size]"])
    if not n then
      return query_error(ctx, "page[size]", "Expected number, received nan",
                         { code = "invalid_type", expected = "number", received = "nan" })
    end
    if n > 100 then
      return query_error(ctx, "page[size]", "Number must be less than or equal to 100",
        { code = "too_big", maximum = 100, type = "number", inclusive = true, exact = false })
    end
    if n < 1 then
      return query_error(ctx, "page[size]", "Number must be greater than or equal to 1",
        { code = "too_small", minimum = 1, type = "number", inclusive = true, exact = false })
    end
    size = math.floor(n)
  end
  local statuses
  if p["filter[status]"] then
    statuses = {}
    local bad = {}
    for _, s in ipairs(util.split_commas(p["filter[status]"])) do
      local known = false
      for db, name in pairs(V2_STATUS) do
        if name == s or LEGACY_STATUS[db] == s then
          statuses[db] = true
          known = true
        end
      end
      if not known then bad[#bad + 1] = s end
    end
    if #bad > 0 then
      return ctx:reply(400, { error = "Invalid status values: " .. table.concat(bad, ", ") })
    end
  end
  local is_test = p["filter[isTest]"]
  if is_test ~= nil and is_test ~= "true" and is_test ~= "false" then
    return query_error(ctx, "filter[isTest]", "Invalid enum value. Expected 'true' | 'false', received '"
      .. is_test .. "'", { code = "invalid_enum_value" })
  end
  local function list_of(name)
    local v = p[name]
    if v == nil then return nil end
    local set = {}
    for _, x in ipairs(util.split_commas(v)) do set[x] = true end
    return set
  end
  local tasks, versions, tags, queues, machines, regions =
    list_of("filter[taskIdentifier]"), list_of("filter[version]"), list_of("filter[tag]"),
    list_of("filter[queue]"), list_of("filter[machine]"), list_of("filter[region]")
  for m in pairs(machines or {}) do
    if not MACHINE_SET[m] then
      return query_error(ctx, "filter[machine]", ("Invalid enum value. Expected %s, received '%s'")
        :format("'" .. table.concat(schema.MACHINES, "' | '") .. "'", m), { code = "invalid_enum_value" })
    end
  end
  -- Authorization: read:runs, or read:tasks (each task named by the filter).
  local allowed = auth.has_scope(ctx.principal, { "read:runs" })
  if not allowed and tasks then
    allowed = true
    for t in pairs(tasks) do
      if not auth.has_scope(ctx.principal, { "read:tasks:" .. t }) then allowed = false end
    end
  elseif not allowed then
    allowed = auth.has_scope(ctx.principal, { "read:tasks" })
  end
  if not allowed then return ctx:forbidden() end

  local now = srv.now_ms()
  local from, to = time_param(p["filter[createdAt][from]"]), time_param(p["filter[createdAt][to]"])
  local period = p["filter[createdAt][period]"]
  if period then from = now - (values.parse_duration(period) or 7 * DAY_MS) end
  if not from and not to and not period then from = now - 7 * DAY_MS end
  local batch, schedule = p["filter[batch]"], p["filter[schedule]"]

  local rows = {}
  for _, rec in pairs(srv.store.runs) do
    local row, meta = rec.row, srv.tasks.meta[rec.row.friendlyId] or {}
    local ok = (not statuses or statuses[row.status])
      and (not tasks or tasks[row.taskIdentifier])
      and (not versions or versions[meta.version or ""])
      and (not queues or queues[meta.queue or ("task/" .. row.taskIdentifier)])
      and (not machines or machines[meta.machine or ""])
      and (not regions or regions[meta.region or ""])
      and (is_test == nil or (row.isTest == true) == (is_test == "true"))
      and (not batch or row.batchId == batch)
      and (not schedule) and (not from or row.createdAt >= from) and (not to or row.createdAt <= to)
    if ok and tags then
      ok = false
      for _, t in ipairs(row.runTags or {}) do if tags[t] then ok = true end end
    end
    if ok then rows[#rows + 1] = row end
  end
  table.sort(rows, before)
  local first, last = 1, math.min(#rows, size)
  local after_at, after_id = cursor_key(p["page[after]"])
  local before_at, before_id = cursor_key(p["page[before]"])
  if after_at then
    first = #rows + 1
    for i, row in ipairs(rows) do
      if before({ createdAt = after_at, friendlyId = after_id }, row) then
        first = i
        break
      end
    end
    last = math.min(#rows, first + size - 1)
  elseif before_at then
    local stop = 0
    for i, row in ipairs(rows) do
      if before(row, { createdAt = before_at, friendlyId = before_id }) then stop = i end
    end
    last = stop
    first = math.max(1, stop - size + 1)
  end
  local data = {}
  local env = srv.tasks:environment()
  for i = first, last do
    local t, order = common_fields(srv, rows[i], ctx.v2_status)
    if type(t.metadata) == "table" then
      for k in pairs(t.metadata) do if k:sub(1, 2) == "$$" then t.metadata[k] = nil end end
    end
    t.idempotencyKey = rows[i].idempotencyKey
    t.env = json.ordered({ id = env.id, name = env.slug }, { "id", "name" })
    t.taskKind = "STANDARD"
    order[#order + 1] = "env"
    order[#order + 1] = "taskKind"
    data[#data + 1] = json.ordered(t, order)
  end
  local pagination = {}
  if last < #rows and last >= first then pagination.next = cursor_of(rows[last]) end
  if first > 1 and last >= first then pagination.previous = cursor_of(rows[first]) end
  return ctx:reply(200, json.ordered({ data = json.array(data),
    pagination = json.ordered(pagination, { "next", "previous" }) }, { "data", "pagination" }))
end

---------------------------------------------------------------------------------------------------
-- Batches (§3)

local function batch_object(b)
  local runs = json.array({})
  if b.status == "COMPLETED" or b.status == "PARTIAL_FAILED" then
    for i = 0, b.runCount - 1 do
      if b.runs[i] then runs[#runs + 1] = b.runs[i] end
    end
  end
  local errors = json.array({})
  for _, e in ipairs(b.errors) do
    errors[#errors + 1] = json.ordered({ index = e.index, taskIdentifier = e.task, error = e.error,
      errorCode = e.code }, { "index", "taskIdentifier", "error", "errorCode" })
  end
  return json.ordered({
    id = b.id, status = b.status, idempotencyKey = b.idempotencyKey,
    createdAt = iso(b.createdAt), updatedAt = iso(b.updatedAt),
    processingCompletedAt = b.completedAt and iso(b.completedAt), runCount = b.runCount, runs = runs,
    processing = json.ordered({ completedAt = b.completedAt and iso(b.completedAt), errors = errors },
                              { "completedAt", "errors" }),
  }, { "id", "status", "idempotencyKey", "createdAt", "updatedAt", "processingCompletedAt", "runCount",
       "runs", "processing" })
end

local function create_batch_route(srv, req)
  if req.method ~= "POST" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true, max_length = api.BATCH_MAXIMUM_SIZE,
                                        body = schema.CREATE_BATCH })
  if not ctx then return res end
  local body, eng = ctx.body, srv.tasks
  if body.runCount > api.BATCH_MAX_ITEMS then
    return ctx:reply(400, { error = ("Batch runCount of %d exceeds maximum allowed of %d.")
      :format(body.runCount, api.BATCH_MAX_ITEMS) })
  end
  local ok = auth.has_scope(ctx.principal, { "batchTrigger:tasks", "batchTrigger:batch" })
  if not ok and body.taskIdentifiers and #body.taskIdentifiers > 0 then
    ok = true
    for _, t in ipairs(body.taskIdentifiers) do
      if not auth.has_scope(ctx.principal, { "batchTrigger:tasks:" .. t }) then ok = false end
    end
  end
  if not ok then return ctx:forbidden() end
  -- The batch limiter charges one token per run.
  eng.buckets.batch = eng.buckets.batch or {}
  local cfg, now = eng.config.batch_rate_limit, srv.now_ms()
  local allowed, remaining, reset = bucket_take(eng.buckets.batch, cfg, now, body.runCount)
  if not allowed then
    local after = math.max(1, math.ceil((reset - now) / 1000))
    return ctx:reply(429, { error = ("Batch rate limit exceeded. Limit resets at %s"):format(iso(reset)) }, {
      { "X-RateLimit-Limit", tostring(cfg.limit) },
      { "X-RateLimit-Remaining", tostring(math.max(0, remaining)) },
      { "X-RateLimit-Reset", tostring(reset // 1000) }, { "Retry-After", tostring(after) } })
  end
  if body.idempotencyKey and eng.batch_keys[body.idempotencyKey] then
    return ctx:reply(422, { error = "Cannot create batch as it has already been created with the same "
      .. "idempotency key." })
  end
  local id = "batch_" .. util.random_string(21)
  local b = { id = id, runCount = body.runCount, status = "PENDING", idempotencyKey = body.idempotencyKey,
              createdAt = now, updatedAt = now, items = {}, received = 0, runs = {}, errors = {} }
  eng.batches[id] = b
  if body.idempotencyKey then eng.batch_keys[body.idempotencyKey] = id end
  srv.store.batches[id] = true -- the realtime batch feed exists from now on
  srv.store.version = srv.store.version + 1
  eng:touch()
  local scopes = json.array({ "read:batch:" .. id })
  if req.headers["x-trigger-client"] == "browser" then scopes[2] = "write:batch:" .. id end
  local h = jwt_headers(srv, { "sub", "pub", "scopes" }, { sub = srv.opts.environment_id, pub = true,
                                                         scopes = scopes })
  h[1][2] = json.encode(json.ordered({ sub = srv.opts.environment_id, pub = true }, { "sub", "pub" }))
  return ctx:reply(202, json.ordered({ id = id, runCount = body.runCount, isCached = false,
    idempotencyKey = body.idempotencyKey }, { "id", "runCount", "isCached", "idempotencyKey" }), h)
end

-- Once every index has arrived: the runs are made (PROCESSING), then the batch completes.
-- Indexes that have a run already are skipped (a batch resumed after a restart, worker.lua).
local function process_batch(srv, b, headers, principal)
  b.status, b.updatedAt = "PROCESSING", srv.now_ms()
  srv.tasks:touch()
  srv:spawn(function()
    for i = 0, b.runCount - 1 do
      local item = b.items[i]
      if item and not b.runs[i] then
        local run, e = create_run(srv, item.task, item, { headers = headers, principal = principal,
          batch_id = b.id, trigger_function = "batchTrigger" })
        if run then
          b.runs[i] = run.id
        else
          b.errors[#b.errors + 1] = { index = i, task = item.task, error = e.message,
                                      code = e.status == 422 and "UNPROCESSABLE" or "ERROR" }
        end
      end
    end
    local now = srv.now_ms()
    b.status = #b.errors > 0 and "PARTIAL_FAILED" or "COMPLETED"
    b.completedAt, b.updatedAt = now, now
    b.items = {} -- processed: the payloads are in the runs now
    srv.tasks:touch()
  end)
end

-- A batch made in-process (scenarios): items = { { task, payload, options }, … }, processed at
-- once as if both phases had come. -> the batch id
function api.create_batch(srv, items)
  local eng, now = srv.tasks, srv.now_ms()
  local id = "batch_" .. util.random_string(21)
  local b = { id = id, runCount = #items, status = "PENDING", createdAt = now, updatedAt = now,
              items = {}, received = #items, runs = {}, errors = {} }
  for i, item in ipairs(items) do
    b.items[i - 1] = { index = i - 1, task = item.task, payload = item.payload, options = item.options or {} }
  end
  eng.batches[id] = b
  srv.store.batches[id] = true
  srv.store.version = srv.store.version + 1
  process_batch(srv, b, {}, { kind = "secret" })
  return id
end

-- After a restart (worker.lua: resume_all), a batch sealed but not processed yet.
worker.process_batch = function(srv, b) process_batch(srv, b, {}, { kind = "secret" }) end

local function pretty_issues(issues)
  local parts = {}
  for i, d in ipairs(schema.details(issues)) do
    local lines = { "  {" }
    local fields = { ('    "code": %s'):format(json.encode(d.code)),
                     ('    "message": %s'):format(json.encode(d.message)),
                     ('    "path": %s'):format(json.encode(d.path)) }
    lines[2] = table.concat(fields, ",\n")
    lines[3] = "  }"
    parts[i] = table.concat(lines, "\n")
  end
  return "[\n" .. table.concat(parts, ",\n") .. "\n]"
end

local SEALED_ORDER = { "id", "itemsAccepted", "itemsDeduplicated", "sealed", "runCount" }

local function items_route(srv, req, id)
  if req.method ~= "POST" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true })
  if not ctx then return res end
  local ctype = (req.headers["content-type"] or ""):match("^%s*([^;%s]+)") or ""
  if ctype ~= "application/x-ndjson" and ctype ~= "application/ndjson" then
    return ctx:reply(415, { error = "Content-Type must be application/x-ndjson or application/ndjson" })
  end
  local eng = srv.tasks
  local b = eng.batches[id]
  if not b then
    if not id:match("^batch_") then
      return ctx:reply(422, { error = ("Invalid batchFriendlyId: %s"):format(id) })
    end
    return ctx:reply(422, { error = ("Batch %s not found"):format(id) })
  end
  -- Parse every line first.
  local items, n = {}, 0
  for line in (req.body .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if not line:match("^%s*$") then
      local v, why = json.decode_exact(line)
      if v == nil then
        return ctx:reply(400, { error = ("Invalid JSON at line %d: %s"):format(n, why) })
      end
      items[#items + 1] = v
    end
  end
  -- Authorization: write:batch:<id>, or batchTrigger:tasks:<task> for every item.
  if not auth.has_scope(ctx.principal, { "write:batch:" .. id }) then
    local ok = #items > 0
    for _, item in ipairs(items) do
      if type(item) ~= "table" or type(item.task) ~= "string" or
         not auth.has_scope(ctx.principal, { "batchTrigger:tasks:" .. item.task }) then
        ok = false
      end
    end
    if not ok then return ctx:reply(403, { error = "Unauthorized" }) end
  end
  if b.status ~= "PENDING" then
    return ctx:reply(200, json.ordered({ id = id, itemsAccepted = 0, itemsDeduplicated = #items,
      sealed = true, runCount = b.runCount }, SEALED_ORDER))
  end
  local accepted, dedup = 0, 0
  for _, item in ipairs(items) do
    local issues = schema.check(schema.BATCH_ITEM, item)
    local index = type(item) == "table" and item.index
    if issues then
      return ctx:reply(422, { error = ("Invalid item at index %s: %s"):format(
        math.type(index) and tostring(index) or tostring(index and json.encode(index)),
        pretty_issues(issues)) })
    end
    index = math.tointeger(index)
    if index >= b.runCount then
      return ctx:reply(422, { error = ("Item index %d exceeds batch runCount %d"):format(index, b.runCount) })
    end
    if b.items[index] then
      dedup = dedup + 1
    else
      b.items[index] = item
      b.received = b.received + 1
      accepted = accepted + 1
    end
  end
  b.updatedAt = srv.now_ms()
  eng:touch()
  if b.received < b.runCount then
    return ctx:reply(200, json.ordered({ id = id, itemsAccepted = accepted, itemsDeduplicated = dedup,
      sealed = false, enqueuedCount = b.received, expectedCount = b.runCount, runCount = b.runCount },
      { "id", "itemsAccepted", "itemsDeduplicated", "sealed", "enqueuedCount", "expectedCount", "runCount" }))
  end
  process_batch(srv, b, req.headers, ctx.principal)
  return ctx:reply(200, json.ordered({ id = id, itemsAccepted = accepted, itemsDeduplicated = dedup,
    sealed = true, runCount = b.runCount }, SEALED_ORDER))
end

local function batch_retrieve_route(srv, req, id)
  if req.method ~= "GET" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { jwt = true })
  if not ctx then return res end
  local b = srv.tasks.batches[id]
  if not b then return not_found(ctx) end
  if not auth.has_scope(ctx.principal, { "read:batch:" .. id, "read:runs" }) then return ctx:forbidden() end
  return ctx:reply(200, batch_object(b))
end

---------------------------------------------------------------------------------------------------
-- Packets (§2.5) and the presigned object URLs

local function packet_route(srv, req, encoded)
  if req.method ~= "PUT" and req.method ~= "GET" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { limited = false })
  if not ctx then return res end
  local path = util.path_decode(encoded)
  if path == "" or path:find("%.%.") or path:sub(1, 1) == "/" or path:find("[%c\\]") then
    return ctx:reply(400, { error = "Invalid packet storage path" })
  end
  if req.method == "GET" then
    return ctx:reply(200, { presignedUrl = presign(srv, "GET", path) })
  end
  return ctx:reply(200, json.ordered({ presignedUrl = presign(srv, "PUT", path), storagePath = path },
                                     { "presignedUrl", "storagePath" }))
end

local function s3_error(status, code, message)
  return http.response(status, { { "content-type", "application/xml" } },
    ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>')
      :format(code, message))
end

-- /_blobs/<path>?X-Amz-…: an object URL the packet route signed (PUT stores, GET reads), good
-- for X-Amz-Expires seconds. -> response, or false for unsigned URLs (realtime.lua's blob route).
local function signed_blob_route(srv, req, encoded)
  local p = req.params
  local sig = p["X-Amz-Signature"]
  if not sig then
    if req.method == "PUT" then return s3_error(403, "AccessDenied", "Anonymous PUT is not allowed") end
    return false
  end
  local path = util.path_decode(encoded)
  local date, expires = p["X-Amz-Date"] or "", tonumber(p["X-Amz-Expires"] or "")
  local method = req.method == "HEAD" and "GET" or req.method
  local want = hmac.new(srv.opts.secret_key, "sha256"):final(("%s\n%s\n%s\n%d")
    :format(method, path, date, expires or -1))
  local hex = want:gsub(".", function(ch) return ("%02x"):format(ch:byte()) end)
  if not expires or hex ~= sig then
    return s3_error(403, "SignatureDoesNotMatch",
      "The request signature we calculated does not match the signature you provided.")
  end
  local y, mo, d, hh, mi, ss = date:match("^(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)Z$")
  local signed_at = y and values.parse_timestamp(("%s-%s-%sT%s:%s:%sZ"):format(y, mo, d, hh, mi, ss))
  if not signed_at or srv.now_ms() > signed_at + expires * 1000 then
    return s3_error(403, "AccessDenied", "Request has expired")
  end
  if method == "PUT" then
    srv.store:put_blob(path, req.headers["content-type"] or "application/octet-stream", req.body)
    return http.response(200, { { "etag", '"' .. util.random_string(32, "0123456789abcdef") .. '"' } }, "")
  end
  local blob = srv.store:get_blob(path)
  if not blob then return s3_error(404, "NoSuchKey", "The specified key does not exist.") end
  return http.response(200, { { "content-type", blob.content_type } },
                       req.method == "HEAD" and "" or blob.body)
end

local function reset_key_route(srv, req, encoded)
  if req.method ~= "POST" then return http.response(405, {}, "") end
  local ctx, res = pipeline(srv, req, { body = schema.object({ taskIdentifier = schema.string() }) })
  if not ctx then return res end
  local key, eng = util.path_decode(encoded), srv.tasks
  local slot = ctx.body.taskIdentifier .. "\n" .. key
  local e = eng.keys[slot]
  if not e then return ctx:reply(404, { error = "Resource not found" }) end
  eng.keys[slot] = nil
  if srv.store:find(e.run) then srv:update_run(e.run, { idempotencyKey = NULL }) end
  if eng.meta[e.run] then eng.meta[e.run].idempotency_key = nil end
  eng:touch()
  return ctx:reply(200, { id = key })
end

-- -> response, or false when no route here matches.
function api.dispatch(srv, _, req)
  local path = req.path
  local task = path:match("^/api/v1/tasks/([^/]+)/trigger$")
  if task then return trigger_route(srv, req, util.path_decode(task)) end
  local id = path:match("^/api/v3/runs/([^/]+)$")
  if id then return retrieve_route(srv, req, util.path_decode(id)) end
  id = path:match("^/api/v2/runs/([^/]+)/cancel$")
  if id then return cancel_route(srv, req, util.path_decode(id)) end
  if path == "/api/v1/runs" then return list_route(srv, req) end
  if path == "/api/v3/batches" then return create_batch_route(srv, req) end
  id = path:match("^/api/v3/batches/([^/]+)/items$")
  if id then return items_route(srv, req, util.path_decode(id)) end
  id = path:match("^/api/v2/batches/([^/]+)$")
  if id then return batch_retrieve_route(srv, req, util.path_decode(id)) end
  local packet = path:match("^/api/v2/packets/(.+)$")
  if packet then return packet_route(srv, req, packet) end
  local key = path:match("^/api/v1/idempotencyKeys/(.+)/reset$")
  if key then return reset_key_route(srv, req, key) end
  local blob = path:match("^/_blobs/(.+)$")
  if blob then return signed_blob_route(srv, req, blob) end
  return false
end

return api
