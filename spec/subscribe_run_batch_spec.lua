-- subscribe_to_run, subscribe_to_batch, per-wait timeouts and resuming from a position.
local helper = require "spec.helper"
local trigger = require "trigger"
local json = require "trigger.json"

local srv

local function opts(extra)
  local o = { access_token = srv.secret_key, base_url = srv.base_url, retry_base = 0.01,
    retry_cap = 0.05 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

describe("subscribe_to_run", function()
  setup(function() srv = helper.start_server { hold_ms = 2000 } end)
  teardown(function() srv:stop() end)

  it("follows one run and ends by itself when it completes", function()
    local id = srv:create_run { runTags = { "t" }, status = "PENDING" }
    local statuses = {}
    local co = coroutine.wrap(function()
      for run in trigger.runs.subscribe_to_run(id, opts()) do
        statuses[#statuses + 1] = run.status
        coroutine.yield()
      end
      statuses[#statuses + 1] = "end"
    end)
    co()
    assert.are.same({ "QUEUED" }, statuses)
    srv:update_run(id, { status = "EXECUTING" })
    co()
    srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
    co()
    co()
    assert.are.same({ "QUEUED", "EXECUTING", "COMPLETED", "end" }, statuses)
  end)

  it("ends on every final status", function()
    for _, st in ipairs { "CANCELED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT",
      "COMPLETED_WITH_ERRORS" } do
      local id = srv:create_run { status = st }
      local n = 0
      for _ in trigger.runs.subscribe_to_run(id, opts()) do n = n + 1 end
      assert.are.equal(1, n, st)
    end
  end)

  it("stays open with stop_on_completion = false", function()
    local id = srv:create_run { status = "COMPLETED_SUCCESSFULLY" }
    local sub = trigger.runs.subscribe_to_run(id, opts { stop_on_completion = false })
    assert.are.equal("COMPLETED", sub:next(10).status)
    local run, why = sub:next(0.3)
    assert.is_nil(run)
    assert.are.equal("timeout", why)
    sub:close()
  end)

  it("raises not_found for an unknown run", function()
    local sub = trigger.runs.subscribe_to_run("run_doesnotexist", opts())
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("not_found", err.kind)
    assert.are.equal(404, err.status)
  end)

  it("returns nil, 'timeout' when nothing comes in time", function()
    local id = srv:create_run { status = "EXECUTING" }
    local sub = trigger.runs.subscribe_to_run(id, opts())
    assert.is_table(sub:next(10))
    local run, why = sub:next(0.2)
    assert.is_nil(run)
    assert.are.equal("timeout", why)
    srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
    assert.are.equal("COMPLETED", sub:next(10).status)
    assert.same({ nil, "finished" }, { sub:next(1) })
  end)

  it("raises a timeout error from the for-loop form when opts.timeout passes", function()
    local id = srv:create_run { status = "EXECUTING" }
    local ok, err = pcall(function()
      for _ in trigger.runs.subscribe_to_run(id, opts { timeout = 0.3 }) do end
    end)
    assert.is_false(ok)
    assert.are.equal("timeout", err.kind)
  end)
end)

describe("subscribe_to_batch", function()
  setup(function() srv = helper.start_server { hold_ms = 2000 } end)
  teardown(function() srv:stop() end)

  it("yields every run of the batch and their changes", function()
    local ids = {}
    for i = 1, 3 do ids[i] = srv:create_run { batchId = "batch_b1", status = "PENDING" } end
    srv:create_run { batchId = "batch_other" }
    local sub = trigger.runs.subscribe_to_batch("batch_b1", opts())
    local seen = {}
    for _ = 1, 3 do seen[sub:next(10).id] = true end
    for i = 1, 3 do assert.is_true(seen[ids[i]]) end
    srv:update_run(ids[2], { status = "COMPLETED_SUCCESSFULLY" })
    local run = sub:next(10)
    assert.are.equal(ids[2], run.id)
    assert.are.equal("COMPLETED", run.status)
    sub:close()
  end)
end)

describe("resume", function()
  setup(function() srv = helper.start_server { hold_ms = 2000 } end)
  teardown(function() srv:stop() end)

  it("continues from a saved position, yielding only what changed since", function()
    local tag = "user:resume-" .. os.time()
    local a = srv:create_run { runTags = { tag } }
    local b = srv:create_run { runTags = { tag } }
    local sub = trigger.runs.subscribe_to_tag(tag, opts())
    sub:next(10)
    sub:next(10)
    local saved = json.encode(sub:position())
    sub:close()

    srv:update_run(b, { status = "EXECUTING" })
    local c = srv:create_run { runTags = { tag } }

    local logged_before = #srv:stats().log
    local resumed = trigger.runs.subscribe_to_tag(tag, opts { resume = json.decode(saved) })
    local got = {}
    for _ = 1, 2 do
      local run = resumed:next(10)
      got[run.id] = run.status
    end
    assert.are.same({ [b] = "EXECUTING", [c] = "QUEUED" }, got)
    local run, why = resumed:next(0.3)
    assert.is_nil(run, run and run.id)
    assert.are.equal("timeout", why)
    assert.is_nil(got[a])
    -- the offset moved on: no full resync happened
    local log = srv:stats().log
    local initial = 0
    for i = logged_before + 1, #log do
      if log[i].query and log[i].query:find("offset=-1", 1, true) then initial = initial + 1 end
    end
    assert.are.equal(0, initial)
    resumed:close()
  end)

  it("falls back to a resync when the saved handle is gone, still yielding only changes", function()
    local tag = "user:resume2-" .. os.time()
    local a = srv:create_run { runTags = { tag } }
    local b = srv:create_run { runTags = { tag } }
    local sub = trigger.runs.subscribe_to_tag(tag, opts())
    sub:next(10)
    sub:next(10)
    local pos = sub:position()
    sub:close()
    srv:rotate()
    srv:update_run(a, { status = "EXECUTING" })
    local resumed = trigger.runs.subscribe_to_tag(tag, opts { resume = pos })
    local run = resumed:next(10)
    assert.are.equal(a, run.id)
    local again = resumed:next(0.3)
    assert.is_nil(again, again and again.id)
    assert.is_truthy(b)
    resumed:close()
  end)

  it("refuses a malformed position", function()
    assert.has_error(function()
      trigger.runs.subscribe_to_tag("t", opts { resume = { offset = "5_0" } })
    end)
  end)
end)
