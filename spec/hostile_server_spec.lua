-- Bounded under any server answer (issue 28): the request budget of a subscription against
-- every storm answer of a hostile server (spec/storms.lua), on both dialects, and on_error
-- free to close or read the object it is told about.
local helper = require "spec.helper"
local storms = require "spec.storms"
local trigger = require "trigger"
local socket = require "socket"

local now = socket.gettime
local WINDOW = 2  -- seconds of storm counted once on_error has heard of it
local BUDGET = 20 -- requests allowed in that window (before the budget: thousands)
local RUN_PATH = "/realtime/v1/runs/"

for _, backend in ipairs { "electric", "native" } do
describe("the request budget on the " .. backend .. " backend", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000, backend = backend } end)
  teardown(function() srv:stop() end)

  it("holds against every storm answer, and on_error hears of each streak once", function()
    local subs = {}
    for i, answer in ipairs(storms.ANSWERS) do
      local id, internal = srv:create_run { status = "PENDING" }
      local s = { answer = answer, id = id, internal = internal, errors = {},
        path = RUN_PATH .. id }
      s.sub = trigger.runs.subscribe_to_run(id, helper.client_opts(srv, {
        retry_base = 0.1, retry_cap = 1,
        on_error = function(e) s.errors[#s.errors + 1] = e end }))
      subs[i] = s
    end
    for _, s in ipairs(subs) do
      assert.are.equal("QUEUED", s.sub:next(10).status) -- the first snapshot, normal
    end
    for _, s in ipairs(subs) do
      srv:fault(storms.fault(s.answer, s.path,
        { row = srv:get_run(s.id), internal_id = s.internal, native = backend == "native" }))
    end
    srv:reset_stats()
    local function counts()
      local paths, out = srv:stats().paths, {}
      for i, s in ipairs(subs) do out[i] = paths[s.path] or 0 end
      return out
    end
    local function report(c, extra)
      local lines = {}
      for i, s in ipairs(subs) do
        lines[i] = ("%s: %d requests, on_error %d times"):format(s.answer.name, c[i], #s.errors)
      end
      return (extra or "") .. "\n" .. table.concat(lines, "\n")
    end
    local function drive(seconds)
      local t = now() + seconds
      repeat
        for _, s in ipairs(subs) do s.sub:poll() end
        trigger.step(0.05)
      until now() >= t
    end
    -- Each storm reaches on_error (its held long-poll first ends, within hold_ms).
    local deadline = now() + 20
    while true do
      local c, told = counts(), 0
      for i, s in ipairs(subs) do
        assert(c[i] <= 100, report(c, "a storm before on_error heard of it"))
        if #s.errors > 0 then told = told + 1 end
      end
      if told == #subs then break end
      assert(now() < deadline, report(c, "on_error never heard of a storm"))
      drive(0.1)
    end
    local before = counts()
    drive(WINDOW)
    local after = counts()
    local used = {}
    for i = 1, #subs do used[i] = after[i] - before[i] end
    for i, s in ipairs(subs) do
      assert(used[i] <= BUDGET, report(used, ("%d requests in %d s"):format(used[i], WINDOW)))
      assert(#s.errors == 1, report(used, "on_error told more than once of one streak"))
      local e = s.errors[1]
      assert.are.equal("protocol", e.kind)
      assert.is_true(e.idle)
      assert.matches("no progress", e.message)
    end
    -- The server mends: every subscription goes on.
    srv:clear_faults()
    for _, s in ipairs(subs) do srv:update_run(s.id, { status = "EXECUTING" }) end
    for _, s in ipairs(subs) do
      local run, why, err = s.sub:next(15)
      assert(run, ("%s: %s %s"):format(s.answer.name, tostring(why), tostring(err)))
      assert.are.equal("EXECUTING", run.status)
      s.sub:close()
    end
  end)
end)
end

describe("on_error", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)

  it("may close the subscription it is told about", function()
    local id = srv:create_run { status = "PENDING" }
    srv:fault { kind = "status", status = 503, match = { path_prefix = RUN_PATH .. id },
      count = 1e9 }
    local sub, told
    sub = trigger.runs.subscribe_to_run(id, helper.client_opts(srv, { on_error = function(e)
      told = e
      sub:close()
    end }))
    assert.are.same({ nil, "closed" }, { sub:next(10) })
    assert.are.equal(503, told.status)
    assert.are.same({ nil, "closed" }, { sub:next(1) })
    assert.is_nil(sub:poll())
    srv:clear_faults()
  end)

  it("may close an idle streak's subscription", function()
    local id = srv:create_run { status = "PENDING" }
    local sub, told
    sub = trigger.runs.subscribe_to_run(id, helper.client_opts(srv, { on_error = function(e)
      told = e
      sub:close()
    end }))
    assert.is_table(sub:next(10))
    srv:fault(storms.fault(storms.BY_NAME["409 must-refetch, a new handle each time"],
      RUN_PATH .. id))
    srv:update_run(id, { status = "EXECUTING" }) -- (a long-poll sent before the fault ends)
    local got = { sub:next(10) }
    if got[1] then got = { sub:next(10) } end
    assert.are.same({ nil, "closed" }, got)
    assert.is_true(told.idle)
    assert.are.same({ nil, "closed" }, { sub:next(1) })
    srv:clear_faults()
  end)

  it("may read the subscription it is told about, which then goes on", function()
    local id = srv:create_run { status = "PENDING" }
    srv:fault { kind = "status", status = 503, match = { path_prefix = RUN_PATH .. id }, count = 2 }
    local sub
    local inner = {}
    sub = trigger.runs.subscribe_to_run(id, helper.client_opts(srv, { on_error = function(e)
      inner[#inner + 1] = { err = e, next = { sub:next() }, next0 = { sub:next(0) },
        poll = sub:poll(), position = sub:position() }
    end }))
    assert.are.equal("QUEUED", sub:next(10).status)
    assert.are.equal(2, #inner)
    for _, i in ipairs(inner) do
      assert.are.equal(503, i.err.status)
      assert.are.same({ nil, "timeout", i.err }, i.next)
      assert.are.same({ nil, "timeout", i.err }, i.next0)
      assert.is_nil(i.poll)
      assert.is_table(i.position.rows)
    end
    srv:update_run(id, { status = "EXECUTING" })
    assert.are.equal("EXECUTING", sub:next(10).status)
    sub:close()
  end)

  it("of a shared upstream may read and close every subscription of it", function()
    local tag = helper.fresh_tag()
    srv:create_run { runTags = { tag }, status = "PENDING" }
    local a, b
    local seen, inner = {}, {}
    local function opts(name)
      return helper.client_opts(srv, { on_error = function(e)
        seen[#seen + 1] = name
        if name == "b" then
          inner.a = { a:next(5) } -- a drives the upstream: busy
          inner.b = { b:next(5) } -- b shares it: busy too
          inner.e = e
          a:close()
          b:close()
        end
      end })
    end
    a = trigger.runs.subscribe_to_tag(tag, opts("a"))
    b = trigger.runs.subscribe_to_tag(tag, opts("b"))
    assert.is_table(a:next(10))
    assert.is_table(b:next(10))
    srv:fault { kind = "status", status = 503, match = { path_prefix = "/realtime/v1/runs" },
      count = 1 }
    srv:drop_connections() -- the held long-poll ends: the next request takes the fault
    assert.are.same({ nil, "closed" }, { a:next(10) })
    assert.are.same({ nil, "closed" }, { b:next(1) })
    assert.are.same({ nil, "timeout", inner.e }, inner.a)
    assert.are.same({ nil, "timeout", inner.e }, inner.b)
    assert.is_truthy(#seen >= 1)
  end)
end)

describe("a stream's on_error", function()
  local srv
  local PREFIX = "/realtime/v1/streams/"
  setup(function() srv = helper.start_server { stream_timeout_s = 1, stream_ping_ms = 200 } end)
  teardown(function() srv:stop() end)

  local function open(id, opts)
    opts.access_token, opts.base_url = srv.secret_key, srv.base_url
    return trigger.streams.read(id, "default", opts)
  end

  for _, version in ipairs { "v1", "v2" } do
    it("may close the stream it is told about (" .. version .. ")", function()
      local id = srv:create_run {}
      srv:create_stream(id, "default", { version = version })
      srv:append_stream(id, "default", { "a" })
      srv:fault { kind = "status", status = 503, count = 1e9, match = { path_prefix = PREFIX } }
      local s, told
      s = open(id, { on_error = function(e)
        told = e
        s:close()
      end })
      assert.are.same({ nil, "closed" }, { s:next(10) })
      assert.are.equal(503, told.status)
      assert.are.same({ nil, "closed" }, { s:next(1) })
      srv:clear_faults()
    end)

    it("may read the stream it is told about, which then goes on (" .. version .. ")", function()
      local id = srv:create_run {}
      srv:create_stream(id, "default", { version = version })
      srv:append_stream(id, "default", { "a", "b" })
      srv:fault { kind = "status", status = 503, count = 1, match = { path_prefix = PREFIX } }
      local s
      local inner
      s = open(id, { on_error = function(e)
        inner = { err = e, next = { s:next() }, poll = s:poll() }
      end })
      assert.are.equal("a", s:next(10))
      assert.are.same({ nil, "timeout", inner.err }, inner.next)
      assert.is_nil(inner.poll)
      assert.are.equal("b", s:next(10))
      s:close()
    end)
  end
end)
