-- Object lifetimes of the C modules, for `make check` (run under ASan+LSan and valgrind):
-- every way a subscription, a hub, a request or a shape state can end — closed, closed twice,
-- closed by `break` or by an error through the generic for's closing value, dropped and
-- collected, closed in either order, or still open when the Lua state closes at exit — against
-- the local realtime server. Prints TAP; raises (exit status 1) at the first failed check.
-- The leak verdict is the sanitizer's / valgrind's at exit (tools/check/valgrind.sh).
--
--   lua5.4 -e "TRIGGER_CHECK_BUILD='build/5.4'; dofile'tools/check/preload.lua'" \
--     tools/check/lifetimes.lua
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path

local helper = require "spec.helper"
local trigger = require "trigger"
local core = require "trigger.core"
local curl = require "trigger.curl"
local transport = require "trigger.transport.curl"
local socket = require "socket"

-- Objects nobody closes, reachable from package.loaded so that only lua_close finalizes them.
local left_open = {}
package.loaded["check.left_open"] = left_open

local n_checks = 0
local function check(ok, what)
  n_checks = n_checks + 1
  print(string.format("%s %d - %s", ok and "ok" or "not ok", n_checks, what))
  if not ok then
    helper.stop_all()
    error("lifetimes: failed: " .. what, 2)
  end
end

local function raises(fn, pattern)
  local ok, err = pcall(fn)
  return not ok and tostring(err):find(pattern, 1, true) ~= nil
end

local function full_gc()
  for _ = 1, 4 do collectgarbage() end
end

