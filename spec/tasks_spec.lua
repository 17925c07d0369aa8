-- trigger.tasks: option checks, the idempotency hash, what goes on the wire (a recording HTTP
-- server in a child process: every request's method, path, headers and body, answered from a
-- script), x-trigger-branch on every kind of request, and triggers against the local server.
local helper = require "spec.helper"
local cjson = require "cjson"
local trigger = require "trigger"
local tasks = require "trigger.tasks"
local json = require "trigger.json"

-- The recorder: answers the i-th request with the i-th scripted answer (the last one again
-- after the end), `{{base}}` in a body replaced by its own URL; writes one JSON line per request.
local RECORDER = [==[
local socket = require "socket"
local cjson = require "cjson"
local log_path, script_path = arg[1], arg[2]
local f = assert(io.open(script_path)); local script = cjson.decode(f:read("a")); f:close()
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local base = "http://127.0.0.1:" .. port
io.stdout:write("listening ", base, "\n"); io.stdout:flush()
local n = 0
while true do
  local c = server:accept()
  c:settimeout(10)
  local line = c:receive("*l")
  if line then
    local method, target = line:match("^(%u+) (%S+)")
    local headers, order = {}, {}
    while true do
      local h = c:receive("*l")
      if not h or h == "" then break end
      local k, v = h:match("^([^:]+):%s*(.-)%s*$")
      if k then headers[k:lower()] = v; order[#order + 1] = k:lower() end
    end
    local body = ""
    local len = tonumber(headers["content-length"] or "")
    if len and len > 0 then body = c:receive(len) or "" end
    n = n + 1
    local a = script[math.min(n, #script)]
    local lf = assert(io.open(log_path, "a"))
    lf:write(cjson.encode({ method = method, target = target, headers = headers, body = body,
      chunked = headers["transfer-encoding"] ~= nil }), "\n")
    lf:close()
    local rbody = (a.body or ""):gsub("{{base}}", base)
    local out = { "HTTP/1.1 " .. a.status .. " X", "Connection: close",
      "Content-Length: " .. #rbody }
    for k, v in pairs(a.headers or {}) do out[#out + 1] = k .. ": " .. v end
    c:send(table.concat(out, "\r\n") .. "\r\n\r\n" .. rbody)
  end
  c:close()
end
]==]

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- Start a recorder with these answers: -> { base_url, requests() → list, stop() }
local function recorder(answers)
  local dir = os.tmpname()
  os.remove(dir)
  assert(helper.sh("mkdir -p " .. dir))
  write(dir .. "/rec.lua", RECORDER)
  write(dir .. "/script.json", cjson.encode(answers))
  write(dir .. "/log", "")
  local pipe = assert(io.popen("exec sh -c 'echo $$; exec lua5.4 " .. dir .. "/rec.lua " .. dir
    .. "/log " .. dir .. "/script.json'", "r"))
  local pid = tonumber(pipe:read("l"))
  local base = pipe:read("l"):match("^listening (%S+)$")
  local r = { base_url = base }
  function r.requests()
    local out = {}
    for line in io.lines(dir .. "/log") do out[#out + 1] = cjson.decode(line) end
    return out
  end
  function r.stop()
    os.execute("kill " .. pid .. " 2>/dev/null")
    pipe:close()
    helper.sh("rm -rf " .. dir)
  end
  return r
end

local JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJlbnYifQ.c2ln"
local TRIGGERED = { status = 200, body = '{"id":"run_rec1","isCached":false}',
  headers = { ["x-trigger-jwt"] = JWT } }

local function opts(rec, more)
  local o = { access_token = "tr_dev_recorder_key", base_url = rec.base_url, retry_base = 0.01,
    retry_cap = 0.02, on_error = function() end }
  for k, v in pairs(more or {}) do o[k] = v end
  return o
end

local function misuse(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  assert.are.equal("string", type(err))
  return err
end

describe("trigger.tasks", function()
  describe("idempotency keys, hashed as SDK 4.8.3 hashes them", function()
    -- expected values computed once with node's crypto (createHash("sha256")), independently
    it("hashes a string with SHA-256", function()
      assert.are.equal("5e78863ed1ffb9fc66b1d61634b126bf8eb20267e7996297eeeb9b19c8c0f732",
        (tasks.idempotency_key("my-key")))
    end)
    it("joins a list with '-' first", function()
      local wire, joined = tasks.idempotency_key({ "a", "b" })
      assert.are.equal("d44362d67d921091c7b9674d752e9e23c1f9ec8a4f0b82741bf01364eb97c830", wire)
      assert.are.equal("a-b", joined)
    end)
    it("sends 64 characters unchanged (taken as a hash already)", function()
      local k = string.rep("ab", 32)
      assert.are.equal(k, (tasks.idempotency_key(k)))
    end)
  end)

  describe("options checked at the call", function()
    local base = { access_token = "tr_dev_x", base_url = "http://127.0.0.1:9" }
    local function with(o)
      for k, v in pairs(base) do o[k] = v end
      return o
    end
    it("refuses what the server would silently misread", function()
      local cases = {
        { { delay = "5 minutes" }, "opts.delay must be a duration" },
        { { delay = "2020-01-01T00:00:00Z" }, "is in the past" },
        { { delay = "2030-13-01T00:00:00Z" }, "not an ISO 8601 date%-time" },
        { { delay = -5 }, "opts.delay must be a duration" },
        { { ttl = "ten minutes" }, "opts.ttl must be a duration" },
        { { idempotency_key = "k", idempotency_key_ttl = "1w" }, "idempotency_key_ttl must be" },
        { { idempotency_key = "k", idempotency_key_ttl = "1h30m" }, "idempotency_key_ttl must be" },
        { { idempotency_key_ttl = "1h" }, "needs an idempotency_key" },
        { { idempotency_key = string.rep("k", 2049) }, "at most 2048" },
        { { tags = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11" } }, "at most 10 tags" },
        { { tags = { string.rep("t", 129) } }, "tags%[1%] must be" },
        { { tags = { 7 } }, "tags%[1%] must be" },
        { { machine = "xl" }, "machine must be one of" },
        { { max_attempts = 1.5 }, "max_attempts must be a whole number" },
        { { max_duration = 2 }, "at least 5 seconds" },
        { { priority = -1 }, "priority must be" },
        { { queue = 5 }, "option 'queue' must be a string" },
        { { metadata = "x" }, "metadata must be a table" },
        { { metadata = { big = string.rep("m", 262144) } }, "more than the 262144" },
        { { tag = "x" }, "unknown option 'tag': did you mean 'tags'%?" },
        { { delayy = "1m" }, "did you mean 'delay'" },
      }
      for _, c in ipairs(cases) do
        local err = misuse(tasks.trigger, "hello", nil, with(c[1]))
        assert.matches("^bad argument.* to 'trigger'", err)
        assert.matches(c[2], err)
      end
    end)
    it("names the caller's line", function()
      local err = misuse(tasks.trigger, "hello", nil, with { delay = "soon" })
      assert.matches("bad argument #3 to 'trigger'", err, 1, true)
      err = misuse(function() tasks.trigger("hello", nil, with { delay = "soon" }) end)
      assert.matches("tasks_spec.lua:%d+:", err)
    end)
    it("refuses a bad task id, payload or batch", function()
      assert.matches("task id string expected", misuse(tasks.trigger, "", nil, with {}))
      assert.matches("payload cannot be written as JSON",
        misuse(tasks.trigger, "t", { f = print }, with {}))
      assert.matches("non%-empty list of items", misuse(tasks.batch_trigger, "t", {}, with {}))
      assert.matches("items%[2%]%.options%.delay must be a duration",
        misuse(tasks.batch_trigger, "t", { {}, { options = { delay = "x" } } }, with {}))
      assert.matches("items%[1%]%.id must be the task's id",
        misuse(tasks.batch_trigger_by_id, { { payload = 1 } }, with {}))
      local many = {}
      for i = 1, 1001 do many[i] = {} end
      assert.matches("at most 1000 items", misuse(tasks.batch_trigger, "t", many, with {}))
    end)
  end)

  describe("on the wire", function()
    local rec
    after_each(function() if rec then rec.stop() end rec = nil end)

    it("sends every option of §2.1 as the server reads it, with Content-Length", function()
      rec = recorder { TRIGGERED }
      local handle = assert(tasks.trigger("send-email", { to = "ada", list = setmetatable({},
        json.array_mt) }, opts(rec, {
          tags = { "user:1", "org:2" }, idempotency_key = "my-key", idempotency_key_ttl = "10m",
          delay = "1h30m", ttl = 600, queue = "emails", concurrency_key = 42, max_attempts = 3,
          max_duration = 300, priority = 10, machine = "small-2x", region = "eu-central-1",
          version = "20260101.1", metadata = { step = "one" }, test = true,
          preview_branch = "feature-x",
        })))
      assert.are.same({ id = "run_rec1", isCached = false, publicAccessToken = JWT,
        taskIdentifier = "send-email" }, handle)
      local reqs = rec.requests()
      assert.are.equal(1, #reqs)
      local r = reqs[1]
      assert.are.equal("POST", r.method)
      assert.are.equal("/api/v1/tasks/send-email/trigger", r.target)
      assert.are.equal(tostring(#r.body), r.headers["content-length"])
      assert.is_false(r.chunked)
      assert.are.equal("Bearer tr_dev_recorder_key", r.headers["authorization"])
      assert.are.equal("2025-07-16", r.headers["x-trigger-api-version"])
      assert.are.equal("application/json", r.headers["content-type"])
      assert.are.equal("v2", r.headers["x-trigger-realtime-streams-version"])
      assert.are.equal("feature-x", r.headers["x-trigger-branch"])
      assert.matches("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x+$",
        r.headers["x-trigger-request-idempotency-key"])
      local body = cjson.decode(r.body)
      assert.are.same({ to = "ada", list = {} }, body.payload)
      assert.matches('"list":%[%]', r.body) -- an empty array stays one
      assert.are.same({
        payloadType = "application/json", payloadSize = #'{"to":"ada","list":[]}',
        tags = { "user:1", "org:2" },
        idempotencyKey = "5e78863ed1ffb9fc66b1d61634b126bf8eb20267e7996297eeeb9b19c8c0f732",
        idempotencyKeyOptions = { key = "my-key", scope = "run" }, idempotencyKeyTTL = "10m",
        delay = "1h30m", ttl = "600s", queue = { name = "emails" }, concurrencyKey = "42",
        maxAttempts = 3, maxDuration = 300, priority = 10, machine = "small-2x",
        region = "eu-central-1", lockToVersion = "20260101.1", metadata = { step = "one" },
        test = true,
      }, body.options)
    end)

    it("sends no payload for nil and a Lua string as a JSON string", function()
      rec = recorder { TRIGGERED }
      assert(tasks.trigger("t", nil, opts(rec)))
      assert(tasks.trigger("t", "plain text", opts(rec)))
      local reqs = rec.requests()
      assert.is_nil(cjson.decode(reqs[1].body).payload)
      assert.are.equal("plain text", cjson.decode(reqs[2].body).payload)
      assert.are.equal("application/json", cjson.decode(reqs[2].body).options.payloadType)
    end)

    it("gives every call a key of its own when none is given, and retries with it", function()
      rec = recorder { { status = 500, body = '{"error":"Something went wrong"}' },
        { status = 200, body = '{"id":"run_rec1","isCached":true}',
          headers = { ["x-trigger-jwt"] = JWT } } }
      local errs = {}
      local handle = assert(tasks.trigger("t", { n = 1 }, opts(rec, {
        on_error = function(e) errs[#errs + 1] = e end })))
      assert.are.equal(1, #errs)
      assert.are.equal(500, errs[1].status)
      assert.is_false(handle.isCached, "the run was made by this call's lost first attempt")
      local reqs = rec.requests()
      assert.are.equal(2, #reqs)
      local a, b = cjson.decode(reqs[1].body).options, cjson.decode(reqs[2].body).options
      assert.matches("^%x+$", a.idempotencyKey)
      assert.are.equal(64, #a.idempotencyKey)
      assert.are.equal(a.idempotencyKey, b.idempotencyKey)
      assert.are.equal(tasks.OWN_KEY_TTL, a.idempotencyKeyTTL)
      assert.is_nil(a.idempotencyKeyOptions)
      assert.are.equal(reqs[1].headers["x-trigger-request-idempotency-key"],
        reqs[2].headers["x-trigger-request-idempotency-key"])
      -- the next call has another key
      assert(tasks.trigger("t", nil, opts(rec)))
      local c = cjson.decode(rec.requests()[3].body).options
      assert.are_not.equal(a.idempotencyKey, c.idempotencyKey)
    end)

    it("with idempotency_key = false, retries only a 429", function()
      rec = recorder { { status = 500, body = '{"error":"Something went wrong"}' } }
      local handle, err = tasks.trigger("t", nil, opts(rec, { idempotency_key = false }))
      assert.is_nil(handle)
      assert.are.equal("network", err.kind)
      assert.are.equal(500, err.status)
      assert.are.equal(1, #rec.requests(), "a 500 may come after the run was made")
      assert.is_nil(cjson.decode(rec.requests()[1].body).options.idempotencyKey)
      rec.stop()
      rec = recorder { { status = 429, body = '{"error":"Rate limit exceeded"}',
        headers = { ["retry-after"] = "0" } }, TRIGGERED }
      assert(tasks.trigger("t", nil, opts(rec, { idempotency_key = false })))
      assert.are.equal(2, #rec.requests())
    end)

    it("never retries a 4xx, nor a status with x-should-retry: false", function()
      rec = recorder { { status = 422, body = '{"error":"Runs can only have 10 tags"}' } }
      local _, err = tasks.trigger("t", nil, opts(rec))
      assert.are.equal("bad_request", err.kind)
      assert.are.equal(422, err.status)
      assert.matches("Runs can only have 10 tags", err.message, 1, true)
      assert.is_true(err.fatal)
      rec.stop()
      rec = recorder { { status = 500, body = '{"error":"no"}', headers = { ["x-should-retry"] = "false" } } }
      _, err = tasks.trigger("t", nil, opts(rec))
      assert.are.equal(500, err.status)
      assert.are.equal(1, #rec.requests())
      rec.stop()
      rec = recorder { { status = 401, body = '{"error":"Invalid API key"}' } }
      _, err = tasks.trigger("t", nil, opts(rec))
      assert.are.equal("auth", err.kind)
      assert.is_nil(err.message:find("tr_dev_recorder_key", 1, true))
    end)

    it("gives up after max_retries, saying so", function()
      rec = recorder { { status = 503, body = "" } }
      local _, err = tasks.trigger("t", nil, opts(rec, { max_retries = 2 }))
      assert.are.equal(3, #rec.requests())
      assert.matches("gave up after 2 retries", err.message, 1, true)
      assert.are.equal(3, err.attempt)
    end)

    it("offloads a payload of 128 KiB or more as the SDK does", function()
      rec = recorder {
        { status = 200, body = '{"presignedUrl":"{{base}}/upload/p1?X-Amz-Expires=300",'
          .. '"storagePath":"trigger/packet_x/payload.json"}' },
        { status = 200, body = "" },
        TRIGGERED }
      local big = { data = string.rep("x", tasks.OFFLOAD_BYTES) }
      assert(tasks.trigger("t", big, opts(rec)))
      local reqs = rec.requests()
      assert.are.equal(3, #reqs)
      assert.are.equal("PUT", reqs[1].method)
      assert.matches("^/api/v2/packets/trigger%%2Fpacket_[1-9a-km-z]+%%2Fpayload%.json$",
        reqs[1].target)
      assert.are.equal("Bearer tr_dev_recorder_key", reqs[1].headers["authorization"])
      assert.are.equal("PUT", reqs[2].method)
      assert.are.equal("/upload/p1?X-Amz-Expires=300", reqs[2].target)
      assert.is_nil(reqs[2].headers["authorization"], "no credential to object storage")
      assert.are.equal("application/json", reqs[2].headers["content-type"])
      assert.are.equal(json.encode(big), reqs[2].body)
      local body = cjson.decode(reqs[3].body)
      assert.are.equal("trigger/packet_x/payload.json", body.payload)
      assert.are.equal("application/store", body.options.payloadType)
      assert.are.equal(#reqs[2].body, body.options.payloadSize)
    end)

    it("sends a payload just under the limit inline", function()
      rec = recorder { TRIGGERED }
      local text = string.rep("x", tasks.OFFLOAD_BYTES - 3) -- with its quotes: one byte short
      assert(tasks.trigger("t", text, opts(rec)))
      assert.are.equal(1, #rec.requests())
      assert.are.equal(text, cjson.decode(rec.requests()[1].body).payload)
    end)

    it("batch: phase 1, then the items as NDJSON with keys <key>-<index>", function()
      rec = recorder {
        { status = 202, body = '{"id":"batch_1","runCount":2,"isCached":false}',
          headers = { ["x-trigger-jwt"] = JWT } },
        { status = 200, body = '{"id":"batch_1","sealed":false,"enqueuedCount":1,"expectedCount":2}' },
        { status = 200, body = '{"id":"batch_1","itemsAccepted":2,"itemsDeduplicated":0,"sealed":true}' },
      }
      local b = assert(tasks.batch_trigger_by_id({
        { id = "resize", payload = { url = "a" }, options = { tags = "a" } },
        { id = "email", payload = { to = "b" }, options = { idempotency_key = "own" } },
      }, opts(rec, { idempotency_key = "my-key" })))
      assert.are.same({ id = "batch_1", runCount = 2, isCached = false, publicAccessToken = JWT }, b)
      local reqs = rec.requests()
      assert.are.equal(3, #reqs, "not sealed: the items again")
      assert.are.equal("/api/v3/batches", reqs[1].target)
      local create = cjson.decode(reqs[1].body)
      assert.are.same({ runCount = 2, taskIdentifiers = { "email", "resize" },
        idempotencyKey = tasks.idempotency_key("my-key"),
        idempotencyKeyOptions = { key = "my-key", scope = "run" } }, create)
      assert.are.equal("/api/v3/batches/batch_1/items", reqs[2].target)
      assert.are.equal("application/x-ndjson", reqs[2].headers["content-type"])
      assert.are.equal(reqs[2].body, reqs[3].body)
      local lines = {}
      for l in reqs[2].body:gmatch("([^\n]+)\n") do lines[#lines + 1] = cjson.decode(l) end
      assert.are.equal(2, #lines)
      assert.are.same({ 0, "resize", { url = "a" } }, { lines[1].index, lines[1].task, lines[1].payload })
      -- node: sha256("my-key-0")
      assert.are.equal("b196a8e7560749de52fa75a5a0bd7cb99f44a62352e3f8b74b5a8a0d0f063633",
        lines[1].options.idempotencyKey)
      assert.are.same({ "a" }, lines[1].options.tags)
      assert.are.equal(tasks.idempotency_key("own"), lines[2].options.idempotencyKey)
      assert.are.equal("email", lines[2].task)
    end)

    it("batch: an error, not a handle, when the items never seal the batch", function()
      rec = recorder {
        { status = 202, body = '{"id":"batch_2","runCount":1,"isCached":false}' },
        { status = 200, body = '{"id":"batch_2","sealed":false,"enqueuedCount":0,"expectedCount":1}' },
      }
      local b, err = tasks.batch_trigger("t", { { payload = 1 } }, opts(rec, { max_retries = 2 }))
      assert.is_nil(b)
      assert.are.equal("protocol", err.kind)
      assert.matches("batch_2 is not sealed after 3 tries", err.message, 1, true)
      assert.are.equal(4, #rec.requests())
    end)

    it("sends x-trigger-branch with realtime, streams and token requests too", function()
      rec = recorder { { status = 401, body = '{"error":"nope"}' },
        { status = 200, body = '{"sub":"env_1"}' } }
      local o = opts(rec, { preview_branch = "feature-x", max_retries = 0 })
      local sub = trigger.runs.subscribe_to_run("run_1", o)
      assert.has_error(function() sub:next(10) end)
      sub:close()
      local stream = trigger.streams.read("run_1", "default", o)
      assert.has_error(function() stream:next(10) end)
      stream:close()
      assert(trigger.auth.create_public_token { scopes = { read = { runs = true } },
        access_token = o.access_token, base_url = o.base_url, preview_branch = "feature-x" })
      local reqs = rec.requests()
      assert.are.equal(3, #reqs)
      assert.matches("^/realtime/v1/runs/run_1", reqs[1].target)
      assert.matches("^/realtime/v1/streams/run_1/default", reqs[2].target)
      assert.are.equal("/api/v1/auth/jwt/claims", reqs[3].target)
      for _, r in ipairs(reqs) do assert.are.equal("feature-x", r.headers["x-trigger-branch"]) end
    end)

    it("takes the branch from TRIGGER_PREVIEW_BRANCH", function()
      rec = recorder { TRIGGERED }
      local cmd = string.format("cd %s && TRIGGER_PREVIEW_BRANCH=from-env TRIGGER_API_URL=%s "
        .. "TRIGGER_SECRET_KEY=tr_dev_k LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s' "
        .. "%s -e 'assert(require(\"trigger\").tasks.trigger(\"t\"))'", helper.root,
        rec.base_url, helper.cpath .. ";", jit and "luajit" or "lua5.4") -- luacheck: ignore jit
      assert.is_true(helper.sh(cmd))
      assert.are.equal("from-env", rec.requests()[1].headers["x-trigger-branch"])
    end)
  end)
end)
