-- trigger.shape.delivery: what one reader of a shape was given. Over a real row store first (what
-- each take hands out, in the two backends' dialects), then through subscriptions against the
-- local server on both backends (a position taken in the middle of a batch).
local helper = require "spec.helper"
local trigger = require "trigger"
local delivery = require "trigger.shape.delivery"
local shape_rows = require "trigger.shape.rows"

-- A store holding `rows` (key → table of columns).
local function store_of(rows)
  local store = shape_rows.new()
  local list = {}
  for key, row in pairs(rows) do
    list[#list + 1], list[#list + 2], list[#list + 3] = "insert", key, row
  end
  store:apply(list)
  store:publish()
  return store
end

local function ids(rows)
  local out = {}
  for _, row in ipairs(rows) do out[#out + 1] = shape_rows.column(row, "friendlyId") end
  return out
end

local function row(id, updated, extra)
  local r = { id = "i" .. id, friendlyId = id, status = "EXECUTING", updatedAt = updated }
  for k, v in pairs(extra or {}) do r[k] = v end
  return r
end

describe("trigger.shape.delivery over a row store", function()
  it("hands out each state once, in the order of the keys", function()
    local store = store_of { a = row("run_a", "2025-01-10 12:00:00.1"),
      b = row("run_b", "2025-01-10 12:00:00.1") }
    local d = delivery.new()
    assert.same({ "run_b", "run_a" }, ids(d:take(store, { "b", "a" })))
    assert.same({}, d:take(store, { "a", "b", "a" }))
    store:apply { "update", "a", { status = "COMPLETED_SUCCESSFULLY",
      updatedAt = "2025-01-10 12:00:01" } }
    store:publish()
    assert.same({ "run_a" }, ids(d:take(store, { "a", "b" })))
  end)

  it("never hands out an older state (a lagging replica's re-snapshot)", function()
    local store = store_of { a = row("run_a", "2025-01-10 12:00:05") }
    local d = delivery.new()
    d:take(store, { "a" })
    store:apply { "insert", "a", row("run_a", "2025-01-10 12:00:01", { status = "QUEUED" }) }
    store:publish()
    assert.same({}, d:take(store, { "a" }))
  end)

  it("takes the same state in the other backend's dialect as the same", function()
    local electric = row("run_a", "2025-01-10 12:00:00.120", { isTest = "f",
      runTags = '{"a","b"}', error = '{"x": 1, "y": 2}' })
    local native = row("run_a", "2025-01-10T12:00:00.12Z", { isTest = "false",
      runTags = "{a,b}", error = '{"y":2,"x":1}' })
    local store = store_of { a = electric }
    local d = delivery.new()
    assert.same({ "run_a" }, ids(d:take(store, { "a" })))
    store:apply { "insert", "a", native }
    store:publish()
    assert.same({}, d:take(store, { "a" }))
  end)

  it("a snapshot holds the rows not handed out yet as the reader last saw them", function()
    local store = store_of { a = row("run_a", "2025-01-10 12:00:00"),
      b = row("run_b", "2025-01-10 12:00:00") }
    local d = delivery.new()
    d:take(store, { "a", "b" })
    store:apply { "update", "a", { updatedAt = "2025-01-10 12:00:01", status = "QUEUED" },
      "update", "b", { updatedAt = "2025-01-10 12:00:01", status = "QUEUED" } }
    store:publish()
    assert.equal(2, #d:take(store, { "a", "b" }))
    d:handed(1)
    local snap = d:snapshot()
    assert.equal("QUEUED", snap.a.status)
    assert.equal("EXECUTING", snap.b.status)
  end)

  it("forgets dropped keys (handed out anew) and, at a resync, the runs no longer stored", function()
    local store = store_of { a = row("run_a", "2025-01-10 12:00:00"),
      b = row("run_b", "2025-01-10 12:00:00") }
    local d = delivery.new()
    d:take(store, { "a", "b" })
    assert.same({ "run_a" }, ids(d:take(store, { "a" }, { a = true })))
    store:reset()
    store:apply { "insert", "a", row("run_a", "2025-01-10 12:00:00") }
    store:publish()
    assert.same({}, d:take(store, { "a" }, nil, true))
    assert.same({ "a" }, (function()
      local keys = {}
      for k in pairs(d:snapshot()) do keys[#keys + 1] = k end
      return keys
    end)())
  end)
end)

for _, backend in ipairs { "electric", "native" } do
  describe("delivery through subscriptions on the " .. backend .. " backend", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = 500, backend = backend, native_coalesce_ms = 20 }
    end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    it("a position taken mid-batch resumes with the runs not handed out yet", function()
      local tag = helper.fresh_tag()
      local made = {}
      for i = 1, 3 do made[srv:create_run { runTags = { tag }, status = "EXECUTING" }] = i end
      local sub = trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv))
      local first = assert(sub:next(10))
      local pos = sub:position()
      sub:close()
      local n = 0
      for _ in pairs(pos.rows) do n = n + 1 end
      assert.equal(1, n) -- only the run handed out
      local resumed = trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv, { resume = pos }))
      local rest = helper.collect(resumed, 2)
      resumed:close()
      local seen = { [first.id] = true }
      for _, run in ipairs(rest) do
        assert.is_nil(seen[run.id], "handed out twice: " .. run.id)
        seen[run.id] = true
      end
      for id in pairs(made) do assert.is_true(seen[id], id) end
    end)

    it("two readers of one upstream each keep their own position", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local s1 = trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv))
      local s2 = trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv))
      assert.equal(a, assert(s1:next(10)).id)
      assert.equal(a, assert(s2:next(10)).id)
      srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
      assert.equal("COMPLETED", assert(s1:next(10)).status)
      local p1, p2 = s1:position(), s2:position()
      local function status_of(p)
        local _, r = next(p.rows)
        return r.status
      end
      assert.equal("COMPLETED_SUCCESSFULLY", status_of(p1))
      assert.equal("EXECUTING", status_of(p2)) -- s2 has not taken the change yet
      assert.equal("COMPLETED", assert(s2:next(10)).status)
      assert.equal("COMPLETED_SUCCESSFULLY", status_of(s2:position()))
      s1:close()
      s2:close()
    end)
  end)
end
