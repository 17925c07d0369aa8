--- A live subscription to a Trigger.dev realtime shape.
--
-- The reading loop runs as a coroutine that yields runs. Waiting is the driver's business:
-- `next` blocks (or yields to cqueues when called inside a cqueues coroutine), `poll` never
-- blocks, and `pollfd`/`events`/`timeout` let any event loop wait for it.
--
-- `trigger.runs.subscribe_to_tag`, `subscribe_to_run` and `subscribe_to_batch` make them. A
-- subscription is its own iterator (`for run in sub do … end` calls it) and closing value
-- (`break`, an error in the loop body, or a `<close>` variable close it on Lua 5.4), and
-- `tostring(sub)` names its path. Two fields can be read: `closed` (true once closed or over)
-- and `finished` (true once the iteration ended by itself, as `subscribe_to_run` does when the
-- run is finished).
--
-- Everything else (credentials, position, the rows given, the reading coroutine) is private:
-- out of reach of the subscription table, so a table dumper never prints the token.
--
-- With the default (libcurl) transport all subscriptions of a Lua state share one connection
-- hub: driving one (`next`, `poll`, `trigger.step`) moves the network I/O of all of them along,
-- and subscriptions asking for the same shape share one upstream request (fan-out, the `share`
-- option: see `trigger.runs`) while each keeps its own delivery and position.
-- @classmod Subscription
local config = require "trigger.config"
local delivery = require "trigger.shape.delivery"
local driver = require "trigger.driver"
local errors = require "trigger.errors"
local packets = require "trigger.run.packets"
local run_object = require "trigger.run.object"
local request = require "trigger.transport.request"
local shape_rows = require "trigger.shape.rows"
local upstream = require "trigger.fanout.upstream"
local clock = require "trigger.clock"

local M = {}
local Subscription = {}
Subscription.__index = Subscription
Subscription.__name = "trigger.subscription"

-- Each subscription's state, out of reach of the subscription table (which a table dumper
-- may print): credentials, position, rows given, the reading coroutine. Weak keys, and the
-- state never refers back to its subscription, so a dropped subscription is collected.
local private = setmetatable({}, { __mode = "k" })
local close_state -- closes a private state (below)

local function warn(r, message, url)
  if r.settings.on_error then
    r.settings.on_error(errors.new("protocol", message, { request = url, fatal = false }))
  end
end

-- A subscription that joined a shared upstream takes every run it holds once it has published a
-- batch (and, on the native feed, the batch of the read asked for this subscription), and only
-- while those rows are that batch's: between the pages of a resync they are half a shape, and a
-- resumed subscription would forget the runs of its position missing from them.
-- The run whose object is being built (for a warning's words, a stored packet's request):
-- read from its row only when asked, which is seldom.
local function delivering_id(r)
  return r.delivering_row and shape_rows.column(r.delivering_row, "friendlyId")
end

local function full_ready(r)
  return r.up:whole_ready(r.full_after, r.full_ticket)
end

-- The reading coroutine: wait for the upstream's next batch (driving it), then hand out the
-- runs whose state this subscription has not been given, one yield each. The position after a
-- batch counts as reached when its last run is handed out.
local function read(r)
  local up = r.up
  while true do
    while not (r.full and full_ready(r)) and (r.full or not up:has_new(r)) do
      local what, err = up:drive(r.deadline)
      if what == "error" then error(err, 0) end
      if what == "wait" or what == "busy" then coroutine.yield(what) end
    end
    -- joined a shape already read (`full`): every run it holds, as it is now
    local whole = r.full
    r.full = false
    local batch = up:take(r, whole)
    local reached = batch.position
    local rows = r.given:take(batch.store, batch.keys, batch.dropped, batch.resync)
    if #rows == 0 then r.committed = reached end
    r.delivering_url = batch.url
    for i, row in ipairs(rows) do
      r.delivering_row = row
      local run = run_object.build(row, r.fetch_for_run, r.warn_for_run)
      if i == #rows then r.committed = reached end
      r.given:handed(i) -- a position saved now holds this row, not the rest of the batch
      r.ready = true
      coroutine.yield("run", run)
      if r.stop_when and r.stop_when(run) then return end
    end
  end
