--- The default transport: every subscription of a Lua state shares one libcurl multi hub,
-- so one thread drives any number of them through one pollable fd.
-- @module trigger.transport.curl
local curl = require "trigger.curl"

local M = {}

local hub -- one per Lua state, made on first use
local steps = 0 -- times the hub's I/O was looked at

local function the_hub()
  if hub == nil then hub = curl.hub() end
  return hub
end

--- Perform a request.
-- @tparam table req `url`, `method`, `body`, `headers` (list of "Name: value"), `timeout`,
--   `connect_timeout`, `ca_file`, `max_body`
-- @tparam[opt] function wait called with the request handle while it runs; it must yield
--   (a subscription's coroutine) — without it the call blocks the thread until done
-- @treturn[1] integer status
-- @treturn[1] table headers (lower-case names)
-- @treturn[1] string body
-- @treturn[2] nil
-- @treturn[2] string what failed (connection, TLS, timeout, body too large)
function M.perform(req, wait)
  local h = the_hub()
  local r, err = h:request(req)
  if not r then return nil, err end
  while not r:done() do
    if wait then wait(r) else h:step(1) end
  end
  local status, headers, body = r:result()
  r:close()
  return status, headers, body
end

--- Start a request in the background; drive it with `step`.
-- @treturn[1] userdata a request: `done()`, `result()` (as `perform` returns), `close()`
-- @treturn[2] nil
-- @treturn[2] string why it could not start
function M.start(req)
  return the_hub():request(req)
end

--- Perform whatever I/O is ready, waiting at most `seconds` (negative: until something happens,
-- but only while a request is in flight: with none, nothing could ever end the wait, so it
-- returns at once; NaN waits not at all).
function M.step(seconds)
  local h = the_hub()
  seconds = seconds or 0
  if seconds ~= seconds or (seconds < 0 and h:active() == 0) then seconds = 0 end
  h:step(seconds)
  steps = steps + 1
end

--- How many times `step` ran: a subscription polled after another one's step needs no step
-- of its own (a game tick polling 1,000 subscriptions looks at the network once, not 1,000
-- times).
function M.steps()
  return steps
end

--- The hub's epoll fd: readable whenever `step` has work to do.
function M.pollfd()
  return the_hub():fd()
end

--- Seconds until `step` must run even if the fd stays quiet, or nil.
function M.timeout()
  return the_hub():timeout()
end

--- Number of requests in flight.
function M.active()
  return the_hub():active()
end

return M
