--- Fan-out across nginx workers: one upstream per filter per nginx instance, fed to the other
-- workers through an `ngx.shared` dict (`lua_shared_dict trigger_realtime 16m;`).
--
-- Every worker with consumers of a filter has its own shared upstream (`trigger.fanout.upstream`,
-- driven by its pump, `trigger.fanout.ngx_pump`), but only one of them, the owner, asks the
-- server. The owner holds a lease in the dict (renewed at least every
-- `trigger.transport.ngx.cancel_check_s` while it waits in a long-poll) and writes every batch
-- it publishes to a log there: the rows that changed, whole, and the position reached. The other
-- workers' upstreams (followers) read the log and publish the same batches to their own
-- consumers, so each consumer sees exactly what it would alone. A follower that starts begins
-- at the log's last batch that holds every row; one that falls behind what the log keeps (or
-- finds no such batch) asks the owner for a snapshot of every row and starts from it (as a
-- resync: what it already handed out and did not change is not handed out again). One watcher
-- timer per worker wakes that worker's followers when an owner writes.
--
-- Takeover: when the owner's last consumer leaves, or its worker exits, it gives the lease up;
-- when its worker dies (kill -9, a crash), the lease runs out after `lease_s`. A follower then
-- takes the lease and goes on from its copy of the rows and the position of the last batch of
-- the log: nothing is lost or handed out twice; changes made meanwhile come with the next read
-- (on Electric with the same handle and offset; the native feed is read afresh, see
-- `Relay:_adopt`). An owner that cannot renew in time (its worker was stuck for `lease_s`)
-- finds the lease taken at its next look, stops asking the server and follows.
--
-- Transient failures of the owner's requests reach every worker's consumers (through the log's
-- error list); a fatal one ends every worker's consumers with the same error.
--
-- Keys in the dict are a SHA-1 of the sharing key: credentials are never stored in it.
-- @module trigger.fanout.shm_relay
local core = require "trigger.core"
local errors = require "trigger.errors"
local json = require "trigger.json"
local shape_loop = require "trigger.shape.loop"

local ngx = ngx -- luacheck: ignore

local M = {}

