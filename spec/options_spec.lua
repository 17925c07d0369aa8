-- Options and misuse (issue 19, point 7): `trigger.errors.is` honours its kind, options out of
-- range or meant for another call are refused at once, misuse errors point at the caller's line
-- and suggest the option that was meant; `subscribe_to_runs_with_tag` is the SDK's name.
local helper = require "spec.helper"
local trigger = require "trigger"
local config = require "trigger.config"

local THIS_FILE = "options_spec%.lua:%d+: "
local function with(extra)
  return helper.offline_opts("options_spec", extra)
end

-- The message `f` raises (it must raise a string).
local function message_of(f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected an error")
  assert.is_string(err)
  return err
end

-- `f` raises a misuse error located in this file that matches `pattern`. The calls below are
-- never tail calls (`local _ = f()`, not `return f()`): a tail call leaves no line of the
-- caller on the stack to point at, in Lua's own argument errors as in ours.
local function refused(pattern, f)
  local err = message_of(f)
  assert.matches("^[^\n]*" .. THIS_FILE, err) -- the caller's line, not the library's
  assert.matches(pattern, err)
  return err
end

describe("trigger.errors.is", function()
  local errors = trigger.errors
  local e = errors.new("auth", "no")

  it("checks the kind when one is given", function()
    assert.is_true(errors.is(e))
    assert.is_true(errors.is(e, "auth"))
    assert.is_false(errors.is(e, "network"))
    assert.is_false(errors.is("trigger: auth error", "auth"))
    assert.is_false(errors.is({ kind = "auth" }, "auth"))
  end)

  it("refuses a kind that does not exist", function()
    refused("bad argument #2 to 'is' %(unknown error kind 'auht'%)", function()
      local _ = errors.is(e, "auht")
    end)
  end)
end)

describe("option checks", function()
  after_each(function() config.reset() end)

  it("refuses numbers out of range, at once", function()
    local cases = {
      { "read_timeout", -1 }, { "read_timeout", 0 }, { "read_timeout", 0 / 0 },
      { "connect_timeout", -5 }, { "retry_base", -0.5 }, { "retry_cap", math.huge },
      { "max_retries", 1.5 }, { "max_retries", -1 }, { "max_body", 0 }, { "max_body", 10.5 },
      { "timeout", -1 },
    }
    for _, c in ipairs(cases) do
      local name, value = c[1], c[2]
      refused("bad argument to 'subscribe_to_tag' %(option '" .. name .. "' must be ", function()
        local _ = trigger.runs.subscribe_to_tag("t", with { [name] = value })
      end)
      refused("bad argument to 'configure' %(option '" .. name .. "' must be ", function()
        trigger.configure { [name] = value }
      end)
    end
  end)

  it("says what the number must be", function()
    local err = message_of(function() trigger.configure { read_timeout = -1 } end)
    assert.matches("option 'read_timeout' must be a positive number of seconds, got %-1", err)
    err = message_of(function() trigger.configure { max_retries = 1.5 } end)
    assert.matches("option 'max_retries' must be a non%-negative whole number, got 1%.5", err)
  end)

  it("accepts numbers in range", function()
    trigger.configure { read_timeout = 0.5, connect_timeout = 2, retry_base = 0, retry_cap = 0,
      max_retries = 0, max_body = 1, timeout = 0 }
    trigger.configure { max_retries = 3, timeout = math.huge }
    local sub = trigger.runs.subscribe_to_tag("t", with { max_retries = 2, read_timeout = 1 })
    sub:close()
  end)

  it("refuses a column that does not exist, suggesting a near one", function()
    local err = refused("bad argument #2 to 'subscribe_to_tag' %(skip_columns: 'nope' is not a "
      .. "column of a run%)", function()
      local _ = trigger.runs.subscribe_to_tag("t", with { skip_columns = { "nope" } })
    end)
    assert.not_matches("did you mean", err)
    refused("'ouptut' is not a column of a run; did you mean 'output'%?", function()
      local _ = trigger.runs.subscribe_to_batch("batch_1", with { skip_columns = { "ouptut" } })
    end)
    refused("'runtags' is not a column of a run; did you mean 'runTags'%?", function()
      local _ = trigger.runs.subscribe_to_run("run_1", with { skip_columns = { "runtags" } })
    end)
    -- real columns pass
    trigger.runs.subscribe_to_tag("t", with { skip_columns = { "payload", "output", "metadata",
      "runTags", "error", "realtimeStreams" } }):close()
  end)

  it("refuses a resume that is not a position", function()
    for _, bad in ipairs { {}, { handle = "h" }, { rows = "x" }, { rows = {}, handle = 1 },
      { rows = {}, offset = "0_0", whatever = true }, { rows = { k = "row" } } } do
      refused("bad argument #2 to 'subscribe_to_tag' %(opts%.resume is not a position", function()
        local _ = trigger.runs.subscribe_to_tag("t", with { resume = bad })
      end)
    end
    -- an empty position from a subscription that never got a batch is one
    local first = trigger.runs.subscribe_to_tag("t", with())
    local pos = first:position()
    first:close()
    trigger.runs.subscribe_to_tag("t", with { resume = pos }):close()
  end)

  it("refuses options that belong to another call", function()
    refused("bad argument to 'subscribe_to_run' %(option 'created_at' applies to "
      .. "subscribe_to_tag only", function()
      local _ = trigger.runs.subscribe_to_run("run_1", with { created_at = "1h" })
    end)
    refused("option 'created_at' applies to subscribe_to_tag only", function()
      local _ = trigger.runs.subscribe_to_batch("batch_1", with { created_at = "1h" })
    end)
    refused("option 'stop_on_completion' applies to subscribe_to_run only", function()
      local _ = trigger.runs.subscribe_to_tag("t", with { stop_on_completion = false })
    end)
    refused("bad argument to 'configure' %(unknown option 'created_at'%)", function()
      trigger.configure { created_at = "1h" }
    end)
  end)

  it("suggests the option that was meant", function()
    refused("unknown option 'createdAt': did you mean 'created_at'%?", function()
      local _ = trigger.runs.subscribe_to_tag("t", with { createdAt = "1h" })
    end)
    refused("unknown option 'readTimeout': did you mean 'read_timeout'%?", function()
      trigger.configure { readTimeout = 5 }
    end)
    refused("unknown option 'max_retires': did you mean 'max_retries'%?", function()
      local _ = trigger.runs.subscribe_to_run("run_1", with { max_retires = 5 })
    end)
    refused("unknown option 'skipColumns': did you mean 'skip_columns'%?", function()
      local _ = trigger.runs.subscribe_to_batch("batch_1", with { skipColumns = {} })
    end)
    local err = refused("unknown option 'bogus'%)", function()
      local _ = trigger.runs.subscribe_to_tag("t", with { bogus = 1 })
    end)
    assert.not_matches("did you mean", err)
  end)

  it("points every misuse error at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline
    local err = message_of(function() trigger.runs.subscribe_to_tag({ "ok", "" }) end)
    assert.matches("options_spec%.lua:" .. (line + 1) .. ": bad argument #1 to "
      .. "'subscribe_to_tag' %(tag 2 must be a non%-empty string without commas, got ''%)", err)
    local calls = {
      function() trigger.configure "x" end,
      function() trigger.configure { nope = 1 } end,
      function() trigger.configure { timeout = "1" } end,
      function() local _ = trigger.runs.subscribe_to_tag(nil) end,
      function() local _ = trigger.runs.subscribe_to_tag("a,b") end,
      function() local _ = trigger.runs.subscribe_to_tag("a", 5) end,
      function() local _ = trigger.runs.subscribe_to_tag("a", { created_at = "yesterday" }) end,
      function() local _ = trigger.runs.subscribe_to_tag("a", with { skip_columns = { "id" } }) end,
      function() local _ = trigger.runs.subscribe_to_tag("a", with { skip_columns = { 1 } }) end,
      function() local _ = trigger.runs.subscribe_to_tag("a", with { timeout = "1" }) end,
      function() local _ = trigger.runs.subscribe_to_run("") end,
      function() local _ = trigger.runs.subscribe_to_run("run_1", { bogus = 1 }) end,
      function() local _ = trigger.runs.subscribe_to_batch(7) end,
      function() local _ = trigger.runs.subscribe_to_batch("b", with { skip_columns = "payload" }) end,
      function() local _ = trigger.runs.subscribe_to_runs_with_tag({}) end,
      function() trigger.step("soon") end,
    }
    for i, f in ipairs(calls) do
      local e = message_of(f)
      assert.matches("^[^\n]*" .. THIS_FILE .. "bad argument", e, "call " .. i .. ": " .. e)
    end
  end)
end)

describe("trigger.runs.subscribe_to_runs_with_tag", function()
  local srv
  setup(function() srv = helper.start_server() end)
  teardown(function() srv:stop() end)

  it("is subscribe_to_tag under the SDK's name", function()
    local tag = "user:alias-" .. os.time()
    local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
    local sub = trigger.runs.subscribe_to_runs_with_tag(tag, { access_token = srv.secret_key,
      base_url = srv.base_url, created_at = "1h", skip_columns = { "payload" } })
    local run, why = sub:next(10)
    sub:close()
    assert.is_table(run, why)
    assert.are.equal(id, run.id)
    assert.are.equal("EXECUTING", run.status)
  end)

  it("names itself in misuse errors", function()
    refused("bad argument #1 to 'subscribe_to_runs_with_tag' %(tag 1 must be", function()
      local _ = trigger.runs.subscribe_to_runs_with_tag { "" }
    end)
    refused("bad argument to 'subscribe_to_runs_with_tag' %(unknown option 'createdAt': did "
      .. "you mean 'created_at'%?", function()
      local _ = trigger.runs.subscribe_to_runs_with_tag("t", with { createdAt = "1h" })
    end)
  end)
end)
