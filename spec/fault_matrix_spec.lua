-- The fault matrix: every fault of the local server, injected at every phase of a subscription
-- (initial sync, catching up, live) while runs keep changing, against one rigorous oracle.
--
-- Each case keeps its own record of the server's history. After every change the spec makes
-- (create, update, delete) it reads the run back as the server stores it (`srv:get_run`, the
-- row in wire form) and files it under the change's position in the server's log: the emulator's
-- offsets are `<seq>_0` where seq counts changes, and `srv:reset()` starts the log at 0, so the
-- n-th change of a case is seq n. With that history the spec checks, all along:
--   * every run yielded is a state the server really had: the whole run object equals one built
--     from the server's row of that moment (no half-merged partial update, no stale column);
--   * per run the yielded states strictly move forward: no state twice, none older;
--   * each time the client's position reaches a new up-to-date boundary S, every run in the
--     shape at S has had its state at S yielded (nothing the client observed is lost);
--   * the rows a saved position holds (what a resumed subscription trusts) are exactly the
--     states handed out so far; the user saves the position after every run;
-- and at the end of a case:
--   * the position's rows equal the server's rows of every run carrying the tag, column by
--     column, and the last run object yielded for each equals the server's;
--   * on_error saw exactly the injected transient faults, with their kinds; a fatal fault
--     raised the documented error instead (and a subscription resumed from the position,
--     with good credentials and no fault, then catches up as above).
--
-- The spec sees the requests a subscription makes through a wrapping transport (the documented
-- `transport` option): that is how it rotates handles, expires a token or makes changes between
-- two requests of a sync.
--
-- Every case runs on both of Trigger.dev's realtime backends: the Electric shape log and the
-- native runs feed (`../shared/protocol/native-backend.md`). The native feed is a state poller,
-- so three things the oracle checks on Electric do not hold there, by design: its offsets are
-- not log positions (the boundary check becomes "caught up": every run in the shape has had its
-- current state handed out), it may skip intermediate states, and it never deletes (a run that
-- leaves the shape keeps its last state in the position). Rows are compared as run objects,
-- since the two dialects write the same values differently (timestamps, floats, arrays). It has
-- no 409 and no paged initial sync, so the faults that need them are Electric's only.
local helper = require "spec.helper"
local trigger = require "trigger"
local errors = require "trigger.errors"
local json = require "trigger.json"
local run_object = require "trigger.run.object"
local socket = require "socket"

local NULL = helper.null
local PREFIX = "/realtime/v1/runs"
local WAIT = 10 -- seconds any single wait may take before the case fails
local CHUNK_ROWS = 3
local HOLD_MS = 400
local COMPANIONS = 2 -- subscriptions sharing each one's upstream (fan-out)

local srv
local native = false -- the backend of the server in use: the native runs feed

local function now() return socket.gettime() end

local function row_key(internal_id)
  return '"public"."TaskRun"/"' .. internal_id .. '"'
end

