-- Unit tests: application/super+json packets.
local superjson = require "trigger.run.superjson"
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

  it("applies the usual annotations in C exactly as the general walk does", function()
    local core = require "trigger.core"
    local texts = { "0", "7", "-7", "007", "-0", "+5", " 5", "5 ", "1e3", "0x10", "12.5", "",
      "-", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
      "-9223372036854775809", "12345678901234567890", "NaN", "Infinity", "-Infinity", "nan" }
    local annotations = { "bigint", "number", "undefined", "Date", "URL", "regexp", "set",
      "Error", "custom-thing" }
    local function same(a, b)
      if a ~= a then return b ~= b end
      if math.type and math.type(a) ~= math.type(b) then return false end
      if a == 0 and b == 0 then return 1 / a == 1 / b end -- -0 is not 0
      return a == b
    end
    for _, annotation in ipairs(annotations) do
      local values, by_c, by_lua = {}, {}, {}
      for i, text in ipairs(texts) do
        values["f" .. i] = { annotation }
        by_c["f" .. i], by_lua["f" .. i] = text, text
      end
      values.t = { annotation } -- not a string: stays as it is
      by_c.t, by_lua.t = true, true
      assert.is_true(core.superjson_leaves(by_c, values))
      by_lua = assert(superjson._walk(by_lua, values))
      for i, text in ipairs(texts) do
        local k = "f" .. i
        assert(same(by_lua[k], by_c[k]), ("%s %q: C gave %s (%s), Lua %s (%s)"):format(
          annotation, text, tostring(by_c[k]), math.type and math.type(by_c[k]) or type(by_c[k]),
          tostring(by_lua[k]), math.type and math.type(by_lua[k]) or type(by_lua[k])))
      end
      assert.are.equal(by_lua.t, by_c.t)
    end
  end)

  it("leaves every other annotation tree to the general walk, untouched", function()
    local core = require "trigger.core"
    local trees = {
      { ["a.b"] = { "Date" } },                   -- a path
      { m = { "map" } },                          -- maps
      { c = { "custom", "Money" } },              -- two-part annotations
      { missing = { "bigint" } },                 -- a field that is not there
      { "number" },                               -- the root itself
      { [1.5] = { "bigint" } },                   -- not a key of an object
      { n = { "bigint" }, ["x.y"] = { "number" } }, -- one bad apple
    }
    for _, values in ipairs(trees) do
      local value = { a = { b = "x" }, m = { { "k", 1 } }, c = "1", n = "5", ["x.y"] = "NaN" }
      assert.is_false(core.superjson_leaves(value, values))
      assert.are.same({ a = { b = "x" }, m = { { "k", 1 } }, c = "1", n = "5", ["x.y"] = "NaN" },
        value)
    end
    assert.is_false(core.superjson_leaves("text", { a = { "Date" } }))
  end)

  -- core.superjson_decode reads the common packet in one pass and gives up on anything else;
  -- what it gives must be what the general way (the document as tables, then the walk) gives,
  -- and what it gives up on must be what that way decodes or refuses.
  it("decodes in one pass exactly what the general way decodes, or leaves it to it", function()
    local core = require "trigger.core"
    local function same(a, b)
      if type(a) ~= "table" or type(b) ~= "table" then
        if a ~= a then return b ~= b end
        if math.type and math.type(a) ~= math.type(b) then return false end
        return a == b
      end
      if getmetatable(a) ~= getmetatable(b) then return false end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end
    local value = '{"at":"2025-01-10T12:00:00.000Z","big":"9007199254740993","gone":1,'
      .. '"nan":"NaN","n":"5","list":[],"deep":{"x":"1"}}'
    -- the document with that value and these annotations
    local function with_values(tree) return '{"json":' .. value .. ',"meta":{"values":' .. tree .. '}}' end
    local texts = {
      '{"json":' .. value .. '}',
      with_values '{"at":["Date"],"big":["bigint"]}',
      '{"meta":{"values":{"at":["Date"],"big":["bigint"],"gone":["undefined"]}},"json":'
        .. value .. '}',
      '{"json":' .. value .. ',"meta":{"values":{"nan":["number"],"n":["number"]},"v":1,'
        .. '"referentialEqualities":{"a":["b"]}}}',
      with_values '{}',
      with_values 'null',
      '{"json":' .. value .. ',"meta":null}',
      '{"json":' .. value .. ',"meta":[1,{"values":2}]}',
      with_values '"Date"',
      with_values '["number"]',
      '{"json":"Infinity","meta":{"values":["number"]}}',
      with_values '{"deep.x":["bigint"]}',
      with_values '{"deep\\\\.x":["bigint"]}',
      with_values '{"deep":[{"x":["bigint"]}]}',
      with_values '{"deep":{"x":["bigint"]}}',
      with_values '{"list":["map"]}',
      with_values '{"list":["set"]}',
      with_values '{"at":["custom","Money"]}',
      with_values '{"at":[["custom","Money"]]}',
      with_values '{"at":[]}',
      with_values '{"at":[7]}',
      with_values '{"missing":["bigint"]}',
      with_values '{"missing":["Date"]}',
      with_values '{"big":["bigint"],"big":["undefined"]}',
      with_values '{"big":["bigint"]}},"meta":{"values":{}',
      with_values '{"big":["bigint"]}},"meta":{"v":1',
      with_values '{"big":["undefined"],"big":["bigint"]}',
      with_values '{"big":["bigint"]},"values":{"n":["number"]}',
      '{"json":1,"json":' .. value .. ',"meta":{"values":{"big":["bigint"]}}}',
      '{"json":"text","meta":{"values":{"big":["bigint"]}}}',
      '{"json":null,"meta":{"values":{}}}',
      '{"meta":{"values":{"big":["bigint"]}}}',
      '{"other":{"json":1},"json":[1,2,{"a":null}]}',
      with_values '{"b\\u0000g":["bigint"]}',
      with_values '{"big":["big\\u0000int"]}',
      '{"json":{"":"5"},"meta":{"values":{"":["bigint"]}}}',
      '{"json":{"x.y":"5"},"meta":{"values":{"x.y":["bigint"]}}}',
      '{"json":{"x\\\\y":"5"},"meta":{"values":{"x\\\\y":["bigint"]}}}',
      '{"json":{"b\\u0000g":"5"},"meta":{"values":{"b\\u0000g":["bigint"]}}}',
      '{"json":{"0":"5"},"meta":{"values":{"0":["bigint"]}}}',
      '{"json":["5"],"meta":{"values":{"0":["bigint"]}}}',
      '[1]', '"text"', '7', 'null', '{"json":', '{"json":1}x', '',
    }
    local many, fields = {}, {}
    for i = 1, 40 do
      many[#many + 1] = ('"f%d":["bigint"]'):format(i)
      fields[#fields + 1] = ('"f%d":"%d"'):format(i, i)
    end
    for _, k in ipairs { 31, 32, 33, 40 } do
      texts[#texts + 1] = '{"json":{' .. table.concat(fields, ",") .. '},"meta":{"values":{'
        .. table.concat(many, ",", 1, k) .. '}}}'
    end
    local long = ("n"):rep(600)
    texts[#texts + 1] = '{"json":{"' .. long .. '":"1","' .. long .. 'x":"2"},"meta":{"values":{"'
      .. long .. '":["bigint"],"' .. long .. 'x":["bigint"]}}}'
    local one_pass = 0
    for _, text in ipairs(texts) do
      local general, gerr = superjson._general(text)
      local v, done = core.superjson_decode(text, json.null, json.max_depth, json.array_mt)
      if done then
        one_pass = one_pass + 1
        assert.is_nil(gerr, text)
        assert(same(general, v), "one pass and general way differ on " .. text)
      else
        assert.is_false(v, text)
      end
      local d, derr = superjson.decode(text)
      assert(same(general, d) and gerr == derr, text)
    end
    assert.is_true(one_pass >= 15, "the one pass took " .. one_pass .. " documents")
  end)

  it("splits paths", function()
    assert.are.same({ "a", "b.c", "d\\" }, superjson._parse_path("a.b\\.c.d\\\\"))
  end)
end)