end

--- Create a subscription (called by `trigger.runs`).
-- @tparam table spec `path`, `params`, `settings`, `transport`, `stop_when` (function(run)),
--   `resume` (a saved position, or nil)
-- @local
function M.new(spec)
  local s = spec.settings
  local resume = spec.resume
  local up, created = upstream.acquire(spec, resume)
  local r = {
    settings = s,
    transport = spec.transport,
    stop_when = spec.stop_when,
    up = up,
    full = not created, -- joined a shared upstream: first take every run it holds
    closed = false,
    finished = false,
    ready = true, -- the coroutine may have work to do without waiting for I/O
    inflight = {}, -- requests of its own in flight (stored packets): closing aborts them
    packets = {}, -- store-packet cache: "field\0path" → {body, content type}
    name = spec.path,
  }
  if r.full then
    -- The batch whose rows it takes whole: the next one if the shape is read again for it,
    -- else the current one (or the first one, while the upstream is still syncing).
    r.full_after = math.max(up:last_batch() - 1, 0)
    r.full_ticket = up:refresh() -- on the native feed: the read it must start from
  end
  local rebuild = resume ~= nil and (resume.offset == nil or resume.offset == "-1" or not created)
  -- Where the subscription stands until its first batch: the saved position itself, so a
  -- position taken before then resumes from there (not from a fresh read of the shape).
  if resume ~= nil and resume.offset ~= nil and resume.offset ~= "-1" then
    r.committed = { resume.handle, resume.offset, resume.cursor }
  end
  r.given = delivery.new(resume and resume.rows, rebuild)
  r.fetch_for_run = function(field, path)
    return packets.fetch(r, r.packets, up:api_headers(), delivering_id(r), field, path)
  end
  r.warn_for_run = function(message)
    warn(r, "run " .. tostring(delivering_id(r)) .. " " .. message, r.delivering_url)
  end
  r.is_closed = function() return r.closed end
  r.co = coroutine.create(function() return read(r) end)
  up:join(r, { on_error = s.on_error, co = r.co,
    deadline = function() return r.deadline end,
    gone = function() r.closed = true end }) -- (its thread was killed: it no longer reads)
  local sub = setmetatable({ closed = false, finished = false }, Subscription)
  private[sub] = r
  driver.close_when_collected(sub, close_state, r) -- dropped without close(), on LuaJIT too
  return sub
end

function close_state(r)
  if r.closed then return end
  r.closed = true
  for handle in pairs(r.inflight) do handle:close() end
  r.inflight = {}
  r.up:leave(r)
end

local resume = driver.resume

local function state(sub, fn)
  return driver.state(private, sub, fn, "subscription")
end

local raise = errors.raise

--- Seconds until the subscription needs attention even if its descriptor stays quiet (the
-- cqueues pollable protocol): 0 when it has work to do now, else the network's next timer or
-- the end of a retry's backoff.
-- @treturn number|nil seconds, or nil when nothing is timed (wait for `pollfd` alone)
-- @usage
-- -- any poll loop: wait for sub:pollfd() to be readable, at most sub:timeout() seconds, then
-- local run = sub:poll()
function Subscription:timeout()
  local r = state(self, "timeout")
  if r.closed or r.ready or r.up:ready() then return 0 end
  if r.full then
    if full_ready(r) then return 0 end
  elseif r.up:has_new(r) then
    return 0
  end
  local t = request.in_background(r.transport) and r.transport.timeout() or nil
  local wake = r.up:wake_at()
  if wake then
    local w = math.max(0, wake - clock.now())
    if not t or w < t then t = w end
  end
  return t
end

--- The descriptor an event loop should watch (the cqueues pollable protocol).
-- @function Subscription:pollfd
-- @treturn integer fd

--- The events to watch on `pollfd` (the cqueues pollable protocol).
-- @function Subscription:events
-- @treturn string "r"

