-- trigger.fanout.upstream: one upstream object per shared shape, with the strategy chosen when it is
-- acquired (in-process here; the nginx pump and its shared-dict relay under make
-- test-openresty). Against the local server on both backends, counting the requests it gets.
local helper = require "spec.helper"
local socket = require "socket"
local trigger = require "trigger"
local upstream = require "trigger.fanout.upstream"

-- Long enough that no long-poll ends by itself while a case drives (a case's own requests are
-- then the only ones the server counts).
local HOLD_MS = 10000

local function open(srv, tag, extra)
  return (trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv, extra)))
end

-- Poll every subscription of `subs` until `done(got)` (what each yielded, by index) or 10 s.
local function drive_until(subs, done)
  local got = {}
  for i = 1, #subs do got[i] = {} end
  local deadline = socket.gettime() + 10
  repeat
    for i, sub in ipairs(subs) do
      local run = not sub.closed and sub:poll()
      while run do
        got[i][#got[i] + 1] = run
        run = sub:poll()
      end
    end
    if done(got) then return got end
    trigger.step(0.02)
  until socket.gettime() > deadline
  return got
end

-- The ids each list of runs holds.
local function ids(runs)
  local out = {}
  for _, run in ipairs(runs) do out[run.id] = true end
  return out
end

local function all_have(n)
  return function(got)
    for _, runs in ipairs(got) do
      if #runs < n then return false end
    end
    return true
  end
end

local function requests(srv)
  return srv:stats().realtime_requests
end

local function held(srv)
  local st = srv:stats()
  return st.active_realtime + (st.active_native or 0)
end

-- Drive `subs` until the server holds a long-poll of theirs.
local function until_held(srv, subs)
  drive_until(subs, function() return held(srv) >= 1 end)
  assert.equal(1, held(srv))
end

describe("trigger.fanout.upstream's strategies", function()
  it("in-process for a transport with background requests; nothing to share without one", function()
    local curl = require "trigger.transport.curl"
    assert.equal(upstream.in_process, upstream.strategy_for(curl))
    -- Outside nginx a transport without background requests has no pump to run a shared loop.
    assert.is_nil(upstream.strategy_for { background = false, perform = function() end })
  end)

  it("the in-process strategy keeps the transport and publishes every batch", function()
    local s = upstream.in_process.new({})
    local t = {}
    assert.equal(t, s:transport(t))
    assert.is_false(s:is_closed())
    assert.is_true(s:publish({}))
    assert.is_nil(s.pumped)
  end)
end)

for _, backend in ipairs { "electric", "native" } do
  describe("upstream on the " .. backend .. " backend", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = HOLD_MS, backend = backend, native_coalesce_ms = 20 }
    end)
    teardown(function() srv:stop() end)
    local base
    before_each(function()
      srv:reset()
      base = upstream.count()
    end)

    it("two subscriptions, one upstream, one request: each gets every run", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local b = srv:create_run { runTags = { tag }, status = "PENDING" }
      srv:reset_stats()
      local s1, s2 = open(srv, tag), open(srv, tag)
      assert.equal(1, upstream.count() - base)
      assert.equal(1, upstream.owned() - base) -- in-process: this Lua state asks the server
      local got = drive_until({ s1, s2 }, all_have(2))
      assert.same({ [a] = true, [b] = true }, ids(got[1]))
      assert.same({ [a] = true, [b] = true }, ids(got[2]))
      until_held(srv, { s1, s2 })
      local before = requests(srv)
      -- both keep polling: the one long-poll held serves both, no request of either's own
      local n = 0
      drive_until({ s1, s2 }, function()
        n = n + 1
        return n > 20
      end)
      assert.equal(before, requests(srv))
      assert.equal(1, held(srv))
      s1:close()
      s2:close()
      assert.equal(0, upstream.count() - base)
    end)

    it("a late joiner gets every current run first; the native feed is read again for it",
      function()
        local tag = helper.fresh_tag()
        local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        local first = open(srv, tag)
        drive_until({ first }, all_have(1))
        local b = srv:create_run { runTags = { tag }, status = "PENDING" }
        drive_until({ first }, function(g) return ids(g[1])[b] end)
        until_held(srv, { first })
        local before = requests(srv)
        local late = open(srv, tag)
        local got = drive_until({ first, late }, function(g) return #g[2] >= 2 end)
        assert.same({ [a] = true, [b] = true }, ids(got[2]))
        assert.same({}, got[1], "the first subscription got something again")
        if backend == "native" then
          -- the refresh: the long-poll in flight is given up and the shape read afresh
          assert.is_true(requests(srv) > before)
        else
          -- the shared rows are whole: the late joiner takes them, no request of its own
          assert.equal(before, requests(srv))
        end
        first:close()
        late:close()
      end)

    it("close of one of several: the others go on; the last closes it, request aborted", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local s1, s2, s3 = open(srv, tag), open(srv, tag), open(srv, tag)
      drive_until({ s1, s2, s3 }, all_have(1))
      s2:close()
      assert.equal(1, upstream.count() - base)
      srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
      local got = drive_until({ s1, s3 }, all_have(1))
      assert.equal("COMPLETED", got[1][1].status)
      assert.equal("COMPLETED", got[2][1].status)
      assert.is_nil(s2:poll())
      s1:close()
      s3:close()
      assert.equal(0, upstream.count() - base)
      local deadline = socket.gettime() + 5
      local active
      repeat
        local st = srv:stats()
        active = st.active_realtime + (st.active_native or 0)
        if active > 0 then socket.sleep(0.05) end
      until active == 0 or socket.gettime() > deadline
      assert.equal(0, active)
    end)

    it("tells each reader's on_error of the shared loop's failures, once each", function()
      local tag = helper.fresh_tag()
      srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local told = { {}, {} }
      local function opts(i)
        return { retry_base = 0.05, retry_cap = 0.1,
          on_error = function(e) told[i][#told[i] + 1] = e.status end }
      end
      srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 500,
        count = 1 }
      local s1, s2 = open(srv, tag, opts(1)), open(srv, tag, opts(2))
      assert.equal(1, upstream.count() - base)
      drive_until({ s1, s2 }, all_have(1))
      assert.same({ 500 }, told[1])
      assert.same({ 500 }, told[2])
      s1:close()
      s2:close()
    end)
  end)
end