local function same_text_row(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do
    if b[k] ~= v then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function same_value(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do
    if not same_value(v, b[k]) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

-- The same state of a run: the same text on Electric; the same run object on native, whose
-- dialect writes the same values differently (and leaves out idempotencyKey).
local function same_row(a, b)
  if not native or a == nil or b == nil then return same_text_row(a, b) end
  return same_value(run_object.build(a), run_object.build(b))
end

---------------------------------------------------------------------------------------------------
-- The world: the server's history as the spec made it.

local World = {}
World.__index = World

local function new_world(tag)
  return setmetatable({
    tag = tag,
    seq = 0,        -- the server's log head (changes made since reset)
    relevant = 0,   -- seq of the last change the shape sends a message for
    hist = {},      -- friendlyId -> { {seq, row (wire form, nil once deleted), run, in_shape}, ... }
    ids = {},       -- friendlyIds in creation order
    noise = {},     -- runs that never carry the tag
    k = 0,          -- mutations made
  }, World)
end

-- Run `id` as the server stores it, in the columns the feed sends: neither feed has batchId,
-- and the native one has no idempotencyKey (as Trigger.dev's).
local function server_row(id)
  local row = srv:get_run(id)
  if row then
    row.batchId = nil
    if native then row.idempotencyKey = nil end
  end
  return row
end

function World:in_shape(row)
  if not row then return false end
  for _, t in ipairs(run_object.build(row).tags) do
    if t == self.tag then return true end
  end
  return false
end

function World:current(id)
  local h = self.hist[id]
  return h and h[#h].row
end

-- A change to run `id` was just made: it is the next seq; file the run's new state.
function World:_record(id)
  local before = self:current(id)
  self.seq = self.seq + 1
  local row = server_row(id)
  local h = self.hist[id]
  if not h then
    h = {}
    self.hist[id] = h
    self.ids[#self.ids + 1] = id
  end
  local entry = { seq = self.seq, row = row, run = row and run_object.build(row),
    in_shape = self:in_shape(row) }
  h[#h + 1] = entry
  if self:in_shape(before) or entry.in_shape then self.relevant = self.seq end
end

function World:create(fields)
  local id = srv:create_run(fields)
  self:_record(id)
  return id
end

function World:update(id, fields)
  srv:update_run(id, fields)
  self:_record(id)
end

function World:delete(id)
  srv:delete_run(id)
  self:_record(id)
end

-- The state of run `id` as of log position `seq`: index into its history and the entry.
function World:state_at(id, seq)
  local h = self.hist[id]
  for i = #h, 1, -1 do
    if h[i].seq <= seq then return i, h[i] end
  end
  return nil
end

function World:members()
  local out = {}
  for _, id in ipairs(self.ids) do
    local h = self.hist[id]
    if h[#h].in_shape then out[#out + 1] = id end
  end
  return out
end

function World:outsiders()
  local noise = {}
  for _, id in ipairs(self.noise) do noise[id] = true end
  local out = {}
  for _, id in ipairs(self.ids) do
    local h = self.hist[id]
    if h[#h].row and not h[#h].in_shape and not noise[id] then out[#out + 1] = id end
  end
  return out
end

local function pick(list, k)
  return list[(k * 7) % #list + 1]
end

local function epoch_ms()
  return math.floor(now() * 1000)
end

local STATUS_CYCLE = { "DEQUEUED", "EXECUTING", "WAITING_TO_RESUME", "EXECUTING",
  "COMPLETED_SUCCESSFULLY", "PENDING", "RETRYING_AFTER_FAILURE" }

-- The kinds of change, in turn: what a real run goes through, plus the awkward ones for a
-- replica (NULLs in partial updates, runs leaving and joining the shape, deletes).
local OPS
OPS = {
  function(w, k) -- status and a few columns
    w:update(pick(w:members(), k), { status = STATUS_CYCLE[k % #STATUS_CYCLE + 1],
      startedAt = epoch_ms(), usageDurationMs = k * 13 })
  end,
  function(w, k) -- many columns at once
    w:update(pick(w:members(), k), {
      output = json.encode { k = k, s = "h\195\169" }, metadata = json.encode { progress = k },
      error = { type = "STRING_ERROR", raw = "boom " .. k }, ttl = "1h",
      idempotencyKey = "idem-" .. k, costInCents = k / 4, completedAt = epoch_ms(),
    })
  end,
  function(w, k) -- a partial update that sets columns to NULL
    w:update(pick(w:members(), k), { output = NULL, metadata = NULL, error = NULL, ttl = NULL,
      idempotencyKey = NULL, startedAt = NULL, completedAt = NULL })
  end,
  function(w, k) -- the tag goes: the run leaves the shape
    local members = w:members()
    if #members <= 3 then return OPS[6](w, k) end
    w:update(pick(members, k), { runTags = (k % 2 == 0) and { "gone:" .. k } or NULL })
  end,
  function(w, k) -- the tag comes: a run joins the shape (an insert with the full row)
    local outsiders = w:outsiders()
    if #outsiders == 0 then return OPS[6](w, k) end
    w:update(pick(outsiders, k), { runTags = { "joined:" .. k, w.tag } })
  end,
  function(w, k) -- a new run
    w:create { runTags = { w.tag, "new:" .. k }, payload = json.encode { n = k } }
  end,
  function(w, k) -- the tags change while the run stays in the shape (quoted array elements)
    w:update(pick(w:members(), k), { runTags = { w.tag, "with space " .. k, 'q"' .. k, "x,y" } })
  end,
  function(w, k) -- a change the shape does not see
    w:update(w.noise[k % #w.noise + 1], { status = STATUS_CYCLE[k % #STATUS_CYCLE + 1] })
  end,
  function(w, k) -- a delete
    local members = w:members()
    if #members <= 4 then return OPS[1](w, k) end
    w:delete(pick(members, k))
  end,
}

function World:mutate()
  self.k = self.k + 1
  OPS[(self.k - 1) % #OPS + 1](self, self.k)
end

-- Seven runs with the tag (more than two chunks of the initial sync), two that never carry it,
-- one that may join later.
function World:populate()
  for i = 1, 7 do
    self:create { runTags = { self.tag, "seed:" .. i }, payload = json.encode { i = i },
      status = (i % 2 == 0) and "EXECUTING" or "PENDING",
      metadata = (i == 3) and json.encode { m = i } or nil }
  end
  self.noise[1] = self:create { runTags = { "noise" } }
  self.noise[2] = self:create { runTags = { "noise", "other" } }
  self:create { runTags = { "joiner" } }
end

---------------------------------------------------------------------------------------------------
-- The client: the subscriptions of one consumer (several when it resumes), and every check
-- that can be made as runs come.

local Client = {}
Client.__index = Client

local function new_client(world)
  return setmetatable({
    world = world,
    errors = {},     -- what on_error saw
    last = {},       -- friendlyId -> index into world.hist of the last state yielded
    last_run = {},   -- friendlyId -> the last run object yielded
    seen = {},       -- friendlyId -> { [index] = true }
    yielded = 0,
    subs = {},
    on_fault = nil,  -- called after each transient error is recorded
    comps = {},      -- the companions of the subscription now open (fan-out), see Client:open
  }, Client)
end

local function parse_request(url)
  local p = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do p[k] = v end
  return { url = url, offset = p.offset, initial = p.offset == "-1", live = p.live == "true",
    expired = p.expired_handle ~= nil }
end

-- A transport (the documented `transport` option) that lets `hook(request)` see every request
-- before it is sent, and passes everything else to the real one.
local function intercepting(hook)
  local real = require("trigger.transport").current()
  local wrapped = setmetatable({}, { __index = real })
  if real.background then
    wrapped.start = function(req, ...)
      hook(parse_request(req.url))
      return real.start(req, ...)
    end
  else
    wrapped.perform = function(req, ...)
      hook(parse_request(req.url))
      return real.perform(req, ...)
    end
  end
  return wrapped
end

local function describe_state(e)
  if not e then return "(none)" end
  return ("seq %d, status %s, updatedAt %s"):format(e.seq, e.row and e.row.status or "-",
    e.row and e.row.updatedAt or "-")
end

-- A run handed out by `who` ("" for the subscription, "companion n " for one of its
-- companions) whose last state handed out is history index `prev`: a state the server had,
-- the whole object (every column merged right), in the shape, after `prev`. -> its index
local function check_yield(world, who, run, prev)
  local h = world.hist[run.id]
  assert(h, who .. "yielded an unknown run " .. tostring(run.id))
  local at
  for i = #h, 1, -1 do
    local e = h[i]
    if e.run and e.run.updatedAt == run.updatedAt and e.run.status == run.status then
      at = i
      break
    end
  end
  assert(at, ("%syielded run %s with status %s, updatedAt %s: a state the server never had")
    :format(who, run.id, tostring(run.status), tostring(run.updatedAt)))
  assert.are.same(h[at].run, run)
  assert(h[at].in_shape, who .. "yielded run " .. run.id .. " in a state without the tag")
  assert(not prev or at > prev, ("%srun %s yielded %s after %s: %s"):format(who, run.id,
    describe_state(h[at]), describe_state(prev and h[prev]),
    at == prev and "the same state twice" or "an older state"))
  return at
end

-- opts: token (default the secret key), resume (true: from the last saved position), hook
function Client:open(opts)
  opts = opts or {}
  local o = {
    access_token = opts.token or srv.secret_key, base_url = srv.base_url,
    retry_base = 0.01, retry_cap = 0.05,
    on_error = function(e)
      assert(not e.fatal, "on_error got a fatal error: " .. tostring(e))
      self.errors[#self.errors + 1] = { kind = e.kind, status = e.status, message = e.message }
      if self.on_fault then self.on_fault(e) end
    end,
  }
  if opts.resume then
    assert(self.saved, "no saved position to resume from")
    o.resume = json.decode(self.saved) -- saved as JSON text, as a script would keep it
  end
  if opts.hook then o.transport = intercepting(opts.hook) end
  local sub = trigger.runs.subscribe_to_tag(self.world.tag, o)
  self.subs[#self.subs + 1] = sub
  -- A resumed subscription starts at its saved boundary: it has reached something only once
  -- its position moves past it (the hooks stop striking once `reached` is set, which must not
  -- depend on whether the first catch-up answer came before the first wait timed out).
  self.sub, self.reached, self.fatal = sub, nil, nil
  self.committed = o.resume and o.resume.offset or nil
  -- Two companions with the same settings share the subscription's upstream (fan-out): the
  -- faults hit them too, and each must end with every run as the server has it, having moved
  -- only forward (a resumed one starts where the subscription's position stands).
  for _, comp in ipairs(self.comps) do comp.sub:close() end
  self.comps = {}
  for i = 1, COMPANIONS do
    local comp = { errors = {}, last = {}, last_run = {} }
    for id, at in pairs(self.last) do comp.last[id] = at end
    local co = {}
    for k, v in pairs(o) do co[k] = v end
    co.on_error = function(e) comp.errors[#comp.errors + 1] = e end
    comp.sub = trigger.runs.subscribe_to_tag(self.world.tag, co)
    self.subs[#self.subs + 1] = comp.sub
    self.comps[i] = comp
  end
  return sub
end

-- What the companions have ready, each run checked as the subscription's are
-- (`check_yield`); a fatal error is kept.
function Client:poll_companions()
  for n, comp in ipairs(self.comps) do
    while not comp.fatal do
      local ok, run = pcall(comp.sub.poll, comp.sub)
      if not ok then
        assert(errors.is(run) and run.fatal, "companion " .. n .. ": " .. tostring(run))
        comp.fatal = run
        break
      end
      if not run then break end
      local at = check_yield(self.world, "companion " .. n .. " ", run, comp.last[run.id])
      comp.last[run.id], comp.last_run[run.id] = at, run
    end
  end
end

-- The end state of the companions: every run in the shape as the server has it (after the
-- batches still waiting for them are taken), or the same fatal error as the subscription.
function Client:check_companions(fatal_kind)
  local w = self.world
  local deadline = now() + WAIT
  for n, comp in ipairs(self.comps) do
    while true do
      self:poll_companions()
      if comp.fatal then
        assert(fatal_kind, "companion " .. n .. " failed: " .. tostring(comp.fatal))
        assert.are.equal(fatal_kind, comp.fatal.kind)
        break
      end
      local missing
      for _, id in ipairs(w.ids) do
        local h = w.hist[id]
        if h[#h].in_shape and comp.last[id] ~= #h then missing = id end
      end
      if not missing then break end
      assert(now() < deadline, ("companion %d: run %s not at the server's state (%s; last %s)")
        :format(n, missing, describe_state(w.hist[missing][#w.hist[missing]]),
          describe_state(comp.last[missing] and w.hist[missing][comp.last[missing]])))
      trigger.step(0.02)
    end
  end
end

function Client:close_all()
  for _, sub in ipairs(self.subs) do sub:close() end
end

-- The rows of a position are exactly the states handed out: each one is the last state
-- yielded for its run.
function Client:check_saved_rows(pos)
  for key, row in pairs(pos.rows) do
    local id = row.friendlyId
    local h = self.world.hist[id]
    assert(h, "the position holds an unknown run " .. tostring(id))
    local at
    for i = #h, 1, -1 do
      if same_row(h[i].row, row) then
        at = i
        break
      end
    end
    assert(at, ("the position holds a row of run %s the server never had"):format(id))
    assert(key == row_key(row.id), "the position files run " .. id .. " under " .. key)
    assert(at == self.last[id], ("the position holds run %s at %s, but the last state handed "
      .. "out is %s: a subscription resumed from it would not hand out the difference")
      :format(id, describe_state(h[at]), describe_state(self.last[id] and h[self.last[id]])))
  end
end

function Client:on_run(run)
  local at = check_yield(self.world, "", run, self.last[run.id])
  self.last[run.id], self.last_run[run.id] = at, run
  self.seen[run.id] = self.seen[run.id] or {}
  self.seen[run.id][at] = true
  self.yielded = self.yielded + 1
  -- a script keeps its place after every run it handled
  local pos = self.sub:position()
  self:check_saved_rows(pos)
  self.saved = json.encode(pos)
end

-- Whenever the position reaches a new boundary S: every run in the shape at S has had its state
-- at S handed out.
function Client:check_boundary()
  if native then return self:check_caught_up() end
  local pos = self.sub:position()
  if not pos.offset or pos.offset == self.committed then return end
  self.committed = pos.offset
  local seq = tonumber(pos.offset:match("^(%d+)_0$"))
  assert(seq, "the position is not at an up-to-date boundary: " .. pos.offset)
  assert(seq <= self.world.seq, "the position is past the server's log: " .. pos.offset)
  for _, id in ipairs(self.world.ids) do
    local i, e = self.world:state_at(id, seq)
    if e and e.in_shape then
      assert(self.seen[id] and self.seen[id][i], ("run %s: its state at boundary %d (%s) "
        .. "was never yielded; last yielded: %s"):format(id, seq, describe_state(e),
        describe_state(self.last[id] and self.world.hist[id][self.last[id]])))
    end
  end
  self.reached = math.max(self.reached or 0, seq)
end

-- The native feed: its offsets are no log positions and it may skip states. The client has
-- reached the server's head once every run in the shape has had its current state handed out.
function Client:check_caught_up()
  local w = self.world
  for _, id in ipairs(w.ids) do
    local h = w.hist[id]
    if h[#h].in_shape and self.last[id] ~= #h then return end
  end
  self.reached = w.seq
end

-- One wait for a run (at most `timeout` seconds). Fatal errors are kept in `self.fatal`.
function Client:step(timeout)
  local ok, run = pcall(self.sub.next, self.sub, timeout)
  if not ok then
    if errors.is(run) and run.fatal then
      self.fatal = run
      return nil
    end
    error(run, 0)
  end
  if run then self:on_run(run) end
  self:poll_companions()
  self:check_boundary()
  if self.between then self.between() end
  return run
end

-- Wait until the subscription's position covers every change the shape has seen so far (or a
-- fatal error ends it).
function Client:settle()
  local deadline = now() + WAIT
  while not self.fatal and (self.reached or -1) < self.world.relevant do
    assert(now() < deadline, ("no up-to-date position covering seq %d within %d s (reached %s; "
      .. "errors: %d)"):format(self.world.relevant, WAIT, tostring(self.reached), #self.errors))
    self:step(0.05)
  end
end

-- The end state: the position's rows are the server's rows of every run with the tag, and the
-- last run object yielded for each is the server's.
function Client:check_final()
  local w = self.world
  local pos = self.sub:position()
  local want = {}
  for _, id in ipairs(w.ids) do
    local row = server_row(id)
    assert(same_row(row, w:current(id)), "the spec's record of run " .. id .. " is off")
    if w:in_shape(row) then
      want[row_key(row.id)] = row
      assert.are.same(run_object.build(row), self.last_run[id])
    end
  end
  if not native then return assert.are.same(want, pos.rows) end
  for key, row in pairs(want) do
    assert(pos.rows[key], "the position lacks run " .. row.friendlyId)
    assert.are.same(run_object.build(row), run_object.build(pos.rows[key]))
  end
  for key, row in pairs(pos.rows) do -- no delete on native: runs that left keep their last state
    if not want[key] then
      local h = w.hist[row.friendlyId]
      assert(h and not h[#h].in_shape, "the position holds run " .. row.friendlyId
        .. " that is in the shape but not in the server's answer")
    end
  end
end

---------------------------------------------------------------------------------------------------
-- The faults

local function bounded_sleep_until(t)
  assert(t - now() < WAIT, "refusing to sleep that long")
  while now() < t do socket.sleep(math.min(0.05, math.max(0.001, t - now()))) end
end

-- A public token that expires at the start of a whole second at least one second away.
local function short_token(tag)
  local exp = math.floor(now()) + 2
  local token = assert(trigger.auth.create_public_token {
    access_token = srv.secret_key, base_url = srv.base_url,
    scopes = { read = { tags = { tag } } }, expiration_time = exp,
  })
  return token, exp
end

-- kind/status: what on_error must see per hit. once: a single hit per phase (the Retry-After
-- cases wait a whole second per hit). fatal: the error the subscription must raise.
local FAULTS = {
  { name = "a reset mid-body", fault = { kind = "reset_mid_body" }, kind = "network" },
  { name = "a truncated body", fault = { kind = "truncate" }, kind = "network" },
  { name = "a 409 (handle rotation)", rotate = true, electric_only = true },
  { name = "a stale handle after a 409", rotate = true, stale = true, kind = "protocol",
    electric_only = true },
  { name = "a 503 with Retry-After", fault = { kind = "status", status = 503, retry_after = 1 },
    kind = "network", status = 503, once = true },
  { name = "a 503 without Retry-After", fault = { kind = "status", status = 503 },
    kind = "network", status = 503 },
  { name = "a 429 with Retry-After", fault = { kind = "status", status = 429, retry_after = 1 },
    kind = "rate_limited", status = 429, once = true },
  { name = "a 429 without Retry-After", fault = { kind = "status", status = 429 },
    kind = "rate_limited", status = 429 },
  { name = "a byte-by-byte drip", fault = { kind = "drip", chunk_size = 1 } },
  { name = "a drip of small chunks with delays", fault = { kind = "drip", chunk_size = 16,
    delay_ms = 2 } },
  { name = "invalid JSON", fault = { kind = "invalid_json" }, kind = "protocol", body_only = true },
  { name = "missing electric headers", fault = { kind = "strip_headers" }, once = true,
    fatal = { kind = "protocol", message = "electric%-handle" } },
  { name = "a 401 after the token expired", expire = true,
    fatal = { kind = "auth", status = 401, message = "expired" } },
  { name = "a server restart (drop_connections)", restart = true, kind = "network" },
  { name = "a server killed (kill -9) and started again with its state", restart = true,
    kill = true, kind = "network" },
}

local function queue(case, match, count)
  local f = { match = match, count = count or 1 }
  for k, v in pairs(case.fault) do f[k] = v end
  srv:fault(f)
end

local FIRST = { path_prefix = PREFIX, initial = true }             -- offset=-1
local NON_LIVE = { path_prefix = PREFIX, initial = false, live = false } -- later sync/catch-up
local LIVE = { path_prefix = PREFIX, live = true }

-- A harmless fault that only takes its place in the queue: the retry after a fault takes it,
-- so that the next fault hits the following request, not the retry.
local function spacer(match)
  srv:fault { kind = "delay", delay_ms = 0, match = match }
end

-- Requests of the client under test that reached the server: every request the server
-- counted since the case's reset, less the spec's own admin calls.
local admin_calls = 0
local function client_requests()
  local n = srv:stats().requests
  return n - admin_calls
end

-- Keep the next sync or catch-up request on the server for a while (a restart needs one in
-- flight).
local function hold_next_non_live()
  srv:fault { kind = "delay", delay_ms = 1000, match = NON_LIVE }
end

-- The native feed answers offset=-1 with the whole snapshot, up to date: its initial sync is
-- one request, asked again as offset=-1 after a failure (no handle was adopted).
local function hold_next_snapshot()
  srv:fault { kind = "delay", delay_ms = 1000, match = FIRST }
end

-- A server restart while a request of the subscription is held on the server. libcurl re-sends
-- a request by itself, once, on a fresh connection when a reused connection dies before any
-- answer: such a restart never reaches the library (and nothing is lost). So the spec restarts
-- again while the re-sent request is held, until the library sees a restart: on_error must then
-- get exactly one network error, whatever the transport absorbed.
local function restart(ctx, hold_next)
  local c = ctx.client
  local seen = #c.errors
  for drops = 1, 3 do
    local sent
    if ctx.case.kill then
      -- A real restart: the process dies with the connections, and comes back with its data,
      -- handles and offsets from its state file (not its counters or pending faults).
      srv:restart()
      admin_calls, sent = 0, 0
      if hold_next then hold_next() end
    else
      if hold_next then hold_next() end
      sent = client_requests()
      srv:drop_connections()
    end
    ctx.drops = drops
    local deadline = now() + WAIT
    repeat
      assert(now() < deadline, "after a restart the client neither failed nor asked again")
      c:step(0.02)
    until #c.errors > seen or client_requests() > sent
    if #c.errors > seen then return end
  end
  error("three restarts in a row, and the library saw none of them")
end

-- The case's own action at the request it targets (hook-driven faults), before it is sent.
local function strike(case, ctx)
  if case.rotate then srv:rotate() end
  if case.expire then bounded_sleep_until(ctx.exp + 0.05) end
  if case.restart then ctx.restart_after = client_requests() end -- held by a delay fault
end

local function new_ctx(case)
  local tag = ("fm:%s:%d"):format(case.name:gsub("%W+", "-"), math.random(1e9))
  local ctx = { case = case, world = new_world(tag) }
  ctx.client = new_client(ctx.world)
  ctx.client.between = function()
    local after = ctx.restart_after
    if not after then return end
    ctx.restart_after = nil
    local deadline = now() + WAIT
    while client_requests() <= after do -- the held request reached the server
      assert(now() < deadline, "the held request never reached the server")
      trigger.step(0.01)
    end
    restart(ctx, native and hold_next_snapshot or hold_next_non_live)
  end
  return ctx
end

-- The token of the 401 case, minted right before it is used so that it lasts at least a second.
local function mint(ctx)
  if ctx.case.expire then ctx.token, ctx.exp = short_token(ctx.world.tag) end
end

---------------------------------------------------------------------------------------------------
-- The phases. Each returns the number of times the fault hit.

local PHASES = {}

-- Initial sync: faults at the offset=-1 request and at the next request of the chunked sync
-- (its middle); a change before every request of the sync and during every fault.
PHASES[#PHASES + 1] = { name = "the initial sync", run = function(case, ctx)
  local w, c = ctx.world, ctx.client
  w:populate()
  local hits = 0
  if case.fault and native then
    hits = case.once and 1 or 2 -- the snapshot, then its retry
    queue(case, FIRST, hits)
  elseif case.fault then
    if not case.once then
      queue(case, FIRST)
      hits = hits + 1
      -- A fault in the body alone comes with good headers: the client has asked for the next
      -- page before it finds the body bad, and drops that request. It takes a spacer.
      if case.body_only then spacer(NON_LIVE) end
    end
    queue(case, NON_LIVE)
    hits = hits + 1
  elseif case.stale then
    srv:fault { kind = "stale_handle", match = FIRST } -- the resync after the 409
    hits = 1
  elseif case.restart then
    if native then hold_next_snapshot() else hold_next_non_live() end
    hits = 1
  end
  local budget, struck = 4, false
  c.on_fault = function() w:mutate() end
  mint(ctx)
  c:open { token = ctx.token, hook = function(req)
    if req.live or c.reached then return end
    if budget > 0 then
      budget = budget - 1
      w:mutate()
    end
    if (native or not req.initial) and not struck then -- native: the snapshot is the sync
      struck = true
      strike(case, ctx)
    end
  end }
  c:settle()
  return hits
end }

-- Catching up: a subscription leaves in the middle of a batch (after saving its position), runs
-- change meanwhile (more than fit in one response), and a resumed subscription catches up with
-- non-live requests: faults at its first request and in the middle.
PHASES[#PHASES + 1] = { name = "catching up", run = function(case, ctx)
  local w, c = ctx.world, ctx.client
  w:populate()
  local first_live = true
  c:open { hook = function(req)
    if req.live and first_live then
      first_live = false
      -- three changes before the first long-poll leaves: one batch of three runs
      local m = w:members()
      for i = 1, 3 do w:update(m[i], { status = "EXECUTING", usageDurationMs = i }) end
    end
  end }
  local before = c.yielded
  local deadline = now() + WAIT
  while c.yielded < before + 8 do -- the seven runs of the sync, then the first of the batch
    assert(now() < deadline, "the first subscription did not get going")
    c:step(0.05)
    assert(not c.fatal, tostring(c.fatal))
  end
  c.sub:close()
  local relevant = w.relevant
  while w.relevant < relevant + 7 do w:mutate() end -- at least three catch-up responses
  local hits = 0
  if case.fault and native then
    -- The catch-up is one re-snapshot (a non-live request with the saved handle), asked again
    -- after a failure. A body found bad after good headers: the client has asked ahead for
    -- the next page, and drops that request. It takes a spacer.
    hits = case.once and 1 or 2
    queue(case, NON_LIVE)
    if hits == 2 then
      if case.body_only then spacer(NON_LIVE) end
      queue(case, NON_LIVE)
    end
  elseif case.fault then
    if not case.once then
      queue(case, NON_LIVE)
      spacer(NON_LIVE)
      hits = hits + 1
    else
      spacer(NON_LIVE)
    end
    queue(case, NON_LIVE)
    hits = hits + 1
  elseif case.stale then
    srv:fault { kind = "stale_handle", match = FIRST }
    hits = 1
  elseif case.restart then
    if not native then spacer(NON_LIVE) end
    hold_next_non_live()
    hits = 1
  end
  mint(ctx)
  local budget, n = 3, 0
  c.on_fault = function() w:mutate() end
  c:open { token = ctx.token, resume = true, hook = function(req)
    if req.live or c.reached then return end
    n = n + 1
    if budget > 0 then
      budget = budget - 1
      w:mutate()
    end
    if n == (native and 1 or 2) then strike(case, ctx) end
  end }
  c:settle()
  return hits
end }

-- Live: the initial sync is done and the subscription long-polls; the fault hits a long-poll
-- (one that carries changes where the fault allows it), runs change before and during it.
PHASES[#PHASES + 1] = { name = "live", run = function(case, ctx)
  local w, c = ctx.world, ctx.client
  w:populate()
  local changes_before_next_poll = 0
  mint(ctx)
  c:open { token = ctx.token, hook = function(req)
    if req.live and changes_before_next_poll > 0 then
      changes_before_next_poll = changes_before_next_poll - 1
      w:mutate()
    end
  end }
  c:settle()
  assert(not c.fatal, tostring(c.fatal))
  c.on_fault = function() w:mutate() end
  local hits = 0
  if case.fault then
    hits = case.once and 1 or 2
    queue(case, LIVE, hits)
    changes_before_next_poll = 1
  elseif case.stale then
    srv:fault { kind = "stale_handle", match = FIRST }
    srv:rotate()
    hits = 1
  elseif case.rotate then
    srv:rotate()
  elseif case.restart then
    local deadline = now() + WAIT
    while srv:stats().active_realtime + (srv:stats().active_native or 0) == 0 do
      assert(now() < deadline, "the long-poll never reached the server")
      c:step(0.02)
    end
    restart(ctx, nil) -- a held long-poll needs no help to stay on the server
    hits = 1
  elseif case.expire then
    bounded_sleep_until(ctx.exp + 0.05)
  end
  w:mutate()
  c:settle()
  return hits
end }

---------------------------------------------------------------------------------------------------

-- After the phase: more changes in the live phase, checked one by one; then the end state.
local function finish(case, ctx, hits)
  local w, c = ctx.world, ctx.client
  if case.fatal then
    local err = c.fatal
    assert(err, "expected a fatal " .. case.fatal.kind .. " error, got none")
    assert.are.equal(case.fatal.kind, err.kind)
    if case.fatal.status then assert.are.equal(case.fatal.status, err.status) end
    assert.matches(case.fatal.message, err.message)
    local again_ok, again = pcall(c.sub.next, c.sub, 0)
    assert.is_false(again_ok)
    assert.are.equal(err, again)
    assert.are.same({}, c.errors) -- a fatal error is not retried
    c:check_companions(err.kind) -- they share the upstream: the same error
    -- what a script does next: resume from its saved position with good credentials
    w:mutate()
    c.on_fault = nil
    c:open { resume = c.saved ~= nil }
    c:settle()
  end
  assert(not c.fatal, tostring(c.fatal))
  for _ = 1, 4 do -- a few live changes, each one seen through
    w:mutate()
    c:settle()
  end
  assert(not c.fatal, tostring(c.fatal))
  if not case.fatal then
    -- on_error saw exactly the injected faults. Checked after the live changes: a fault meant
    -- for the long-poll that was already on its way when it was queued hits the next one (how
    -- soon that request reaches the server depends on who moves the I/O on: with companions
    -- polling, sooner).
    local kinds, want = {}, {}
    for _, e in ipairs(c.errors) do
      kinds[#kinds + 1] = e.kind
      if case.status then assert.are.equal(case.status, e.status) end
    end
    for _ = 1, hits do want[#want + 1] = case.kind end
    assert.are.same(want, kinds)
  end
  c:check_final()
  c:check_companions(nil)
end

for _, backend in ipairs { "electric", "native" } do
describe("fault matrix on the " .. backend .. " backend", function()
  local real_http
  setup(function()
    native = backend == "native"
    local state_file = os.tmpname()
    os.remove(state_file) -- the server makes it
    srv = helper.start_server { hold_ms = HOLD_MS, chunk_rows = CHUNK_ROWS, backend = backend,
      native_coalesce_ms = 20, state_file = state_file }
    real_http = helper.http -- every admin call of the spec goes through it: count them
    helper.http = function(...)
      admin_calls = admin_calls + 1
      return real_http(...)
    end
  end)
  teardown(function()
    helper.http = real_http
    srv:stop()
    os.remove(srv.opts.state_file)
  end)

  for _, phase in ipairs(PHASES) do
    describe("during " .. phase.name, function()
      for _, case in ipairs(FAULTS) do
        if native and case.electric_only then goto next_case end
        local outcome = case.fatal and ("fails with a clear " .. case.fatal.kind .. " error")
          or "loses and repeats nothing"
        it(case.name .. " " .. outcome, function()
          srv:reset() -- the server's counters start again at 0, with the reset not counted
          admin_calls = 0
          local ctx = new_ctx(case)
          finally(function() ctx.client:close_all() end)
          local hits = phase.run(case, ctx)
          finish(case, ctx, hits)
        end)
        ::next_case::
      end
    end)
  end

  -- Found by the matrix: position() counted a whole batch as handed out at its first run.
  it("resumes from a position saved in the middle of a batch with the rest of the batch", function()
    srv:reset()
    admin_calls = 0
    local ctx = new_ctx { name = "mid-batch" }
    local w, c = ctx.world, ctx.client
    finally(function() c:close_all() end)
    w:populate()
    c:open()
    assert.is_table(c:step(WAIT)) -- one of the seven runs of the first batch, then the script stops
    c.sub:close()
    c:open { resume = true }
    c:settle()
    assert.are.equal(7, c.yielded)
    c:check_final()
  end)
end)
end