--- Name of the `lua_shared_dict` that turns sharing across workers on (when nginx has it and
-- runs more than one worker).
M.dict_name = "trigger_realtime"
--- Seconds an owner's lease lasts without renewal: how long the consumers of a worker that
-- died wait before another worker takes over.
M.lease_s = 5
--- Seconds the log keeps a batch (and a snapshot): a follower further behind than this starts
-- from a snapshot.
M.keep_s = 120
--- Batches (and errors) the log keeps at most, whatever their age.
M.keep_batches = 256
--- Seconds between the looks of a worker's watcher at the dict's change counter (what a change
-- waits at most, on top of the owner's, to reach a follower's consumers).
M.poll_s = 0.01
--- Longest wait of a follower between two looks of its own (the owner's lease, its errors).
M.follow_wait_s = 1

-- Every owner write bumps this key; one watcher timer per worker looks at it every `poll_s`
-- and wakes that worker's followers, so idle followers cost no wake-ups of their own.
local CHANGES = "trigger-realtime:changes"
local watcher = { running = false, followers = 0, seen = nil, sema = nil }

local function watch(premature, dict)
  -- pcall: whatever happens, `running` is cleared, so the next follower starts a watcher again
  pcall(function()
    while not premature and watcher.followers > 0 do
      local changes = dict:get(CHANGES)
      if changes ~= watcher.seen then
        watcher.seen = changes
        local waiting = -watcher.sema:count()
        if waiting > 0 then watcher.sema:post(waiting) end
      end
      ngx.sleep(M.poll_s)
    end
  end)
  watcher.running = false
end

local Relay = {}
Relay.__index = Relay

--- The dict to relay through, or nil when sharing across workers is off.
function M.dict()
  local dict = ngx.shared and ngx.shared[M.dict_name]
  if dict and ngx.worker.count() > 1 then return dict end
  return nil
end

--- The relay of shared upstream `up`, made by its pump (`trigger.fanout.ngx_pump`), which hands
-- it the batches the loop reaches (`publish`), the loop's failures (`record_error`) and runs
-- `Relay:run` as the upstream's loop; the failures it reads from the log go to `pump:tell_here`.
function M.new(up, dict, pump)
  local self = setmetatable({
    up = up, dict = dict,
    prefix = "trigger-realtime:" .. ngx.encode_base64(ngx.sha1_bin(up:portable_key())) .. ":",
    seen = 0,             -- the last batch of the log applied to the loop's rows (0: none)
    owning = false,
    lost = false,         -- the lease went to another worker while this one owned it
    asked = {},           -- follower: {ticket, value} refreshes asked of the owner
    refresh_seen = 0,     -- owner: the refresh counter acted on
    refresh_for = {},     -- owner: local refresh ticket → the counter value it answers
    snapshot_served = 0,  -- owner: the snapshot requests answered
    errors_seen = nil,    -- the last error of the log handed to the consumers
    snapshot_asked_at = nil,
  }, Relay)
  self.id = ngx.worker.pid() .. ":" .. tostring(self):match("0x%x+$")
  self.tell = function(err) pump:tell_here(err) end
  watcher.followers = watcher.followers + 1
  return self
end

--- A batch the loop reached (the pump's `publish`): an owner writes it to the log first. →
-- whether this worker's consumers get it (not once the lease is lost: they follow the log from
-- here on, which another worker writes).
function Relay:publish(batch)
  if self.owning then
    self:_record(batch)
    if self.lost then return false end
  end
  return true
end

--- A transient failure of the loop (the pump's `tell`): an owner logs it for the other workers.
function Relay:record_error(err)
  if self.owning then self:_record_error(err) end
end

function Relay:_key(name)
  return self.prefix .. name
end

function Relay:_get_json(name)
  local text = self.dict:get(self:_key(name))
  if type(text) ~= "string" then return nil end
  local value = json.decode(text)
  return value
end

-- Write `value` as JSON without evicting anything (a full dict fails the write instead);
-- `once`: only if the key is not there yet (-> false, "exists" when it is).
function Relay:_put(name, value, once)
  local write = once and self.dict.safe_add or self.dict.safe_set
  local ok, err = write(self.dict, self:_key(name), json.encode(value), M.keep_s)
  if not ok and err ~= "exists" and not self.told_full then
    self.told_full = true
    ngx.log(ngx.ERR, "trigger-realtime: lua_shared_dict ", M.dict_name, ": ", tostring(err),
      " (raise its size: the other workers' consumers of this subscription cannot follow it)")
  end
  return ok, err
end

---------------------------------------------------------------------------------------------------
-- The lease

function Relay:_owner()
  return self.dict:get(self:_key("owner"))
end

function Relay:_take_lease()
  local ok = self.dict:add(self:_key("owner"), self.id, M.lease_s)
  return ok or self:_owner() == self.id
end

--- The owner's periodic look (from the pump's loop, and every `cancel_check_s` while its read
-- waits): renew the lease, pass on the refreshes and snapshots the followers asked for.
-- Sets `lost` (and interrupts the read) once the lease is another worker's.
function Relay:tick()
  if not self.owning or self.lost then return end
  local dict, r = self.dict, self.r
  if self:_owner() ~= self.id then
    self.lost = true
    self.up:interrupt()
    return
  end
  dict:set(self:_key("owner"), self.id, M.lease_s)
  dict:expire(self:_key("head"), M.keep_s)
  local asked = dict:get(self:_key("refresh")) or 0
  if asked > self.refresh_seen then
    self.refresh_seen = asked
    local ticket = self.up:refresh()
    if ticket then
      self.refresh_for[ticket] = asked
    else -- not the native feed: nothing to read again, the next batch answers it
      self.refresh_answer = asked
    end
  end
  local wanted = dict:get(self:_key("want_snapshot")) or 0
  if wanted > self.snapshot_served and self.can_snapshot and not r.mid_sync then
    self.snapshot_served = wanted
    self:_write_snapshot()
  end
end

--- Give the lease up (the upstream closed: its last consumer left, or the worker exits).
function Relay:release()
  if self.owning and not self.lost and self:_owner() == self.id then
    self.dict:delete(self:_key("owner"))
    self:_bump()
  end
  self.owning = false
  if not self.released then
    self.released = true
    watcher.followers = watcher.followers - 1
  end
end

-- Tell the followers of every worker that the dict changed.
function Relay:_bump()
  self.dict:incr(CHANGES, 1, 0)
end

---------------------------------------------------------------------------------------------------
-- The owner writes

local function row_list(r)
  local keys = r.rows:keys()
  local rows = {}
  for _, key in ipairs(keys) do rows[key] = r.rows:get(key) end
  return keys, rows
end

-- An error as the log keeps it (plain fields, as JSON), and back.
local function error_record(err)
  return { kind = err.kind, message = err.message, status = err.status, request = err.request,
    retry_after = err.retry_after }
end

local function error_from(record, fatal)
  return errors.new(record.kind, record.message, { status = record.status,
    request = record.request, retry_after = record.retry_after, fatal = fatal })
end

local function state_of(r, position)
  return { position = { handle = position[1], offset = position[2], cursor = position[3] },
    schema = r.schema, native = r.native_dialect or false }
end

-- `position`: the last batch's (in `_record` it is not the upstream's yet).
function Relay:_write_snapshot(position)
  local r = self.r
  local snap = state_of(r, position or self.up:last_position())
  snap.n = self.seen
  snap.keys, snap.rows = row_list(r)
  self:_put("snapshot", snap)
  self:_bump()
