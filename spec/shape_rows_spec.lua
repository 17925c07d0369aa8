-- Unit tests: rows kept from the shape log (trigger.shape.rows) and what is handed to a reader
-- (trigger.shape.delivery).
local shape_rows = require "trigger.shape.rows"
local delivery = require "trigger.shape.delivery"
local json = require "trigger.json"
local null = json.null

local function insert(key, value) return { key = key, value = value, headers = { operation = "insert" } } end
local function update(key, value) return { key = key, value = value, headers = { operation = "update" } } end
local function delete(key) return { key = key, value = { id = key }, headers = { operation = "delete" } } end
local UP = { headers = { control = "up-to-date" } }

-- Messages go through JSON text and the C parser, as a response body does.
local function body(messages)
  if #messages == 0 then return "[]" end
  return json.encode(messages)
end

local function parsed(messages) return assert(shape_rows.parse(body(messages))) end

-- Rows as tables of columns (the store keeps whole values as row blobs).
local function tables(rows)
  local out = {}
  for i, row in ipairs(rows) do out[i] = shape_rows.table(row) end
  return out
end

-- A store with one reader: apply takes message tables, take publishes a batch and hands the
-- reader what it has not been given.
local function new_store(given)
  local store, reader = shape_rows.new(given), delivery.new(given)
  return {
    apply = function(_, messages) return store:apply(parsed(messages)) end,
    reset = function() store:reset() end,
    take = function()
      local b = store:publish()
      return tables(reader:take(store, b.keys, b.dropped, b.resync))
    end,
    snapshot = function() return reader:snapshot() end,
    store = store, reader = reader,
  }
end

