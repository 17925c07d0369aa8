-- Both of Trigger.dev's realtime backends, against the local server in each mode: the Electric
-- shape log and the native runs feed (`../shared/protocol/native-backend.md`). One client, no
-- setting: the specs below run the same code against both, and flip a running server between
-- them under live subscriptions.
local helper = require "spec.helper"
local json = require "trigger.json"
local socket = require "socket"
local trigger = require "trigger"

local HOLD_MS = 600

local function subscribe_tag(srv, tag, opts)
  return (trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv, opts)))
end

-- Drive `sub` for `seconds`, collecting whatever it yields.
local function drive(sub, seconds)
  local got = {}
  local deadline = socket.gettime() + seconds
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return got end
    local run = sub:next(left)
    if run then got[#got + 1] = run end
  end
end

-- Wait until `pred(run)` holds for a yielded run, keeping every run yielded meanwhile.
local function until_run(sub, pred, seen)
  seen = seen or {}
  while true do
    local run, why, err = sub:next(10)
    assert(run, "no run came: " .. tostring(why) .. " " .. tostring(err))
    seen[#seen + 1] = run
    if pred(run) then return run, seen end
  end
end

-- No run yielded twice in the same state (each distinct state once), per run id.
local function assert_no_repeats(runs)
  local last = {}
  for _, run in ipairs(runs) do
    local key = run.status .. "|" .. tostring(run.updatedAt) .. "|"
      .. tostring(run.metadata and json.encode(run.metadata))
    assert.are_not.equal(last[run.id], key, "run " .. run.id .. " yielded twice as " .. key)
    last[run.id] = key
  end
end

for _, backend in ipairs { "electric", "native" } do
  describe("on the " .. backend .. " backend", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = HOLD_MS, backend = backend, native_coalesce_ms = 50 }
    end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end) -- no fault or data left over from another case

    it("goes live after the first snapshot and makes about one request per hold when idle",
      function()
        local tag = helper.fresh_tag()
        srv:create_run { runTags = { tag }, status = "EXECUTING" }
        srv:create_run { runTags = { tag }, status = "PENDING" }
        local sub = subscribe_tag(srv, tag)
        helper.collect(sub, 2)
        srv:reset_stats()
        local idle_s = 3
        assert.are.same({}, drive(sub, idle_s))
        local stats = srv:stats()
        sub:close()
        -- A hold is 600 ms (native: ±15 %), so about 5 long-polls in 3 s; a client that never
        -- went live would make hundreds of snapshot requests.
        local holds = idle_s * 1000 / (HOLD_MS * 0.85)
        assert.is_true(stats.realtime_requests <= holds + 2,
          "too many requests while idle: " .. stats.realtime_requests)
        assert.is_true(stats.realtime_requests >= 2, "no long-polls at all?")
        assert.are.equal(stats.realtime_requests, stats.live_requests,
          "an idle subscription should only long-poll")
      end)

    it("loses no final state when a live response is cut in transit", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local sub = subscribe_tag(srv, tag)
      helper.collect(sub, 1)
      -- The live answer that carries the change is cut mid-body (the fault strikes the response
      -- of the poll held now): on the native feed the server has already recorded its rows as
      -- sent to this handle, so asking the same live question again would never bring COMPLETED.
      srv:fault { match = { path_prefix = "/realtime/v1/runs", live = true },
        kind = "reset_mid_body", count = 1 }
      srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY", output = '{"ok":true}' })
      local run = until_run(sub, function(r) return r.status == "COMPLETED" end)
      assert.are.same({ ok = true }, run.output)
      sub:close()
    end)

    it("retries a 500 and a 429 without Retry-After on live polls, backing off", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local kinds = {}
      -- The first live polls of this subscription fail: once 500, then 429 (the concurrency
      -- limit's answer, without Retry-After) six times.
      srv:fault { match = { path_prefix = "/realtime/v1/runs", live = true }, kind = "status",
        status = 500, count = 1 }
      srv:fault { match = { path_prefix = "/realtime/v1/runs", live = true }, kind = "status",
        status = 429, body = '{"error":"Too many concurrent requests"}', count = 6 }
      srv:reset_stats()
      local sub = subscribe_tag(srv, tag, { retry_base = 0.05, retry_cap = 0.4,
        on_error = function(e) kinds[#kinds + 1] = e.kind end })
      helper.collect(sub, 1)
      srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
      until_run(sub, function(r) return r.status == "COMPLETED" end)
      sub:close()
      assert.are.same({ "network", "rate_limited", "rate_limited", "rate_limited",
        "rate_limited", "rate_limited", "rate_limited" }, kinds)
      -- The snapshot, 7 failed live polls, the one that brings the change (and perhaps the
      -- next one): backed off, not hammered.
      assert.is_true(srv:stats().realtime_requests <= 11)
    end)

    it("gives the same run objects as the other backend would", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "COMPLETED_SUCCESSFULLY",
        costInCents = 0.0000001, baseCostInCents = 1.5e21, usageDurationMs = 1200,
        startedAt = "2025-01-10T12:00:00.120Z", completedAt = "2025-01-10T12:00:01Z",
        metadata = '{"a":[1,2]}', isTest = true }
      local run = helper.collect(subscribe_tag(srv, tag), 1)[1]
      assert.are.equal(id, run.id)
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", run.createdAt)
      assert.are.equal("2025-01-10T12:00:00.120Z", run.startedAt)
      assert.are.equal("2025-01-10T12:00:01.000Z", run.finishedAt)
      assert.are.equal(1e-7, run.costInCents)
      assert.are.equal(1.5e21, run.baseCostInCents)
      assert.are.equal(1200, run.durationMs)
      assert.is_true(run.isTest)
      assert.are.same({ tag }, run.tags)
      assert.are.same({ a = { 1, 2 } }, run.metadata)
    end)

    it("each distinct state once while runs change quickly", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "PENDING" }
      local sub = subscribe_tag(srv, tag)
      local seen = helper.collect(sub, 1)
      for i = 1, 20 do srv:update_run(id, { metadata = '{"i":' .. i .. '}' }) end
      srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
      until_run(sub, function(r) return r.status == "COMPLETED" end, seen)
      sub:close()
      assert_no_repeats(seen)
      -- Electric replays every committed change (merged per batch); native may skip
      -- intermediate states. Either way the last one is the final state.
      assert.are.equal("COMPLETED", seen[#seen].status)
      assert.are.same({ i = 20 }, seen[#seen].metadata)
    end)
  end)
end

describe("a server flipping backends under live subscriptions", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = HOLD_MS, native_coalesce_ms = 50 } end)
  teardown(function() srv:stop() end)

  for _, flip in ipairs { { "electric", "native" }, { "native", "electric" } } do
    it("from " .. flip[1] .. " to " .. flip[2] .. " loses nothing and repeats nothing", function()
      srv:set_backend(flip[1])
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local b = srv:create_run { runTags = { tag }, status = "PENDING" }
      -- a run that never changes: after the flip it comes again in the other dialect (native:
      -- as an update; Electric: in the resync after the 409), and must not be handed out again
      srv:create_run { runTags = { tag }, status = "EXECUTING", costInCents = 0.25,
        isTest = true, error = { type = "STRING_ERROR", raw = "x" },
        startedAt = "2025-01-10T12:00:00.120Z" }
      local sub = subscribe_tag(srv, tag)
      local seen = helper.collect(sub, 3)
      srv:update_run(a, { metadata = '{"step":1}' })
      until_run(sub, function(r) return r.id == a and r.metadata and r.metadata.step == 1 end,
        seen)
      srv:set_backend(flip[2])
      srv:update_run(b, { status = "EXECUTING" })
      srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
      local c = srv:create_run { runTags = { tag }, status = "PENDING" }
      local final = {}
      for _, r in ipairs(seen) do final[r.id] = r end
      while not (final[a] and final[a].status == "COMPLETED" and final[b].status == "EXECUTING"
          and final[c]) do
        local run = until_run(sub, function() return true end, seen)
        final[run.id] = run
      end
      assert.are.same(drive(sub, 1.5), {}, "the flip made runs come again")
      sub:close()
      assert_no_repeats(seen)
    end)
  end
end)