--- The next run, never blocking: performs whatever I/O is ready for every subscription of
-- this thread (once per round: polling 1,000 subscriptions one after the other looks at the
-- network once), then returns a run if one is ready.
-- @treturn[1] table a run
-- @treturn[2] nil when none is ready (or the subscription ended: see `finished`)
-- @raise a fatal error object
function Subscription:poll()
  -- (the checks' calls only when they fail: a host polling 1,000 idle subscriptions at every
  -- wakeup runs this 1,000 times)
  local r = private[self] or state(self, "poll")
  if r.closed then
    if r.failure then raise(r.failure) end
    return nil
  end
  if not request.in_background(r.transport) then driver.need_background(r, "poll") end
  r.deadline = nil
  driver.look_at_network(r)
  -- Still waiting for the same request: nothing to do (a host polling many subscriptions
  -- after every wakeup pays this once per subscription).
  local h = r.awaiting or r.up:awaiting()
  if not r.ready and h and not h:done() and not r.up:has_new(r) and not r.full then
    return nil
  end
  local what, value = resume(self, r)
  if what == "run" then return value end
  if what == "error" then raise(value) end
  return nil -- waiting for I/O, or ended
end

-- The error a `timeout` from `next` tells of: the one being retried, if any.
local function last_error(r)
  return r.up:last_error()
end

--- The next run, waiting at most `timeout` seconds.
-- Inside a cqueues coroutine the wait yields to cqueues instead of blocking the thread.
-- @tparam[opt] number timeout seconds; nil waits as long as it takes
-- @treturn[1] table a run
-- @treturn[2] nil
-- @treturn[2] string "timeout", "closed" or "finished"
-- @treturn[2] table|nil with "timeout": the error that is being retried, when requests are
--   failing (a wrong URL, a server down): the cause is never hidden behind a bare "timeout"
-- @raise a fatal error object (401, 403, 404, bad request, protocol errors, max_retries);
--   a string when `timeout` is not a non-negative number
-- @usage
-- local run, why, err = sub:next(5)
-- if run then print(run.id, run.status)
-- elseif why == "timeout" then print("nothing in 5 s", err or "") end
function Subscription:next(timeout)
  -- not a tail call: a misuse error names the caller's line
  local item, why, err = driver.next(self, state(self, "next"), timeout, "run", resume,
    last_error)
  return item, why, err
end

--- Where the subscription stands: a table that `opts.resume` accepts later (plain strings and
-- tables of strings, JSON null as `cjson.null`: it can be saved with `cjson.encode`).
--
-- It holds the shape position (`handle`, `offset`, `cursor`, `schema`) of the last batch this
-- subscription has fully handed out, and `rows`: each run's row as this subscription last
-- handed it out. A run of the batch in progress that was not handed out yet keeps its earlier
-- row, so a subscription resumed from a position taken mid-batch hands it out. Resumed, a
-- subscription yields only the runs whose state changed since (also across a 409, when the
-- server dropped the shape meanwhile: it reads the shape again and compares), and forgets the
-- runs that left the shape. A subscription resumed from a position stands there until its first
-- batch; one that has had no batch yet has no `handle`/`offset` (resuming it reads the shape
-- from the start). The position is this subscription's own, also when it shares an upstream
-- (fan-out): the others' progress does not move it, and resuming into a shared upstream takes
-- that upstream's rows and hands out those that differ from the position's. Its size grows with
-- the number of runs followed.
-- @treturn table `{handle=, offset=, cursor=, schema=, rows={[key]=row}}`
function Subscription:position()
  local r = state(self, "position")
  local c = r.committed
  local pos = { rows = r.given:snapshot(), schema = r.up:schema() }
  if c then pos.handle, pos.offset, pos.cursor = c[1], c[2], c[3] end
  return pos
end

-- the options of with_streams
local WITH_STREAMS = { resume = true, drain_timeout = true, max_streams = true }

