--- One upstream shape: the protocol loop (`trigger.shape.loop`) with its request in flight, its
-- shape position and its rows, shared by every subscription of the Lua state that asks for the
-- same path, filter and credentials (fan-out). Each subscription reads it through its own
-- `trigger.shape.delivery`, so sharing never changes what a subscription sees: a late one is first
-- given the current state of every run, then the changes, exactly as if it were alone.
--
-- The loop runs as a coroutine, one request in flight for all of its readers. At each
-- up-to-date boundary it publishes a batch (the keys that changed and the position reached);
-- batches are kept until every reader has taken them. Who drives the loop, with which transport,
-- and how its failures are told is the upstream's strategy, chosen when it is made (see
-- "strategy" below): in-process (any of its readers drives it, `drive`), or inside nginx a pump
-- of its own (`trigger.fanout.ngx_pump`), with the shared-dict relay across workers
-- (`trigger.fanout.shm_relay`). The readers use its methods (`join`, `take`, `has_new`,
-- `whole_ready`, `refresh`, `drive`, `await`, `leave`…), never its fields; nor does its strategy.
-- @module trigger.fanout.upstream
local clock = require "trigger.clock"
local core = require "trigger.core"
local errors = require "trigger.errors"
local request = require "trigger.transport.request"
local shape_loop = require "trigger.shape.loop"
local shape_rows = require "trigger.shape.rows"

local M = {}
local Upstream = {}
Upstream.__index = Upstream

-- Electric and Trigger.dev headers every realtime request carries.
local PROTOCOL_HEADERS = {
  "x-trigger-electric-version: 1.0.0-beta.1",
  "x-trigger-api-version: 2025-07-16",
}

-- key → upstream, while it has readers. The key holds the credentials: this table is never
-- reachable from outside the module.
local shared = {}

-- Settings that change what the upstream asks or how it retries: readers that differ in any
-- of them do not share.
local KEYED = { "base_url", "access_token", "read_timeout", "connect_timeout", "retry_base",
  "retry_cap", "max_retries", "max_body", "ca_file", "preview_branch" }

