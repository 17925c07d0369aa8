-- Integration: subscribe_to_tag against the local realtime server over real HTTP.
local helper = require "spec.helper"
local trigger = require "trigger"
local json = require "trigger.json"

local srv

local function subscribe(tag, opts)
  opts = opts or {}
  opts.access_token = opts.access_token or srv.secret_key
  opts.base_url = opts.base_url or srv.base_url
  opts.retry_base = opts.retry_base or 0.01
  opts.retry_cap = opts.retry_cap or 0.05
  return (trigger.runs.subscribe_to_tag(tag, opts))
end

-- The next n runs, failing clearly if they do not come.
local function collect(sub, n, timeout)
  local out = {}
  while #out < n do
    local run, why = sub:next(timeout or 10)
    if not run then error(string.format("got %d of %d runs: %s", #out, n, tostring(why)), 2) end
    out[#out + 1] = run
  end
  return out
end

-- Nothing more arrives within a short while.
local function assert_quiet(sub)
  local run, why = sub:next(0.3)
  assert.is_nil(run, run and ("unexpected run " .. run.id .. " " .. run.status))
  assert.are.equal("timeout", why)
end

local function by_id(runs)
  local t = {}
  for _, r in ipairs(runs) do t[r.id] = r end
  return t
end

local tag_seq = 0
local function fresh_tag()
  tag_seq = tag_seq + 1
  return "user:" .. tag_seq .. "-" .. os.time()
end

describe("subscribe_to_tag", function()
  setup(function() srv = helper.start_server { hold_ms = 2000 } end)
  teardown(function() srv:stop() end)

  it("yields the current runs, then live updates", function()
    local tag = fresh_tag()
    local a = srv:create_run { runTags = { tag }, status = "PENDING", payload = '{"n":1}' }
    local b = srv:create_run { runTags = { tag, "other" }, status = "EXECUTING" }
    srv:create_run { runTags = { "someone-else" } }
    local sub = subscribe(tag)
    local first = by_id(collect(sub, 2))
    assert.are.equal("QUEUED", first[a].status)
    assert.are.same({ n = 1 }, first[a].payload)
    assert.are.equal("EXECUTING", first[b].status)
    assert_quiet(sub)
    srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY", output = '{"ok":true}',
      outputType = "application/json" })
    local run = collect(sub, 1)[1]
    assert.are.equal(a, run.id)
    assert.are.equal("COMPLETED", run.status)
    assert.is_true(run.isCompleted)
    assert.are.same({ ok = true }, run.output)
    assert.are.same({ n = 1 }, run.payload) -- a partial update keeps what did not change
    sub:close()
  end)

  it("sends the protocol headers and a sorted query", function()
    local tag = fresh_tag()
    srv:create_run { runTags = { tag } }
    local sub = subscribe(tag, { created_at = "1h", skip_columns = { "payload", "output" } })
    collect(sub, 1)
    sub:close()
    local log = srv:stats().log
    local seen
    for _, entry in ipairs(log) do
      if entry.path == "/realtime/v1/runs" and entry.query:find(tag:gsub(":", "%%3A"), 1, true) then
        seen = entry
        break
      end
    end
    assert.is_truthy(seen, "the request reached the server")
    assert.are.equal("1.0.0-beta.1", seen.headers["x-trigger-electric-version"])
    assert.are.equal("2025-07-16", seen.headers["x-trigger-api-version"])
    assert.is_true(seen.headers.has_authorization)
    local keys = {}
    for k in seen.query:gmatch("([^&=]+)=[^&]*") do keys[#keys + 1] = k end
    local sorted = { table.unpack(keys) }
    table.sort(sorted)
    assert.are.same(sorted, keys)
    assert.matches("createdAt=1h", seen.query, 1, true)
    assert.matches("skipColumns=payload%2Coutput", seen.query, 1, true)
  end)

  it("skips columns the caller asked the server to leave out", function()
    local tag = fresh_tag()
    srv:create_run { runTags = { tag }, payload = '{"big":"x"}' }
    local sub = subscribe(tag, { skip_columns = { "payload" } })
    local run = collect(sub, 1)[1]
    assert.is_nil(run.payload)
    assert.is_string(run.taskIdentifier)
    sub:close()
  end)

  it("follows runs carrying all of several tags", function()
    local t1, t2 = fresh_tag(), fresh_tag()
    local both = srv:create_run { runTags = { t1, t2 } }
    srv:create_run { runTags = { t1 } }
    local sub = subscribe({ t1, t2 })
    local runs = collect(sub, 1)
    assert.are.equal(both, runs[1].id)
    assert_quiet(sub)
    sub:close()
  end)

  it("syncs in several chunks before the first up-to-date", function()
    local small = helper.start_server { hold_ms = 1000, chunk_rows = 3 }
    local tag = fresh_tag()
    for _ = 1, 10 do small:create_run { runTags = { tag } } end
    local sub = trigger.runs.subscribe_to_tag(tag, { access_token = small.secret_key,
      base_url = small.base_url })
    local runs = collect(sub, 10)
    assert.are.equal(10, #runs)
    local ids = {}
    for _, r in ipairs(runs) do ids[r.id] = true end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.are.equal(10, n)
    sub:close()
    small:stop()
  end)

  it("does not yield unchanged runs again after a 409 resync", function()
    local tag = fresh_tag()
    local a = srv:create_run { runTags = { tag } }
    local b = srv:create_run { runTags = { tag } }
    local sub = subscribe(tag)
    collect(sub, 2)
    srv:rotate()
    srv:update_run(b, { status = "EXECUTING" })
    local run = collect(sub, 1)[1]
    assert.are.equal(b, run.id)
    assert.are.equal("EXECUTING", run.status)
    assert_quiet(sub)
    srv:update_run(a, { status = "EXECUTING" })
    assert.are.equal(a, collect(sub, 1)[1].id)
    sub:close()
  end)

  local transient = {
    { name = "503 with Retry-After", fault = { kind = "status", status = 503, retry_after = 0 },
      kind = "network" },
    { name = "429", fault = { kind = "status", status = 429 }, kind = "rate_limited" },
    { name = "a reset mid-body", fault = { kind = "reset_mid_body" }, kind = "network" },
    { name = "a truncated body", fault = { kind = "truncate" }, kind = "network" },
    { name = "invalid JSON", fault = { kind = "invalid_json" }, kind = "protocol" },
    { name = "a stale handle after 409", fault = { kind = "stale_handle" }, kind = "protocol",
      rotate = true },
  }
  for _, case in ipairs(transient) do
    it("recovers from " .. case.name .. " without losing or repeating runs", function()
      local tag = fresh_tag()
      local a = srv:create_run { runTags = { tag } }
      local seen = {}
      local sub = subscribe(tag, { on_error = function(e) seen[#seen + 1] = e end })
      collect(sub, 1)
      local fault = { match = { path_prefix = "/realtime/v1/runs" } }
      for k, v in pairs(case.fault) do fault[k] = v end
      if case.rotate then
        fault.match.initial = true
        srv:fault(fault)
        srv:rotate()
      else
        srv:fault(fault)
      end
      srv:update_run(a, { status = "EXECUTING" })
      local run = collect(sub, 1)[1]
      assert.are.equal("EXECUTING", run.status)
      assert.is_true(#seen >= 1, "on_error saw the fault")
      assert.are.equal(case.kind, seen[1].kind)
      srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
      assert.are.equal("COMPLETED", collect(sub, 1)[1].status)
      assert_quiet(sub)
      sub:close()
    end)
  end

  it("reads responses split at every byte", function()
    local tag = fresh_tag()
    srv:create_run { runTags = { tag }, payload = '{"s":"h\\u00e9llo"}' }
    srv:fault { match = { path_prefix = "/realtime/v1/runs", initial = true }, kind = "drip",
      chunk_size = 1 }
    local sub = subscribe(tag)
    local run = collect(sub, 1)[1]
    assert.are.equal("h\195\169llo", run.payload.s)
    sub:close()
  end)

  it("fails clearly when a proxy strips the electric headers", function()
    local tag = fresh_tag()
    srv:create_run { runTags = { tag } }
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "strip_headers" }
    local sub = subscribe(tag)
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("protocol", err.kind)
    assert.matches("electric%-handle", err.message)
  end)

  it("gives up after max_retries with the last error", function()
    local tag = fresh_tag()
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 500,
      count = 3 }
    local calls = 0
    local sub = subscribe(tag, { max_retries = 2, on_error = function() calls = calls + 1 end })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("network", err.kind)
    assert.are.equal(500, err.status)
    -- on_error sees each failure that is retried; the final one is raised, not reported twice
    assert.are.equal(2, calls)
    assert.matches("gave up after 2 retries", err.message)
  end)

  it("says 'after 1 retry', not 'after 1 retries'", function()
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 500,
      count = 2 }
    local sub = subscribe(fresh_tag(), { max_retries = 1, on_error = function() end })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.matches("gave up after 1 retry%)", err.message)
  end)

  describe("errors", function()
    it("raises auth errors with the server's text and never the token", function()
      local token = "tr_dev_wrong_secret_value_123"
      local sub = subscribe(fresh_tag(), { access_token = token })
      local ok, err = pcall(sub.next, sub, 10)
      assert.is_false(ok)
      assert.are.equal("auth", err.kind)
      assert.are.equal(401, err.status)
      assert.is_nil(tostring(err):find(token, 1, true))
      assert.is_nil(tostring(err):find("wrong_secret", 1, true))
      assert.is_nil(tostring(sub):find(token, 1, true))
    end)

    it("raises from the for-loop form and closes the subscription", function()
      local sub = trigger.runs.subscribe_to_tag(fresh_tag(), { access_token = "tr_dev_nope",
        base_url = srv.base_url })
      local ok, err = pcall(function()
        for _ in sub do end
      end)
      assert.is_false(ok)
      assert.are.equal("auth", err.kind)
      assert.is_true(sub.closed)
      local again_ok, again = pcall(sub.next, sub, 1)
      assert.is_false(again_ok)
      assert.are.equal(err, again)
    end)

    it("refuses bad arguments at once", function()
      assert.has_error(function() trigger.runs.subscribe_to_tag(nil) end)
      assert.has_error(function() trigger.runs.subscribe_to_tag({}) end)
      assert.has_error(function() trigger.runs.subscribe_to_tag("a,b") end)
      assert.has_error(function() trigger.runs.subscribe_to_tag("a", { created_at = "yesterday" }) end)
      assert.has_error(function() trigger.runs.subscribe_to_tag("a", { skip_columns = { "id" } }) end)
      assert.has_error(function() trigger.runs.subscribe_to_tag("a", { bogus = 1 }) end)
      assert.has_error(function() trigger.runs.subscribe_to_tag("a", { timeout = "1" }) end)
    end)
  end)

  describe("closing", function()
    -- Wait (boundedly) until the server's view satisfies pred.
    local function server_sees(pred)
      for _ = 1, 1000 do -- at most ~10 s
        local st = srv:stats()
        if pred(st) then return st end
        trigger.step(0.01)
      end
      return nil
    end

    -- Lua 5.4's generic for closes its fourth value on break; LuaJIT has no closing values
    -- (the README says: call sub:close() there).
    local it_54 = rawget(_G, "jit") and pending or it
    it_54("closes the connection at once on break", function()
      local tag = fresh_tag()
      srv:create_run { runTags = { tag } }
      local before
      for run in trigger.runs.subscribe_to_tag(tag, { access_token = srv.secret_key, -- luacheck: ignore 512
        base_url = srv.base_url }) do
        assert.is_string(run.id)
        -- the next long-poll was started before this run was handed out: let it reach the
        -- server, then leave the loop
        before = server_sees(function(st) return st.active_realtime > 0 end)
        break
      end
      assert.is_truthy(before, "the next long-poll reached the server")
      local after = server_sees(function(st)
        return st.connections_closed > before.connections_closed
          and st.active_realtime < before.active_realtime
      end)
      assert.is_truthy(after, "the server saw the connection close")
    end)

    it("closes the connection at once on close()", function()
      local tag = fresh_tag()
      srv:create_run { runTags = { tag } }
      local sub = subscribe(tag)
      collect(sub, 1)
      local before = server_sees(function(st) return st.active_realtime > 0 end)
      assert.is_truthy(before)
      sub:close()
      assert.is_truthy(server_sees(function(st)
        return st.connections_closed > before.connections_closed
      end))
    end)

    it("close is idempotent and next after close says closed", function()
      local sub = subscribe(fresh_tag())
      sub:close()
      sub:close()
      local run, why = sub:next(0.1)
      assert.is_nil(run)
      assert.are.equal("closed", why)
    end)

    it("a dropped subscription is collected", function()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local sub = subscribe(fresh_tag())
        sub:poll()
        weak[1] = sub
      end
      for _ = 1, 4 do collectgarbage() end
      assert.is_nil(weak[1])
    end)
  end)

  it("hands out JSON null inside packets as json.null", function()
    local tag = fresh_tag()
    srv:create_run { runTags = { tag }, payload = json.encode { a = json.null } }
    local sub = subscribe(tag)
    assert.are.equal(json.null, collect(sub, 1)[1].payload.a)
    sub:close()
  end)
end)
