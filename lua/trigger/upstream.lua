--- One upstream shape: the protocol loop (`trigger.shape_loop`) with its request in flight, its
-- shape position and its rows, shared by every subscription of the Lua state that asks for the
-- same path, filter and credentials (fan-out). Each subscription reads it through its own
-- `trigger.delivery`, so sharing never changes what a subscription sees: a late one is first
-- given the current state of every run, then the changes, exactly as if it were alone.
--
-- The loop runs as a coroutine that any of its readers drives (`drive`), one request in flight
-- for all of them. At each up-to-date boundary it publishes a batch (the keys that changed and
-- the position reached); batches are kept until every reader has taken them.
-- @module trigger.upstream
local core = require "trigger.core"
local errors = require "trigger.errors"
local request = require "trigger.request"
local shape_loop = require "trigger.shape_loop"
local shape_rows = require "trigger.shape_rows"

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
-- without the transport's identity (what nginx workers compare: `trigger.upstream_shm`)
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

-- Transient failures go to every reader's on_error; the default (one warning per streak) when
-- none of them has one.
-- A reader's on_error may read (`next`, `poll`: `"busy"` from `step` meanwhile) or close any
-- subscription of the upstream, the last one too (the loop then stops: `shape_loop`).
local function fan_out_on_error(up)
  return function(err)
    local told = false
    up.r.telling = true
    for reader in pairs(up.readers) do
      if reader.settings.on_error then
        told = true
        reader.settings.on_error(err)
      end
    end
    up.r.telling = false
    if not told then require("trigger.retry").warn_once(up.r, err) end
  end
end

local function new_upstream(spec, resume, key)
  local s = spec.settings
  local settings = {}
  for k, v in pairs(s) do settings[k] = v end
  local up = setmetatable({ key = key, readers = {}, n_readers = 0, batches = {}, batch_no = 0,
    closed = false }, Upstream)
  settings.on_error = fan_out_on_error(up)
  local r = {
    settings = settings,
    path = spec.path,
    params = spec.params or {},
    transport = spec.transport,
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
  r.is_closed = function() return r.closed end
  r.publish = function(batch) up:_publish(batch) end
  r.co = coroutine.create(function() return shape_loop.run(r) end)
  up.r = r
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
  -- A transport without background requests shares through its pump (nginx: trigger.upstream_ngx).
  local share = s.share ~= false and (spec.transport.background or spec.transport.pump ~= nil)
  local key, portable
  if share then key, portable = sharing_key(s, spec.path, spec.params or {}, spec.transport) end
  local up = key and shared[key]
  if up and not up.closed and not up.failure then return up, false end
  up = new_upstream(spec, resume, key)
  up.portable_key = portable
  if key then shared[key] = up end
  if key and not spec.transport.background then up.pump = spec.transport.pump.new(up) end
  return up, true
end

--- Add a reader (a subscription's private state: `settings`, and `at`, the last batch taken).
function Upstream:join(reader)
  if not self.readers[reader] then
    self.readers[reader] = true
    self.n_readers = self.n_readers + 1
  end
end

--- A reader leaves; the upstream closes with its last reader.
function Upstream:leave(reader)
  if self.readers[reader] then
    self.readers[reader] = nil
    self.n_readers = self.n_readers - 1
    if self.pump then self.pump:left(reader) end
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
  self.r.interrupt = true
  self.r.ready = true
  return self.tickets
end

function Upstream:_publish(batch)
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
  for reader in pairs(self.readers) do
    if reader.at < low then low = reader.at end
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

--- Move the loop on (from a reader's coroutine or driver): `"batch"` when a batch was
-- published, `"wait"` while it waits for I/O (or another reader is driving it), `"busy"` while
-- it is telling its readers' on_error of a failure (a reader called from there), `"error", err`
-- once it failed for good.
-- Inside nginx a shared upstream is driven by its pump (`trigger.upstream_ngx`), and a reader
-- waits for the pump's next batch instead.
-- @tparam[opt] number deadline the driver's (bounds a request performed in place)
function Upstream:drive(deadline)
  if self.pump then return self.pump:wait(deadline) end
  return self:step(deadline)
end

--- Resume the loop once (what `drive` does without a pump; the pump's own step).
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
    self.failure = what
    self:close()
    return "error", what
  end
  if coroutine.status(co) == "dead" then -- the loop never ends by itself
    self.failure = errors.new("protocol", "internal error: the shape loop ended", { fatal = true })
    self:close()
    return "error", self.failure
  end
  if what == "wait" then self.r.ready = false else self.r.ready = true end
  return what
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
  -- the shape state is left to the collector.
  local loop = coroutine.status(r.co)
  if loop ~= "running" and loop ~= "normal" then r.shape:close() end
  if self.key and shared[self.key] == self then shared[self.key] = nil end
  if self.pump then self.pump:closed() end
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
    if not up.pump or up.pump:is_owner() then n = n + 1 end
  end
  return n
end

M.Upstream = Upstream
return M
