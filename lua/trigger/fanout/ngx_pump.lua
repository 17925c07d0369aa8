--- Fan-out inside an nginx worker: the pump that drives a shared upstream (`trigger.fanout.upstream`)
-- on its own, so that its long-poll belongs to no client request.
--
-- Cosockets cannot run in the background of a request: a request's cosocket lives and dies with
-- the light thread that uses it, and a coroutine made in one request cannot be resumed from
-- another. So inside nginx a shared upstream's protocol loop runs in an `ngx.timer.at` callback
-- of its own (the pump; timers outlive the request that started them), and its consumers (one
-- per client request) wait, each in the thread that called `next()` (never inside the reading
-- coroutine: see `Pump:drive`), on an `ngx.semaphore` of their own until the pump publishes a
-- batch, then take it through their own `trigger.shape.delivery` exactly as they would from a shared
-- upstream of the libcurl transport. A consumer that leaves (`close()`, also
-- from another light thread, as `ngx.on_abort` does) only wakes its own wait and leaves the
-- upstream; the last one to leave closes it, and the pump ends as soon as its read wakes
-- (within `trigger.transport.ngx.cancel_check_s`). A consumer's thread killed without `close()`
-- while it waits (an `ngx.exit` elsewhere) is noticed when its bounded wait does not come back,
-- and it is made to leave then; one killed elsewhere stays a reader (close subscriptions).
--
-- Transient failures of the shared loop are handed to each consumer's `on_error` in that
-- consumer's own light thread (never in the pump's timer, where request APIs such as `ngx.print`
-- are not available); without any `on_error`, one warning per streak goes to `ngx.log`.
--
-- One of the strategies of `trigger.fanout.upstream` (see its strategy interface): it chooses this one
-- for a shared upstream on nginx cosockets (`M.serves`); the transport knows nothing of it. Every
-- worker has its own upstreams; with a `lua_shared_dict trigger_realtime` and more than one
-- worker, only one of them asks the server and the others follow it through the dict
-- (`trigger.fanout.shm_relay`); without it, consumers of one filter in W workers make at most W
-- upstreams (see the README, Fan-out).
-- @module trigger.fanout.ngx_pump
local clock = require "trigger.clock"
local errors = require "trigger.errors"
local shape_loop = require "trigger.shape.loop"
local upstream_shm = require "trigger.fanout.shm_relay"

local ngx = ngx -- luacheck: ignore

local M = {}
local Pump = {}
Pump.__index = Pump

--- Longest single wait of a consumer for a batch, in seconds: a consumer's thread that was
-- killed without closing its subscription is noticed once its wait has not come back for this
-- long plus `M.dead_after`.
M.max_wait = 10
--- Seconds past the end of its wait after which a consumer that has not come back counts as
-- gone (its light thread was killed) and is made to leave.
M.dead_after = 10
--- Errors kept per consumer until it next looks (the oldest are dropped past it).
M.max_pending_errors = 16

local semaphore -- ngx.semaphore, loaded on first use (it needs nginx)

local function closed_error()
  return errors.new("protocol", "the shared upstream was closed", {})
end

--- Whether the pump can drive a shared upstream on `transport` (`trigger.fanout.upstream` asks when it
-- chooses an upstream's strategy): nginx cosockets, requests performed in the caller.
function M.serves(transport)
  return transport.background == false and transport == package.loaded["trigger.transport.ngx"]
end

--- The pump strategy of a new shared upstream `up` (`trigger.fanout.upstream` makes it: see its
-- strategy interface). The pump, not the consumers, drives the loop.
function M.new(up)
  semaphore = semaphore or require "ngx.semaphore"
  local self = setmetatable({ up = up, waiters = {}, by_co = setmetatable({}, { __mode = "k" }),
    pending = {}, running = false, pumped = true }, Pump)
  local dict = upstream_shm.dict()
  if dict then self.relay = upstream_shm.new(up, dict, self) end
  return self
end

-- A reader joining a native feed asks for a fresh read (`Upstream:refresh`): the read in flight
-- wakes within cancel_check_s to see it and is given up as "interrupted". The owner of an
-- upstream shared across workers renews its lease from here as well.
function Pump:is_closed()
  if self.relay then self.relay:tick() end
  return self.up:interrupt_pending()
end

--- The loop's transport: the consumers', given up when a fresh read is asked.
function Pump:transport(base)
  local up = self.up
  local transport = setmetatable({}, { __index = base })
  transport.perform = function(req)
    local interrupted = require("trigger.transport").interrupted()
    if self.relay then self.relay:before_request() end -- leaves here once another worker owns it
    if up:take_interrupt() then
      return nil, interrupted
    end
    local status, headers, body = base.perform(req)
    -- also when the answer is in (as trigger.transport.request does)
    if up:interrupt_pending() and not up:is_closed() then
      up:take_interrupt()
      return nil, interrupted
    end
    return status, headers, body
  end
  return transport
end

--- The loop's body (in the pump's coroutine): the relay's when sharing across workers.
function Pump:body(r)
  if self.relay then return self.relay:run(r) end
  return shape_loop.run(r)
