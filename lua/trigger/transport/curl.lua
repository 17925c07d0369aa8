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

--- Requests run in the background: `start` returns at once, `step` moves them along.
M.background = true

-- libcurl failures that no retry can mend: a certificate that does not verify, a CA file that
-- cannot be read, a URL that is not one, a body over max_body (the write callback refused it).
local PERMANENT = {
  [1] = true, [3] = true, [23] = true, [58] = true, [60] = true, [77] = true,
}

--- Start a request in the background; drive it with `step`.
-- @tparam table req see `trigger.transport`
-- @treturn[1] userdata a request: `done()`, `close()`; its answer comes from `result`
-- @treturn[2] nil
-- @treturn[2] table the failure `{kind, permanent, message}`
function M.start(req)
  local r, err = the_hub():request(req)
  if not r then return nil, { kind = "network", permanent = true, message = err } end
  return r
end

--- The answer of a finished request.
-- @return status, headers (lower-case names), body; or nil and `{kind, permanent, message}`
function M.result(r)
  local status, headers, body = r:result()
  if status then return status, headers, body end
  return nil, { kind = "network", permanent = PERMANENT[body] == true, message = headers }
end

--- Perform a request and wait for it (yielding to cqueues inside a cqueues coroutine).
-- @return as `result`
function M.perform(req)
  return require("trigger.request").perform(M, req)
end

--- Perform whatever I/O is ready, waiting at most `seconds`: 0, a negative number or NaN wait
-- not at all (a game loop that overran its tick must not freeze), `math.huge` until something
-- happens.
function M.step(seconds)
  seconds = seconds or 0
  if not (seconds > 0) then seconds = 0 end -- luacheck: ignore 581 (NaN)
  the_hub():step(seconds)
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

--- Counters of this Lua state's hub: `wakeups` (times `step` ran: the host's wake-ups, whoever
-- drove them), `idle_wakeups` (those that brought no request a byte, a head or an end) and
-- `active` (requests in flight). A few idle wake-ups per second of waiting are timers coming
-- due; thousands are a busy wait.
function M.stats()
  local h = the_hub()
  local wakeups, idle = h:counts()
  return { wakeups = wakeups, idle_wakeups = idle, active = h:active() }
end

return M
