-- Lua strings may hold NUL bytes; C string functions stop at the first (issue 14). The
-- bindings look at the whole string: a value with a NUL where the C core reads C strings is
-- refused like any other malformed value, never read as its part before the NUL.
local core = require "trigger.core"
local curl = require "trigger.curl"

local function has_problem(problems, pattern)
  for _, p in ipairs(problems or {}) do
    if p:find(pattern, 1, true) then return true end
  end
  return false
end

describe("NUL bytes", function()
  describe("run_fields", function()
    it("refuses a number with a NUL inside ('12\\0junk' is not 12)", function()
      local run, problems = core.run_fields({ number = "12\0junk", costInCents = "0.5\0" })
      assert.is_nil(run.number)
      assert.are.equal(0, run.costInCents)
      assert.is_true(has_problem(problems, "number holds a NUL byte"))
      assert.is_true(has_problem(problems, "costInCents holds a NUL byte"))
    end)

    it("refuses a status, a flag, a timestamp and an array with a NUL inside", function()
      local run, problems = core.run_fields({
        status = "COMPLETED_SUCCESSFULLY\0x", isTest = "t\0x",
        createdAt = "2025-01-10 12:00:00\0", runTags = "{a}\0{b}",
      })
      assert.are.equal("QUEUED", run.status) -- as for a row without a status
      assert.is_false(run.isSuccess)
      assert.is_false(run.isTest)
      assert.is_nil(run.createdAt)
      assert.are.same({}, run.tags)
      for _, col in ipairs { "status", "isTest", "createdAt", "runTags" } do
        assert.is_true(has_problem(problems, col .. " holds a NUL byte"), col)
      end
    end)

    it("still takes the same values without the NUL", function()
      local run, problems = core.run_fields({ number = "12", status = "COMPLETED_SUCCESSFULLY",
        isTest = "t" })
      assert.is_nil(problems)
      assert.are.equal(12, run.number)
      assert.are.equal("COMPLETED", run.status)
      assert.is_true(run.isTest)
    end)
  end)

  it("url_encode encodes every byte, a NUL as %00", function()
    assert.are.equal("a%00b%20c", core.url_encode("a\0b c"))
  end)

  it("shape:restore refuses a position with a NUL inside", function()
    local s = core.shape()
    assert.is_nil((s:restore("h\0junk", "0_0")))
    assert.is_nil((s:restore("h", "0_0\0")))
    assert.is_true(s:restore("h", "0_0"))
    s:close()
  end)

  it("shape:response refuses electric headers with a NUL inside", function()
    local s = core.shape()
    local action = s:response(200, { ["electric-handle"] = "h\0x", ["electric-offset"] = "0_0" },
      "[]", true)
    assert.are_not.equal("apply", action)
    s:close()
  end)

  it("shape:query refuses parameters with a NUL inside", function()
    local s = core.shape()
    assert.has_error(function() s:query { table = "runs\0x" } end)
    assert.has_error(function() s:query { ["ta\0ble"] = "runs" } end)
    s:close()
  end)

  it("shape_messages does not take 'insert\\0x' for an insert", function()
    -- an insert needs a value object; an unknown operation does not
    local list = core.shape_messages('[{"headers": {"operation": "insert\\u0000x"}, "key": "k"}]')
    assert.are.equal("insert\0x", list[1])
    assert.is_nil(core.shape_messages('[{"headers": {"operation": "insert"}, "key": "k"}]'))
  end)

  it("superjson_leaves does not take 'NaN\\0' for NaN, nor 'bigint\\0' for bigint", function()
    local v = { n = "NaN\0", b = "12" }
    core.superjson_leaves(v, { n = { "number" }, b = { "bigint\0" } })
    assert.are.equal("NaN\0", v.n)
    assert.are.equal("12", v.b)
  end)

  it("hub:request refuses a URL, a method or a header with a NUL inside", function()
    local h = curl.hub()
    for _, opts in ipairs {
      { url = "http://127.0.0.1:9/\0http://elsewhere/" },
      { url = "http://127.0.0.1:9/", method = "GET\0" },
      { url = "http://127.0.0.1:9/", headers = { "X-A: b\0\r\nX-Evil: 1" } },
    } do
      assert.has_error(function() h:request(opts) end)
    end
    h:close()
  end)
end)
