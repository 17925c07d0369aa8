-- trigger.curl's hub:step(wait) turns seconds into epoll milliseconds with NaN and range
-- clamped before the cast (issue 14): negative and NaN waits do not block, math.huge waits until
-- something happens, and nothing is an out-of-range double-to-integer conversion (under
-- `make check-asan` UBSan aborts on one). Request options that are byte counts refuse negative
-- numbers. The case that could block runs in a child process bounded by `timeout`, so a
-- regression is a failed spec rather than a hung suite; nothing here measures time.
local helper = require "spec.helper"
local curl = require "trigger.curl"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run `code` under the Lua being tested with the library's paths, at most 10 s.
-- -> exit code, output (stdout and stderr)
local function run_child(code)
  local lua = os.getenv("TRIGGER_EXAMPLES_LUA") or os.getenv("LUA") or "lua5.4"
  local prelude = string.format("package.path = %q .. package.path; package.cpath = %q .. "
    .. "package.cpath; ", helper.lua_path, helper.cpath)
  local cmd = table.concat({
    "cd", shell_quote(helper.root), "&&", "timeout 10", lua, "-e", shell_quote(prelude .. code),
    "2>&1; echo \"exit:$?\"",
  }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a") -- "*a", and the status echoed: LuaJIT's close() gives no exit code
  p:close()
  local body, code_ = out:match("^(.-)exit:(%d+)%s*$")
  return tonumber(code_), body
end

describe("hub:step", function()
  it("takes NaN, math.huge and -math.huge without an out-of-range cast", function()
    local h = curl.hub()
    -- (negative waits with nothing in flight: in the child process below, they blocked once)
    -- Port 9 on loopback refuses at once: math.huge waits until that happens, then returns.
    local r = h:request { url = "http://127.0.0.1:9/" }
    while not r:done() do h:step(math.huge) end
    local status, message = r:result()
    assert.is_nil(status)
    assert.is_string(message)
    h:step(0 / 0)
    h:close()
  end)

  it("does not block on a negative or NaN wait while a request is in flight", function()
    -- A server that accepts the connection (the kernel does, from the backlog) and never
    -- answers: only a wait with no limit could block on it for ever.
    local code, out = run_child([[
      local socket = require "socket"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local h = require("trigger.curl").hub()
      local r = h:request { url = "http://127.0.0.1:" .. port .. "/" }
      h:step(-1); h:step(-math.huge); h:step(0/0)
      for _ = 1, 5 do h:step(0.01) end
      h:step(-1); h:step(-0.001); h:step(-math.huge); h:step(0/0)
      print(r:done() and "done?" or "still in flight")
      r:close(); h:close()
    ]])
    assert.are.equal("still in flight\n", out)
    assert.are.equal(0, code)
  end)

  it("keeps waiting through libcurl's timers that bring no request anything", function()
    -- Requests to a server that accepts and never answers keep their connect-timeout timers
    -- after connecting: here one fires every 0.25 s. A step of 1.5 s once the connections are
    -- quiet ends at its time, not at the first of them (which a host polling every
    -- subscription at each wakeup paid for). Only a lower bound is read: a slow machine can
    -- only make the step longer.
    local code, out = run_child([[
      local socket = require "socket"
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local h = require("trigger.curl").hub()
      local rs = {}
      for i = 1, 8 do
        rs[i] = h:request { url = "http://127.0.0.1:" .. port .. "/", connect_timeout = 0.25 * i }
      end
      repeat -- until a short step finds nothing to do: the connections are up and quiet
        local t = socket.gettime()
        h:step(0.05)
      until socket.gettime() - t >= 0.04
      local timed = h:timeout() ~= nil
      local t = socket.gettime()
      h:step(1.5)
      local waited = socket.gettime() - t
      print(table.concat({ timed and "timers pending" or "no timers",
        waited >= 1.2 and "waited" or ("woke after " .. waited .. " s"),
        rs[8]:done() and "done?" or "in flight" }, " "))
      for i = 1, 8 do rs[i]:close() end
      h:close()
    ]])
    assert.are.equal("timers pending waited in flight\n", out)
    assert.are.equal(0, code)
  end)

  it("refuses negative byte counts in request options", function()
    local h = curl.hub()
    for _, k in ipairs { "max_body", "pause_at" } do
      local ok, err = pcall(h.request, h, { url = "http://127.0.0.1:9/", [k] = -1 })
      assert.is_false(ok)
      assert.matches("request option '" .. k .. "' out of range", err, 1, true)
    end
    h:close()
  end)
end)
