-- trigger.shape.body and core.shape_reader: a shape-log response read as it arrives gives what
-- the whole body gives (core.shape_messages), for every split, against the local server too.
local helper = require "spec.helper"
local core = require "trigger.core"
local json = require "trigger.json"
local shape_body = require "trigger.shape.body"
local request = require "trigger.transport.request"
local transport_curl = require "trigger.transport.curl"

local null = json.null

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- The reader fed `body` cut at the given 1-based end positions (then the rest), finished.
-- A page of `n` inserts whose rows carry `pad` bytes each, up to date at its end.
local function insert_page(n, pad)
  local parts = {}
  for i = 1, n do
    parts[i] = ('{"headers":{"operation":"insert"},"key":"k%d","value":{"id":"%d","p":"%s"}}')
      :format(i, i, ("x"):rep(pad))
  end
  return "[" .. table.concat(parts, ",") .. ',{"headers":{"control":"up-to-date"}}]'
end

local function in_pieces(body, cuts, blobs)
  local r = core.shape_reader(null, blobs)
  local at = 1
  for _, k in ipairs(cuts) do
    local ok = r:feed(body:sub(at, k))
    at = k + 1
    if not ok then break end
  end
  if at <= #body then r:feed(body:sub(at)) end
  return r:finish()
end

local BODIES = {
  "[]", " [\n] \r\t", "", "   ", "{}", '"x"', "[1]", "[[1]]", "[{}]", '["abc"', "[nul]", "[1.]",
  "[,]", "[{},]", "[{}}", "[{} {}]", "{\"a\":1}", "x", "[]]", "[] x", "[{\"headers\":{}}",
  '[{"headers":{"operation":"insert"},"key":"k","value":{"a":"1","b":null,"n":[1,2.5,true]}}]',
  '[{"headers":{"control":"up-to-date","global_last_seen_lsn":"1"}}]',
  '[{"headers":{"control":"up-to-date"}},]',
  '[{"headers":{"operation":"delete"},"key":"k"},{"headers":{"operation":"update"},"key":"k2",'
    .. '"value":{"x":"{\\"y\\":\\"\\u00e9\\"}"}},{"headers":{"control":"must-refetch"}}]',
  '[{"headers":{"operation":"insert"},"key":"k","value":{"a":"\\uD83D\\uDE00 \\u"}}]',
  '[{"headers":{"operation":"insert"},"key":"k","value":{"a":"\\uD800\\u"}}]',
  '[{"a":"\\u"}]', '[{"headers":1}]', '[{"headers":{"operation":"insert"},"key":"k"}]',
  '[{"headers":{"operation":"insert"},"value":{}}]', '[{"headers":{"operation":"insert"},"key":1,'
    .. '"value":{}}]', '[{"headers":{"operation":"insert"},"key":"k","value":{"a":"\1"}}]',
  '[{"headers":{"operation":"update"},"key":"k","value":{"a":' .. ("["):rep(130) .. "]}}]",
  '[{"headers":{"control":"up-to-date"}} , {"key":"x","headers":{"operation":"delete","o":[{}]}}]',
  -- every kind of member a row blob keeps, a name twice (the last counts), a NUL, no members
  '[{"headers":{"operation":"insert"},"key":"k","value":{"s":"a\\"\\u0000b","t":true,"f":false,'
    .. '"i":-7,"d":2.5,"n":null,"s":"again","":""}},'
    .. '{"headers":{"operation":"update"},"key":"k","value":{}}]',
}

