-- trigger.step never blocks on a negative or NaN wait (issue 19, point 1): a game loop that
-- overran its tick computes `next_tick - now` < 0 and must not freeze while the network is down
-- (no request in flight during a retry backoff). Each case runs in a child process bounded by
-- `timeout`, so a regression shows up as a failed spec instead of a hung suite; nothing here
-- measures time.
local helper = require "spec.helper"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run `code` under the Lua being tested with the library's paths, at most 10 s.
-- -> exit code, output (stdout and stderr)
local function run_child(code)
  -- make check names the interpreter of the sanitized build (its LD_PRELOAD kept)
  local lua = os.getenv("TRIGGER_EXAMPLES_LUA") or ("env -u LD_PRELOAD " .. (os.getenv("LUA") or "lua5.4"))
  local prelude = string.format("package.path = %q .. package.path; package.cpath = %q .. "
    .. "package.cpath; ", helper.lua_path, helper.cpath)
  local cmd = table.concat({
    "cd", shell_quote(helper.root), "&&", "env", "TRIGGER_ACCESS_TOKEN=",
    "TRIGGER_SECRET_KEY=tr_dev_step_spec", "timeout 10", lua, "-e", shell_quote(prelude .. code),
    "2>&1; echo \"exit:$?\"",
  }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a") -- "*a", and the status echoed: LuaJIT's close() gives no exit code
  p:close()
  local body, code_ = out:match("^(.-)exit:(%d+)%s*$")
  return tonumber(code_), body
end

-- Port 9 (discard) on loopback: nothing listens, every attempt is refused, so the subscription
-- spends its time in retry backoff with no request in flight.
local DOWN = [[
local t = require "trigger"
local s = t.runs.subscribe_to_tag("i", { base_url = "http://127.0.0.1:9", on_error = function() end })
for i = 1, 6 do s:poll(); t.step(%s); io.write(i, " ") end
s:close()
print("done")
]]

describe("trigger.step", function()
  it("returns at once on a negative wait while no request is in flight", function()
    local code, out = run_child(DOWN:format("-0.001"))
    assert.are.equal("1 2 3 4 5 6 done\n", out)
    assert.are.equal(0, code)
  end)

  it("returns at once on a NaN wait", function()
    local code, out = run_child(DOWN:format("0/0"))
    assert.are.equal("1 2 3 4 5 6 done\n", out)
    assert.are.equal(0, code)
  end)

  it("returns at once on -math.huge, and when nothing was ever subscribed", function()
    local code, out = run_child([[
      local t = require "trigger"
      t.step(-1); t.step(-math.huge); t.step(0/0); t.step(); t.step(0)
      print("done")
    ]])
    assert.are.equal("done\n", out)
    assert.are.equal(0, code)
  end)

  it("still refuses a wait that is not a number, pointing at the caller", function()
    local trigger = require "trigger"
    local ok, err = pcall(function() trigger.step("1") end)
    assert.is_false(ok)
    assert.matches("bad argument #1 to 'step' %(number expected, got string%)", err)
    assert.matches("step_spec%.lua:%d+:", err)
  end)
end)