end

--- A batch the loop reached: the relay's owner logs it first.
function Pump:publish(batch)
  if self.relay then return self.relay:publish(batch) end
  return true
end

--- Failures reach each consumer's on_error in its own thread (see `Pump:_flush`); the relay's
-- owner logs them for the other workers first.
function Pump:tell(err)
  if self.relay then self.relay:record_error(err) end
  self:tell_here(err)
end

--- A transient failure for this worker's consumers: kept for each consumer with an on_error
-- until its own thread looks (`_flush`), else one warning per streak.
function Pump:tell_here(err)
  local told = false
  for reader, rec in self.up:each_reader() do
    if rec.on_error then
      told = true
      local list = self.pending[reader] or {}
      self.pending[reader] = list
      list[#list + 1] = err
      if #list > M.max_pending_errors then table.remove(list, 1) end
    end
  end
  if told then
    self:_wake_all()
  else
    self.up:warn(err)
  end
end

-- Hand the failures kept for `reader` to its on_error (in the calling, consumer's thread).
function Pump:_flush(reader)
  local list = reader and self.pending[reader]
  if not list then return end
  self.pending[reader] = nil
  local rec = self.up:reader(reader)
  if not rec then return end
  for _, err in ipairs(list) do rec.on_error(err) end
end

-- Post each waiting consumer's semaphore once. `waiting` stays set until the consumer's wait
-- returns (in `await`): one whose thread was killed never comes back, which `_reap` notices.
-- Wake one waiting consumer, once.
local function post(w)
  if w.waiting and not w.posted then
    w.posted = true
    w.sema:post(1)
  end
end

function Pump:_wake_all()
  for _, w in pairs(self.waiters) do post(w) end
end

-- Consumers whose wait should have come back long ago: their light thread was killed (the
-- request ended) without closing the subscription. They leave, so the upstream does not keep
-- batches for them nor stay open for them.
function Pump:_reap()
  local now = clock.now()
  local gone = {}
  for _, w in pairs(self.waiters) do
    if w.waiting and w.reader and now > w.until_t + M.dead_after then gone[#gone + 1] = w end
  end
  for _, w in ipairs(gone) do
    w.waiting, w.posted = false, false
    self.up:reap(w.reader)
  end
end

-- The pump's body, in its ngx.timer: drive the loop for ever, waking the consumers at each batch.
local function pump(premature, self)
  local up = self.up
  if premature then -- the worker is exiting before the pump ever ran
    self.running = false
    up:fail(closed_error())
    self:_wake_all()
    return
  end
  -- The loop's coroutine must belong to this timer: a coroutine made in a request can only be
  -- resumed from that request (ngx_lua), and the request that made the upstream may end first.
  local relay = self.relay
  up:start_loop()
  local ok, err = pcall(function()
    while not up:is_closed() do
      local what = up:step(nil)
      if what == "batch" or what == "error" then self:_wake_all() end
      if what == "error" then break end
      if what == "wait" then
        if relay then relay:wait() else ngx.sleep(0.01) end
      end
      self:_reap()
    end
  end)
  self.running = false
  if not ok then
    up:fail(errors.new("protocol", "internal error: " .. tostring(err), { fatal = true }))
  end
  self:_wake_all()
end

function Pump:_start()
  if self.running or self.up:is_closed() then return true end
  local ok, err = ngx.timer.at(0, pump, self)
  if not ok then
    local failure = errors.new("protocol", "cannot start the shared upstream's ngx.timer ("
      .. tostring(err) .. "): raise lua_max_running_timers / lua_max_pending_timers, or "
      .. "subscribe with share = false", { fatal = true })
    self.up:fail(failure)
    return nil, failure
  end
  self.running = true
  return true
end

-- The record of the reader whose reading coroutine is running (drive is called from there).
function Pump:_current()
  local co = coroutine.running()
  local reader = self.by_co[co]
  if reader == nil then
    for rd, rec in self.up:each_reader() do
      if rec.co == co then reader = rd end
    end
    if reader == nil then return nil end
    self.by_co[co] = reader
  end
  local w = self.waiters[reader]
  if not w then
    w = { sema = semaphore.new(0), reader = reader, idle = false, waiting = false, until_t = 0 }
    self.waiters[reader] = w
  end
  return w
end

--- The strategy's `drive` (what `Upstream:drive` does for a consumer inside nginx, in its
-- reading coroutine): start the pump if it is not running, hand the consumer the failures
-- kept for it, and say `"wait"` (nothing new: the driver then waits in `await`, in the
-- consumer's own thread) or
-- `"error", err`. It never waits here: an `ngx.semaphore` or `ngx.sleep` wait inside a plain
-- coroutine is not cleaned up by ngx_lua when the request is killed (`ngx.exit` from
-- `ngx.on_abort`), and its later wake-up touches freed memory (a worker crash, or "http lua
-- fake request count is zero" alerts); waits in a request's entry thread or light threads are.
function Pump:drive()
  local up = self.up
  if up:failed() then return "error", up:failed() end
  if up:is_closed() then return "error", closed_error() end
  local started, failure = self:_start()
  if not started then return "error", failure end
  if self.relay and up:interrupt_pending() then upstream_shm.nudge() end -- a follower asks the owner
  local w = self:_current()
  if w then
    self:_flush(w.reader)
    w.idle, w.seen = true, up:last_batch()
  end
  return "wait"
end

--- The driver's wait for a consumer `reader` (the subscription's private state) that has
-- nothing new, in the thread that called `next()`: until the pump publishes a batch, the
-- upstream fails, the consumer is closed (also from another light thread), or `seconds` pass.
-- @param reader
-- @tparam[opt] number seconds nil: as long as it takes (one wait is at most `max_wait`)
function Pump:await(reader, seconds)
  local up = self.up
  local w = self.waiters[reader]
  if not (w and w.idle) then -- its coroutine waited for something else: never spin
    ngx.sleep(0.001)
    return
  end
  w.idle = false
  if not up:reader(reader) or up:is_closed() or up:failed() or up:last_batch() ~= w.seen then
    return
  end
  -- The driver's deadline bounds the wait (the reader tells it: `deadline()`). A `seconds`
  -- of 0 is not honoured: this reader has nothing to take (checked above), and the 0 comes from
  -- the upstream's own readiness, which is the pump's business here (a native-feed refresh sets
  -- it); waking at once would spin, and ngx.sleep(0) in a loop starves nginx's event loop.
  local t = M.max_wait
  if seconds ~= nil and seconds > 0 and seconds < t then t = seconds end
  local rec = up:reader(reader)
  local deadline = rec.deadline and rec.deadline()
  if deadline then
    local left = deadline - clock.now()
    if left <= 0 then return end
    if left < t then t = left end
  end
  w.waiting, w.posted, w.until_t = true, false, clock.now() + t
  w.sema:wait(t)
  w.waiting, w.posted = false, false
end

--- A consumer left (`Upstream:leave`): end its wait now, so that a `close()` from another light
-- thread is seen at once.
function Pump:left(reader)
  self.pending[reader] = nil
  local w = self.waiters[reader]
  if w then
    self.waiters[reader] = nil
    post(w)
  end
end

--- The upstream closed (its last consumer left, or it failed): another worker may take over.
function Pump:closed()
  if self.relay then self.relay:release() end
end

--- Whether this worker asks the server for the upstream (false: it follows another worker's
-- through the shared dict; for tests).
function Pump:is_owner()
  return not self.relay or self.relay:is_owner()
end

--- Whether the pump's timer is running (for tests).
function Pump:is_running()
  return self.running
end

return M

