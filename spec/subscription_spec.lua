-- trigger.subscription, the driving API: what a subscription shows of itself, how a failure
-- streak is made visible, and where a saved position stands.
local helper = require "spec.helper"
local trigger = require "trigger"
local json = require "trigger.json"

local SECRET = "tr_dev_never_shown_in_any_field_0123"

-- Every string reachable from `root` through tables (keys and values) and their metatables.
local function reachable_strings(root)
  local seen, out = {}, {}
  local function walk(v)
    if type(v) == "string" then
      out[#out + 1] = v
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in next, v do
        walk(k)
        walk(x)
      end
      walk(getmetatable(v))
    end
  end
  walk(root)
  return out
end

describe("a subscription", function()
  it("keeps its state private: only closed, finished and the methods", function()
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = SECRET,
      base_url = "http://127.0.0.1:9", on_error = function() end })
    local fields = {}
    for k in next, sub do fields[#fields + 1] = k end
    table.sort(fields)
    assert.are.same({ "closed", "finished" }, fields)
    for _, s in ipairs(reachable_strings(sub)) do
      assert.is_nil(s:find(SECRET, 1, true), "the secret key is reachable from the subscription")
    end
    assert.is_function(sub.next)
    assert.is_false(sub.closed)
    sub:close()
    assert.is_true(sub.closed)
  end)

  it("says why nothing comes: next() gives the error being retried with 'timeout'", function()
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = SECRET,
      base_url = "http://127.0.0.1:9", retry_base = 0.01, retry_cap = 0.05,
      on_error = function() end })
    local run, why, err = sub:next(0.5)
    sub:close()
    assert.is_nil(run)
    assert.are.equal("timeout", why)
    assert.is_table(err)
    assert.are.equal("network", err.kind)
    assert.matches("127%.0%.0%.1:9", err.request)
    assert.is_nil(tostring(err):find(SECRET, 1, true))
  end)

  it("warns once per failure streak on stderr when there is no on_error", function()
    local script = [[
      local trigger = require "trigger"
      local sub = trigger.runs.subscribe_to_tag("t", { access_token = "]] .. SECRET .. [[",
        base_url = "http://127.0.0.1:9", retry_base = 0.01, retry_cap = 0.02 })
      for _ = 1, 3 do sub:next(0.3) end
      sub:close()
    ]]
    local cmd = string.format("LUA_PATH='%s;;' LUA_CPATH='%s;;' timeout 20 %s -e %q 2>&1",
      helper.lua_path, helper.cpath, os.getenv("LUA") or "lua5.4", script)
    local p = assert(io.popen(cmd))
    local out = p:read("*a") -- LuaJIT reads "*a" only
    p:close()
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.are.equal(1, #lines, "expected one warning line, got:\n" .. out)
    assert.matches("^trigger%-realtime: network error", lines[1]) -- one prefix
    assert.matches("on_error", lines[1])
    assert.is_nil(out:find(SECRET, 1, true))
  end)
end)

describe("a resumed subscription", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 500 } end)
  teardown(function() srv:stop() end)

  local function open(tag, resume)
    return (trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv, {
      resume = resume and json.decode(json.encode(resume)) })))
  end

  -- Issue 18, point 1: the position of a resumed subscription before its first batch.
  it("stands at its saved position until its first batch, so runs that left are dropped",
    function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      srv:create_run { runTags = { tag }, status = "PENDING" }
      local first = open(tag)
      helper.collect(first, 2)
      local p1 = first:position()
      first:close()
      assert.is_string(p1.offset)

      local second = open(tag, p1)
      local p2 = second:position() -- saved at once (a crash, a close before anything came)
      second:close()
      assert.are.equal(p1.handle, p2.handle)
      assert.are.equal(p1.offset, p2.offset)

      srv:update_run(a, { runTags = { "elsewhere" } })
      local third = open(tag, p2)
      -- up to date once its position moves past p2
      local deadline = os.time() + 10
      while third:position().offset == p2.offset do
        assert(os.time() < deadline, "the resumed subscription never caught up")
        third:next(0.1)
      end
      local rows = third:position().rows
      third:close()
      local ids = {}
      for _, row in pairs(rows) do ids[#ids + 1] = row.friendlyId end
      assert.are.equal(1, #ids)
      assert.are_not.equal(a, ids[1])
    end)

  it("read again from the start (a position without a handle) forgets runs that left",
    function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local b = srv:create_run { runTags = { tag }, status = "PENDING" }
      local first = open(tag)
      helper.collect(first, 2)
      local pos = first:position()
      first:close()
      pos.handle, pos.offset, pos.cursor = nil, nil, nil
      srv:delete_run(a)
      srv:update_run(b, { status = "EXECUTING" })
      local again = open(tag, pos)
      local run = helper.collect(again, 1)[1]
      assert.are.equal(b, run.id)
      local rows = again:position().rows
      again:close()
      local n = 0
      for _, row in pairs(rows) do
        n = n + 1
        assert.are.equal(b, row.friendlyId)
      end
      assert.are.equal(1, n)
    end)
end)
