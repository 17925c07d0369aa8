-- Objects dropped without close() are closed once collected, on LuaJIT too (where tables have no
-- __gc: trigger.driver.close_when_collected): their requests end (the connections close, at the
-- server too), the shared upstreams and streams they read forget them, and they are collected.
-- Every object a script can drop: subscriptions (alone, or readers of a shared upstream),
-- with_streams() objects, and streams.
local helper = require "spec.helper"
local lfs = require "lfs"
local trigger = require "trigger"
local subscription = require "trigger.subscription"
local upstream = require "trigger.fanout.upstream"

local function fds()
  local n = 0
  for _ in lfs.dir("/proc/self/fd") do n = n + 1 end
  return n
end

-- Two full cycles: on LuaJIT the first one forgets a dropped object, the second runs the
-- finaliser of its proxy.
local function gc()
  collectgarbage()
  collectgarbage()
end

-- Move the hub along until `cond()` holds (at most ~10 s); -> whether it does.
local function eventually(cond)
  for _ = 1, 1000 do
    if cond() then return true end
    trigger.step(0.01)
  end
  return cond()
end

-- How many readers the shared upstream of `sub` has.
local function readers(sub)
  return tonumber(subscription._debug_state(sub):match("readers=(%d+)"))
end

-- `open(i)` makes the i-th object and brings it to the state to drop it in; all are kept until
-- `all_open()` holds, then dropped. They are made in a coroutine of their own, so that no stale
-- slot of a stack can keep one alive. -> a weak list of the objects.
local function open_then_drop(n, open, all_open)
  local weak = setmetatable({}, { __mode = "v" })
  coroutine.wrap(function()
    local objs = {}
    for i = 1, n do objs[i] = open(i) end
    assert.is_true(eventually(all_open), "every object's request reached the server")
    for i = 1, n do weak[i] = objs[i] end
  end)()
  return weak
end

local function none_left(weak)
  return next(weak) == nil
end

-- Requests the server is answering (held long-polls, open streams), but its admin API's.
local function held(srv)
  local n = 0
  for _, req in ipairs(srv:stats().in_flight) do
    if req.path:sub(1, 11) ~= "/_emulator/" then n = n + 1 end
  end
  return n
end

local function baseline(srv)
  gc()
  return { held = held(srv), conns = srv:stats().open_connections, fds = fds(),
    upstreams = upstream.count() }
end

-- After the objects are dropped and collected: the server answers no more requests than before,
-- and this process has no more connections (at the server) and descriptors open than before but
-- one idle connection the hub keeps for reuse (libcurl's connection cache: with it or without
-- it, depending on which request was the last), nor more shared upstreams.
local function back_to(srv, before)
  gc()
  assert.is_true(eventually(function() return held(srv) <= before.held end),
    "the server still answers " .. held(srv) .. " requests (was " .. before.held .. ")")
  assert.is_true(eventually(function()
    return srv:stats().open_connections <= before.conns + 1
  end), "the server still has " .. srv:stats().open_connections .. " connections open (was "
    .. before.conns .. ")")
  assert.is_true(eventually(function() return fds() <= before.fds + 1 end),
    "this process still has " .. fds() .. " descriptors open (was " .. before.fds .. ")")
  assert.are.equal(before.upstreams, upstream.count())
end

for _, backend in ipairs { "electric", "native" } do
  describe("closed when collected (" .. backend .. ")", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = 60000, backend = backend }
      srv:stream_config { timeout_s = 60 }
      -- the hub and its descriptors are made by the first request
      local id = srv:create_run { status = "EXECUTING" }
      local sub = trigger.runs.subscribe_to_run(id, helper.client_opts(srv))
      assert.is_table(sub:next(10))
      sub:close()
    end)
    teardown(function() srv:stop() end)

    local function opts(extra) return helper.client_opts(srv, extra) end

    it("subscriptions: their long-polls end and they are collected", function()
      local n = 40
      local tags = {}
      for i = 1, n do
        tags[i] = helper.fresh_tag("gc:")
        srv:create_run { runTags = { tags[i] } }
      end
      local before = baseline(srv)
      local weak = open_then_drop(n, function(i)
        local sub = trigger.runs.subscribe_to_tag(tags[i], opts())
        assert.is_table(sub:next(10))
        sub:poll() -- its live long-poll starts
        return sub
      end, function() return held(srv) >= before.held + n end)
      back_to(srv, before)
      assert.is_true(none_left(weak))
    end)

    it("readers of a shared upstream: they leave it, and the heap does not grow", function()
      local tag = helper.fresh_tag("gc:")
      srv:create_run { runTags = { tag } }
      local keep = trigger.runs.subscribe_to_tag(tag, opts())
      assert.is_table(keep:next(10))
      local n = 200
      local function round()
        local weak = open_then_drop(n, function()
          local sub = trigger.runs.subscribe_to_tag(tag, opts())
          assert.is_table(sub:next(10))
          return sub
        end, function() return true end)
        gc()
        assert.is_true(none_left(weak))
        assert.is_nil(keep:poll()) -- takes the batches kept for it (a native join reads again)
        gc()
        return collectgarbage("count")
      end
      local after_one = round()
      assert.are.equal(1, readers(keep))
      local grown = round() - after_one
      assert.are.equal(1, readers(keep))
      -- before: each dropped reader kept about 3 KB for ever
      assert.is_true(grown < n * 0.5, ("%d dropped readers grew the heap by %.0f KB")
        :format(n, grown))
      keep:close()
    end)

    -- A finaliser runs wherever the collector is (inside nginx: in the pump that drives a shared
    -- upstream, with no reader in sight); on_error is the way to close from there on purpose.
    it("the last reader closed from inside its upstream's loop: nothing is freed under it",
      function()
        local tag = helper.fresh_tag("gc:")
        srv:create_run { runTags = { tag } }
        local sub
        sub = trigger.runs.subscribe_to_tag(tag, opts { on_error = function() sub:close() end })
        assert.is_table(sub:next(10))
        srv:fault { kind = "status", status = 500, match = { live = true }, count = 5 }
        assert.are.same({ nil, "closed" }, { sub:next(10) })
        assert.are.same({ nil, "closed" }, { sub:next(1) })
        srv:clear_faults()
      end)

    it("with_streams() objects: their subscription and streams end", function()
      local tag = helper.fresh_tag("gc:")
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { "a" })
      local before = baseline(srv)
      local n = 20
      -- the shared upstream's long-poll, and each object's stream (read alone: the others had
      -- taken its first chunk already), on a connection of its own (but one, maybe: the idle one)
      local weak = open_then_drop(n, function()
        local obj = trigger.runs.subscribe_to_tag(tag, opts()):with_streams()
        repeat
          local item = assert(obj:next(10))
        until item.chunk == "a"
        return obj
      end, function()
        return held(srv) > before.held and srv:stats().open_connections >= before.conns + n
      end)
      back_to(srv, before)
      assert.is_true(none_left(weak))
    end)

    it("streams: their connections close and they are collected", function()
      local id = srv:create_run { status = "EXECUTING" }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { "a" })
      local before = baseline(srv)
      local n = 20
      local weak = open_then_drop(n, function()
        local stream = trigger.streams.read(id, "default", opts())
        assert.are.equal("a", stream:next(10))
        return stream
      end, function() return srv:stats().open_connections >= before.conns + n - 1 end) -- idle one
      back_to(srv, before)
      assert.is_true(none_left(weak))
    end)
  end)
end
