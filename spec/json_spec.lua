-- The C JSON decoder behind trigger.json.
local json = require "trigger.json"
local core = require "trigger.core"

describe("trigger.json.decode", function()
  it("keeps integers integers and other numbers floats", function()
    local v = json.decode('[1, -0, 1.5, 1e3, 9223372036854775807, 9223372036854775808]')
    if math.type then
      assert.are.equal("integer", math.type(v[1]))
      assert.are.equal("float", math.type(v[3]))
      assert.are.equal("float", math.type(v[4]))
      assert.are.equal(math.maxinteger, v[5])
      assert.are.equal("float", math.type(v[6]))
    end
    assert.are.equal(1, v[1])
    assert.are.equal(1.5, v[3])
    assert.are.equal(1000, v[4])
  end)

  it("decodes objects, arrays, strings with escapes, and null as cjson.null", function()
    local v = json.decode('{"a":null,"b":[true,false,[]],'
      .. '"c":"q\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"}')
    assert.are.equal(json.null, v.a)
    assert.are.same({ true, false, {} }, v.b)
    assert.are.equal('q"\\/\b\f\n\r\té\240\159\152\128', v.c)
  end)

  it("keeps a lone surrogate as its own code point", function()
    assert.are.equal("\237\160\128x", json.decode('"\\ud800x"'))
  end)

  it("refuses what is not JSON, saying where", function()
    local cases = {
      [""] = "unexpected end at byte 1", ["[1,]"] = "unexpected character at byte 4",
      ["01"] = "text after the value at byte 2", ["{'a':1}"] = "expected a key at byte 2",
      ['{"a" 1}'] = "expected : at byte 6", ['"a\nb"'] = "control character in string at byte 3",
      ['"\\x"'] = "bad escape at byte 4", ["NaN"] = "unexpected character at byte 1",
      ["[1 2]"] = "expected , or a closing bracket at byte 5",
    }
    for text, want in pairs(cases) do
      local v, err = json.decode(text)
      assert.is_nil(v, text)
      assert.are.equal(want, err, text)
    end
  end)

  it("refuses nesting past max_depth", function()
    local ok = string.rep("[", json.max_depth) .. string.rep("]", json.max_depth)
    assert.is_table(json.decode(ok))
    local v, err = json.decode("[" .. ok .. "]")
    assert.is_nil(v)
    assert.matches("nested too deep", err)
  end)

  it("takes its own null value and depth", function()
    assert.is_nil(core.json_decode("[null]")[1])
    assert.are.equal(false, core.json_decode("[null]", false)[1])
    assert.is_nil((core.json_decode("[[1]]", nil, 1)))
    assert.has_error(function() core.json_decode("1", nil, 0) end)
  end)

  it("decodes what lua-cjson encodes", function()
    local cjson = require "cjson"
    local doc = { s = "x", n = 3, f = 0.25, list = { 1, "two", { three = true } }, e = {} }
    assert.are.same(doc, json.decode(cjson.encode(doc)))
  end)

  -- Short strings and keys come from a cache that compares a string with the one last seen in
  -- its slot by windows from both ends: strings of every short length that differ in one byte
  -- only (the first, a middle one, the last), one after another as keys and as values, must
  -- each come out as themselves.
  it("never hands out a cached string for one that differs in a single byte", function()
    for len = 1, 40 do
      local base = {}
      for i = 1, len do base[i] = string.char(96 + (i % 26) + 1) end
      local texts = { table.concat(base) }
      for _, at in ipairs { 1, math.floor((len + 1) / 2), len } do
        for _, c in ipairs { "A", "Z" } do
          local t = { table.unpack(base) }
          t[at] = c
          texts[#texts + 1] = table.concat(t)
        end
      end
      for round = 1, 2 do
        for _, s in ipairs(texts) do
          local doc = json.decode('{"' .. s .. '":"' .. s .. '"}')
          local k, v = next(doc)
          assert.are.equal(s, k, round .. ": key " .. s)
          assert.are.equal(s, v, round .. ": value " .. s)
          assert.are.equal(s, json.decode('["' .. s .. '"]')[1], s)
        end
      end
    end
  end)

  -- More strings than the cache has slots, alike but for one or two bytes: some share a slot
  -- whatever the hash is, so a comparison that skipped a byte would show.
  it("keeps apart many alike short strings that must share slots", function()
    local letters = "abcdefghijklmnopqrstuvwxyz"
    for _, shape in ipairs { "a%s%s", "a%s%sa", "ab%s%sba", "abcdefgh%s%shgfedcba" } do
      local texts = {}
      for i = 1, #letters do
        for j = 1, #letters do
          texts[#texts + 1] = shape:format(letters:sub(i, i), letters:sub(j, j))
        end
      end
      local keys = {}
      for n, s in ipairs(texts) do keys[n] = '"' .. s .. '":' .. n end
      local array = json.decode('["' .. table.concat(texts, '","') .. '"]')
      local object = json.decode("{" .. table.concat(keys, ",") .. "}")
      for n, s in ipairs(texts) do
        assert.are.equal(s, array[n], shape)
        assert.are.equal(n, object[s], shape)
      end
    end
  end)

  -- Strings are read 16 bytes at a time where the machine can: every place of an escape, a
  -- quote or a control byte within and across those blocks, near the chunk boundary of the
  -- unescaping (256 input bytes) and at the very end of the text.
  it("reads strings the same wherever escapes and ends fall", function()
    local cjson = require "cjson"
    local specials = { '"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "\1", "\31", "é", "x" }
    for len = 0, 40 do
      for at = 0, len do
        for _, sp in ipairs(specials) do
          local s = ("a"):rep(at) .. sp .. ("b"):rep(len - at)
          local text = cjson.encode(s)
          assert.are.equal(s, json.decode(text), text)
          assert.are.equal(s, json.decode("[" .. text .. "]")[1], text)
        end
      end
    end
    for _, len in ipairs { 240, 250, 255, 256, 257, 270, 511, 512, 513, 600 } do
      for at = len - 20, len do
        local s = ('\\"'):rep(math.floor(at / 2)) .. ("c"):rep(len - at) .. "\n" .. ("d"):rep(at % 7)
        assert.are.equal(s, json.decode(cjson.encode(s)), len .. "/" .. at)
      end
    end
    -- What is refused is still refused at every place: a raw control byte, a bad escape, an
    -- unterminated string and a backslash as the last byte.
    for at = 0, 40 do
      local head = ("a"):rep(at)
      assert.is_nil((json.decode('"' .. head .. '\n"')), at)
      assert.is_nil((json.decode('"\\"' .. head .. '\1"')), at)
      assert.is_nil((json.decode('"' .. head .. '\31' .. head .. '"')), at)
      assert.is_nil((json.decode('"\\"' .. head .. '\31' .. head .. '"')), at)
      assert.is_nil((json.decode('"' .. head .. '\\x"')), at)
      assert.is_nil((json.decode('"' .. head)), at)
      assert.is_nil((json.decode('"\\n' .. head)), at)
      assert.is_nil((json.decode('"' .. head .. "\\")), at)
      assert.is_nil((json.decode('"\\t' .. head .. "\\")), at)
    end
  end)
end)

describe("trigger.json.encode", function()
  local function array(t) return setmetatable(t or {}, json.array_mt) end

  it("writes tables marked with array_mt as arrays, [] when empty", function()
    assert.is_table(json.array_mt)
    assert.are.equal("[]", json.encode(array()))
    assert.are.equal("[1,2]", json.encode(array { 1, 2 }))
    assert.are.equal("{}", json.encode({}))          -- unmarked: an object, as before
    local run = json.decode(json.encode {
      id = "run_1", tags = array(), realtimeStreams = array(),
      output = { items = array(), nested = { array(), array { "a" } } },
    })
    assert.are.equal("run_1", run.id)
    local text = json.encode { tags = array(), realtimeStreams = array() }
    assert.matches('"tags":%[%]', text)
    assert.matches('"realtimeStreams":%[%]', text)
    assert.matches('"items":%[%]', json.encode { output = { items = array() } })
    assert.are.equal('[[],["a"]]', json.encode { array(), array { "a" } })
  end)

  it("writes decoded arrays back as arrays: [] stays [], nested and in payloads", function()
    local cases = {
      "[]", "[[]]", "[[],[[]],{}]", '{"tags":[]}', '{"realtimeStreams":[[],{}]}',
      '{"a":{"b":[{"c":[]}]}}', '[1,"two",[],{"e":[]},null]', -- one key each: cjson's order
    }
    local both = json.encode(json.decode('{"tags":[],"realtimeStreams":[],"d":{}}'))
    assert.matches('"tags":%[%]', both)
    assert.matches('"realtimeStreams":%[%]', both)
    assert.matches('"d":{}', both)
    for _, text in ipairs(cases) do
      assert.are.equal(text, json.encode(json.decode(text)), text)
    end
    local v = json.decode('{"list":[],"obj":{},"rows":[[]]}')
    assert.are.equal(json.array_mt, getmetatable(v.list))
    assert.are.equal(json.array_mt, getmetatable(v.rows))
    assert.are.equal(json.array_mt, getmetatable(v.rows[1]))
    assert.is_nil(getmetatable(v), "an object stays a plain table")
    assert.is_nil(getmetatable(v.obj))
    -- Longer than the decoder's batches (128) and nested under them: still marked, in order.
    local long = "[" .. string.rep("[],", 299) .. "[]]"
    assert.are.equal(long, json.encode(json.decode(long)))
    -- A payload as the run object holds it, re-encoded as the OpenResty SSE example does.
    local payload = json.decode('{"items":[],"user":{"roles":[],"name":"x"}}')
    local text = json.encode { id = "run_1", payload = payload }
    assert.matches('"items":%[%]', text)
    assert.matches('"roles":%[%]', text)
  end)

  it("decodes with the marker only when asked (core.json_decode takes it)", function()
    assert.is_nil(getmetatable(core.json_decode("[]")))
    assert.are.equal(json.array_mt, getmetatable(core.json_decode("[]", nil, 8, json.array_mt)))
    assert.has_error(function() core.json_decode("[]", nil, 8, "not a table") end)
    -- A refused document leaves nothing behind and says why, marker or not.
    local v, err = core.json_decode("[[],", nil, 8, json.array_mt)
    assert.is_nil(v)
    assert.are.equal("unexpected end at byte 5", err)
  end)

  it("leaves strings and values that only look like its placeholder alone", function()
    local text = json.encode { s = "trigger_json_empty_array", e = array(), n = json.null }
    assert.matches('"s":"trigger_json_empty_array"', text)
    assert.matches('"e":%[%]', text)
    assert.matches('"n":null', text)
    assert.are.equal('"x"', json.encode("x"))
    assert.are.equal("3", json.encode(3))
  end)
end)

-- The public name (issue 31, point 6): what a user calls on a run, a chunk or a position.
describe("trigger.encode_json", function()
  local trigger = require "trigger"
  local run_object = require "trigger.run.object"

  it("encodes a run as the library hands it out: an empty tags list stays []", function()
    local run = run_object.build {
      id = "cm1", friendlyId = "run_1", taskIdentifier = "t", status = "EXECUTING",
      createdAt = "2025-01-10 12:00:00", updatedAt = "2025-01-10 12:00:00", runTags = "{}",
      realtimeStreams = "{}", payload = '{"items":[],"n":null}', payloadType = "application/json",
    }
    local text = trigger.encode_json(run)
    assert.matches('"tags":%[%]', text)
    assert.matches('"realtimeStreams":%[%]', text)
    assert.matches('"items":%[%]', text)
    assert.matches('"n":null', text)
    assert.are.equal(require("cjson").encode({}), trigger.encode_json({})) -- a plain table as cjson
    assert.are.equal('"x"', trigger.encode_json("x"))
  end)
end)
