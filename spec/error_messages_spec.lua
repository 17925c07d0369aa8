-- The rough edges of errors a new user hit (issue 31, points 4 and 8): a fatal error from a loop
-- names the script's line; an empty access token, and tags the server would refuse, are refused
-- locally; long values are cut in messages; no doubled "trigger:" prefix; a wrong type is named;
-- "did you mean" for with_streams; the URL scheme is case-insensitive; values are quoted; the
-- TypeScript SDK's habits (`unsubscribe()`, camelCase options) get their Lua names.
local helper = require "spec.helper"
local trigger = require "trigger"
local errors = require "trigger.errors"
local request = require "trigger.transport.request"

local THIS_FILE = "error_messages_spec%.lua"
local OFFLINE = helper.offline_opts("error_messages_spec")

local function with(extra)
  return helper.offline_opts("error_messages_spec", extra)
end

-- The string error `f` raises (a misuse error), which must point at this file.
local function refused(pattern, f)
  local ok, err = pcall(f)
  assert.is_false(ok, "expected an error")
  assert.is_string(err)
  assert.matches("^[^\n]*" .. THIS_FILE .. ":%d+: ", err)
  assert.matches(pattern, err)
  return err
end

local srv
setup(function() srv = helper.start_server { hold_ms = 2000 } end)
teardown(function() srv:stop() end)

local function bad_key(extra)
  local t = helper.client_opts(srv, { access_token = "tr_dev_not_the_key" })
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

describe("a fatal error raised to a loop", function()
  it("names the script's line of the for loop (subscription)", function()
    local line
    local ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline + 1
      for _ in trigger.runs.subscribe_to_tag(helper.fresh_tag(), bad_key()) do end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "auth"))
    assert.are.equal(401, err.status)
    assert.matches(THIS_FILE .. ":" .. line .. "$", err.where)
    assert.matches("^[^\n]*" .. THIS_FILE .. ":" .. line .. ": trigger: auth error HTTP 401: ",
      tostring(err))
  end)

  it("names each subscription's own line when they share a failing upstream", function()
    local tag = helper.fresh_tag()
    local a = trigger.runs.subscribe_to_tag(tag, bad_key())
    local b = trigger.runs.subscribe_to_tag(tag, bad_key())
    local line_a = debug.getinfo(1, "l").currentline + 1
    local ok_a, err_a = pcall(a.next, a, 10)
    local line_b = debug.getinfo(1, "l").currentline + 1
    local ok_b, err_b = pcall(function() return b:next(10) end)
    assert.is_false(ok_a)
    assert.is_false(ok_b)
    assert.is_true(errors.is(err_a, "auth"))
    assert.is_true(errors.is(err_b, "auth"))
    -- pcall(a.next, …) is called from this function's line too
    assert.matches(THIS_FILE .. ":" .. line_a .. "$", err_a.where)
    assert.matches(THIS_FILE .. ":" .. line_b .. "$", err_b.where)
    -- raised again, the same object (the line where it came first)
    local again_ok, again = pcall(a.next, a, 1)
    assert.is_false(again_ok)
    assert.are.equal(err_a, again)
  end)

  it("names the line for run streams and for a stream", function()
    local line
    local ok, err = pcall(function()
      local sub = trigger.runs.subscribe_to_tag(helper.fresh_tag(), bad_key())
      line = debug.getinfo(1, "l").currentline + 1
      for _ in sub:with_streams() do end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "auth"))
    assert.matches(THIS_FILE .. ":" .. line .. "$", err.where)
    ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline + 1
      for _ in trigger.streams.read("run_nope", "default", bad_key()) do end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "auth"))
    assert.matches(THIS_FILE .. ":" .. line .. "$", err.where)
  end)

  it("names the line of a timeout, quoting the last failure without a second prefix", function()
    local line
    local ok, err = pcall(function()
      line = debug.getinfo(1, "l").currentline + 1
      for _ in trigger.runs.subscribe_to_tag("t", with { timeout = 0.3, retry_base = 0.01,
        retry_cap = 0.02, on_error = function() end }) do end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "timeout"))
    assert.matches(THIS_FILE .. ":" .. line .. "$", err.where)
    assert.matches("%(last failure: network error", err.message)
    assert.is_nil(err.message:find("trigger:", 1, true), err.message)
  end)
end)

describe("refused locally", function()
  it("an empty access token, as no access token, before any request", function()
    srv:reset_stats()
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local _ = trigger.runs.subscribe_to_tag("t", { access_token = "" }) end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "auth"))
    assert.is_nil(err.status)
    assert.matches("^no access token", err.message)
    assert.matches(THIS_FILE .. ":" .. line .. "$", err.where)
    assert.are.equal(0, srv:stats().realtime_requests)
  end)

  it("tags the server would refuse, saying which and why", function()
    for _, tag in ipairs { "a\0b", 'a"b', "a\\b", "a\nb", "a\127b" } do
      local err = refused("bad argument #1 to 'subscribe_to_tag' %(tag 2 must not contain control "
        .. "characters, backslashes or double quotes, got '", function()
        local _ = trigger.runs.subscribe_to_tag({ "ok", tag }, OFFLINE)
      end)
      assert.is_nil(err:find("\n", 1, true)) -- escaped
      assert.is_nil(err:find("\0", 1, true))
    end
  end)

  it("a tag longer than a run's tag can be, quoting only its start", function()
    refused("tag 1 is longer than a run's tag can be %(128 characters%), got 'x+'%)$", function()
      local _ = trigger.runs.subscribe_to_tag(string.rep("x", 129), OFFLINE)
    end)
    for _, n in ipairs { 100 * 1024, 3 * 1024 * 1024 } do
      local err = refused("tag 1 is longer than a run's tag can be %(128 characters%), got 'xxx.-… %("
        .. n .. " bytes%)", function()
        local _ = trigger.runs.subscribe_to_tag(string.rep("x", n), OFFLINE)
      end)
      assert.is_true(#err < 500, #err)
    end
    local _ = trigger.runs.subscribe_to_tag(string.rep("x", 128), OFFLINE):close()
  end)

  it("names the type of a tag that is not a string", function()
    refused("tag 2 must be a non%-empty string without commas, got number 2%)", function()
      local _ = trigger.runs.subscribe_to_tag({ "a", 2 }, OFFLINE)
    end)
    refused("tag 1 must be a non%-empty string without commas, got a table%)", function()
      local _ = trigger.runs.subscribe_to_tag({ {} }, OFFLINE)
    end)
  end)
end)

