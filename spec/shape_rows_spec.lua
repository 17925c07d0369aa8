-- Unit tests: rows kept from the shape log (trigger.shape_rows) and what is handed to a reader
-- (trigger.delivery).
local shape_rows = require "trigger.shape_rows"
local delivery = require "trigger.delivery"
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

-- A store with one reader: apply takes message tables, take publishes a batch and hands the
-- reader what it has not been given.
local function new_store(given)
  local store, reader = shape_rows.new(given), delivery.new(given)
  return {
    apply = function(_, messages) return store:apply(parsed(messages)) end,
    reset = function() store:reset() end,
    take = function()
      local b = store:publish()
      return reader:take(store, b.keys, b.dropped, b.resync)
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
    local rows = late:take(s.store, s.store:keys())
    assert.are.same({ "a", "c" }, { rows[1].id, rows[2].id })
    s:apply { update("a", { id = "a", v = "2" }) }
    local b = s.store:publish()
    rows = late:take(s.store, b.keys, b.dropped, b.resync)
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
    assert.are.same({
      "insert", '"public"."TaskRun"/"1"', { id = "1", tags = "{a}", n = null },
      "delete", "k2", false,
      "must-refetch", false, false,
      "update", "k3", { id = "late" },
      "up-to-date", false, false,
    }, list)
  end)
end)