end

-- A batch the owner publishes goes to the log first.
function Relay:_record(batch)
  local r = self.r
  if (self.dict:get(self:_key("head")) or 0) ~= self.seen then
    -- Another worker wrote since: this one's lease has gone (it stops at its next request).
    self.lost = true
    return
  end
  local entry = state_of(r, batch.position)
  entry.keys, entry.rows, entry.dropped, entry.resync = batch.keys, {}, {}, batch.resync
  entry.url = batch.url
  for _, key in ipairs(batch.keys) do entry.rows[key] = r.rows:get(key) or false end
  for key in pairs(batch.dropped) do entry.dropped[#entry.dropped + 1] = key end
  local answered = self.refresh_answer
  self.refresh_answer = nil
  if batch.refreshed then
    for ticket, asked in pairs(self.refresh_for) do
      if ticket <= batch.refreshed then
        if asked > (answered or 0) then answered = asked end
        self.refresh_for[ticket] = nil
      end
    end
  end
  entry.refreshed = answered
  -- A batch that holds every row (the first after a read from nothing, a resync) is where a
  -- worker that starts following can begin without asking for a snapshot.
  local whole = self.first_whole or batch.resync
  self.first_whole = false
  local n = self.seen + 1
  -- Added, not set: of two workers that both think they own it (one was stuck past its lease),
  -- only one writes batch n; the other finds it there and follows.
  local _, err = self:_put("b:" .. n, entry, true)
  if err == "exists" then
    self.lost = true
    return
  end
  self.dict:set(self:_key("head"), n, M.keep_s)
  if whole then self.dict:set(self:_key("whole"), n, M.keep_s) end
  self.dict:delete(self:_key("b:" .. (n - M.keep_batches)))
  self.seen = n
  self:_bump()
  self.can_snapshot = true -- the rows are this batch's, and its position known
  local wanted = self.dict:get(self:_key("want_snapshot")) or 0
  if wanted > self.snapshot_served then
    self.snapshot_served = wanted
    self:_write_snapshot(batch.position)
  end
end

function Relay:_record_error(err)
  local i = self.dict:incr(self:_key("errors"), 1, 0, M.keep_s)
  if not i then return end
  self.errors_seen = i
  self.dict:delete(self:_key("e:" .. (i - M.keep_batches)))
  self:_put("e:" .. i, error_record(err))
  self:_bump()
end

---------------------------------------------------------------------------------------------------
-- The followers read

-- Hand the errors the owner logged since the last look to this worker's consumers.
function Relay:_relay_errors()
  local last = self.dict:get(self:_key("errors")) or 0
  if self.errors_seen == nil or last < self.errors_seen then self.errors_seen = last end
  for i = self.errors_seen + 1, last do
    local e = self:_get_json("e:" .. i)
    if e then self.tell(error_from(e, false)) end
  end
  self.errors_seen = last
end

-- Apply one entry of the log (or a snapshot, `whole`) to the rows and publish its batch here.
function Relay:_apply(entry, whole)
  if entry.fatal then error(error_from(entry.fatal, true), 0) end
  local r = self.r
  if whole or entry.resync then r.rows:reset() end
  local list, n = {}, 0
  local function op(name, key, row)
    list[n + 1], list[n + 2], list[n + 3] = name, key, row
    n = n + 3
  end
  for _, key in ipairs(entry.dropped or {}) do op("delete", key, false) end
  for _, key in ipairs(entry.keys) do
    local row = entry.rows[key]
    if row then op("insert", key, row) else op("delete", key, false) end
  end
  r.rows:apply(list)
  r.schema, r.native_dialect = entry.schema, entry.native or nil
  local batch = r.rows:publish()
  local p = entry.position
  batch.position = { p.handle, p.offset, p.cursor }
  batch.url = entry.url
  if entry.refreshed then
    local keep = {}
    for _, a in ipairs(self.asked) do
      if a.value <= entry.refreshed then
        if a.ticket > (batch.refreshed or 0) then batch.refreshed = a.ticket end
      else
        keep[#keep + 1] = a
      end
    end
    self.asked = keep
  end
  self.up:publish(batch)
end

-- Catch up with the log: apply what it has after `seen`. -> true when up to date with its head,
-- false when a batch is missing (too far behind, or nothing applied yet): a snapshot is needed.
function Relay:_catch_up()
  local head = self.dict:get(self:_key("head")) or 0
  if self.seen == 0 or head < self.seen then return head == 0 and self.seen == 0 end
  for n = self.seen + 1, head do
    local entry = self:_get_json("b:" .. n)
    if not entry then return false end
    self:_apply(entry)
    self.seen = n
  end
  return true
end

-- Whether batches from..to are all in the log.
function Relay:_have(from, to)
  for n = from, to do
    if not self.dict:get(self:_key("b:" .. n)) then return false end
  end
  return true
end

-- Take `state` (every row) as batch n of the log, then the log after it. -> as `_catch_up`
function Relay:_start_at(state, n)
  self:_apply(state, true)
  self.seen = n
  self.snapshot_asked_at, self.waiting_since, self.told_waiting = nil, nil, nil
  return self:_catch_up()
end

-- Start from the owner's snapshot, or from the log's last batch that holds every row, then the
-- log after it. -> true once done; false while a snapshot is awaited (asked of the owner once
-- per lease period).
function Relay:_from_snapshot()
  local head = self.dict:get(self:_key("head")) or 0
  local whole = self.dict:get(self:_key("whole"))
  if whole and whole <= head and self:_have(whole, head) then
    local entry = self:_get_json("b:" .. whole)
    if entry and not entry.fatal then return self:_start_at(entry, whole) end
  end
  local snap = self:_get_json("snapshot")
  if snap and snap.n <= head and self:_have(snap.n + 1, head) then
    return self:_start_at(snap, snap.n)
  end
  local now = ngx.now()
  self.waiting_since = self.waiting_since or now
  if not self.snapshot_asked_at or now - self.snapshot_asked_at > M.lease_s then
    self.snapshot_asked_at = now
    self.dict:incr(self:_key("want_snapshot"), 1, 0, M.keep_s)
  end
  if now - self.waiting_since > 2 * M.lease_s and not self.told_waiting then
    -- The owner writes a snapshot within a second of being asked: a dict too small for it, or
    -- an owner that cannot reach the server yet. Said once per wait, and the wait goes on.
    self.told_waiting = true
    self.tell(errors.new("protocol", ("no snapshot of the shared upstream in lua_shared_dict %s "
      .. "after %d s (is the dict large enough for the runs followed? the owner worker's "
      .. "error.log says so if not)"):format(M.dict_name, 2 * M.lease_s), { fatal = false }))
  end
  return false
end

-- A reader joined here on the native feed (`Upstream:refresh` asked a fresh read): ask the owner.
function Relay:_pass_refresh()
  local up = self.up
  if not up:take_interrupt() then return end
  local value = self.dict:incr(self:_key("refresh"), 1, 0, M.keep_s)
  local ticket = up:refresh_ticket()
  if value and ticket then
    self.asked[#self.asked + 1] = { ticket = ticket, value = value }
  end
end

-- One look as a follower: publish what the log has new. -> "batch" | "wait"
function Relay:_follow()
  self.changes_seen = self.dict:get(CHANGES)
  self:_relay_errors()
  self:_pass_refresh()
  local before = self.up:last_batch()
  if not self:_catch_up() then self:_from_snapshot() end
  return self.up:last_batch() > before and "batch" or "wait"
end

--- The pump's wait when `run` said "wait": a follower sleeps until the dict changes (the
-- worker's watcher wakes it) or `follow_wait_s` pass; an owner's loop briefly.
function Relay:wait()
  if self.owning then return ngx.sleep(M.poll_s) end
  if self.dict:get(CHANGES) ~= self.changes_seen or self.up:interrupt_pending() then return end
  if not watcher.running then
    watcher.sema = watcher.sema or require("ngx.semaphore").new(0)
    if not ngx.timer.at(0, watch, self.dict) then return ngx.sleep(M.poll_s) end
    watcher.running = true
  end
  watcher.sema:wait(M.follow_wait_s)
end

--- Wake the followers of this worker now (a consumer joined and needs a refresh asked).
function M.nudge()
  if watcher.sema and watcher.sema:count() < 0 then watcher.sema:post(-watcher.sema:count()) end
end

---------------------------------------------------------------------------------------------------
-- Taking over and owning

-- The state to go on from when this worker takes the lease: its copy of the log (brought up to
-- date), else the snapshot, else (nothing usable) the upstream as it was made (its own resume
-- position, or a fresh read). A fresh read after a log exists is published as a resync.
function Relay:_adopt()
  local r = self.r
  self.can_snapshot = false
  local usable = self:_catch_up()
  if not usable then usable = self:_from_snapshot() end
  if (self.dict:get(self:_key("head")) or 0) == 0 then
    self.seen = 0
    return
  end
  -- The native feed keeps what it sent per handle on the server: the last owner's long-poll may
  -- still be held there (a worker that gave the lease up ends it within cancel_check_s; one
  -- killed, when the server sees the connection close), and a change it takes is marked sent
  -- for that handle, so a read with the same handle would never get it. A new read from the
  -- start has a handle of its own; the readers get the runs whose state differs (a resync).
  local p = self.up:last_position()
  if usable and self.seen > 0 and p and not r.native_dialect then
    local shape = core.shape()
    if p[2] ~= nil and shape:restore(p[1], p[2], p[3]) then
      r.shape:close()
      r.shape = shape
      self.can_snapshot = true
      return
    end
    shape:close()
  end
  -- Nothing to go on from: read the shape again; its first batch is a resync for everyone.
  r.shape:close()
  r.shape = core.shape()
  r.rows:reset()
  self.seen = self.dict:get(self:_key("head")) or 0
end

-- Own the upstream: run the protocol loop in a coroutine of its own, passing its yields on,
-- until the lease is lost. A fatal failure goes to the log (for the other workers) and up.
function Relay:_own()
  local r = self.r
  local before = self.up:last_batch()
  self:_adopt()
  self.owning, self.lost = true, false
  ngx.log(ngx.NOTICE, "trigger-realtime: this worker asks the server for shared upstream ",
    self.prefix, " (from batch ", self.seen, ")")
  self.errors_seen = self.dict:get(self:_key("errors")) or 0
  self.first_whole = #r.rows:keys() == 0 -- nothing yet: the first batch holds every row
  local loop = coroutine.create(function() return shape_loop.run(r) end)
  -- What the log had that this worker's consumers have not been woken for yet.
  if self.up:last_batch() > before then coroutine.yield("batch") end
  while true do
    self:tick()
    if self.lost then break end
    local ok, what = coroutine.resume(loop)
    if not ok then
      if errors.is(what) and what.fatal then
        local n = self.seen + 1
        self:_put("b:" .. n, { fatal = error_record(what) })
        self.dict:set(self:_key("head"), n, M.keep_s)
        -- A worker that starts following from now on must not start from before it: the
        -- next owner (a new subscription) reads afresh and writes a batch that holds every row.
        self.dict:delete(self:_key("whole"))
        self.dict:delete(self:_key("snapshot"))
        self:_bump()
      end
      self:release()
      error(what, 0)
    end
    if what == "lost" or self.lost then break end
    coroutine.yield(what)
  end
  -- Another worker owns it now: drop what this one was reading and follow from a snapshot
  -- (its rows may hold a read the log never got).
  ngx.log(ngx.NOTICE, "trigger-realtime: another worker owns shared upstream ", self.prefix,
    " now: this one follows it")
  for handle in pairs(r.inflight) do handle:close() end
  r.inflight = {}
  self.up:take_interrupt()
  r.rebuild_next, r.mid_sync = nil, false
  self.owning, self.lost, self.seen = false, false, 0
end

--- The upstream's loop inside nginx when sharing across workers (the pump's coroutine body):
-- own it when the lease is free, else follow the log. Never returns.
-- @tparam table r the loop's state (the relay runs the loop: `trigger.shape.loop` as an owner,
--   the log's batches applied to its rows as a follower)
function Relay:run(r)
  self.r = r
  while true do
    if self:_take_lease() then
      self:_own()
    else
      coroutine.yield(self:_follow())
    end
  end
end

--- Called by the pump's transport before each request of the owner's loop: once the lease is
-- lost, the loop is left there (its coroutine is dropped, never resumed).
function Relay:before_request()
  if self.lost then coroutine.yield("lost") end
end

--- Whether this worker asks the server for the upstream now (for tests).
function Relay:is_owner()
  return self.owning and not self.lost
end

return M