describe("shape_rows", function()
  it("merges partial updates, keeping NULL distinct from absent", function()
    local s = new_store()
    s:apply { insert("k", { id = "k", status = "PENDING", output = "x", ttl = "1m" }) }
    s:apply { update("k", { id = "k", status = "EXECUTING", output = null }) }
    local rows = s:take()
    assert.are.equal(1, #rows)
    assert.are.same({ id = "k", status = "EXECUTING", output = null, ttl = "1m" }, rows[1])
  end)

  it("hands each changed row once per batch, in order of first change", function()
    local s = new_store()
    local up = s:apply { insert("a", { id = "a" }), insert("b", { id = "b" }),
      update("a", { id = "a", x = "1" }), UP }
    assert.is_true(up)
    local rows = s:take()
    assert.are.same({ "a", "b" }, { rows[1].id, rows[2].id })
    assert.are.equal("1", rows[1].x)
    assert.are.same({}, s:take())
  end)

  it("publishes each changed key once, where it first changed, and lists each stored key once",
    function()
    local s = new_store()
    s:apply { insert("a", { id = "a" }), insert("b", { id = "b" }), insert("c", { id = "c" }) }
    assert.are.same({ "a", "b", "c" }, s.store:publish().keys)
    s:apply { update("b", { id = "b", v = "0" }), insert("c", { id = "c", v = "0" }),
      update("b", { id = "b", v = "00" }) } -- changes only, no delete
    assert.are.same({ "b", "c" }, s.store:publish().keys)
    s:apply { update("b", { id = "b", v = "1" }), insert("d", { id = "d" }), delete("a"),
      update("b", { id = "b", v = "2" }), insert("a", { id = "a" }), delete("d"),
      insert("d", { id = "d" }), delete("z"), insert("e", { id = "e" }) }
    local b = s.store:publish()
    assert.are.same({ "b", "d", "a", "z", "e" }, b.keys)
    assert.are.same({ a = true, d = true, z = true }, b.dropped)
    assert.are.same({ "a", "b", "c", "d", "e" }, s.store:keys())
    s:apply { delete("c"), insert("f", { id = "f" }), insert("c", { id = "c" }), delete("f") }
    assert.are.same({ "c", "f" }, s.store:publish().keys)
    assert.are.same({ "a", "b", "c", "d", "e" }, s.store:keys())
    s:apply { insert("f", { id = "f" }) } -- new again after a delete: listed once, at the end
    assert.are.same({ "f" }, s.store:publish().keys)
    assert.are.same({ "a", "b", "c", "d", "e", "f" }, s.store:keys())
    assert.are.same({}, s.store:publish().keys)
  end)

  it("compacts the keys of rows deleted long ago, still listing each stored key once", function()
    local s = new_store()
    local inserts, deletes = {}, {}
    for i = 1, 600 do inserts[i] = insert("k" .. i, { id = "k" .. i }) end
    for i = 1, 500 do deletes[i] = delete("k" .. i) end
    s:apply(inserts)
    s.store:publish()
    s:apply(deletes)
    s.store:publish() -- 600 listed, 100 live: compacted
    assert.are.equal(100, #s.store.all)
    s:apply { insert("k1", { id = "k1" }), insert("k600", { id = "k600", v = "1" }) }
    local keys = s.store:keys()
    assert.are.equal(101, #keys)
    assert.are.equal("k501", keys[1])
    assert.are.equal("k1", keys[101])
    assert.are.same({ "k1", "k600" }, s.store:publish().keys)
  end)

  it("does not hand out again what did not change across a resync", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "1" }) }
    s:take()
    s:reset()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "2" }) }
    local rows = s:take()
    assert.are.equal(1, #rows)
    assert.are.equal("b", rows[1].id)
  end)

  it("forgets runs that left the shape during a resync", function()
    local s = new_store()
    s:apply { insert("a", { id = "a" }) }
    s:take()
    s:reset()
    s:apply {}
    s:take()
    s:apply { insert("a", { id = "a" }) }
    assert.are.equal(1, #s:take())
  end)

  it("hands out a run again after a delete and a new insert", function()
    local s = new_store()
    s:apply { insert("a", { id = "a" }) }
    s:take()
    s:apply { delete("a"), insert("a", { id = "a" }) }
    assert.are.equal(1, #s:take())
  end)

  it("resumes from a snapshot without replaying unchanged rows", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "1" }) }
    s:take()
    local r = new_store(s:snapshot())
    r:apply { update("a", { id = "a", v = "2" }), update("b", { id = "b", v = "1" }) }
    local rows = r:take()
    assert.are.equal(1, #rows)
    assert.are.same({ id = "a", v = "2" }, rows[1])
  end)

  it("gives a reader joining late every current row, then only changes", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b" }), delete("b"),
      insert("c", { id = "c" }) }
    s:take()
    local late = delivery.new()
    local rows = tables(late:take(s.store, s.store:keys()))
    assert.are.same({ "a", "c" }, { rows[1].id, rows[2].id })
    s:apply { update("a", { id = "a", v = "2" }) }
    local b = s.store:publish()
    rows = tables(late:take(s.store, b.keys, b.dropped, b.resync))
    assert.are.same({ { id = "a", v = "2" } }, rows)
  end)

  it("does not hand a reader a state older than one it was given (by updatedAt)", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10 12:00:00.5" }) }
    assert.are.equal(1, #s:take())
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10T12:00:00.400" }) }
    assert.are.same({}, s:take())
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10T12:00:00.600" }) }
    assert.are.equal(1, #s:take())
  end)

  it("hands a key of merged batches out once, and a key dropped meanwhile anew, once", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", v = "1" }), insert("b", { id = "b", v = "1" }) }
    assert.are.equal(2, #s:take())
    -- Two batches a slow reader takes at once: a changed twice, b deleted and stored again
    -- unchanged, c new.
    s:apply { update("a", { id = "a", v = "2" }) }
    local b1 = s.store:publish()
    s:apply { update("a", { id = "a", v = "3" }), delete("b"), insert("b", { id = "b", v = "1" }),
      insert("c", { id = "c" }) }
    local b2 = s.store:publish()
    local keys, dropped = {}, {}
    for _, b in ipairs { b1, b2 } do
      for _, k in ipairs(b.keys) do keys[#keys + 1] = k end
      for k in pairs(b.dropped) do dropped[k] = true end
    end
    keys[#keys + 1] = "b" -- a key may come more than once
    local rows = tables(s.reader:take(s.store, keys, dropped, false))
    local got = {}
    for i, row in ipairs(rows) do got[i] = row.id .. (row.v or "") end
    assert.are.same({ "a3", "b1", "c" }, got)
    -- and nothing again
    assert.are.same({}, s.reader:take(s.store, keys, {}, false))
  end)

  it("does not hand out the same state again in the other dialect", function()
    local s = new_store()
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10 12:00:00.5+00", runTags = '{"x"}',
      isTest = "f", costInCents = "0" }) }
    assert.are.equal(1, #s:take())
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10T12:00:00.500Z", runTags = "{x}",
      isTest = "false", costInCents = "0.0" }) }
    assert.are.same({}, s:take())
    s:apply { insert("a", { id = "a", updatedAt = "2025-01-10T12:00:00.500Z", runTags = "{y}",
      isTest = "false", costInCents = "0.0" }) }
    assert.are.equal(1, #s:take())
  end)

  -- A child Lua 5.4 in the given collector mode loads trigger.shape.delivery with collectgarbage
  -- counted (then, given `later`, switches to that mode, as a host may), hands out a batch of
  -- 600 rows and prints the mode it ends in and the steps asked.
  local function child(mode, later)
    local code = ([[
      collectgarbage(%q)
      local steps, real = 0, collectgarbage
      collectgarbage = function(what, ...)
        if what == "step" then steps = steps + 1 end
        return real(what, ...)
      end
      package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
      package.cpath = %q .. package.cpath
      local delivery = require "trigger.shape.delivery"
      if %s then real(%q) end
      local rows = {}
      for i = 1, 600 do rows["k" .. i] = { id = "k" .. i } end
      local store = { raw = function(_, k) return rows[k] end }
      local keys = {}
      for i = 1, 600 do keys[i] = "k" .. i end
      local d = delivery.new()
      local out = d:take(store, keys)
      for i = 1, #out do d:handed(i) end
      collectgarbage = real
      io.write(collectgarbage("incremental"), " ", steps)
    ]]):format(mode, (os.getenv("BUILD") or "build/5.4") .. "/?.so;", tostring(later ~= nil),
      later or "")
    local path = os.tmpname()
    local h = assert(io.open(path, "w"))
    h:write(code)
    h:close()
    local p = assert(io.popen("lua5.4 " .. path .. " 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(path)
    return out
  end

  it("steps the collector while a large batch is handed out in generational mode only, and "
    .. "leaves the mode as it found it", function()
    if _VERSION ~= "Lua 5.4" then return pending("Lua 5.4's collector modes") end
    assert.are.equal("generational 2", child("generational")) -- at runs 256 and 512
    assert.are.equal("incremental 0", child("incremental"))
    -- (the collector is settled in generational mode as the batch begins: a host that went
    -- incremental meanwhile is put back)
    assert.are.equal("incremental 2", child("generational", "incremental"))
  end)

  it("spots malformed bodies before applying them", function()
    local function refused(text, why)
      local list, err = shape_rows.parse(text)
      assert.is_nil(list, text)
      assert.are.equal(why, err, text)
    end
    refused('{"x":1}', "response body is not a JSON array of messages")
    refused('"x"', "response body is not a JSON array of messages")
    refused('{}', "response body is not a JSON array of messages")
    refused("[1]", "message 1 of the response is not an object")
    refused('[{"headers":{"control":"up-to-date"}},[]]', "message 2 of the response is not an object")
    refused('[{"key":"k"}]', "message 1 of the response has no headers")
    refused('[{"headers":"insert","key":"k"}]', "message 1 of the response has no headers")
    refused('[{"headers":{"operation":"insert"},"key":"k"}]',
      "message 1 of the response has no value object")
    refused('[{"headers":{"operation":"update"},"value":{}}]', "message 1 of the response has no key")
    refused('[{"headers":{"operation":"delete"},"key":7}]', "message 1 of the response has no key")
    refused('[{"headers":{"operation":"insert"},"key":"k","value":"v"}]',
      "message 1 of the response has no value object")
    refused("[", "unexpected end at byte 2")
    refused('[{"headers":{}},]', "unexpected character at byte 17")
    assert.are.same({}, shape_rows.parse("[]"))
    assert.are.same({ "up-to-date", false, false, "whatever-comes-next", false, false },
      parsed { UP, { headers = { control = "whatever-comes-next" } } })
  end)

  it("lists what matters of each message and skips the rest", function()
    local list = assert(shape_rows.parse([[
      [{"headers":{"operation":"insert","lsn":"1","txids":[1,2],"op_position":0,"x":{"y":[]}},
        "key":"\"public\".\"TaskRun\"/\"1\"","value":{"id":"1","tags":"{a}","n":null},
        "extra":{"nested":[{"a":1}]}},
       {"headers":{"operation":"delete"},"key":"k2"},
       {"headers":{"control":"must-refetch"}},
       {"headers":{"note":"neither"}},
       {"value":{"id":"late"},"key":"k3","headers":{"operation":"update"}},
       {"headers":{"control":"up-to-date","global_last_seen_lsn":"9"}}]
    ]]))
    -- (whole values come as row blobs)
    assert.are.equal("string", type(list[3]))
    list[3], list[12] = shape_rows.table(list[3]), shape_rows.table(list[12])
    assert.are.same({
      "insert", '"public"."TaskRun"/"1"', { id = "1", tags = "{a}", n = null },
      "delete", "k2", false,
      "must-refetch", false, false,
      "update", "k3", { id = "late" },
      "up-to-date", false, false,
    }, list)
  end)
end)