describe("messages", function()
  it("cut a long request URL and a long server message", function()
    local e = errors.new("bad_request", string.rep("m", 5000),
      { request = "GET http://x/?tags=" .. string.rep("t", 100 * 1024) })
    assert.is_true(#tostring(e) < 1500, #tostring(e))
    assert.matches("… %(" .. (100 * 1024 + 19) .. " bytes%)$", e.request)
  end)

  it("cut the URL of a request the server refused as too long", function()
    local tags = {}
    for i = 1, 800 do tags[i] = "tag-" .. i .. "-" .. string.rep("y", 100) end
    local ok, err = pcall(function()
      for _ in trigger.runs.subscribe_to_tag(tags, helper.client_opts(srv)) do end
    end)
    assert.is_false(ok)
    assert.is_true(errors.is(err, "bad_request"), tostring(err))
    assert.is_true(#tostring(err) < 1000, #tostring(err))
  end)

  it("give the server's details of a 400", function()
    local body = '{"error":"Query Error","details":[{"path":["tags",0],"message":"Tags must not '
      .. 'contain control characters, backslashes or double quotes"}]}'
    assert.are.equal("Query Error; Tags must not contain control characters, backslashes or "
      .. "double quotes", request.server_says(body))
  end)

  it("quote a base_url with a leading space, and accept an upper-case scheme", function()
    local ok, err = pcall(function()
      local _ = trigger.runs.subscribe_to_tag("t", with { base_url = " http://127.0.0.1:9" })
    end)
    assert.is_false(ok)
    assert.matches("got ' http://127%.0%.0%.1:9'$", err.message)
    local tag = helper.fresh_tag()
    local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
    local sub = trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv,
      { base_url = srv.base_url:gsub("^http", "HTTP") }))
    local run, why, last = sub:next(10)
    sub:close()
    assert.is_table(run, tostring(why) .. " " .. tostring(last))
    assert.are.equal(id, run.id)
  end)
end)

describe("habits of the TypeScript SDK", function()
  it("unsubscribe() closes a subscription, run streams and a stream", function()
    local sub = trigger.runs.subscribe_to_tag("t", OFFLINE)
    sub:unsubscribe()
    assert.is_true(sub.closed)
    local rs = trigger.runs.subscribe_to_tag("t", OFFLINE):with_streams()
    rs:unsubscribe()
    assert.is_true(rs.closed)
    local stream = trigger.streams.read("run_1", "default", OFFLINE)
    stream:unsubscribe()
    assert.is_true(stream.closed)
  end)

  it("an option of with_streams that is misspelt gets a did you mean", function()
    local sub = trigger.runs.subscribe_to_tag("t", OFFLINE)
    refused("bad argument to 'with_streams' %(unknown option 'drain_timout': did you mean "
      .. "'drain_timeout'%?%)", function()
      local _ = sub:with_streams { drain_timout = 1 }
    end)
    sub:close()
  end)

  it("its option names get the Lua name or what to do instead", function()
    local cases = {
      { "did you mean 'access_token'", function() trigger.configure { secretKey = "k" } end },
      { "did you mean 'access_token'", function()
        local _ = trigger.runs.subscribe_to_tag("t", { accessToken = "k" }) end },
      { "did you mean 'access_token'", function()
        local _ = trigger.runs.subscribe_to_run("run_1", { publicAccessToken = "k" }) end },
      { "did you mean 'base_url'", function() trigger.configure { baseURL = "http://x" } end },
      { "did you mean 'stop_on_completion'", function()
        local _ = trigger.runs.subscribe_to_run("run_1", { stopOnCompletion = false }) end },
      { "did you mean 'skip_columns'", function()
        local _ = trigger.runs.subscribe_to_batch("batch_1", { skipColumns = {} }) end },
      { "did you mean 'timeout_seconds'", function()
        local _ = trigger.streams.read("run_1", "k", { timeoutInSeconds = 5 }) end },
      { "did you mean 'on_error'", function() trigger.configure { onError = print } end },
      { "'startIndex' %(the TypeScript SDK's%): there is no start index: pass resume", function()
        local _ = trigger.streams.read("run_1", "k", { startIndex = 2 }) end },
      { "'lastEventId' %(the TypeScript SDK's%): pass resume", function()
        local _ = trigger.streams.read("run_1", "k", { lastEventId = "1" }) end },
      { "'signal' %(the TypeScript SDK's%): call close%(%)", function()
        local _ = trigger.runs.subscribe_to_run("run_1", { signal = {} }) end },
      { "'onComplete' %(the TypeScript SDK's%)", function()
        local _ = trigger.runs.subscribe_to_run("run_1", { onComplete = print }) end },
    }
    for _, case in ipairs(cases) do refused(case[1], case[2]) end
  end)
end)
