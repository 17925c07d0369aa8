-- Event loops: many subscriptions driven by one poll() loop, the cqueues pollable protocol,
-- and the plain for-loop yielding to cqueues.
local helper = require "spec.helper"
local trigger = require "trigger"
local clock = require "trigger.clock"

local srv

local function opts()
  return { access_token = srv.secret_key, base_url = srv.base_url, retry_base = 0.01,
    retry_cap = 0.05 }
end

describe("event loops", function()
  setup(function() srv = helper.start_server { hold_ms = 20000 } end)
  teardown(function() srv:stop() end)

  it("drives 300 subscriptions from one poll() loop", function()
    local N = 300
    local subs, ids, got = {}, {}, {}
    local prefix = "user:many-" .. os.time() .. "-"
    for i = 1, N do
      ids[i] = srv:create_run { runTags = { prefix .. i }, status = "PENDING" }
      subs[i] = trigger.runs.subscribe_to_tag(prefix .. i, opts())
    end
    local function pump(want_status)
      local pending = N
      local deadline = clock.now() + 60
      for i = 1, N do got[i] = nil end
      while pending > 0 and clock.now() < deadline do
        for i = 1, N do
          local run = subs[i]:poll()
          if run then
            assert.are.equal(ids[i], run.id)
            if run.status == want_status and not got[i] then
              got[i] = true
              pending = pending - 1
            end
          end
        end
        if pending > 0 then trigger.step(0.05) end
      end
      return pending
    end
    assert.are.equal(0, pump("QUEUED"))
    -- every subscription is now in a live long-poll; change every run
    for i = 1, N do srv:update_run(ids[i], { status = "EXECUTING" }) end
    assert.are.equal(0, pump("EXECUTING"))
    -- A round of polls looks at the network once: after trigger.step, not at all; without it,
    -- the first poll of the round steps and the others take what it brought.
    local transport = require("trigger.transport").current()
    trigger.step(0)
    local before = transport.steps()
    for i = 1, N do subs[i]:poll() end
    assert.are.equal(before, transport.steps())
    for i = 1, N do subs[i]:poll() end
    assert.are.equal(before + 1, transport.steps())
    subs[1]:poll()
    assert.are.equal(before + 2, transport.steps()) -- polled twice in a row: it looks again
    for i = 1, N do subs[i]:close() end
  end)

  it("speaks the cqueues pollable protocol", function()
    local tag = "user:pollable-" .. os.time()
    local sub = trigger.runs.subscribe_to_tag(tag, opts())
    assert.is_number(sub:pollfd())
    assert.are.equal("r", sub:events())
    assert.are.equal(0, sub:timeout()) -- not started yet: ready to run at once
    assert.is_nil(sub:poll())
    local t = sub:timeout()
    assert.is_true(t == nil or t >= 0)
    sub:close()
  end)

  it("mints a public token inside a cqueues loop without blocking it", function()
    local cqueues = require "cqueues"
    local cq = cqueues.new()
    -- the claims request is held 600 ms at the server; a timer of the same loop keeps ticking
    srv:fault { match = { path_prefix = "/api/v1/auth/jwt/claims" }, kind = "delay",
      delay_ms = 600, count = 1 }
    trigger.auth.clear_cache()
    local token, ticks_while_minting, ticks, minting = nil, 0, 0, true
    cq:wrap(function()
      token = assert(trigger.auth.create_public_token {
        access_token = srv.secret_key, base_url = srv.base_url,
        scopes = { read = { tags = { "cq-token" } } } })
      minting = false
    end)
    cq:wrap(function()
      while minting do
        ticks = ticks + 1
        ticks_while_minting = ticks
        cqueues.sleep(0.02)
      end
    end)
    local deadline = clock.now() + 20
    while not cq:empty() and clock.now() < deadline do assert(cq:step(1)) end
    assert.is_string(token)
    -- 600 ms at 20 ms a tick: about 30 ticks; a blocking wait would allow one or two
    assert.is_true(ticks_while_minting >= 10, "the loop was blocked: " .. ticks_while_minting
      .. " ticks while the token was minted")
  end)

  it("runs two subscriptions and a timer in one cqueues loop without blocking it", function()
    local cqueues = require "cqueues"
    local cq = cqueues.new()
    local t1, t2 = "user:cq1-" .. os.time(), "user:cq2-" .. os.time()
    local a = srv:create_run { runTags = { t1 }, status = "PENDING" }
    local b = srv:create_run { runTags = { t2 }, status = "PENDING" }
    local events, ticks = {}, 0
    local done = 0
    local function follow(tag)
      cq:wrap(function()
        for run in trigger.runs.subscribe_to_tag(tag, opts()) do
          events[#events + 1] = run.id .. " " .. run.status .. " @" .. ticks
          if run.isCompleted then break end
        end
        done = done + 1
      end)
    end
    follow(t1)
    follow(t2)
    cq:wrap(function()
      -- the timer keeps ticking while both subscriptions wait in their long-polls
      while done < 2 do
        ticks = ticks + 1
        if ticks == 5 then srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" }) end
        if ticks == 10 then srv:update_run(b, { status = "COMPLETED_SUCCESSFULLY" }) end
        cqueues.sleep(0.02)
      end
    end)
    local deadline = clock.now() + 30
    while not cq:empty() and clock.now() < deadline do
      assert(cq:step(1))
    end
    assert.are.equal(2, done)
    assert.is_true(ticks >= 10)
    local finished_a, finished_b
    for _, e in ipairs(events) do
      if e:find(a .. " COMPLETED", 1, true) then finished_a = tonumber(e:match("@(%d+)")) end
      if e:find(b .. " COMPLETED", 1, true) then finished_b = tonumber(e:match("@(%d+)")) end
    end
    assert.is_truthy(finished_a)
    assert.is_truthy(finished_b)
    assert.is_true(finished_a >= 5 and finished_b >= 10, table.concat(events, "; "))
  end)
end)