describe("core.shape_reader", function()
  it("gives shape_messages' list or words for every split of a body into three pieces, with "
    .. "values as tables or as row blobs", function()
    local checked = 0
    for _, blobs in ipairs { false, true } do
      for _, body in ipairs(BODIES) do
        local list, why = core.shape_messages(body, null, blobs)
        for i = 0, #body do
          for j = i, #body do
            local l2, w2 = in_pieces(body, { i, j }, blobs)
            if not (same(list, l2) and why == w2) then
              error(("body %q cut at %d, %d (blobs %s): %s / %s, whole: %s"):format(body, i, j,
                tostring(blobs), tostring(l2), tostring(w2), tostring(why)))
            end
            checked = checked + 1
          end
        end
      end
    end
    assert.is_true(checked > 20000)
  end)

  it("keeps whole values as row blobs that read back as the tables of the same body", function()
    local kept = 0
    for _, body in ipairs(BODIES) do
      local tables, why = core.shape_messages(body, null)
      local blobs, why2 = core.shape_messages(body, null, true)
      assert.equal(why, why2)
      assert.equal(tables == nil, blobs == nil)
      for i = 3, tables and #tables or 0, 3 do
        local row = blobs[i]
        if type(row) == "string" then
          kept = kept + 1
          assert.is_true(same(tables[i], core.row_table(row, null)), body)
          for name, value in pairs(tables[i]) do
            assert.is_true(same(value, core.row_column(row, name, null)), body)
          end
          assert.is_nil(core.row_column(row, "no such column", null))
        else
          assert.is_true(same(tables[i], row), body) -- a delete's false, a nested value's table
        end
      end
    end
    assert.is_true(kept >= 3) -- (the update of x, the two rows above)
    -- a value holding a container stays a table, as does one with a name the format cannot keep
    local nested = assert(core.shape_messages(BODIES[22], null, true))
    assert.equal("table", type(nested[3]))
    local long = ('[{"headers":{"operation":"insert"},"key":"k","value":{"a":"1","%s":"2"}}]')
      :format(("n"):rep(256))
    local l = assert(core.shape_messages(long, null, true))
    assert.same({ a = "1", [("n"):rep(256)] = "2" }, l[3])
    -- a partial update merged into the blob before it: the old columns, the new set over them
    local two = assert(core.shape_messages(BODIES[#BODIES], null, true))
    local merged = core.row_merge(two[3], two[6])
    assert.equal("string", type(merged))
    assert.same(core.row_table(two[3], null), core.row_table(merged, null)) -- (no members)
    local pair = assert(core.shape_messages('[{"headers":{"operation":"insert"},"key":"k","value":'
      .. '{"a":"1","b":"2","a":"3"}},{"headers":{"operation":"update"},"key":"k","value":'
      .. '{"b":null,"c":"x"}}]', null, true))
    assert.same({ a = "3", b = null, c = "x" }, core.row_table(core.row_merge(pair[3], pair[6]), null))
    assert.has_error(function() core.row_merge(pair[3], "x") end)
    assert.has_error(function() core.row_table("not a blob", null) end)
    assert.has_error(function() core.row_column("\027R\005ab", "a", null) end)
  end)

  it("merges a partial update of 100,000 columns as the tables merged (issue 28)", function()
    -- A name is looked up in a table of the changes' names (spec/c/test_core.c counts the
    -- comparisons); scanning the changes for each old column took 27 s of CPU here.
    local n = 100000
    local old, changes, want = {}, {}, {}
    for i = 1, n do
      old[i] = ('"c%d":"%d"'):format(i, i)
      want["c" .. i] = tostring(i)
    end
    for i = 1, n, 3 do
      changes[#changes + 1] = ('"c%d":"new","d%d":null'):format(i, i)
      want["c" .. i], want["d" .. i] = "new", null
    end
    local msgs = assert(core.shape_messages('[{"headers":{"operation":"insert"},"key":"k","value":{'
      .. table.concat(old, ",") .. '}},{"headers":{"operation":"update"},"key":"k","value":{'
      .. table.concat(changes, ",") .. "}}]", null, true))
    assert.equal("string", type(msgs[3]))
    assert.equal("string", type(msgs[6]))
    local merged = core.row_merge(msgs[3], msgs[6])
    assert.is_true(same(want, core.row_table(merged, null)))
    assert.equal("new", core.row_column(merged, "c1", null))
    assert.equal("2", core.row_column(merged, "c2", null))
    assert.equal(null, core.row_column(merged, "d100000", null))
  end)

  it("refuses early, closes, and says whether the body ends up to date", function()
    local r = core.shape_reader(null)
    assert.is_true(r:feed('[{"headers":{"operation":"insert"},"key":"k","value":{}}'))
    local ok, why = r:feed(',5,{"headers":{}}')
    assert.is_nil(ok)
    assert.equal("message 2 of the response is not an object", why)
    assert.same({ nil, why }, { r:feed("]") }) -- later pieces change nothing
    assert.same({ nil, why }, { r:finish() })
    assert.has_error(function() r:feed("x") end)
    r:close()
    r:close()

    local body = '[{"headers":{"control":"up-to-date","global_last_seen_lsn":"12"}}]\n'
    r = core.shape_reader(null)
    for i = 1, #body do r:feed(body:sub(i, i)) end
    assert.is_true(r:ends_up_to_date())
    assert.equal(#body, r:bytes())
    assert.same({ "up-to-date", false, false }, r:finish())
  end)

  it("reader:parse gives shape_messages' list or words, a few messages per call", function()
    local checked = 0
    for _, body in ipairs(BODIES) do
      local list, why = core.shape_messages(body, null)
      for max = 1, 3 do
        local r = core.shape_reader(null)
        local calls = 0
        while true do
          local done, problem = r:parse(body, max)
          calls = calls + 1
          assert.is_true(calls <= #body + 2)
          if done == nil then
            assert.equal(why, problem)
            break
          end
          if done then break end
        end
        local l2, w2 = r:finish()
        if not (same(list, l2) and why == w2) then
          error(("body %q, %d a call: %s / %s, whole: %s"):format(body, max, tostring(l2),
            tostring(w2), tostring(why)))
        end
        checked = checked + 1
      end
    end
    assert.equal(3 * #BODIES, checked)
    -- the same body every call; not after feed, nor feed after it
    local two = '[{"headers":{"control":"up-to-date"}},{"headers":{"control":"up-to-date"}}]'
    local r = core.shape_reader(null)
    assert.is_false(r:parse(two, 1))
    assert.has_error(function() r:parse(two:sub(1, -2) .. " ]", 1) end)
    assert.is_true(r:parse(two, 1))
    assert.same(core.shape_messages(two, null), r:finish())
    assert.has_error(function() r:feed("x") end)
    r = core.shape_reader(null)
    r:feed("[")
    assert.has_error(function() r:parse("[]", 1) end)
    assert.has_error(function() core.shape_reader(null):parse("[]", 0) end)
  end)

  it("shape_rows.parse with `between`: the same list, `between` called between slices", function()
    local shape_rows = require "trigger.shape.rows"
    local body = insert_page(1000, 100)
    local calls = 0
    local list = assert(shape_rows.parse(body, function() calls = calls + 1 end))
    assert.is_true(same(assert(core.shape_messages(body, null, true)), list))
    assert.equal(math.floor(1001 / shape_rows.SLICE), calls)
    local bad = body:sub(1, 60000) .. "x" .. body:sub(60002)
    local l2, why = shape_rows.parse(bad, function() end)
    assert.is_nil(l2)
    assert.same({ core.shape_messages(bad, null) }, { nil, why })
    calls = 0
    assert.is_true(same(core.shape_messages("[]", null, true),
      shape_rows.parse("[]", function() calls = calls + 1 end)))
    assert.equal(0, calls) -- a small body is read at once
  end)

  it("holds only the unfinished tail: a large page in small pieces", function()
    local body = insert_page(3000, 200)
    local whole = assert(core.shape_messages(body, null))
    local r = core.shape_reader(null)
    collectgarbage()
    local before = collectgarbage("count")
    for i = 1, #body, 4096 do assert(r:feed(body:sub(i, i + 4095))) end
    local list = assert(r:finish())
    assert.is_true(same(whole, list))
    assert.equal(3 * 3001, #list)
    assert.is_true(collectgarbage("count") - before < 4 * #body / 1024) -- the list, not copies
  end)
end)

-- A reading coroutine over transport.curl, driven until it returns.
local function owner_for(srv, settings)
  return { transport = transport_curl, inflight = {},
    settings = settings or { read_timeout = 10, connect_timeout = 5 }, srv = srv }
end

local function run_co(fn)
  local co = coroutine.create(fn)
  local results
  while true do
    local ok, a = coroutine.resume(co)
    assert(ok, a)
    if coroutine.status(co) == "dead" then results = a break end
    transport_curl.step(0.01)
  end
  return results
end

local HEADERS = { "x-trigger-electric-version: 1.0.0-beta.1", "x-trigger-api-version: 2025-07-16" }

local function shape_req(srv, query)
  local h = { "Authorization: Bearer " .. srv.secret_key }
  for _, v in ipairs(HEADERS) do h[#h + 1] = v end
  return { url = srv.base_url .. "/realtime/v1/runs?" .. query, headers = h }
end

describe("trigger.shape.body against the local server", function()
  local srv, tag
  setup(function()
    srv = helper.start_server { chunk_rows = 40 }
    tag = helper.fresh_tag("body:")
    for i = 1, 100 do
      srv:create_run { tags = { tag }, payload = ('{"i":%d,"pad":"%s"}'):format(i, ("p"):rep(500)),
        payloadType = "application/json" }
    end
  end)
  teardown(function() srv:stop() end)

  it("reads each page of an initial sync as shape_messages reads the whole body", function()
    local owner = owner_for(srv)
    local query = "tags=" .. tag .. "&offset=-1"
    local pages, rows = 0, 0
    local completed
    repeat
      local whole_status, whole_headers, whole_body = transport_curl.perform(shape_req(srv, query))
      assert.equal(200, whole_status)
      local res = run_co(function()
        return shape_body.read(owner, shape_body.begin(owner, shape_req(srv, query)),
          { on_complete = function(st, _, up) completed = { st, up } end })
      end)
      assert.equal(200, res.status)
      assert.is_nil(res.body)
      assert.is_nil(res.problem)
      assert.is_true(same(assert(core.shape_messages(whole_body, null, true)), res.list))
      assert.equal(core.ends_up_to_date(whole_body), res.body_up_to_date)
      assert.same({ 200, res.body_up_to_date }, completed)
      assert.equal(whole_headers["electric-offset"], res.headers["electric-offset"])
      assert.is_nil(next(owner.inflight))
      pages = pages + 1
      for i = 1, #res.list, 3 do
        if res.list[i] == "insert" then rows = rows + 1 end
      end
      query = ("tags=%s&handle=%s&offset=%s"):format(tag, res.headers["electric-handle"],
        res.headers["electric-offset"])
    until res.body_up_to_date or res.headers["electric-up-to-date"]
    assert.equal(100, rows)
    assert.is_true(pages >= 3)
  end)

  it("gives other statuses with their whole body, and failures as the transport's", function()
    local owner = owner_for(srv)
    local res = run_co(function()
      return shape_body.read(owner, shape_body.begin(owner, shape_req(srv, "offset=nonsense")))
    end)
    assert.equal(400, res.status)
    assert.is_string(res.body)
    assert.is_nil(res.list)

    local bad = shape_req(srv, "tags=" .. tag .. "&offset=-1")
    bad.headers[1] = "Authorization: Bearer tr_dev_wrong"
    res = run_co(function() return shape_body.read(owner, shape_body.begin(owner, bad)) end)
    assert.equal(401, res.status)

    local closed = { url = "http://127.0.0.1:" .. helper.free_port() .. "/realtime/v1/runs",
      headers = {} }
    res = run_co(function() return shape_body.read(owner, request.begin(owner, closed)) end)
    assert.is_nil(res.status)
    assert.is_nil(res.headers)
    assert.equal("network", res.failure.kind)
    assert.equal("CURLE_COULDNT_CONNECT", res.failure.code)
    assert.is_false(res.failure.permanent)
  end)

  it("bounds the whole body by max_body, not only what waits untaken", function()
    -- The first page is ~30 KB; the hub holds at most one write (<= 16 KB) untaken with
    -- pause_at = 1, so its own max_body check (of held bytes) never fires: ours does.
    local owner = owner_for(srv, { read_timeout = 10, connect_timeout = 5, max_body = 20000 })
    local res = run_co(function()
      local req = shape_req(srv, "tags=" .. tag .. "&offset=-1")
      req.pause_at = 1
      return shape_body.read(owner, shape_body.begin(owner, req))
    end)
    assert.is_nil(res.status)
    assert.is_true(res.failure.permanent)
    assert.equal("body_too_large", res.failure.code)
    assert.equal("response body larger than the 20000-byte limit", res.failure.message)
    assert.is_nil(next(owner.inflight))
  end)

  it("takes the body at most `max` bytes at a time, in order, through the transfer's pauses",
    function()
    local query = "tags=" .. tag .. "&offset=-1"
    local _, _, whole = transport_curl.perform(shape_req(srv, query))
    local req = shape_req(srv, query)
    req.pause_at = 3000 -- paused again and again: taking half of it lets the transfer go on
    local h = assert(transport_curl.start(req))
    local pieces, longest, steps = {}, 0, 0
    while true do
      local bytes = h:take(1000)
      if bytes then
        pieces[#pieces + 1] = bytes
        if #bytes > longest then longest = #bytes end
      elseif h:done() then
        break
      else
        steps = steps + 1
        assert(steps < 3000, "the transfer stalled") -- (a pause never lifted)
        transport_curl.step(0.01)
      end
    end
    local status, _, rest = transport_curl.result(h)
    h:close()
    assert.equal(200, status)
    assert.equal(whole, table.concat(pieces) .. rest)
    assert.equal(1000, longest)
    assert.is_true(#pieces >= math.floor(#whole / 1000))
    assert.equal(shape_body.TAKE, 64 * 1024) -- what trigger.shape.body takes at a time
  end)
end)

describe("trigger.shape.body on other transports", function()
  it("decodes a whole answer when the transport does not stream", function()
    local body = '[{"headers":{"operation":"insert"},"key":"k","value":{"a":"1"}},'
      .. '{"headers":{"control":"up-to-date"}}]'
    local t = { background = false, perform = function() return 200, { ["x"] = "1" }, body end }
    local owner = { transport = t, inflight = {}, settings = { read_timeout = 1 } }
    local res = run_co(function()
      return shape_body.read(owner, request.begin(owner, { url = "http://x/", headers = {} }))
    end)
    assert.equal(200, res.status)
    assert.is_true(same(core.shape_messages(body, null, true), res.list))
    assert.is_true(res.body_up_to_date)
  end)

  it("stops reading a refused body and closes its request", function()
    local closed, takes = false, 0
    local h = {
      head = function() return 200, {} end,
      take = function()
        takes = takes + 1
        return takes == 1 and '[{"headers":{}}, 7' or '{"more":1}'
      end,
      done = function() return false end,
      close = function() closed = true end,
    }
    local owner = { transport = {}, inflight = { [h] = true }, settings = {} }
    local res = run_co(function() return shape_body.read(owner, { handle = h }) end)
    assert.equal(200, res.status)
    assert.equal("message 2 of the response is not an object", res.problem)
    assert.is_nil(res.list)
    assert.is_true(closed)
    assert.equal(2, takes) -- the second piece ends the refused message
    assert.is_nil(next(owner.inflight))
  end)
end)
