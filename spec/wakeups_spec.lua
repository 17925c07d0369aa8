-- Nothing spins while it waits: every object a user waits on (Subscription, RunStreams from
-- with_streams(), Stream from streams.read) is driven through each of its phases by each way a
-- host waits (next(timeout), a trigger.step tick loop that honours timeout(), a cqueues loop on
-- pollfd()/timeout()), on both backends, and the hub's idle wake-ups in each phase are bounded
-- by a handful per second of waiting. A busy wait shows as thousands (the drain of a finished
-- run's streams once made 165,000 zero-timeout epoll_wait calls in 5 s).
-- No timing is asserted: each phase lasts as long as it takes, the bound grows with it.
local helper = require "spec.helper"
local trigger = require "trigger"
local clock = require "trigger.clock"

local PER_SECOND, SLACK = 10, 10

-- The next item of obj within `timeout` seconds, waited for as the named host waits:
-- item, or nil and "timeout" | "finished" | "closed".
local WAYS = {}

function WAYS.next(obj, timeout)
  return obj:next(timeout)
end

-- A game loop: take what is ready, then sleep in trigger.step for as long as timeout() says.
function WAYS.tick(obj, timeout)
  local deadline = clock.now() + timeout
  while true do
    local item = obj:poll()
    if item ~= nil then return item end
    if obj.closed then return nil, obj.finished and "finished" or "closed" end
    local left = deadline - clock.now()
    if left <= 0 then return nil, "timeout" end
    local t = obj:timeout()
    trigger.step(t and math.min(t, left) or left)
  end
end

-- A cqueues loop: a coroutine waits on the object's pollfd() and timeout().
function WAYS.cqueues(obj, timeout)
  local cqueues = require "cqueues"
  local cq = cqueues.new()
  local item, why
  cq:wrap(function()
    local deadline = clock.now() + timeout
    while true do
      item = obj:poll()
      if item ~= nil then return end
      if obj.closed then
        why = obj.finished and "finished" or "closed"
        return
      end
      local left = deadline - clock.now()
      if left <= 0 then
        why = "timeout"
        return
      end
      cqueues.poll(obj, left)
    end
  end)
  assert(cq:loop())
  return item, why
end

-- Run `fn` as one phase and check its idle wake-ups against the bound for the time it took.
local function phase(name, fn)
  local before, t0 = trigger.stats(), clock.now()
  local a, b = fn()
  local idle = trigger.stats().idle_wakeups - before.idle_wakeups
  local seconds = clock.now() - t0
  local bound = SLACK + PER_SECOND * seconds
  assert(idle <= bound, string.format("%s: %d idle wake-ups in %.2f s (at most %d)", name,
    idle, seconds, math.floor(bound)))
  return a, b
end

-- Items of obj until pred(item), within 15 s.
local function until_item(wait, obj, pred)
  while true do
    local item, why = wait(obj, 15)
    assert(item ~= nil, "no item came: " .. tostring(why))
    if pred(item) then return item end
  end
end

local function until_end(wait, obj)
  while true do
    local item, why = wait(obj, 15)
    if item == nil then
      assert.are.equal("finished", why)
      return
    end
  end
end

local function quiet_for(wait, obj, seconds)
  local item, why = wait(obj, seconds)
  assert(item == nil and why == "timeout", "expected a quiet spell, got "
    .. tostring(item and (item.type or item.id or item) or why))
end

local function is_run(item) return item.type == "run" end

describe("nothing spins while it waits", function()
  local srv
  setup(function()
    srv = helper.start_server { hold_ms = 2000, stream_timeout_s = 1, stream_ping_ms = 400 }
  end)
  teardown(function() srv:stop() end)

  local function opts(extra)
    extra = extra or {}
    -- a realistic backoff: the specs' usual 10-50 ms one would be a retry storm of its own
    extra.retry_base, extra.retry_cap = 0.2, 0.5
    extra.on_error = function() end
    return helper.client_opts(srv, extra)
  end

  -- Requests to the run's shape fail with 500 for a while: the next ones back off.
  local function fail_shape_requests()
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 500,
      count = 4 }
    srv:drop_connections()
  end

  local function fail_stream_requests()
    srv:fault { match = { path_prefix = "/realtime/v1/streams" }, kind = "status", status = 500,
      count = 4 }
    srv:drop_connections()
  end

  for _, backend in ipairs { "electric", "native" } do
    for _, way in ipairs { "next", "tick", "cqueues" } do
      local wait = WAYS[way]
      describe(backend .. ", waiting by " .. way, function()
        before_each(function()
          srv:reset()
          srv:set_backend(backend)
        end)

        it("a run subscription: syncing, live and idle, backing off, finished, closed", function()
          local id = srv:create_run { status = "EXECUTING" }
          local sub = trigger.runs.subscribe_to_run(id, opts())
          phase("syncing", function() return until_item(wait, sub, function() return true end) end)
          phase("live and idle", function() quiet_for(wait, sub, 0.6) end)
          fail_shape_requests()
          phase("backing off", function() quiet_for(wait, sub, 0.8) end)
          srv:clear_faults()
          srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
          phase("finished", function()
            until_item(wait, sub, function(run) return run.status == "COMPLETED" end)
            until_end(wait, sub)
          end)
          sub:close()
          phase("closed", function()
            for _ = 1, 100 do assert.is_nil(sub:poll()) end
            assert.are.same({ nil, "finished" }, { sub:next(0.2) })
          end)
        end)

        it("a run with streams: syncing, live, backing off, draining, closed", function()
          local id = srv:create_run { status = "EXECUTING" }
          srv:create_stream(id, "default")
          srv:update_run(id, { realtimeStreams = { "default" } })
          srv:append_stream(id, "default", { "a" })
          local obj = trigger.runs.subscribe_to_run(id, opts()):with_streams()
          phase("syncing", function()
            until_item(wait, obj, function(item) return item.chunk == "a" end)
          end)
          phase("live and idle", function() quiet_for(wait, obj, 0.6) end)
          fail_stream_requests()
          phase("stream backing off", function() quiet_for(wait, obj, 0.8) end)
          srv:clear_faults()
          fail_shape_requests()
          phase("subscription backing off", function() quiet_for(wait, obj, 0.8) end)
          srv:clear_faults()
          srv:append_stream(id, "default", { "b" })
          srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
          local chunks = {}
          phase("run finished, streams draining", function()
            while true do
              local item, why = wait(obj, 15)
              if item == nil then
                assert.are.equal("finished", why)
                break
              end
              if not is_run(item) then chunks[#chunks + 1] = item.chunk end
            end
          end)
          assert.are.same({ "b" }, chunks)
          obj:close()
          phase("closed", function()
            for _ = 1, 100 do assert.is_nil(obj:poll()) end
            assert.is_number(obj:timeout())
          end)
        end)

        it("a run with streams: a stream that never ends is closed at the drain deadline",
          function()
            local id = srv:create_run { status = "EXECUTING" }
            srv:create_stream(id, "default")
            srv:update_run(id, { realtimeStreams = { "default" } })
            srv:append_stream(id, "default", { "a" })
            local obj = trigger.runs.subscribe_to_run(id, opts()):with_streams { drain_timeout = 1 }
            until_item(wait, obj, function(item) return item.chunk == "a" end)
            -- every stream request from now on hangs before its head: the drain never ends
            srv:fault { match = { path_prefix = "/realtime/v1/streams" }, kind = "delay",
              delay_ms = 30000, count = 100 }
            srv:drop_connections()
            srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
            phase("waiting for the drain deadline", function() until_end(wait, obj) end)
            srv:clear_faults()
            obj:close()
          end)

        it("a tag subscription with streams: a finished run without streams is let go",
          function()
            local tag = helper.fresh_tag("wake")
            local id = srv:create_run { runTags = { tag }, status = "COMPLETED_SUCCESSFULLY" }
            local obj = trigger.runs.subscribe_to_tag(tag, opts()):with_streams { drain_timeout = 0.2 }
            until_item(wait, obj, function(item) return item.run.id == id end)
            phase("live and idle past the drain timeout", function() quiet_for(wait, obj, 0.8) end)
            obj:close()
          end)

        it("a stream read alone: connecting, idle closes, backing off, its run finished", function()
          local id = srv:create_run { status = "EXECUTING", realtimeStreams = { "default" } }
          srv:create_stream(id, "default")
          srv:append_stream(id, "default", { "a" })
          local stream = trigger.streams.read(id, "default", opts())
          phase("connecting", function()
            assert.are.equal("a", until_item(wait, stream, function() return true end))
          end)
          -- the server closes a quiet stream after 1 s: the run is looked at, then reopened
          phase("idle closes of an unfinished run", function() quiet_for(wait, stream, 2.5) end)
          fail_stream_requests()
          phase("backing off", function() quiet_for(wait, stream, 0.8) end)
          srv:clear_faults()
          srv:append_stream(id, "default", { "b" })
          srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
          phase("its run finished", function()
            assert.are.equal("b", until_item(wait, stream, function() return true end))
            until_end(wait, stream)
          end)
          stream:close()
          phase("closed", function()
            for _ = 1, 100 do assert.is_nil(stream:poll()) end
          end)
        end)
      end)
    end
  end
end)
