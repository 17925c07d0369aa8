-- Unit tests: application/super+json packets.
local superjson = require "trigger.superjson"
local json = require "trigger.json"

local function decode(doc) return superjson.decode(json.encode(doc)) end

describe("superjson.decode", function()
  it("returns plain json when there is no meta", function()
    assert.are.same({ a = 1 }, decode { json = { a = 1 } })
  end)

  it("restores Date, bigint, undefined and numbers", function()
    local v = decode {
      json = { at = "2025-01-10T12:00:00.000Z", big = "12345678901234567890", small = "42",
        gone = json.null, nan = "NaN", inf = "Infinity", ninf = "-Infinity" },
      meta = { values = { at = { "Date" }, big = { "bigint" }, small = { "bigint" },
        gone = { "undefined" }, nan = { "number" }, inf = { "number" }, ninf = { "number" } } },
    }
    assert.are.equal("2025-01-10T12:00:00.000Z", v.at)
    assert.are.equal("12345678901234567890", v.big) -- too big for an integer: kept as text
    if math.tointeger then assert.are.equal(42, v.small) end
    assert.is_nil(v.gone)
    assert.is_true(v.nan ~= v.nan)
    assert.are.equal(math.huge, v.inf)
    assert.are.equal(-math.huge, v.ninf)
  end)

  it("restores sets and maps, with annotations inside them", function()
    local v = decode {
      json = { s = { 1, 2 }, m = { { "k1", "2025-01-10T00:00:00.000Z" }, { "k2", "x" } } },
      meta = { values = { s = { "set" }, m = { "map", { ["0.1"] = { "Date" } } } } },
    }
    assert.are.same({ 1, 2 }, v.s)
    assert.are.same({ k1 = "2025-01-10T00:00:00.000Z", k2 = "x" }, v.m)
  end)

  it("follows dotted paths and escaped dots", function()
    local v = decode {
      json = { a = { b = { "1", "NaN" } }, ["x.y"] = "Infinity" },
      meta = { values = { ["a.b.1"] = { "number" }, ["x\\.y"] = { "number" } } },
    }
    assert.is_true(v.a.b[2] ~= v.a.b[2])
    assert.are.equal(math.huge, v["x.y"])
  end)

  it("handles an annotation at the root", function()
    assert.are.equal(math.huge, decode { json = "Infinity", meta = { values = { "number" } } })
  end)

  it("reports malformed documents instead of raising", function()
    assert.is_nil((superjson.decode("[1,")))
    assert.is_nil((superjson.decode('"str"')))
    local v, err = decode { json = { a = 1 }, meta = { values = { ["a.b.c"] = { "Date" } } } }
    assert.is_nil(v)
    assert.matches("path leads nowhere", err)
  end)

  it("splits paths", function()
    assert.are.same({ "a", "b.c", "d\\" }, superjson._parse_path("a.b\\.c.d\\\\"))
  end)
end)
