--- The one waiting object: what every object a user waits on (Subscription, RunStreams,
-- Stream) shares, written once, as lua-http's `connection_common` is for its connections.
--
--  * `M.pollable(Class, noun)` gives a class `pollfd`, `events`, `unsubscribe`, `__close`,
--    `__gc` and `__call` (the generic for, with the `timeout` option); the class keeps its own
--    `poll`, `timeout` (0 only when an item is ready, or it is closed), `close` and `position`.
--  * One deadline rule (`M.wait`): a wait never outlives the caller's `next(timeout)`, nor the
--    object's `timeout()`, whatever the transport.
--  * How a reading coroutine is driven (`M.next`, `M.resume`, `M.look_at_network`): each object
--    keeps a private state `r` with `transport`, `closed`, `finished`, `failure`, `deadline` and
--    `steps_seen`, and a `resume(obj, r)` that resumes its coroutine once and returns
--    `kind, value` | `"wait"` | `"end"` | `"error", err`.
-- @module trigger.driver
local clock = require "trigger.clock"
local errors = require "trigger.errors"
local request = require "trigger.transport.request"

local M = {}

local newproxy = rawget(_G, "newproxy") -- Lua 5.1 and LuaJIT only

-- obj -> its proxy (LuaJIT): weak keys, and a proxy never refers to its object, so the object is
-- collected, its entry cleared, and the proxy finalized the cycle after.
local proxies = setmetatable({}, { __mode = "k" })

--- Close an object's private state `r` (with `close(r)`) once the object is collected, also
-- where tables have no `__gc` (LuaJIT, Lua 5.1: there the object gets a userdata proxy whose
-- `__gc` does it). Elsewhere (Lua 5.2+) the class's own `__gc` does it and this does nothing.
-- The finaliser refers to `r`, never to the object (which would keep it alive for ever); `close`
-- must be idempotent and must not yield; an error in it is dropped (an error escaping a
-- finaliser would be raised in whatever code the collector interrupted).
-- @param obj the public object
-- @tparam function close closes a private state
-- @param r the object's private state
function M.close_when_collected(obj, close, r)
  if not newproxy then return end
  local proxy = newproxy(true)
  getmetatable(proxy).__gc = function() pcall(close, r) end
  proxies[obj] = proxy
end

--- Resume `obj`'s reading coroutine once: `kind, value` | `"wait"` | `"end"` (it finished: the
-- object is closed, `finished` set) | `"error", err` (a fatal error: the object is closed) |
-- `"busy"`: called from inside that coroutine (its `on_error`, say), which cannot go on from
-- there; nothing changed.
function M.resume(obj, r)
  if coroutine.status(r.co) ~= "suspended" then return "busy" end
  local ok, what, value = coroutine.resume(r.co)
  if not ok then
    if not errors.is(what) then
      what = errors.new("protocol", "internal error: " .. tostring(what), { fatal = true })
    else
      what = errors.copy(what) -- this object's own (a shared upstream's failure ends several)
    end
    what.fatal = true
    r.failure = what
    obj:close()
    return "error", what
  end
  if coroutine.status(r.co) == "dead" then
    r.finished = true
    obj.finished = true
    obj:close()
    return "end"
  end
  if what == "wait" then r.ready = false end
  return what, value
end

--- The private state of `obj` in `private`, or the misuse error of `fn` (at its caller).
function M.state(private, obj, fn, what)
  local r = private[obj]
  if r == nil then
    error(string.format("bad argument #1 to '%s' (%s expected, got %s)", fn, what, type(obj)), 3)
  end
  return r
end

--- Raise the misuse error of `fn` on a transport without background requests (nginx).
function M.need_background(r, fn)
  if not request.in_background(r.transport) then
    error(fn .. "() needs requests that run in the background, which this transport (nginx "
      .. "cosockets) cannot do: use next(timeout) or the for-loop form", 3)
  end
end