-- -> the key within this Lua state (the transport's identity among it), and the same key
-- without the transport's identity (what nginx workers compare: `trigger.fanout.shm_relay`)
local function sharing_key(settings, path, params, transport)
  local parts = { path }
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. tostring(params[k]) end
  for _, k in ipairs(KEYED) do parts[#parts + 1] = tostring(settings[k]) end
  local portable = table.concat(parts, "\0")
  return tostring(transport) .. "\0" .. portable, portable
end

--- The strategy of an upstream: what differs between an upstream whose loop its readers drive
-- in this Lua state (in-process, the transports with background requests) and one driven by an
-- nginx pump (`trigger.fanout.ngx_pump`, with the shared-dict relay `trigger.fanout.shm_relay` when
-- nginx runs several workers). It is chosen once, when the upstream is made (`strategy_for`),
-- and the upstream asks it; it never writes the upstream's fields (it calls its methods).
--
-- A strategy is made by `new(up)` and has:
--
--  * `transport(base)` → the transport the loop's requests use (`base`: the subscription's);
--  * `is_closed()` → true when the request in flight should be given up now (on top of the
--    upstream being closed), looked at while a response is awaited;
--  * `tell(err)` → hand a transient failure of the loop to the readers (their `on_error`);
--  * `publish(batch)` → true when a batch the loop reached is to be published to this Lua
--    state's readers (false: it is not, as for an owner that lost its lease);
--  * `body(r)` → run the loop over its state `r` (the loop's coroutine body; never returns);
--  * `drive(deadline)` → what `Upstream:drive` returns (`"batch"`, `"wait"`, `"busy"`,
--    `"error", err`);
--  * `pumped`: true when the loop is driven by the strategy (a pump) rather than by its
--    readers: the loop's readiness is then none of the readers' business, and the loop's
--    coroutine is made where the pump runs (`Upstream:start_loop`);
--  * optional `await(reader, seconds)` (the wait of a reader with nothing new, in its own
--    thread), `left(reader)`, `closed()` and `is_owner()`.
-- @section strategy

-- In-process: the readers drive the loop, one request in flight for all of them; failures go to
-- every reader's on_error, the default (one warning per streak) when none of them has one. A
-- reader's on_error may read (`next`, `poll`: `"busy"` from `step` meanwhile) or close any
-- subscription of the upstream, the last one too (the loop then stops: `shape_loop`).
local InProcess = {}
InProcess.__index = InProcess

M.in_process = {
  new = function(up) return setmetatable({ up = up }, InProcess) end,
}

function InProcess.transport(_, base) return base end
function InProcess.is_closed() return false end
function InProcess.publish() return true end
function InProcess.body(_, r) return shape_loop.run(r) end
function InProcess:drive(deadline) return self.up:step(deadline) end

function InProcess:tell(err)
  self.up:tell_readers(err)
end

--- The strategy for an upstream on `transport`, or nil when it cannot be shared: in-process on a
-- transport with background requests; inside nginx (cosockets, no background requests) the
-- pump, whose module says whether it can drive the transport.
local function strategy_for(transport)
  if request.in_background(transport) then return M.in_process end
  if rawget(_G, "ngx") then -- luacheck: ignore
    local pump = require "trigger.fanout.ngx_pump"
    if pump.serves(transport) then return pump end
  end
  return nil
end

M.strategy_for = strategy_for

local function new_upstream(spec, resume, key, strategy)
  local s = spec.settings
  local settings = {}
  for k, v in pairs(s) do settings[k] = v end
  local up = setmetatable({ key = key, readers = {}, n_readers = 0, batches = {}, batch_no = 0,
    closed = false, portable = spec.portable_key }, Upstream)
  up.strategy = (strategy or M.in_process).new(up)
  local how = up.strategy
  settings.on_error = function(err) how:tell(err) end
  local r = {
    settings = settings,
    path = spec.path,
    params = spec.params or {},
    transport = how:transport(spec.transport),
    shape = core.shape(),
    headers = request.api_headers(s),
    api_headers = request.api_headers(s), -- stored packets: without the realtime protocol's
    closed = false,
    ready = true, -- the coroutine may have work to do without waiting for I/O
    inflight = {}, -- requests in flight: closing aborts them
  }
  for _, h in ipairs(PROTOCOL_HEADERS) do r.headers[#r.headers + 1] = h end
  local rebuild = false
  if resume ~= nil then
    local ok, err = r.shape:restore(resume.handle, resume.offset, resume.cursor)
    if not ok then
      r.shape:close()
      error(errors.new("bad_request", "opts.resume: " .. err), 0)
    end
    rebuild = resume.offset == nil or resume.offset == "-1"
    r.schema = resume.schema
  end
  r.rows = shape_rows.new(resume and resume.rows, rebuild)
  r.is_closed = function() return how:is_closed() or r.closed end
  r.publish = function(batch)
    if how:publish(batch) then up:publish(batch) end
  end
  up.r = r
  if not how.pumped then up:start_loop() end
  return up
end

--- The upstream for a subscription: a shared one when one exists for the same path, filter,
-- credentials and settings (and `share` is not false), else a new one.
-- @tparam table spec `settings`, `path`, `params`, `transport`, `version`
-- @tparam[opt] table resume a saved position, used only by a new upstream (catch up from it)
-- @treturn Upstream
-- @treturn boolean whether it is new (made for this subscription)
function M.acquire(spec, resume)
  local s = spec.settings
  local strategy = s.share ~= false and strategy_for(spec.transport) or nil
  local key, portable
  if strategy then key, portable = sharing_key(s, spec.path, spec.params or {}, spec.transport) end
  local up = key and shared[key]
  if up and not up.closed and not up.failure then return up, false end
  up = new_upstream({ settings = s, path = spec.path, params = spec.params,
    transport = spec.transport, portable_key = portable }, resume, key, strategy)
  if key then shared[key] = up end
  return up, true
end

--- The key of the upstream without the transport's identity (what nginx workers compare:
-- `trigger.fanout.shm_relay`), nil for one that is not shared.
function Upstream:portable_key()
  return self.portable
end

--- Make the loop's coroutine, in the calling thread: a pumped upstream's pump calls it where it
-- runs (a coroutine made in one nginx request can only be resumed from that request).
function Upstream:start_loop()
  local how, r = self.strategy, self.r
  r.co = coroutine.create(function() return how:body(r) end)
end

--- Tell every reader a transient failure (their `on_error`), or warn once per streak when none
-- of them has one (what the in-process strategy does with the loop's failures).
function Upstream:tell_readers(err)
  local told = false
  local r = self.r
  r.telling = true
  for _, rec in pairs(self.readers) do
    if rec.on_error then
      told = true
      rec.on_error(err)
    end
  end
  r.telling = false
  if not told then self:warn(err) end
end

--- The default warning for a failure no reader has an on_error for (once per streak).
function Upstream:warn(err)
  require("trigger.retry").warn_once(self.r, err)
end

--- The readers and what the upstream keeps of each (`for reader, rec in up:each_reader()`):
-- `at` (the last batch it took), and what it said when it joined: `on_error`, `co`, `gone`,
-- `deadline`.
function Upstream:each_reader()
  return next, self.readers, nil
end

--- What the upstream keeps of `reader` (see `each_reader`), or nil once it left.
function Upstream:reader(reader)
  return self.readers[reader]
end

--- Add a reader (a subscription's private state, as a key), from the current batch on.
-- @tparam table reader
-- @tparam table port what the upstream and its strategy may use of it: `on_error` (nil: none),
--   `co` (its reading coroutine), `gone` (called when a pump finds its thread was killed: it is
--   made to leave), `deadline` (→ the deadline of the caller driving it now, or nil)
function Upstream:join(reader, port)
  if not self.readers[reader] then
    self.readers[reader] = { at = self.batch_no, on_error = port.on_error, co = port.co,
      gone = port.gone, deadline = port.deadline }
    self.n_readers = self.n_readers + 1
  end
end

--- A reader whose thread was killed without closing it (a pump notices): told, and made to leave.
function Upstream:reap(reader)
  local rec = self.readers[reader]
  if rec and rec.gone then rec.gone() end
  self:leave(reader)
end

--- A reader leaves; the upstream closes with its last reader.
function Upstream:leave(reader)
  if self.readers[reader] then
    self.readers[reader] = nil
    self.n_readers = self.n_readers - 1
    if self.strategy.left then self.strategy:left(reader) end
  end
  if self.n_readers == 0 then self:close() end
  self:_trim()
end

--- A reader joins: on the native feed the shared rows may hold runs that left the shape (it
-- never says so), which a reader alone would not get; so the shape is read again in full, and
-- the joining reader takes the rows of the batch that brings.
-- @treturn integer|nil the refresh's ticket (nil: none needed): `refreshed` reaches it with the
--   batch that read brings
function Upstream:refresh()
  if not self.r.native_dialect or self.closed then return nil end
  self.tickets = (self.tickets or 0) + 1
  self.r.refresh_ticket = self.tickets
  self:interrupt()
  return self.tickets
end

--- Give the request in flight up and ask again afresh (a refresh; an owner whose lease went).
function Upstream:interrupt()
  self.r.interrupt = true
  self.r.ready = true
end

--- Whether a fresh read was asked and not started yet.
function Upstream:interrupt_pending()
  return self.r.interrupt == true
end

--- Take the interrupt asked (→ whether there was one).
function Upstream:take_interrupt()
  local was = self.r.interrupt == true
  self.r.interrupt = nil
  return was
end

--- The refresh ticket asked last (nil: none).
function Upstream:refresh_ticket()
  return self.r.refresh_ticket
end

--- Publish a batch (the keys that changed, `position`, `url`, `refreshed`, `resync`) to the
-- readers of this Lua state: the loop does at each up-to-date boundary, a relay's follower for
-- each batch of the log.
function Upstream:publish(batch)
  self.batch_no = self.batch_no + 1
  batch.n = self.batch_no
  self.batches[#self.batches + 1] = batch
  self.position = batch.position
  if batch.refreshed then self.refreshed = batch.refreshed end
  self:_trim()
end

-- Forget the batches every reader has taken.
function Upstream:_trim()
  local low = self.batch_no
  for _, rec in pairs(self.readers) do
    if rec.at < low then low = rec.at end
  end
  local batches, keep = self.batches, {}
  for _, b in ipairs(batches) do
    if b.n > low then keep[#keep + 1] = b end
  end
  self.batches = keep
end

--- The batches after `at`, merged: keys (in order of first change), dropped keys, resync.
-- @treturn {string,...} keys
-- @treturn table dropped
-- @treturn boolean resync
function Upstream:since(at)
  local keys, dropped, resync = {}, {}, false
  for _, b in ipairs(self.batches) do
    if b.n > at then
      for _, k in ipairs(b.keys) do keys[#keys + 1] = k end
      for k in pairs(b.dropped) do dropped[k] = true end
      resync = resync or b.resync
    end
  end
  return keys, dropped, resync
end

--- The position the last batch published reached (`{handle, offset, cursor}`), or nil.
function Upstream:last_position()
  return self.position
end

--- The number of the last batch published (0: none yet).
function Upstream:last_batch()
  return self.batch_no
end

--- Whether `reader` has batches it has not taken.
function Upstream:has_new(reader)
  local rec = self.readers[reader]
  return rec ~= nil and self.batch_no > rec.at
end

--- Whether a reader that joined after batch `after` (waiting for the refresh `ticket`, if any)
-- can take every run the upstream holds now: a batch came since, its rows are whole (not between
-- the pages of a resync), and on the native feed the read asked for it is in.
function Upstream:whole_ready(after, ticket)
  return self.batch_no > after and not self.r.mid_sync
    and (ticket == nil or (self.refreshed or 0) >= ticket)
end

--- What `reader` takes now: the keys of the batches it has not taken, merged (or, `whole`,
-- every key the upstream holds); the batches every reader has taken are then forgotten.
-- @tparam table reader
-- @tparam boolean whole every run, as it is now
-- @treturn table `keys`, `dropped`, `resync`, `store` (the rows), `position` reached, `url` of
--   the last batch
function Upstream:take(reader, whole)
  local t = {}
  local rec = self.readers[reader]
  if whole then
    t.keys, t.dropped, t.resync = self.r.rows:keys(), nil, false
  else
    t.keys, t.dropped, t.resync = self:since(rec.at)
  end
  rec.at = self.batch_no
  self:_trim()
  t.store, t.position = self.r.rows, self.position
  local last = self.batches[#self.batches]
  t.url = last and last.url
  return t
end

--- Whether the loop has work to do without waiting for I/O (never, for readers, when a pump
-- drives it).
function Upstream:ready()
  return not self.strategy.pumped and self.r.ready
end

--- When the loop's backoff ends (clock seconds), or nil.
function Upstream:wake_at()
  return self.r.wake_at
end

--- The request handle the loop awaits (background transports), or nil.
function Upstream:awaiting()
  return self.r.awaiting
end

--- The failure being retried, or nil.
function Upstream:last_error()
  return self.r.last_error
end

--- The shape's schema (for a saved position), or nil.
function Upstream:schema()
  return self.r.schema
end

--- Headers of the API requests made for the upstream's runs (stored packets).
function Upstream:api_headers()
  return self.r.api_headers
end

--- Move the loop on (from a reader's coroutine or driver): `"batch"` when a batch was
-- published, `"wait"` while it waits for I/O (or another reader is driving it), `"busy"` while
-- it is telling its readers' on_error of a failure (a reader called from there), `"error", err`
-- once it failed for good.
-- A pumped upstream (inside nginx) is driven by its pump, and a reader waits for the pump's next
-- batch instead (`await`).
-- @tparam[opt] number deadline the driver's (bounds a request performed in place)
function Upstream:drive(deadline)
  return self.strategy:drive(deadline)
end

--- The wait of a reader that has nothing new, in its own thread (pumped upstreams; else it
-- returns at once: the reader waits on the transport).
function Upstream:await(reader, seconds)
  if self.strategy.await then return self.strategy:await(reader, seconds) end
end

--- Resume the loop once (what `drive` does in-process; the pump's own step).
-- @tparam[opt] number deadline
function Upstream:step(deadline)
  if self.failure then return "error", self.failure end
  if self.closed then return "error", errors.new("protocol", "the shared upstream was closed", {}) end
  local co = self.r.co
  if self.r.telling then return "busy" end
  if coroutine.status(co) ~= "suspended" then return "wait" end
  self.r.deadline = deadline
  local ok, what = coroutine.resume(co)
  if not ok then
    if not errors.is(what) then
      what = errors.new("protocol", "internal error: " .. tostring(what), { fatal = true })
    end
    return self:fail(what)
  end
  if coroutine.status(co) == "dead" then -- the loop never ends by itself
    return self:fail(errors.new("protocol", "internal error: the shape loop ended", { fatal = true }))
  end
  if what == "wait" then self.r.ready = false else self.r.ready = true end
  return what
end

--- End the upstream with a fatal failure (the first one stays): every reader gets it.
-- @return "error", the failure
function Upstream:fail(err)
  self.failure = self.failure or err
  self:close()
  return "error", self.failure
end

--- The failure the upstream ended with, or nil.
function Upstream:failed()
  return self.failure
end

--- Whether the upstream is closed.
function Upstream:is_closed()
  return self.closed
end

--- Close: abort the request in flight, free the shape state. Idempotent.
function Upstream:close()
  if self.closed then return end
  self.closed = true
  local r = self.r
  r.closed = true
  for handle in pairs(r.inflight) do handle:close() end
  r.inflight = {}
  -- Closed from inside its own loop (its last reader's finaliser ran there, as one can inside
  -- nginx's pump, or its on_error closed it): a C function of the shape may be under way, so
  -- the shape state is left to the collector. A pumped loop not started yet has no coroutine.
  local loop = r.co and coroutine.status(r.co)
  if loop ~= "running" and loop ~= "normal" then r.shape:close() end
  if self.key and shared[self.key] == self then shared[self.key] = nil end
  if self.strategy.closed then self.strategy:closed() end
end

--- Whether this Lua state asks the server for the upstream (false: it follows another nginx
-- worker's through the shared dict).
function Upstream:is_owner()
  return not self.strategy.is_owner or self.strategy:is_owner()
end

-- For the soak's reports only: where the upstream's machinery stands (no credentials).
function Upstream:debug_state()
  local r = self.r
  local h = r.awaiting
  local ok, done = pcall(function() return h and h:done() end)
  return string.format("upstream closed=%s failure=%s "
    .. "batch_no=%d readers=%d ready=%s awaiting=%s done=%s wake_in=%s co=%s position=%s "
    .. "request=%s (%.1f s ago)",
    tostring(self.closed), tostring(self.failure), self.batch_no, self.n_readers,
    tostring(r.ready), tostring(h ~= nil), tostring(ok and done or done),
    tostring(r.wake_at and r.wake_at - clock.now()), r.co and coroutine.status(r.co) or "none",
    tostring(self.position and self.position[2]), tostring(h and r.awaited and r.awaited.url),
    h and r.awaited and clock.now() - r.awaited.since or 0)
end

--- How many upstreams are shared right now (for tests and the bench).
function M.count()
  local n = 0
  for _ in pairs(shared) do n = n + 1 end
  return n
end

--- How many of them ask the server from this Lua state (inside nginx with sharing across
-- workers, the others follow another worker's; for tests).
function M.owned()
  local n = 0
  for _, up in pairs(shared) do
    if up:is_owner() then n = n + 1 end
  end
  return n
end

M.Upstream = Upstream
return M
