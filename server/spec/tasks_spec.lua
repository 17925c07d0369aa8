-- The local server's management API (../shared/protocol/management-api.md §1-§6): trigger,
-- batches, retrieve, cancel, list, packets, and the worker that runs a catalogue's tasks, over
-- real HTTP with a raw client so that every status, header and body is visible. Runs are
-- followed on the realtime feed (both dialects), never by sleeping.
-- luacheck: max line length 130
local helper = require "spec.helper"
local cjson = require "cjson"
local hmac = require "openssl.hmac"
local socket = require "socket"

---------------------------------------------------------------------------------------------------
-- A raw HTTP/1.1 client

-- opts: chunked (send the body chunked: no Content-Length), no_length (no Content-Length at all)
local function send(port, method, target, headers, body, opts)
  opts = opts or {}
  local conn = assert(socket.connect("127.0.0.1", port))
  conn:settimeout(15)
  local lines = { ("%s %s HTTP/1.1"):format(method, target), "Host: 127.0.0.1:" .. port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  local payload = body or ""
  if body and opts.chunked then
    lines[#lines + 1] = "Transfer-Encoding: chunked"
    payload = ("%x\r\n%s\r\n0\r\n\r\n"):format(#body, body)
  elseif body and not opts.no_length then
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. payload))
  return conn
end

local function receive(conn)
  local line = conn:receive("*l")
  if not line then return { status = nil } end
  local res = { status = tonumber(line:match("^HTTP/1%.1 (%d+)")), headers = {} }
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s?(.*)$")
    res.headers[name:lower()] = value
  end
  local n = tonumber(res.headers["content-length"] or "0")
  res.body = n > 0 and conn:receive(n) or ""
  local ok, decoded = pcall(cjson.decode, res.body)
  if ok then res.json = decoded end
  return res
end

local function request(port, method, target, headers, body, opts)
  local conn = send(port, method, target, headers, body, opts)
  local res = receive(conn)
  conn:close()
  return res
end

---------------------------------------------------------------------------------------------------
-- Tokens (signed and checked here with luaossl, independently of the server)

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

local function b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    for j = 0, (c and 3 or (b and 2 or 1)) do
      local k = (n >> (18 - 6 * j)) & 63
      out[#out + 1] = B64:sub(k + 1, k + 1)
    end
  end
  return table.concat(out)
end

local function unb64url(s)
  local bits, nbits, out = 0, 0, {}
  for ch in s:gmatch(".") do
    bits = (bits << 6) | (B64:find(ch, 1, true) - 1)
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 255)
    end
  end
  return table.concat(out)
end

local function sign_jwt(claims, key)
  local header = b64url(cjson.encode({ alg = "HS256", typ = "JWT" }))
  local body = b64url(cjson.encode(claims))
  return header .. "." .. body .. "." .. b64url(hmac.new(key, "sha256"):final(header .. "." .. body))
end

-- -> claims, after checking the signature with `key`
local function verify_jwt(token, key)
  local h, p, s = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
  assert.is_string(h, "not a JWT")
  assert.are.equal(b64url(hmac.new(key, "sha256"):final(h .. "." .. p)), s, "bad signature")
  assert.are.equal("HS256", cjson.decode(unb64url(h)).alg)
  return cjson.decode(unb64url(p))
end

local function public_token(srv, scopes, overrides)
  local claims = { sub = srv.environment_id, pub = true, iss = "https://id.trigger.dev",
                   aud = "https://api.trigger.dev", iat = os.time(), exp = os.time() + 900, scopes = scopes }
  for k, v in pairs(overrides or {}) do claims[k] = v end
  return sign_jwt(claims, overrides and overrides.key or srv.secret_key)
end

---------------------------------------------------------------------------------------------------
-- Management API calls

local API_VERSION = "2025-07-16"

-- opts: token, headers (extra; false removes a default), raw (body string as is), chunked,
-- no_length
local function api(srv, method, path, body, opts)
  opts = opts or {}
  local headers = {
    Authorization = "Bearer " .. (opts.token or srv.secret_key),
    ["x-trigger-api-version"] = API_VERSION,
    ["Content-Type"] = "application/json",
  }
  for k, v in pairs(opts.headers or {}) do headers[k] = v or nil end
  local text = body
  if type(body) == "table" then text = cjson.encode(body) end
  return request(srv.port, method, path, headers, text, opts)
end

local function trigger(srv, task, body, opts)
  return api(srv, "POST", "/api/v1/tasks/" .. task .. "/trigger", body or {}, opts)
end

local function retrieve(srv, id, opts)
  return api(srv, "GET", "/api/v3/runs/" .. id, nil, opts)
end

local function define(srv, tasks)
  return srv:admin("POST", "/_emulator/tasks", { tasks = tasks })
end

local function config(srv, cfg)
  return srv:admin("POST", "/_emulator/api_config", cfg)
end

-- Follow a run on the realtime feed (whichever dialect the server speaks) until `done(row)`.
-- -> the merged row (wire values), every status seen in order
local function follow(srv, id, done, token)
  local path = "/realtime/v1/runs/" .. id
  local row, seen, handle, offset = {}, {}, nil, "-1"
  local headers = { Authorization = "Bearer " .. (token or srv.secret_key),
                    ["x-trigger-electric-version"] = "1.0.0-beta.1", ["x-trigger-api-version"] = API_VERSION }
  for _ = 1, 300 do
    local target = path .. "?offset=" .. offset
    if handle then target = target .. "&handle=" .. handle .. "&live=true" end
    local res = request(srv.port, "GET", target, headers)
    assert.are.equal(200, res.status, res.body)
    handle, offset = res.headers["electric-handle"], res.headers["electric-offset"]
    for _, m in ipairs(res.json or {}) do
      if m.value then
        for k, v in pairs(m.value) do row[k] = v end
        if m.value.status and seen[#seen] ~= m.value.status then seen[#seen + 1] = m.value.status end
      end
    end
    if row.status and done(row) then return row, seen end
  end
  error("the run never got there: " .. tostring(row.status))
end

local FINAL = { COMPLETED_SUCCESSFULLY = true, COMPLETED_WITH_ERRORS = true, CANCELED = true, EXPIRED = true,
                CRASHED = true, SYSTEM_FAILURE = true, TIMED_OUT = true, INTERRUPTED = true }
local function final(row) return FINAL[row.status] end
local function status_is(s) return function(row) return row.status == s end end

local TASKS = {
  ["hello-world"] = { queue_ms = 0, steps = { { metadata = { progress = 0.5 } }, { output = { message = "hi" } } } },
  ["stream-story"] = { queue_ms = 0, steps = { { stream = "default", chunks = { "a ", "b ", "c" } },
                                               { output = { words = 3 } } } },
  ["always-fails"] = { queue_ms = 0, steps = { { fail = { name = "Error", message = "boom", stackTrace = "Error: boom" } } } },
  ["echo"] = { queue_ms = 0, steps = { { echo = true } } },
  ["slow"] = { queue_ms = 0, steps = { { sleep = 60 }, { output = true } } },
  ["crash"] = { queue_ms = 0, steps = { { status = "WAITING_TO_RESUME" }, { status = "EXECUTING" },
                                       { finish = "CRASHED", error = { type = "STRING_ERROR", raw = "oom" } } } },
}

---------------------------------------------------------------------------------------------------

describe("management API", function()
  local srv

  setup(function()
    srv = helper.start_server { hold_ms = 1500 }
  end)

  teardown(function()
    srv:stop()
  end)

  before_each(function()
    srv:reset()
    srv:set_backend("electric")
    define(srv, TASKS)
  end)

  describe("trigger", function()
    it("answers 200 {id, isCached} with the handle's JWT, its claims and the rate-limit headers", function()
      local res = trigger(srv, "hello-world", '{"payload":{"b":1,"a":[]}}')
      assert.are.equal(200, res.status, res.body)
      assert.are.equal('{"id":"' .. res.json.id .. '","isCached":false}', res.body)
      assert.matches("^run_", res.json.id)
      local claims = verify_jwt(res.headers["x-trigger-jwt"], srv.secret_key)
      assert.are.equal(srv.environment_id, claims.sub)
      assert.is_true(claims.pub)
      assert.are.equal("https://id.trigger.dev", claims.iss)
      assert.are.equal("https://api.trigger.dev", claims.aud)
      assert.are.equal(claims.iat + 3600, claims.exp)
      assert.are.same({ "read:runs:" .. res.json.id, "write:inputStreams:" .. res.json.id }, claims.scopes)
      local shown = cjson.decode(res.headers["x-trigger-jwt-claims"])
      assert.are.same({ sub = claims.sub, pub = true, scopes = claims.scopes }, shown)
      assert.are.equal("750", res.headers["x-ratelimit-limit"])
      assert.are.equal("749", res.headers["x-ratelimit-remaining"])
      assert.is_true(tonumber(res.headers["x-ratelimit-reset"]) > os.time() * 1000)
      -- the payload is stored as JSON.stringify would (an empty array stays one, keys in order)
      assert.are.equal('{"b":1,"a":[]}', srv:get_run(res.json.id).payload)
    end)

    it("makes a run the realtime feeds show, and the handle's token follows it (both dialects)", function()
      for _, backend in ipairs({ "electric", "native" }) do
        srv:set_backend(backend)
        local res = trigger(srv, "hello-world", { payload = { n = 1 }, options = { tags = { "t:1" } } })
        local token = res.headers["x-trigger-jwt"]
        local row = follow(srv, res.json.id, final, token)
        assert.are.equal("COMPLETED_SUCCESSFULLY", row.status, backend)
        assert.are.same({ message = "hi" }, cjson.decode(row.output))
        assert.are.equal('{"progress":0.5}', (row.metadata:gsub(" ", "")))
        assert.are_not.equal(cjson.null, row.startedAt)
        -- the same token reads it back, but cannot cancel it
        local got = retrieve(srv, res.json.id, { token = token })
        assert.are.equal(200, got.status)
        assert.are.equal("COMPLETED", got.json.status)
        assert.are.same({ message = "hi" }, got.json.output)
        local cancel = api(srv, "POST", "/api/v2/runs/" .. res.json.id .. "/cancel", nil, { token = token })
        assert.are.equal(403, cancel.status)
      end
    end)

    it("streams a task's chunks on the run's realtime stream", function()
      local res = trigger(srv, "stream-story", { payload = {} })
      local row = follow(srv, res.json.id, final)
      assert.are.equal("COMPLETED_SUCCESSFULLY", row.status)
      assert.matches("default", row.realtimeStreams)
      local stream = srv:get_stream(res.json.id, "default")
      local chunks = {}
      for _, r in ipairs(stream.records) do chunks[#chunks + 1] = cjson.decode(r.body).data end
      assert.are.same({ "a ", "b ", "c" }, chunks)
    end)

    it("ends failed and crashed runs with their errors, and shows them as retrieve does", function()
      local failed = trigger(srv, "always-fails", {}).json.id
      local crashed = trigger(srv, "crash", {}).json.id
      assert.are.equal("COMPLETED_WITH_ERRORS", follow(srv, failed, final).status)
      assert.are.equal("CRASHED", follow(srv, crashed, final).status)
      local f = retrieve(srv, failed).json
      assert.are.equal("FAILED", f.status)
      assert.are.same({ message = "boom", name = "Error", stackTrace = "Error: boom" }, f.error)
      assert.is_nil(f.output)
      assert.is_true(f.isCompleted and f.isFailed and not f.isSuccess)
      local c = retrieve(srv, crashed).json
      assert.are.same({ message = "oom" }, c.error)
    end)

    it("accepts an unknown task id: the run waits (QUEUED in dev) until its TTL expires it", function()
      local res = trigger(srv, "no-such-task", { options = { ttl = "1s" } })
      assert.are.equal(200, res.status)
      local got = retrieve(srv, res.json.id).json
      assert.are.equal("QUEUED", got.status)
      assert.is_true(got.isQueued)
      assert.are.equal("1s", got.ttl)
      local row = follow(srv, res.json.id, final)
      assert.are.equal("EXPIRED", row.status)
      assert.are_not.equal(cjson.null, row.expiredAt)
      got = retrieve(srv, res.json.id).json
      assert.are.equal("EXPIRED", got.status)
      -- the management flags leave EXPIRED out of isCompleted/isFailed (§4.3)
      for _, flag in ipairs({ "isQueued", "isExecuting", "isWaiting", "isCompleted", "isSuccess", "isFailed", "isCancelled" }) do
        assert.is_false(got[flag], flag)
      end
      assert.is_string(got.expiredAt)
    end)

    it("gives an unknown task 10m of TTL in development, and no TTL for ttl 0; a number is seconds", function()
      assert.are.equal("10m", retrieve(srv, trigger(srv, "nope", {}).json.id).json.ttl)
      assert.is_nil(retrieve(srv, trigger(srv, "nope", { options = { ttl = 0 } }).json.id).json.ttl)
      assert.are.equal("30s", retrieve(srv, trigger(srv, "nope", { options = { ttl = 30 } }).json.id).json.ttl)
    end)

    it("delays a run with a duration or a future date; ignores a bad or past delay", function()
      local delayed = trigger(srv, "hello-world", { options = { delay = "1h" } }).json.id
      local got = retrieve(srv, delayed).json
      assert.are.equal("DELAYED", got.status)
      assert.is_string(got.delayedUntil)
      local future = os.date("!%Y-%m-%dT%H:%M:%S.000Z", os.time() + 7200)
      assert.are.equal("DELAYED", retrieve(srv, trigger(srv, "nope", { options = { delay = future } }).json.id).json.status)
      for _, bad in ipairs({ "soon", "2001-01-01T00:00:00Z", 5 }) do
        local id = trigger(srv, "nope", { options = { delay = bad } }).json.id
        assert.are.equal("QUEUED", retrieve(srv, id).json.status, tostring(bad))
      end
      -- a short delay ends on its own, and the task then runs
      local soon = trigger(srv, "hello-world", { options = { delay = "1s" } }).json.id
      local _, seen = follow(srv, soon, final)
      assert.are.same({ "DELAYED" }, { seen[1] })
      assert.are.equal("COMPLETED_SUCCESSFULLY", seen[#seen])
    end)

    it("debounces: a second trigger with the key pushes the delayed run back; bad durations are 422", function()
      local opts = { options = { debounce = { key = "d", delay = "1h" } } }
      local first = trigger(srv, "nope", opts).json.id
      local before = retrieve(srv, first).json
      assert.are.equal("DELAYED", before.status)
      local again = trigger(srv, "nope", opts)
      assert.are.equal(first, again.json.id)
      assert.is_true(retrieve(srv, first).json.delayedUntil >= before.delayedUntil)
      local res = trigger(srv, "nope", { options = { debounce = { key = "d", delay = "soon" } } })
      assert.are.equal(422, res.status)
      assert.are.equal("Debounce requires a valid delay duration. Provided: soon", res.json.error)
      res = trigger(srv, "nope", { options = { debounce = { key = "d", delay = "1h", maxDelay = "1m" } } })
      assert.are.equal(422, res.status)
    end)

    it("accepts what cloud accepts silently: unknown keys, any content type, a numeric concurrencyKey", function()
      local res = trigger(srv, "nope", { payload = 1, whatever = true,
        options = { unknownOption = 1, concurrencyKey = 42, idempotencyKeyTTL = "forever", tags = "single" } },
        { headers = { ["Content-Type"] = "text/plain" } })
      assert.are.equal(200, res.status, res.body)
      local got = retrieve(srv, res.json.id).json
      assert.are.same({ "single" }, got.tags)
    end)

    it("drops blank tags after counting them and sorts them in retrieve", function()
      local id = trigger(srv, "nope", { options = { tags = { "b", "", "a", "  " } } }).json.id
      assert.are.same({ "a", "b" }, retrieve(srv, id).json.tags)
    end)

    it("records the management headers and the body in the request log", function()
      trigger(srv, "nope", { payload = { x = 1 } }, { headers = { ["x-trigger-branch"] = "feature-x",
        ["trigger-version"] = "4.8.3", ["x-trigger-source"] = "sdk" } })
      local log = srv:stats().log
      local e = log[#log]
      assert.are.equal("/api/v1/tasks/nope/trigger", e.path)
      assert.are.equal("feature-x", e.headers["x-trigger-branch"])
      assert.are.equal("4.8.3", e.headers["trigger-version"])
      assert.are.equal('{"payload":{"x":1}}', e.body)
      assert.is_true(e.headers.has_authorization)
      assert.is_nil(e.headers.authorization)
    end)

    it("offloads an inline JSON payload over 512 KiB and retrieve gives its presigned URL", function()
      local big = string.rep("x", 600000)
      local res = trigger(srv, "nope", { payload = { big = big } })
      assert.are.equal(200, res.status)
      local row = srv:get_run(res.json.id)
      assert.are.equal("application/store", row.payloadType)
      local got = retrieve(srv, res.json.id).json
      assert.is_nil(got.payload)
      local url = got.payloadPresignedUrl
      assert.matches("X%-Amz%-Expires=300", url)
      local blob = request(srv.port, "GET", url:match("^https?://[^/]+(/.*)$"), {})
      assert.are.equal(200, blob.status)
      assert.are.equal("application/json", blob.headers["content-type"])
      assert.are.equal(big, cjson.decode(blob.body).big)
    end)
  end)

  describe("the request pipeline's errors (§1.3, §6)", function()
    it("401 problem+json without an Authorization header", function()
      local res = request(srv.port, "POST", "/api/v1/tasks/x/trigger", { ["Content-Type"] = "application/json" }, "{}")
      assert.are.equal(401, res.status)
      assert.matches("^application/problem%+json", res.headers["content-type"])
      assert.are.same({ title = "Unauthorized", status = 401,
        type = "https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/401",
        detail = "No authorization header provided", error = "No authorization header provided" }, res.json)
    end)

    it("401 with the management wording for bad credentials", function()
      local function err_of(token)
        local res = trigger(srv, "x", {}, { token = token })
        assert.are.equal(401, res.status)
        return res.json.error
      end
      assert.are.equal("Invalid API key", err_of("tr_dev_wrong"))
      assert.are.equal("Invalid API key", err_of("tr_pat_0123456789"))
      assert.are.equal("Public Access Token is invalid", err_of(public_token(srv, { "trigger:tasks" }, { key = "other" })))
      assert.are.equal("Public Access Token is invalid", err_of(public_token(srv, { "trigger:tasks" }, { exp = os.time() - 5 })))
      assert.are.equal("Invalid Public Access Token", err_of(public_token(srv, { "trigger:tasks" }, { sub = "env_other" })))
    end)

    it("413 when Content-Length is missing (a chunked body) or over 3 MiB", function()
      local res = trigger(srv, "x", "{}", { chunked = true })
      assert.are.equal(413, res.status)
      assert.are.same({ error = "Request body too large" }, res.json)
      res = trigger(srv, "x", '{"payload":"' .. string.rep("y", 3145728) .. '"}')
      assert.are.equal(413, res.status)
      assert.are.same({ error = "Request body too large" }, res.json)
    end)

    it("400 Headers Error with zod's details", function()
      local res = trigger(srv, "x", {}, { headers = { ["idempotency-key"] = string.rep("k", 2049) } })
      assert.are.equal(400, res.status)
      assert.are.equal("Headers Error", res.json.error)
      assert.are.same({ code = "too_big", maximum = 2048, type = "string", inclusive = true, exact = false,
        message = "idempotency-key must be 2048 characters or less", path = { "idempotency-key" } }, res.json.details[1])
      res = trigger(srv, "x", {}, { headers = { ["x-trigger-engine-version"] = "V3" } })
      assert.are.equal(400, res.status)
      assert.are.equal("Headers Error", res.json.error)
    end)

    it("400 for an empty body, a body that is not JSON, and JSON null", function()
      assert.are.same({ error = "Request body is empty" }, trigger(srv, "x", "").json)
      assert.are.same({ error = "Invalid JSON" }, trigger(srv, "x", "{").json)
      assert.are.same({ error = "Invalid JSON" }, trigger(srv, "x", "null").json)
      assert.are.equal(400, trigger(srv, "x", "false").status)
    end)

    it("400 Validation error, worded as zod-validation-error words it", function()
      local cases = {
        { { tags = { string.rep("t", 129) } }, 'Validation error: Tags must be less than 128 characters at "options.tags[0]"' },
        { { machine = "xl" }, "Validation error: Invalid enum value. Expected 'micro' | 'small-1x' | 'small-2x' | "
          .. "'medium-1x' | 'medium-2x' | 'large-1x' | 'large-2x', received 'xl' at \"options.machine\"" },
        { { maxAttempts = 1.5 }, 'Validation error: Expected integer, received float at "options.maxAttempts"' },
        { { queue = "q" }, 'Validation error: Expected object, received string at "options.queue"' },
        { { ttl = -1 }, 'Validation error: Number must be greater than or equal to 0 at "options.ttl"' },
        { { idempotencyKey = string.rep("k", 2049) },
          'Validation error: idempotencyKey must be 2048 characters or less at "options.idempotencyKey"' },
        { { payloadType = "application/store" },
          'Validation error: payload must be a non-empty string when options.payloadType is application/store at "payload"' },
        { { test = "yes" }, 'Validation error: Expected boolean, received string at "options.test"' },
      }
      for _, case in ipairs(cases) do
        local res = trigger(srv, "x", { options = case[1] })
        assert.are.equal(400, res.status, res.body)
        assert.are.same({ error = case[2] }, res.json)
      end
      local res = trigger(srv, "x", { options = "nope" })
      assert.are.same({ error = 'Validation error: Expected object, received string at "options"' }, res.json)
    end)

    it("422 for more than 10 tags (counted before blank ones are dropped)", function()
      local tags = {}
      for i = 1, 10 do tags[i] = "t" .. i end
      tags[11] = ""
      local res = trigger(srv, "x", { options = { tags = tags } })
      assert.are.equal(422, res.status)
      assert.are.same({ error = "Runs can only have 10 tags, you're trying to set 11." }, res.json)
    end)

    it("413 for metadata over 256 KiB", function()
      local res = trigger(srv, "x", { options = { metadata = { s = string.rep("m", 262144) } } })
      assert.are.equal(413, res.status)
      assert.are.same({ error = "Metadata exceeds maximum size of 262144 bytes" }, res.json)
    end)

    it("500 for a lockToVersion no version has (422 with the V2 engine header)", function()
      local res = trigger(srv, "x", { options = { lockToVersion = "19990101.1" } })
      assert.are.equal(500, res.status)
      assert.are.same({ error = "Something went wrong" }, res.json)
      res = trigger(srv, "x", { options = { lockToVersion = "19990101.1" } },
                    { headers = { ["x-trigger-engine-version"] = "V2" } })
      assert.are.equal(422, res.status)
      assert.are.equal(200, trigger(srv, "x", { options = { lockToVersion = "20260101.1" } }).status)
    end)

    it("422 once the environment's queue is full", function()
      config(srv, { queue_size_limit = 1 })
      finally(function() config(srv, { queue_size_limit = cjson.null }) end)
      assert.are.equal(200, trigger(srv, "nope", {}).status)
      local res = trigger(srv, "nope", {})
      assert.are.equal(422, res.status)
      assert.are.equal("Cannot trigger nope as the queue size limit for this environment has been reached. "
        .. "The maximum size is 1", res.json.error)
    end)

    it("403 with code/param/type for a token without the scope; 405 for GET", function()
      local res = trigger(srv, "hello-world", {}, { token = public_token(srv, { "trigger:tasks:other" }) })
      assert.are.equal(403, res.status)
      assert.are.same({ error = "Unauthorized", code = "unauthorized", param = "access_token", type = "authorization" },
                      res.json)
      local scoped = public_token(srv, { "trigger:tasks:hello-world" })
      assert.are.equal(200, trigger(srv, "hello-world", {}, { token = scoped }).status)
      assert.are.equal(200, trigger(srv, "hello-world", {}, { token = public_token(srv, { "trigger:tasks" }) }).status)
      local get = api(srv, "GET", "/api/v1/tasks/x/trigger")
      assert.are.equal(405, get.status)
      assert.are.equal("", get.body)
    end)

    it("403 {error} for a parentRunId the token cannot write; the secret key may name one", function()
      local res = trigger(srv, "x", { options = { parentRunId = "run_parent" } },
                          { token = public_token(srv, { "trigger:tasks" }) })
      assert.are.equal(403, res.status)
      assert.are.same({ error = "Unauthorized" }, res.json)
      assert.are.equal(200, trigger(srv, "x", { options = { parentRunId = "run_parent" } }).status)
    end)

    it("401 for a preview key without x-trigger-branch", function()
      local preview = helper.start_server { secret_key = "tr_preview_local_key", hold_ms = 500 }
      finally(function() preview:stop() end)
      local res = trigger(preview, "x", {})
      assert.are.equal(401, res.status)
      assert.are.same({ error = "x-trigger-branch header required for preview env" }, res.json)
      res = trigger(preview, "x", {}, { headers = { ["x-trigger-branch"] = "feature" } })
      assert.are.equal(200, res.status)
      -- outside development an unknown task waits for a version
      local branch = { headers = { ["x-trigger-branch"] = "feature" } }
      assert.are.equal("PENDING_VERSION", retrieve(preview, res.json.id, branch).json.status)
      assert.are.equal("WAITING_FOR_DEPLOY", retrieve(preview, res.json.id, { headers = {
        ["x-trigger-branch"] = "feature", ["x-trigger-api-version"] = false } }).json.status)
    end)

    it("429 from the API limiter with x-ratelimit-* (reset in ms), per environment and per token", function()
      config(srv, { rate_limit = { limit = 2, refill = 2, interval_ms = 600000 },
                    jwt_rate_limit = { limit = 1, window_ms = 600000 } })
      finally(function() config(srv, { rate_limit = { limit = 750, refill = 250, interval_ms = 10000 },
                                       jwt_rate_limit = { limit = 60, window_ms = 60000 } }) end)
      srv:reset() -- empty buckets
      assert.are.equal(200, trigger(srv, "nope", {}).status)
      local last = trigger(srv, "nope", {})
      assert.are.equal("0", last.headers["x-ratelimit-remaining"])
      local res = trigger(srv, "nope", {})
      assert.are.equal(429, res.status)
      assert.matches("^application/problem%+json", res.headers["content-type"])
      assert.are.equal("Rate Limit Exceeded", res.json.title)
      assert.are.equal(res.json.detail, res.json.error)
      assert.are.equal(res.headers["x-ratelimit-reset"], ("%d"):format(res.json.reset))
      assert.is_nil(res.headers["retry-after"])
      local token = public_token(srv, { "read:runs" })
      assert.are.equal(200, api(srv, "GET", "/api/v1/runs", nil, { token = token }).status)
      assert.are.equal(429, api(srv, "GET", "/api/v1/runs", nil, { token = token }).status)
      local other = public_token(srv, { "read:runs" }, { iat = 1 })
      assert.are.equal(200, api(srv, "GET", "/api/v1/runs", nil, { token = other }).status)
    end)
  end)

  describe("idempotency (§2.4, §2.6)", function()
    it("the same key gives the same run, isCached, with a fresh token; the header beats the body", function()
      local first = trigger(srv, "nope", { options = { idempotencyKey = "k1",
        idempotencyKeyOptions = { key = "user-k1", scope = "run" } } })
      local again = trigger(srv, "nope", { options = { idempotencyKey = "k1", tags = { "ignored" } } })
      assert.are.equal(first.json.id, again.json.id)
      assert.is_true(again.json.isCached)
      assert.are.same({ "read:runs:" .. first.json.id, "write:inputStreams:" .. first.json.id },
                      verify_jwt(again.headers["x-trigger-jwt"], srv.secret_key).scopes)
      assert.are.same({}, retrieve(srv, first.json.id).json.tags)
      assert.are.equal("user-k1", retrieve(srv, first.json.id).json.idempotencyKey)
      -- another task, another key space
      assert.are_not.equal(first.json.id, trigger(srv, "nope2", { options = { idempotencyKey = "k1" } }).json.id)
      -- the idempotency-key header beats the body
      local by_header = trigger(srv, "nope", { options = { idempotencyKey = "other" } },
                                { headers = { ["idempotency-key"] = "k1" } })
      assert.are.equal(first.json.id, by_header.json.id)
    end)

    it("a failed run loses its key; a completed or canceled one keeps it", function()
      local failed = trigger(srv, "always-fails", { options = { idempotencyKey = "f" } }).json.id
      follow(srv, failed, final)
      local next_run = trigger(srv, "always-fails", { options = { idempotencyKey = "f" } })
      assert.are_not.equal(failed, next_run.json.id)
      assert.is_false(next_run.json.isCached)
      assert.are.equal(cjson.null, srv:get_run(failed).idempotencyKey)
      local done = trigger(srv, "hello-world", { options = { idempotencyKey = "c" } }).json.id
      follow(srv, done, final)
      assert.are.equal(done, trigger(srv, "hello-world", { options = { idempotencyKey = "c" } }).json.id)
      local canceled = trigger(srv, "nope", { options = { idempotencyKey = "x" } }).json.id
      assert.are.equal(200, api(srv, "POST", "/api/v2/runs/" .. canceled .. "/cancel").status)
      assert.are.equal(canceled, trigger(srv, "nope", { options = { idempotencyKey = "x" } }).json.id)
    end)

    it("a key expires after its idempotencyKeyTTL", function()
      local first = trigger(srv, "nope", { options = { idempotencyKey = "ttl", idempotencyKeyTTL = "1s" } }).json.id
      socket.sleep(1.1) -- the key's lifetime passing is the point: no assertion on how long anything took
      assert.are_not.equal(first, trigger(srv, "nope", { options = { idempotencyKey = "ttl" } }).json.id)
    end)

    it("request idempotency is off by default (a retried trigger duplicates) and can be switched on", function()
      local uuid = "3b241101-e2bb-4255-8caf-4136c566a962"
      local h = { headers = { ["x-trigger-request-idempotency-key"] = uuid } }
      local a, b = trigger(srv, "nope", {}, h), trigger(srv, "nope", {}, h)
      assert.are_not.equal(a.json.id, b.json.id)
      config(srv, { request_idempotency = true })
      finally(function() config(srv, { request_idempotency = false }) end)
      local c, d = trigger(srv, "nope", {}, h), trigger(srv, "nope", {}, h)
      assert.are.equal(c.json.id, d.json.id)
      assert.is_false(d.json.isCached)
    end)

    it("resets a key with POST /api/v1/idempotencyKeys/{key}/reset", function()
      local first = trigger(srv, "nope", { options = { idempotencyKey = "r" } }).json.id
      local res = api(srv, "POST", "/api/v1/idempotencyKeys/r/reset", { taskIdentifier = "nope" })
      assert.are.equal(200, res.status)
      assert.are_not.equal(first, trigger(srv, "nope", { options = { idempotencyKey = "r" } }).json.id)
    end)
  end)

  describe("retrieve, cancel", function()
    it("404 Not found with x-should-retry: true; 403 for a token that does not reach the run", function()
      local res = retrieve(srv, "run_doesnotexist")
      assert.are.equal(404, res.status)
      assert.are.same({ error = "Not found" }, res.json)
      assert.are.equal("true", res.headers["x-should-retry"])
      -- a loader looks the run up first: a token without scope gets 404 for a missing run
      assert.are.equal(404, retrieve(srv, "run_doesnotexist", { token = public_token(srv, {}) }).status)
      local id = trigger(srv, "nope", { options = { tags = { "mine" } } }).json.id
      res = retrieve(srv, id, { token = public_token(srv, { "read:runs:run_other" }) })
      assert.are.equal(403, res.status)
      assert.are.equal("unauthorized", res.json.code)
      assert.are.equal(200, retrieve(srv, id, { token = public_token(srv, { "read:tags:mine" }) }).status)
      assert.are.equal(200, retrieve(srv, id, { token = public_token(srv, { "read:tasks:nope" }) }).status)
    end)

    it("has every field of §4.2, output only when COMPLETED, legacy names without the version header", function()
      local id = trigger(srv, "hello-world", { payload = { p = 1 }, options = { tags = { "z", "a" } } }).json.id
      follow(srv, id, final)
      local got = retrieve(srv, id).json
      for _, k in ipairs({ "id", "status", "taskIdentifier", "createdAt", "updatedAt", "startedAt", "finishedAt",
                           "costInCents", "baseCostInCents", "durationMs", "isTest", "depth", "tags", "isQueued",
                           "isExecuting", "isWaiting", "isCompleted", "isSuccess", "isFailed", "isCancelled",
                           "triggerFunction", "attemptCount", "attempts", "relatedRuns", "payload", "output", "version" }) do
        assert.is_not_nil(got[k], k)
      end
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", got.createdAt)
      assert.are.same({ "a", "z" }, got.tags)
      assert.are.same({ children = {} }, got.relatedRuns)
      assert.are.same({ p = 1 }, got.payload)
      assert.are.equal(1, got.attemptCount)
      assert.are.equal("trigger", got.triggerFunction)
      assert.is_true(got.isCompleted and got.isSuccess and not got.isFailed)
      -- without x-trigger-api-version: legacy names (DEQUEUED shows as EXECUTING)
      local waiting = trigger(srv, "nope", {}).json.id
      srv:update_run(waiting, { status = "DEQUEUED" })
      assert.are.equal("DEQUEUED", retrieve(srv, waiting).json.status)
      assert.are.equal("EXECUTING", retrieve(srv, waiting, { headers = { ["x-trigger-api-version"] = false } }).json.status)
      srv:update_run(waiting, { status = "WAITING_TO_RESUME" })
      local w = retrieve(srv, waiting).json
      assert.are.equal("WAITING", w.status)
      assert.is_true(w.isWaiting)
      assert.are.equal("FROZEN", retrieve(srv, waiting, { headers = { ["x-trigger-api-version"] = false } }).json.status)
    end)

    it("cancels a running run (CANCELED on the feed), answers 200 again once finished, 404 when unknown", function()
      local id = trigger(srv, "slow", {}).json.id
      follow(srv, id, status_is("EXECUTING"))
      local res = api(srv, "POST", "/api/v2/runs/" .. id .. "/cancel")
      assert.are.equal(200, res.status)
      assert.are.same({ id = id }, res.json)
      assert.are.equal("CANCELED", follow(srv, id, final).status)
      local got = retrieve(srv, id).json
      assert.are.equal("CANCELED", got.status)
      assert.is_true(got.isCancelled and got.isCompleted and got.isFailed)
      assert.are.equal(200, api(srv, "POST", "/api/v2/runs/" .. id .. "/cancel").status)
      assert.are.equal("CANCELED", srv:get_run(id).status)
      res = api(srv, "POST", "/api/v2/runs/run_unknown/cancel")
      assert.are.equal(404, res.status)
      assert.are.same({ error = "Resource not found" }, res.json)
      assert.is_nil(res.headers["x-should-retry"])
      assert.are.equal(200, api(srv, "POST", "/api/v2/runs/" .. id .. "/cancel", nil,
        { token = public_token(srv, { "write:runs:" .. id }) }).status)
    end)

    it("times a run out after its maxDuration", function()
      local id = trigger(srv, "slow", { options = { maxDuration = 1 } }).json.id -- clamped to 5 s
      local row = follow(srv, id, final)
      assert.are.equal("TIMED_OUT", row.status)
      local got = retrieve(srv, id).json
      assert.are.equal("TIMED_OUT", got.status)
      assert.are.equal("trigger.dev internal error (MAX_DURATION_EXCEEDED)", got.error.message)
    end)
  end)

  describe("list (§5.3)", function()
    it("pages newest first with opaque cursors, both ways", function()
      local ids = {}
      for i = 1, 5 do ids[i] = srv:create_run { taskIdentifier = "listed", createdAt = 1000 * i + os.time() * 1000 - 60000 } end
      local seen, cursor, pages = {}, nil, 0
      repeat
        local res = api(srv, "GET", "/api/v1/runs?page%5Bsize%5D=2" .. (cursor and ("&page%5Bafter%5D=" .. cursor) or ""))
        assert.are.equal(200, res.status, res.body)
        pages = pages + 1
        for _, r in ipairs(res.json.data) do seen[#seen + 1] = r.id end
        cursor = res.json.pagination.next
        if pages > 1 then assert.is_string(res.json.pagination.previous) end
      until not cursor
      assert.are.same({ ids[5], ids[4], ids[3], ids[2], ids[1] }, seen)
      assert.are.equal(3, pages)
      local last = api(srv, "GET", "/api/v1/runs?page%5Bsize%5D=2&page%5Bafter%5D=" ..
        api(srv, "GET", "/api/v1/runs?page%5Bsize%5D=2").json.pagination.next)
      local back = api(srv, "GET", "/api/v1/runs?page%5Bsize%5D=2&page%5Bbefore%5D=" .. last.json.pagination.previous)
      assert.are.same({ ids[5], ids[4] }, { back.json.data[1].id, back.json.data[2].id })
      local item = back.json.data[1]
      assert.are.same({ id = srv.environment_id, name = "dev" }, item.env)
      assert.are.equal("STANDARD", item.taskKind)
      assert.is_nil(item.payload)
      assert.is_nil(item.relatedRuns)
    end)

    it("filters by task, tag, status, batch and test; the last of a repeated parameter wins", function()
      local a = trigger(srv, "nope", { options = { tags = { "red" } } }).json.id
      local b = trigger(srv, "other", { options = { tags = { "blue" }, test = true } }).json.id
      local function ids(query)
        local res = api(srv, "GET", "/api/v1/runs?" .. query)
        assert.are.equal(200, res.status, res.body)
        local out = {}
        for _, r in ipairs(res.json.data) do out[#out + 1] = r.id end
        table.sort(out)
        return out
      end
      assert.are.same({ a }, ids("filter%5BtaskIdentifier%5D=nope"))
      assert.are.same({ b }, ids("filter%5Btag%5D=blue"))
      assert.are.same({ a }, ids("filter%5BisTest%5D=false"))
      assert.are.same({ b }, ids("filter%5BtaskIdentifier%5D=nope&filter%5BtaskIdentifier%5D=other"))
      local both = { a, b }
      table.sort(both)
      assert.are.same(both, ids("filter%5Bstatus%5D=QUEUED,EXECUTING"))
      assert.are.same({}, ids("filter%5Bstatus%5D=COMPLETED"))
    end)

    it("applies a 7-day window unless a time filter says otherwise", function()
      local old = srv:create_run { createdAt = os.time() * 1000 - 8 * 86400000 }
      local res = api(srv, "GET", "/api/v1/runs")
      assert.are.equal(0, #res.json.data)
      res = api(srv, "GET", "/api/v1/runs?filter%5BcreatedAt%5D%5Bperiod%5D=30d")
      assert.are.equal(old, res.json.data[1].id)
      res = api(srv, "GET", "/api/v1/runs?filter%5BcreatedAt%5D%5Bfrom%5D=0")
      assert.are.equal(old, res.json.data[1].id)
    end)

    it("400 for page[size] over 100, unknown statuses and a bad isTest; 403 without read scope", function()
      local res = api(srv, "GET", "/api/v1/runs?page%5Bsize%5D=101")
      assert.are.equal(400, res.status)
      assert.are.equal("Query Error", res.json.error)
      assert.are.same({ code = "too_big", maximum = 100, type = "number", inclusive = true, exact = false,
        message = "Number must be less than or equal to 100", path = { "page[size]" } }, res.json.details[1])
      res = api(srv, "GET", "/api/v1/runs?filter%5Bstatus%5D=DONE")
      assert.are.equal(400, res.status)
      assert.are.same({ error = "Invalid status values: DONE" }, res.json)
      assert.are.equal(400, api(srv, "GET", "/api/v1/runs?filter%5BisTest%5D=maybe").status)
      assert.are.equal(403, api(srv, "GET", "/api/v1/runs", nil, { token = public_token(srv, { "read:runs:run_x" }) }).status)
      assert.are.equal(200, api(srv, "GET", "/api/v1/runs?filter%5BtaskIdentifier%5D=a", nil,
        { token = public_token(srv, { "read:tasks:a" }) }).status)
    end)
  end)

  describe("batches (§3)", function()
    local function create(body, opts)
      return api(srv, "POST", "/api/v3/batches", body, opts)
    end
    local function items(id, lines, opts)
      opts = opts or {}
      opts.headers = opts.headers or { ["Content-Type"] = "application/x-ndjson" }
      local text = {}
      for i, l in ipairs(lines) do text[i] = type(l) == "string" and l or cjson.encode(l) end
      return api(srv, "POST", "/api/v3/batches/" .. id .. "/items", table.concat(text, "\n") .. "\n", opts)
    end

    it("phase 1: 202 {id, runCount, isCached} and a read:batch token; phase 2 seals once every index came", function()
      local res = create({ runCount = 3, taskIdentifiers = { "hello-world" } })
      assert.are.equal(202, res.status, res.body)
      local id = res.json.id
      assert.matches("^batch_", id)
      assert.are.equal(3, res.json.runCount)
      assert.is_false(res.json.isCached)
      assert.are.same({ "read:batch:" .. id }, verify_jwt(res.headers["x-trigger-jwt"], srv.secret_key).scopes)
      assert.are.same({ sub = srv.environment_id, pub = true }, cjson.decode(res.headers["x-trigger-jwt-claims"]))
      local part = items(id, { { index = 0, task = "hello-world", payload = { n = 0 } },
                               { index = 0, task = "hello-world", payload = { n = 0 } } })
      assert.are.equal(200, part.status, part.body)
      assert.are.same({ id = id, itemsAccepted = 1, itemsDeduplicated = 1, sealed = false, enqueuedCount = 1,
                        expectedCount = 3, runCount = 3 }, part.json)
      local pending = api(srv, "GET", "/api/v2/batches/" .. id)
      assert.are.equal("PENDING", pending.json.status)
      assert.are.same({}, pending.json.runs)
      local rest = items(id, { { index = 1, task = "hello-world", payload = { n = 1 } },
                               { index = 2, task = "echo", payload = { n = 2 }, options = { tags = { "b" } } } })
      assert.are.same({ id = id, itemsAccepted = 2, itemsDeduplicated = 0, sealed = true, runCount = 3 }, rest.json)
      -- the runs come on the realtime batch feed; batch retrieve lists them once processing ends
      local token = res.headers["x-trigger-jwt"]
      local rows, handle, offset = {}, nil, "-1"
      local headers = { Authorization = "Bearer " .. token, ["x-trigger-electric-version"] = "1.0.0-beta.1",
                        ["x-trigger-api-version"] = API_VERSION }
      for _ = 1, 200 do
        local target = "/realtime/v1/batches/" .. id .. "?offset=" .. offset
          .. (handle and ("&handle=" .. handle .. "&live=true") or "")
        local r = request(srv.port, "GET", target, headers)
        assert.are.equal(200, r.status, r.body)
        handle, offset = r.headers["electric-handle"], r.headers["electric-offset"]
        for _, m in ipairs(r.json) do
          if m.value and m.value.id then
            rows[m.value.id] = rows[m.value.id] or {}
            for k, v in pairs(m.value) do rows[m.value.id][k] = v end
          end
        end
        local done = 0
        for _, row in pairs(rows) do if FINAL[row.status] then done = done + 1 end end
        if done == 3 then break end
      end
      local got = api(srv, "GET", "/api/v2/batches/" .. id, nil, { token = token })
      assert.are.equal(200, got.status, got.body)
      assert.are.equal("COMPLETED", got.json.status)
      assert.are.equal(3, #got.json.runs)
      assert.is_string(got.json.processingCompletedAt)
      assert.are.same({}, got.json.processing.errors)
      local run2 = retrieve(srv, got.json.runs[3]).json
      assert.are.equal(id, run2.batchId)
      assert.are.equal("batchTrigger", run2.triggerFunction)
      assert.are.same({ n = 2 }, run2.output)
      -- re-sending to a sealed batch is harmless
      local again = items(id, { { index = 0, task = "hello-world" } })
      assert.are.same({ id = id, itemsAccepted = 0, itemsDeduplicated = 1, sealed = true, runCount = 3 }, again.json)
    end)

    it("phase 1 errors: 413 without Content-Length, 400 runCount, 422 duplicate key, 403 scope", function()
      assert.are.equal(413, create('{"runCount":1}', { chunked = true }).status)
      local res = create({ runCount = 1001 })
      assert.are.equal(400, res.status)
      assert.are.same({ error = "Batch runCount of 1001 exceeds maximum allowed of 1000." }, res.json)
      res = create({ runCount = 0 })
      assert.are.same({ error = 'Validation error: Number must be greater than 0 at "runCount"' }, res.json)
      assert.are.equal(202, create({ runCount = 1, idempotencyKey = "bk" }).status)
      res = create({ runCount = 1, idempotencyKey = "bk" })
      assert.are.equal(422, res.status)
      assert.are.same({ error = "Cannot create batch as it has already been created with the same idempotency key." }, res.json)
      local token = public_token(srv, { "batchTrigger:tasks:a" })
      assert.are.equal(403, create({ runCount = 1, taskIdentifiers = { "a", "b" } }, { token = token }).status)
      assert.are.equal(202, create({ runCount = 1, taskIdentifiers = { "a" } }, { token = token }).status)
    end)

    it("ends PARTIAL_FAILED with processing.errors for an item the trigger service refuses", function()
      local id = create({ runCount = 2 }).json.id
      local tags = {}
      for i = 1, 11 do tags[i] = "t" .. i end
      local res = items(id, { { index = 0, task = "nope" }, { index = 1, task = "nope", options = { tags = tags } } })
      assert.is_true(res.json.sealed)
      local got
      for _ = 1, 100 do -- processing runs on the server's loop: ask until it says it ended
        got = api(srv, "GET", "/api/v2/batches/" .. id).json
        if got.status ~= "PROCESSING" then break end
      end
      assert.are.equal("PARTIAL_FAILED", got.status)
      assert.are.equal(1, #got.runs)
      assert.are.same({ index = 1, taskIdentifier = "nope", errorCode = "UNPROCESSABLE",
                        error = "Runs can only have 10 tags, you're trying to set 11." }, got.processing.errors[1])
    end)

    it("429 from the batch limiter, one token per run, with Retry-After", function()
      config(srv, { batch_rate_limit = { limit = 3, refill = 1, interval_ms = 600000 } })
      finally(function() config(srv, { batch_rate_limit = { limit = 1200, refill = 100, interval_ms = 10000 } }) end)
      assert.are.equal(202, create({ runCount = 2 }).status)
      local res = create({ runCount = 2 })
      assert.are.equal(429, res.status)
      assert.matches("^Batch rate limit exceeded%. Limit resets at ", res.json.error)
      assert.is_true(tonumber(res.headers["retry-after"]) >= 1)
      assert.are.equal(202, create({ runCount = 1 }).status)
    end)

    it("phase 2 errors: 415 content type, 422 index/batch/item, 400 bad line, 403 scope", function()
      local id = create({ runCount = 2 }).json.id
      local res = items(id, { { index = 0, task = "a" } }, { headers = { ["Content-Type"] = "application/json" } })
      assert.are.equal(415, res.status)
      assert.are.same({ error = "Content-Type must be application/x-ndjson or application/ndjson" }, res.json)
      res = items(id, { { index = 2, task = "a" } })
      assert.are.equal(422, res.status)
      assert.are.same({ error = "Item index 2 exceeds batch runCount 2" }, res.json)
      res = items("batch_nope", { { index = 0, task = "a" } })
      assert.are.same({ error = "Batch batch_nope not found" }, res.json)
      assert.are.equal(422, res.status)
      res = items(id, { { index = 0, task = "a", options = { maxAttempts = "x" } } })
      assert.are.equal(422, res.status)
      assert.matches("^Invalid item at index 0: %[", res.json.error)
      assert.matches("Expected number, received string", res.json.error)
      res = items(id, { { index = 0, task = "a" }, "{oops" })
      assert.are.equal(400, res.status)
      assert.matches("^Invalid JSON at line 2: ", res.json.error)
      local token = public_token(srv, { "batchTrigger:tasks:a" })
      assert.are.equal(403, items(id, { { index = 0, task = "b" } }, { token = token,
        headers = { ["Content-Type"] = "application/x-ndjson" } }).status)
      res = api(srv, "GET", "/api/v2/batches/batch_nope")
      assert.are.equal(404, res.status)
      assert.are.equal("true", res.headers["x-should-retry"])
    end)
  end)

  describe("packets (§2.5)", function()
    it("presigns a PUT, stores the object, and a trigger with application/store reads it back", function()
      local res = api(srv, "PUT", "/api/v2/packets/trigger%2Fpacket_abc%2Fpayload.json")
      assert.are.equal(200, res.status, res.body)
      assert.are.equal("trigger/packet_abc/payload.json", res.json.storagePath)
      assert.is_nil(res.headers["x-ratelimit-limit"]) -- the presign routes are not rate limited
      local path = res.json.presignedUrl:match("^https?://[^/]+(/.*)$")
      local put = request(srv.port, "PUT", path, { ["Content-Type"] = "application/json" }, '{"big":true}')
      assert.are.equal(200, put.status)
      -- a URL signed for PUT does not read
      assert.are.equal(403, request(srv.port, "GET", path, {}).status)
      -- the signature's first digit changed (to another one: never the same digit again)
      local tampered = path:gsub("Signature=(%x)", function(d)
        return "Signature=" .. (d == "0" and "1" or "0")
      end)
      assert.are_not.equal(path, tampered)
      assert.are.equal(403, request(srv.port, "PUT", tampered, {}, "x").status)
      local id = trigger(srv, "echo", { payload = res.json.storagePath,
        options = { payloadType = "application/store", payloadSize = 12 } }).json.id
      local got = retrieve(srv, id).json
      assert.is_nil(got.payload)
      local blob = request(srv.port, "GET", got.payloadPresignedUrl:match("^https?://[^/]+(/.*)$"), {})
      assert.are.equal('{"big":true}', blob.body)
      assert.are.equal("application/json", blob.headers["content-type"])
      follow(srv, id, final)
      assert.is_string(retrieve(srv, id).json.outputPresignedUrl)
    end)

    it("takes the secret key only, and refuses a malformed path", function()
      local res = api(srv, "PUT", "/api/v2/packets/a.json", nil, { token = public_token(srv, { "admin" }) })
      assert.are.equal(401, res.status)
      assert.are.same({ error = "Invalid API key" }, res.json)
      res = api(srv, "PUT", "/api/v2/packets/..%2Fetc%2Fpasswd")
      assert.are.equal(400, res.status)
      assert.are.same({ error = "Invalid packet storage path" }, res.json)
    end)
  end)

  describe("faults (§6.10)", function()
    it("drops a trigger's answer after the run was made", function()
      srv:fault { kind = "drop_response", match = { path_prefix = "/api/v1/tasks/" } }
      local res = trigger(srv, "nope", { options = { tags = { "dropped" } } })
      assert.is_nil(res.status)
      local list = api(srv, "GET", "/api/v1/runs?filter%5Btag%5D=dropped")
      assert.are.equal(1, #list.json.data)
    end)

    it("fails an object PUT once, then takes it", function()
      local url = api(srv, "PUT", "/api/v2/packets/p%2Fa.json").json.presignedUrl:match("^https?://[^/]+(/.*)$")
      srv:fault { kind = "status", status = 503, match = { path_prefix = "/_blobs/p/" } }
      assert.are.equal(503, request(srv.port, "PUT", url, { ["Content-Type"] = "application/json" }, "1").status)
      assert.are.equal(200, request(srv.port, "PUT", url, { ["Content-Type"] = "application/json" }, "1").status)
    end)

    it("answers the API limiter's 429 and extra headers on /api routes", function()
      srv:fault { kind = "status", status = 429, reset_ms = 2000, match = { path_prefix = "/api/v3/runs/" } }
      local res = retrieve(srv, "run_x")
      assert.are.equal(429, res.status)
      local reset = tonumber(res.headers["x-ratelimit-reset"])
      assert.is_true(reset > os.time() * 1000)
      assert.are.equal(reset, math.floor(res.json.reset))
      srv:fault { kind = "status", status = 500, headers = { ["x-should-retry"] = "false" },
                  match = { path_prefix = "/api/v3/runs/" } }
      res = retrieve(srv, "run_x")
      assert.are.equal(500, res.status)
      assert.are.equal("false", res.headers["x-should-retry"])
      srv:fault { kind = "status", status = 404, count = 2, body = { error = "Not found" },
                  headers = { ["x-should-retry"] = "true" }, match = { path_prefix = "/api/v3/runs/" } }
      local id = trigger(srv, "nope", {}).json.id
      assert.are.equal(404, retrieve(srv, id).status)
      assert.are.equal(404, retrieve(srv, id).status)
      assert.are.equal(200, retrieve(srv, id).status)
    end)
  end)

  describe("with a state file", function()
    it("keeps keys, fields and the catalogue across a kill -9, and resumes waiting runs", function()
      local path = os.tmpname()
      os.remove(path)
      local s = helper.start_server { state_file = path, hold_ms = 1000 }
      finally(function() s:stop() os.remove(path) end)
      define(s, { quick = { queue_ms = 0, steps = { { output = 1 } } } })
      local first = trigger(s, "quick", { options = { idempotencyKey = "p", delay = "1s", tags = { "kept" } } })
      assert.are.equal("DELAYED", retrieve(s, first.json.id).json.status)
      s:restart()
      local again = trigger(s, "quick", { options = { idempotencyKey = "p" } })
      assert.are.equal(first.json.id, again.json.id)
      assert.is_true(again.json.isCached)
      assert.are.equal("COMPLETED_SUCCESSFULLY", follow(s, first.json.id, final).status)
    end)
  end)

  it("processes after a restart a batch that was sealed but not processed yet (in process)", function()
    local server = require "trigger_realtime_server"
    local path = os.tmpname()
    os.remove(path)
    finally(function() os.remove(path) end)
    local s1 = server.new { state_file = path }
    local id = s1:trigger_batch({ { task = "a", payload = 1 }, { task = "b", payload = 2 } })
    assert.are.equal("PROCESSING", s1.tasks.batches[id].status) -- its runs come on the next loop step
    assert.is_true(s1.persist:save())
    s1.closed = true -- gone without another save, as after a kill -9
    local s2 = server.new { state_file = path }
    local b = s2.tasks.batches[id]
    for _ = 1, 10 do
      if b.status ~= "PROCESSING" then break end
      s2:step(0.1)
    end
    assert.are.equal("COMPLETED", b.status)
    assert.are.equal("a", s2.store:find(b.runs[0]).row.taskIdentifier)
    assert.are.equal("2", s2.store:find(b.runs[1]).row.payload)
    s2:close()
  end)

  it("the demo scenario's catalogue runs hello-world, stream-story and always-fails", function()
    local demo = helper.start_server { scenario = "demo", hold_ms = 1000 }
    finally(function() demo:stop() end)
    local want = { ["hello-world"] = "COMPLETED_SUCCESSFULLY", ["stream-story"] = "COMPLETED_SUCCESSFULLY",
                   ["always-fails"] = "COMPLETED_WITH_ERRORS" }
    for task, status in pairs(want) do
      local id = trigger(demo, task, { payload = {} }).json.id
      assert.are.equal(status, follow(demo, id, final).status, task)
    end
    assert.are.same({ "always-fails", "echo", "hello-world", "stream-story" },
      (function()
        local names = {}
        for k in pairs(demo:admin("GET", "/_emulator/tasks").tasks) do names[#names + 1] = k end
        table.sort(names)
        return names
      end)())
  end)
end)
