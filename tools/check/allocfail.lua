-- The cases tools/check/allocfail.c sweeps: each `run` calls trigger.core bindings on inputs
-- that make the C side hold heap memory while it calls Lua (strings with escapes, so the JSON
-- and Postgres parsers unescape into their scratch; buffers built before they are pushed), and
-- checks what it gets when no allocation fails. Inputs are made here, before the sweep's
-- allocator limit applies; only `run` is limited.
local core = require "trigger.core"

-- A JSON text with escaped strings in every position, more keys than a batch, a long number.
local keys = {}
for i = 1, 140 do
  keys[#keys + 1] = string.format('"k\\u00e9%d": "v\\"%d\\n"', i, i)
end
local doc = '{"a\\tb": ["x\\\\y", {"n": 1.' .. string.rep("5", 80) .. ', "s": "q\\"r"}, [true, null]], '
  .. table.concat(keys, ", ") .. "}"

local body = '[{"headers": {"operation": "insert"}, "key": "\\"public\\".\\"r\\"/\\"1\\"", '
  .. '"value": {"id": "run_\\u0031", "runTags": "{\\"a b\\",c}", "payload": "{\\"x\\": [1, \\"y\\"]}"}}, '
  .. '{"headers": {"control": "up-to-date"}}]'

local array = '{{"a\\"b","c d",NULL},{"e\\\\f",g,"h"}}'

local row = {
  friendlyId = "run_1", taskIdentifier = "t", status = "COMPLETED_SUCCESSFULLY",
  createdAt = "2025-01-10 12:00:00.123+00", number = "12", costInCents = "0.5",
  runTags = '{"tag \\"one\\"","tag two"}', realtimeStreams = '{"s\\\\1"}', isTest = "f",
}

local superjson = '{"json": {"d": "2025-01-10T12:00:00.000Z", "b": "123456789012345678901"}, '
  .. '"meta": {"values": {"d": ["Date"], "b": ["bigint"]}}}'

local bytes = string.rep("\0\1\2\255 binary", 40)

return {
  {name = "json_decode", run = function()
    local v = assert(core.json_decode(doc))
    assert(v["a\tb"][1] == "x\\y" and v["a\tb"][2].s == 'q"r' and v["k\195\1691"] == 'v"1\n')
  end},
  {name = "shape_messages", run = function()
    local list = assert(core.shape_messages(body))
    assert(list[1] == "insert" and list[2] == '"public"."r"/"1"' and list[3].id == "run_1")
    assert(list[4] == "up-to-date")
  end},
  {name = "pg_array", run = function()
    local a = assert(core.pg_array(array))
    assert(a[1][1] == 'a"b' and a[2][1] == "e\\f" and a[1][3] == nil)
  end},
  {name = "run_fields", run = function()
    local run, problems = core.run_fields(row)
    assert(problems == nil and run.tags[1] == 'tag "one"' and run.realtimeStreams[1] == "s\\1")
    assert(run.number == 12 and run.status == "COMPLETED")
  end},
  {name = "superjson_leaves", run = function()
    local v = assert(core.json_decode(superjson))
    assert(core.superjson_leaves(v.json, v.meta.values))
  end},
  {name = "b64url, url_encode, hs256", run = function()
    local e = core.b64url_encode(bytes)
    assert(core.b64url_decode(e) == bytes)
    assert(core.url_encode("a b/c\255") == "a%20b%2Fc%FF")
    assert(#core.hs256("key", bytes) == 32)
  end},
  {name = "shape query, response, position", run = function()
    local s = core.shape()
    local q = s:query({table = "runs", where = '"id" = \'run_1\'', columns = "a,b"})
    assert(q:find("table=runs", 1, true))
    local action = s:response(200, {["electric-handle"] = "h-1", ["electric-offset"] = "0_0",
      ["electric-schema"] = "{}"}, body, true)
    assert(action == "apply")
    assert(s:position() == "h-1")
    s:close()
  end},
  {name = "sse_parser", run = function()
    local p = core.sse_parser()
    local events = assert(p:feed('event: batch\nid: 0,1,2\ndata: {"records":[{"seq_num":0,'
      .. '"timestamp":1,"body":"{\\"data\\":\\"a\\\\nb\\"}"}],"tail":{"seq_num":1}}\n\n'))
    local batch = assert(p:batch(events[1].data))
    assert(batch.records[1].body == '{"data":"a\\nb"}' and batch.tail.seq_num == 1)
    p:close()
  end},
  -- Memory errors caught and the bindings called again: a box left behind by an error is the
  -- collector's, the next call makes its own (the burst mode gets past the error).
  {name = "calls after a memory error", run = function()
    for _ = 1, 3 do
      pcall(core.json_decode, doc)
      pcall(core.shape_messages, body)
      pcall(core.pg_array, array)
      pcall(core.run_fields, row)
      pcall(core.b64url_encode, bytes)
    end
    local v = assert(core.json_decode(doc))
    assert(v["a\tb"][2].s == 'q"r')
    assert(core.pg_array(array)[1][1] == 'a"b')
  end},
  {name = "http1_parser", run = function()
    local p = core.http1_parser()
    local head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nElectric-Handle: h\r\n\r\nhello"
    assert(p:feed(head))
    p:close()
  end},
}
