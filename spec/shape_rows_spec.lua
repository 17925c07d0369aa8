-- Unit tests: rows kept from the shape log and what is handed to the user.
local shape_rows = require "trigger.shape_rows"
local null = require("trigger.json").null

local function insert(key, value) return { key = key, value = value, headers = { operation = "insert" } } end
local function update(key, value) return { key = key, value = value, headers = { operation = "update" } } end
local function delete(key) return { key = key, value = { id = key }, headers = { operation = "delete" } } end
local UP = { headers = { control = "up-to-date" } }

describe("shape_rows", function()
  it("merges partial updates, keeping NULL distinct from absent", function()
    local s = shape_rows.new()
    s:apply { insert("k", { id = "k", status = "PENDING", output = "x", ttl = "1m" }) }
    s:apply { update("k", { id = "k", status = "EXECUTING", output = null }) }
    local rows = s:take()
    assert.are.equal(1, #rows)
    assert.are.same({ id = "k", status = "EXECUTING", output = null, ttl = "1m" }, rows[1])
  end)

  it("hands each changed row once per batch, in order of first change", function()
    local s = shape_rows.new()
    local up = s:apply { insert("a", { id = "a" }), insert("b", { id = "b" }),
      update("a", { id = "a", x = "1" }), UP }
    assert.is_true(up)
    local rows = s:take()
    assert.are.same({ "a", "b" }, { rows[1].id, rows[2].id })
    assert.are.equal("1", rows[1].x)
    assert.are.same({}, s:take())
  end)

  it("does not hand out again what did not change across a resync", function()
    local s = shape_rows.new()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "1" }) }
    s:take()
    s:reset()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "2" }) }
    local rows = s:take()
    assert.are.equal(1, #rows)
    assert.are.equal("b", rows[1].id)
  end)

  it("forgets runs that left the shape during a resync", function()
    local s = shape_rows.new()
    s:apply { insert("a", { id = "a" }) }
    s:take()
    s:reset()
    s:apply {}
    s:take()
    s:apply { insert("a", { id = "a" }) }
    assert.are.equal(1, #s:take())
  end)

  it("hands out a run again after a delete and a new insert", function()
    local s = shape_rows.new()
    s:apply { insert("a", { id = "a" }) }
    s:take()
    s:apply { delete("a"), insert("a", { id = "a" }) }
    assert.are.equal(1, #s:take())
  end)

  it("resumes from a snapshot without replaying unchanged rows", function()
    local s = shape_rows.new()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "1" }) }
    s:take()
    local r = shape_rows.new(s:snapshot())
    r:apply { update("a", { id = "a", v = "2" }), update("b", { id = "b", v = "1" }) }
    local rows = r:take()
    assert.are.equal(1, #rows)
    assert.are.same({ id = "a", v = "2" }, rows[1])
  end)

  it("spots malformed bodies before applying them", function()
    assert.is_nil((shape_rows.validate({ x = 1 })))
    assert.is_nil((shape_rows.validate({ 1 })))
    assert.is_nil((shape_rows.validate({ { headers = { operation = "insert" }, key = "k" } })))
    assert.is_nil((shape_rows.validate({ { headers = { operation = "update" } } })))
    assert.is_true(shape_rows.validate({}))
    assert.is_true(shape_rows.validate({ UP, { headers = { control = "whatever" } } }))
  end)
end)