--- The I/O is done once per round of polls: unless the hub was stepped since this object last
-- looked (by another poll, next, or trigger.step), step it now.
function M.look_at_network(r)
  local transport = r.transport
  local steps = transport.steps
  local seen = steps and steps()
  if seen == nil or seen == r.steps_seen then
    transport.step(0)
    seen = steps and steps()
  end
  r.steps_seen = seen
end

--- The next item (of `kind`) of `obj`, waiting at most `timeout` seconds: the body of `next`.
-- @param obj the public object (its `timeout` method bounds each wait)
-- @param r its private state
-- @tparam number|nil timeout
-- @tparam string kind what `resume` yields an item as ("run", "chunk")
-- @tparam function resume
-- @param[opt] last_error the error being retried, told with "timeout"
-- @return the item, or nil and "timeout" (and `last_error()`), "closed" or "finished"; called
--   from inside the object's own `on_error` (its loop is busy telling it), nil and "timeout" at
--   once, whatever `timeout` is
function M.next(obj, r, timeout, kind, resume, last_error)
  local deadline = M.deadline_of(timeout, 4)
  r.deadline = deadline
  while true do
    if r.closed then
      if r.failure then errors.raise(r.failure) end
      return nil, r.finished and "finished" or "closed"
    end
    local what, value = resume(obj, r)
    if what == kind then return value end
    if what == "error" then errors.raise(value) end
    if what == "busy" then return nil, "timeout", last_error and last_error(r) end
    if what ~= "end" and not M.wait(obj, r, deadline) then
      return nil, "timeout", last_error and last_error(r)
    end
  end
end

--- The deadline of `next(timeout)`: nil (no limit) or a clock time; a timeout that is not a
-- non-negative number is the caller's misuse (raised at `level`).
function M.deadline_of(timeout, level)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then -- luacheck: ignore 581 (NaN)
    error("bad argument #1 to 'next' (non-negative number expected)", level)
  end
  return timeout and clock.now() + timeout
end

--- Wait once for `obj`'s I/O, as long as its `timeout()` says and never past `deadline`: the
-- one deadline rule. False when the deadline has passed (nothing was waited for).
function M.wait(obj, r, deadline)
  local wait = obj:timeout()
  if deadline then
    local left = deadline - clock.now()
    if left <= 0 then return false end
    if wait == nil or left < wait then wait = left end
  end
  if request.in_background(r.transport) then
    request.wait_io(r.transport, wait, obj)
  elseif r.up then -- a shared upstream inside nginx: its strategy waits in this thread
    r.up:await(r, wait)
  end
  return true
end

--- Give `Class` the methods every waiting object has, written once: `pollfd` and `events` (the
-- cqueues pollable protocol: the transport's descriptor), `unsubscribe`, `__close` and `__gc`
-- (all `close`), and `__call`, the generic for's step: `next` with the `timeout` option, a
-- `timeout` error object when nothing came in time (naming the failure being retried).
-- @param Class the class (its `close`, `next` and private `state(obj, fn)` already set)
-- @tparam function state `state(obj, fn)` → the private state, or the misuse error of `fn`
-- @tparam string noun what an item is, for the timeout's message ("run", "chunk", "item")
-- @tparam string name what the object is, for a misuse of the generic for ("subscription"…)
function M.pollable(Class, state, noun, name)
  function Class.pollfd(obj)
    local r = state(obj, "pollfd")
    M.need_background(r, "pollfd")
    return r.transport.pollfd()
  end
  function Class.events() return "r" end
  Class.unsubscribe = Class.close
  Class.__close = Class.close
  Class.__gc = Class.close
  Class.__call = function(obj)
    local r = state(obj, name)
    local item, why, last = obj:next(r.settings.timeout)
    if item == nil and why == "timeout" then
      local message = "no " .. noun .. " within " .. r.settings.timeout .. " s"
      if last then message = message .. " (last failure: " .. errors.describe(last) .. ")" end
      errors.raise(errors.new("timeout", message, {}))
    end
    return item
  end
end

return M