-- Wait (up to `seconds`) until cond() holds; under valgrind everything is ~20x slower.
local function eventually(cond, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  repeat
    if cond() then return true end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return cond()
end

-- Live requests are held for a long time so that only our closing can end them early.
local srv = helper.start_server { hold_ms = 30000 }
local tag = "lifetimes:" .. os.time()
local run_a = srv:create_run { runTags = { tag }, status = "PENDING" }
srv:create_run { runTags = { tag }, status = "EXECUTING" }

local opts = function()
  return { access_token = srv.secret_key, base_url = srv.base_url, retry_base = 0.01,
           retry_cap = 0.05, timeout = 30 }
end

-- No request in flight on our side, and the server saw every realtime request end.
local function nothing_in_flight(what)
  check(transport.active() == 0, what .. ": no request left in the hub")
  check(eventually(function() return srv:stats().active_realtime == 0 end),
        what .. ": the server saw the connection go")
end

---------------------------------------------------------------------------------------------------
-- Subscriptions

do -- break out of the for loop: the closing value closes the subscription (and its long-poll)
  local iter, state, control, closing = trigger.runs.subscribe_to_tag(tag, opts())
  check(closing == iter, "subscribe_to_tag returns itself as the closing value")
  local n = 0
  for run in iter, state, control, closing do
    n = n + 1
    check(type(run.id) == "string", "break: got run " .. tostring(run.id))
    if n == 2 then
      -- both runs of the first batch are out; wait for the live long-poll to be in flight
      check(eventually(function()
        trigger.step(0.01)
        return srv:stats().active_realtime > 0
      end), "break: the live long-poll reached the server")
      break
    end
  end
  check(iter.closed, "break: the subscription is closed")
  nothing_in_flight("break")
end

do -- break right after a live update arrived
  local seen = 0
  for run, _ in trigger.runs.subscribe_to_tag(tag, opts()) do
    seen = seen + 1
    if seen == 2 then srv:update_run(run_a, { status = "EXECUTING" }) end
    if seen == 3 then
      check(run.id == run_a and run.status == "EXECUTING", "break live: the update arrived")
      break
    end
  end
  check(seen == 3, "break live: three runs seen")
  nothing_in_flight("break live")
end

do -- an error raised in the loop body closes the subscription too
  local iter, state, control, closing = trigger.runs.subscribe_to_tag(tag, opts())
  local ok, err = pcall(function()
    for _ in iter, state, control, closing do error("boom from the loop body") end
  end)
  check(not ok and tostring(err):find("boom", 1, true), "error in body: propagates")
  check(iter.closed, "error in body: the subscription is closed")
  nothing_in_flight("error in body")
end

do -- close twice, next after close, tostring after close
  local sub = trigger.runs.subscribe_to_tag(tag, opts())
  check(sub:next(30) ~= nil, "close twice: got a run")
  sub:close()
  sub:close()
  local run, why = sub:next(0.1)
  check(run == nil and why == "closed", "close twice: next says closed")
  check(sub:poll() == nil, "close twice: poll returns nil")
  check(tostring(sub):find("closed", 1, true) ~= nil, "close twice: tostring says closed")
  nothing_in_flight("close twice")
end

do -- close before any I/O
  local sub = trigger.runs.subscribe_to_tag(tag, opts())
  sub:close()
  sub:close()
  check(sub.closed, "close before I/O")
end

do -- a to-be-closed variable
  do
    local sub <close> = trigger.runs.subscribe_to_tag(tag, opts())
    check(sub:next(30) ~= nil, "<close>: got a run")
  end
  nothing_in_flight("<close>")
end

do -- dropped and collected: with a long-poll in flight, mid-sync, and before any I/O
  local weak = setmetatable({}, { __mode = "v" })
  do
    local live = trigger.runs.subscribe_to_tag(tag, opts())
    live:next(30)
    live:next(30) -- the batch's second run: the live long-poll starts
    weak[1] = live
    local fresh = trigger.runs.subscribe_to_tag(tag, opts())
    fresh:poll() -- the first request is in flight
    weak[2] = fresh
    weak[3] = trigger.runs.subscribe_to_tag(tag, opts())
  end
  check(transport.active() > 0, "dropped: requests in flight before collection")
  full_gc()
  check(next(weak) == nil, "dropped: all three subscriptions collected")
  nothing_in_flight("dropped")
end

do -- subscribe_to_run ends by itself once the run finished, and closes itself
  local id = srv:create_run { runTags = { tag .. ":done" }, status = "COMPLETED_SUCCESSFULLY" }
  local n = 0
  local sub = trigger.runs.subscribe_to_run(id, opts())
  for _ in sub do n = n + 1 end
  check(n == 1 and sub.closed, "subscribe_to_run: ended by itself, closed")
  sub:close()
  nothing_in_flight("subscribe_to_run")
end

do -- a fatal error closes the subscription (bad token: 401)
  local o = opts()
  o.access_token = "tr_dev_wrong"
  local sub = trigger.runs.subscribe_to_tag(tag, o)
  local ok = pcall(sub.next, sub, 30)
  check(not ok and sub.closed, "fatal error: raised and closed")
  sub:close()
  nothing_in_flight("fatal error")
end

---------------------------------------------------------------------------------------------------
-- Hubs and requests, closed in every order, running or finished

-- A listener that accepts connections (in the kernel backlog) and never answers: a request to it
-- stays running until it is closed.
local silent = assert(socket.bind("127.0.0.1", 0))
local _, silent_port = silent:getsockname()
local hang_url = "http://127.0.0.1:" .. silent_port .. "/never"
local done_url = srv.base_url .. "/_emulator/stats"

local function start(hub, running)
  local r = assert(hub:request { url = running and hang_url or done_url,
                                 headers = { "X-Check: lifetimes" } })
  if running then
    for _ = 1, 5 do hub:step(0.01) end
    assert(not r:done(), "the request to the silent listener finished")
  else
    local deadline = socket.gettime() + 30
    while not r:done() do
      hub:step(0.05)
      assert(socket.gettime() < deadline, "request did not finish")
    end
    assert(r:result() == 200)
  end
  return r
end

local ORDERS = {
  "request, then hub", "hub, then request", "hub only, request collected",
  "request only, hub collected", "both collected", "each closed twice",
}

for _, running in ipairs { true, false } do
  for _, order in ipairs(ORDERS) do
    local what = (running and "running" or "finished") .. " request: " .. order
    local weak = setmetatable({}, { __mode = "v" })
    do
      local hub = curl.hub()
      local r = start(hub, running)
      local r2 = start(hub, running) -- a second one, left to the hub
      weak.hub, weak.r, weak.r2 = hub, r, r2
      if order == "request, then hub" then
        r:close(); hub:close()
      elseif order == "hub, then request" then
        hub:close()
        check(r:done(), what .. ": done once the hub is gone")
        local status, message = r:result()
        if running then
          check(status == nil and tostring(message):find("hub was closed", 1, true),
                what .. ": says the hub was closed")
        else
          check(status == 200, what .. ": a finished result survives the hub")
        end
        r:close()
      elseif order == "hub only, request collected" then
        hub:close()
      elseif order == "request only, hub collected" then
        r:close()
      elseif order == "each closed twice" then
        r:close(); r:close(); hub:close(); hub:close(); r2:close(); r2:close()
        check(raises(function() r:done() end, "request is closed"), what .. ": done() raises")
        check(raises(function() hub:step() end, "hub is closed"), what .. ": step() raises")
        check(raises(function() hub:request { url = done_url } end, "hub is closed"),
              what .. ": request() raises")
      end
    end
    full_gc()
    check(next(weak) == nil, what .. ": everything collected")
  end
end

do -- many requests on one hub, the hub closed first, all collected
  local weak = setmetatable({}, { __mode = "k" })
  do
    local hub = curl.hub()
    for i = 1, 20 do weak[start(hub, i % 2 == 0)] = true end
    hub:close()
  end
  full_gc()
  check(next(weak) == nil, "20 requests, hub closed first: all collected")
end

silent:close()

---------------------------------------------------------------------------------------------------
-- Shape states

do
  local s = core.shape()
  s:close()
  s:close()
  check(raises(function() s:query {} end, "shape state is closed"), "shape: closed twice, query raises")
  do
    local t <close> = core.shape()
    assert(t:restore("h-1", "3_4", "c"))
    check(t:query { tags = "x" }:find("handle=h-1", 1, true) ~= nil, "shape: restored")
    t:close() -- and __close closes it again at the end of the block
  end
  local weak = setmetatable({}, { __mode = "v" })
  do
    local u = core.shape()
    u:response(200, { ["electric-handle"] = "h", ["electric-offset"] = "0_0",
                      ["electric-up-to-date"] = "" }, "[]")
    u:response(409, {}, "")
    weak[1] = u
  end
  full_gc()
  check(weak[1] == nil, "shape: dropped and collected")
end

---------------------------------------------------------------------------------------------------
-- HTTP/1.1 parsers (trigger.core.http1_parser, the OpenResty transport's), when built in

if core.http1_parser then
  local response = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nelectric-offset: 0_0\r\n\r\n"
    .. "5\r\nhello\r\n0\r\n\r\n"
  local p = core.http1_parser()
  check(p:feed(response) == "done" and p:body() == "hello", "http1: a chunked response parsed")
  p:close()
  p:close()
  check(raises(function() p:feed("x") end, "parser is closed"), "http1: closed twice, feed raises")
  do
    local q <close> = core.http1_parser { max_body = 4 }
    check(q:feed(response) == nil, "http1: over max_body fails")
  end
  local weak = setmetatable({}, { __mode = "v" })
  do
    local half = core.http1_parser()
    half:feed(response:sub(1, 40)) -- left in the middle of the header section
    weak[1] = half
    local body = core.http1_parser()
    body:feed(response:sub(1, #response - 7)) -- in the middle of the chunked body
    weak[2] = body
  end
  full_gc()
  check(next(weak) == nil, "http1: dropped mid-response and collected")
  left_open.http1 = core.http1_parser()
  left_open.http1:feed("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
end

---------------------------------------------------------------------------------------------------
-- Left open at exit: a subscription with a live long-poll, a request and a hub that nobody
-- closed. lua_close finalizes them in whatever order it likes; nothing may leak or crash.

left_open.sub = trigger.runs.subscribe_to_tag(tag, opts())
left_open.sub:next(30)
left_open.hub = curl.hub()
left_open.request = left_open.hub:request { url = srv.base_url .. "/_emulator/stats" }
left_open.shape = core.shape()
check(transport.active() > 0, "left open at exit: a long-poll in flight")

srv:stop()
print("1.." .. n_checks)