--- The subscription with its runs' realtime streams: an object driven like a subscription
-- (`next`, `poll`, `pollfd`/`events`/`timeout`, `position`, `close`, the generic for) whose
-- items are `{type = "run", run = …}` and `{type = key, stream = key, chunk = …, run = …}`
-- (see `RunStreams`). It owns the subscription: closing it closes the subscription.
-- @tparam[opt] table opts `resume` (the `streams` part of an earlier `position()`: each stream
--   goes on from there), `max_streams` (streams read at once, default 32: the others wait
--   their turn, then are read from their beginning), `drain_timeout` (seconds a finished
--   run's streams may take to end;
--   default 30)
-- @treturn RunStreams the object, its own iterator and the generic for's closing value
-- @usage
-- for item in trigger.runs.subscribe_to_run(id):with_streams() do
--   if item.type == "run" then print(item.run.status) else io.write(tostring(item.chunk)) end
-- end -- ends once the run is finished and its streams are drained
function Subscription:with_streams(opts)
  local r = state(self, "with_streams")
  if opts ~= nil and type(opts) ~= "table" then
    errors.bad_argument("with_streams", 1, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  for k in pairs(opts) do
    if not WITH_STREAMS[k] then config.unknown_option("with_streams", k, WITH_STREAMS) end
  end
  if opts.drain_timeout ~= nil and not (type(opts.drain_timeout) == "number"
      and opts.drain_timeout >= 0) then
    errors.bad_argument("with_streams", 1, "drain_timeout must be a non-negative number")
  end
  local m = opts.max_streams
  if m ~= nil and not (type(m) == "number" and m >= 1 and m == math.floor(m)) then
    errors.bad_argument("with_streams", 1, "max_streams must be a whole number of at least 1")
  end
  if not request.in_background(r.transport) then
    error("with_streams() needs requests that run in the background, which this transport "
      .. "(nginx cosockets) cannot do: read each stream with trigger.streams.read in a light "
      .. "thread of its own", 2)
  end
  -- The run `id` as this subscription last handed it out, built again from the rows given
  -- (for the streams a resumed object reopens before the run changes again), or nil.
  local by_id -- friendlyId -> row given, made at the first call (one snapshot for every id)
  local function given_run(id)
    if not by_id then
      by_id = {}
      for _, row in pairs(r.given:snapshot()) do by_id[row.friendlyId] = row end
    end
    local row = by_id[id]
    if row == nil then return nil end
    r.delivering_row = row
    return run_object.build(row, r.fetch_for_run, r.warn_for_run)
  end
  local obj = require("trigger.streams.run_streams").new(self, r.settings, opts, given_run)
  return obj, nil, nil, obj
end

--- Close the subscription: aborts its request (closing the connection) at once.
-- Idempotent; also called by `__close` (a to-be-closed variable, or `break` out of a generic
-- for on Lua 5.4) and `__gc` (a subscription dropped without `close()` is closed once
-- collected, on LuaJIT too).
function Subscription:close()
  local r = private[self]
  if r then close_state(r) end
  self.closed = true
end

--- The same as `close` (the TypeScript SDK's name).
-- @function Subscription:unsubscribe

--- Calling the subscription gives the next run, as the generic for does in `for run in sub do … end`.
-- Like `next`, waiting as long as the `timeout` option says (default: for ever).
-- @function Subscription.__call
-- @tparam Subscription self
-- @treturn table|nil the next run; nil ends the loop (the subscription finished or was closed)
-- @raise a fatal error object, as `next` does; a `timeout` error object when the `timeout`
--   option is set and no run came in time
driver.pollable(Subscription, state, "run", "subscription")

function Subscription.__tostring(self)
  local r = private[self]
  return string.format("trigger.subscription(%s%s)", r and r.name or "?",
    self.closed and ", closed" or "")
end

-- For the soak's reports only: where a subscription's machinery stands (no credentials).
function M._debug_state(sub)
  local r = private[sub]
  if not r then return "no state" end
  local rec = r.up:reader(r)
  return string.format("closed=%s ready=%s full=%s at=%s | %s", tostring(r.closed),
    tostring(r.ready), tostring(r.full), tostring(rec and rec.at), r.up:debug_state())
end

M.Subscription = Subscription
return M
