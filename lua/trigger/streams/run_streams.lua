--- A subscription with its runs' realtime streams (`sub:with_streams()`): one object, driven
-- like a subscription, that hands out the subscription's runs and the chunks of every stream
-- those runs list, in arrival order:
--
--  * `{type = "run", run = run}` for each run the subscription yields;
--  * `{type = key, stream = key, chunk = chunk, run = run}` for each chunk of stream `key`, with
--    `run` the latest state of that run (not the one the stream was opened with).
--
-- Item shapes are the TypeScript SDK's (`withStreams()`), with `stream` added, so that a stream
-- named "run" can be told from run items. What it does better than SDK 4.8.3: streams are kept
-- per (run, key), so every run of a tag or batch subscription has its streams read; each is read
-- from the beginning when a run first lists its key (`realtimeStreams`, or the legacy metadata
-- `$$streams`), and reopened from its last position after the server closes it for idleness;
-- a stream that fails for good (404, 401, 403) is reported to `on_error` (or once on stderr)
-- and dropped, without tearing down the others; and once a run is finished its streams are
-- read to their end, so a run subscription (`subscribe_to_run`) ends when its run is finished
-- and its streams are drained (after `drain_timeout` seconds at most).
--
-- Its `position()` is `{subscription = …, streams = {[run id] = {[key] = …}}}`: resume with
-- `subscribe_…(…, {resume = p.subscription}):with_streams{resume = p.streams}`. It needs a
-- background transport (libcurl): inside nginx read each stream with `trigger.streams.read`
-- in a light thread of its own. The subscription under it may share its upstream with others
-- (fan-out), and so may its streams (`trigger.streams.share`): the `with_streams()` objects that
-- open a (run, key) while the chunks from its beginning are all still kept (every consumer of a
-- shared subscription sees the run list it in the same batch) read it through one request,
-- each at its own place; one that comes later, resumes, or has `share = false` reads it alone.
-- @classmod RunStreams
local clock = require "trigger.clock"
local driver = require "trigger.driver"
local errors = require "trigger.errors"
local run_object = require "trigger.run.object"
local stream_share = require "trigger.streams.share"

local M = {}
local RunStreams = {}
RunStreams.__index = RunStreams
RunStreams.__name = "trigger.streams.run_streams"

local private = setmetatable({}, { __mode = "k" })
local close_state -- closes a private state (below)

-- Seconds a finished run's streams may take to drain before they are closed (the default of
-- `with_streams{drain_timeout = …}`).
M.drain_timeout = 30

-- Streams read at once (the default of `with_streams{max_streams = …}`): each is a connection
-- (an HTTP/2 stream where the server offers it), and a run may list thousands of keys.
M.max_streams = 32

local streams = require "trigger.streams"
local stream_keys = streams.stream_keys

local function report(r, err)
  if r.settings.on_error then
    r.settings.on_error(err)
  else
    io.stderr:write("trigger-realtime: ", errors.describe(err), " (this stream is dropped; pass on_error"
      .. " to handle it yourself)\n")
  end
end

-- A stream waiting for its turn (`max_streams`): where it will start, and whether its run was
-- seen finished meanwhile.
local Waiting = {}
Waiting.__index = Waiting
function Waiting:position() return self.pos end
function Waiting:settle() self.settled = true end
function Waiting.close() end

-- Open stream `key` of run `id` now (it may have waited for its turn).
local function start_stream(r, id, key)
  local per_run = r.streams[id]
  local waited = per_run[key]
  -- its run's end is told by settle(), not looked up by the stream itself
  local o = { resume = r.resume[id] and r.resume[id][key] or nil, stop_on_completion = false }
  for _, name in ipairs(streams.INHERITED) do o[name] = r.settings[name] end
  local stream = stream_share.open(id, key, o, r.settings.share ~= false)
  per_run[key] = stream
  r.order[#r.order + 1] = { id, key, stream }
  if waited and waited.settled then stream:settle() end
end

-- A run lists stream `key`: read it, once, now or when its turn comes.
local function open_stream(r, run, key)
  local per_run = r.streams[run.id]
  if not per_run then
    per_run = {}
    r.streams[run.id] = per_run
  end
  if per_run[key] ~= nil then return end -- open, waiting, or over: never read twice
  if #r.order >= r.max_streams then
    per_run[key] = setmetatable({ pos = r.resume[run.id] and r.resume[run.id][key] or {},
      waiting = true }, Waiting)
    r.waiting[#r.waiting + 1] = { run.id, key }
    return
  end
  start_stream(r, run.id, key)
end

-- A run none of whose streams is open any more: nothing of it is handed out again, and a
-- finished one has no drain deadline left to wait for.
local function forget_if_over(r, id)
  for _, s in pairs(r.streams[id] or {}) do
    if not s.over then return end
  end
  r.latest[id], r.finished_runs[id] = nil, nil
end

--- Make the object (called by `Subscription:with_streams`).
-- @param sub the subscription, owned from now on (closing this closes it)
-- @tparam table settings the subscription's settings
-- @tparam table opts `resume` (a `position().streams` table), `drain_timeout`, `max_streams`
-- @tparam function given_run the run of an id as the subscription last handed it out, or nil
-- @local
function M.new(sub, settings, opts, given_run)
  local r = {
    sub = sub,
    settings = settings,
    transport = settings.transport or require("trigger.transport").current(),
    drain_timeout = opts.drain_timeout or M.drain_timeout,
    max_streams = opts.max_streams or M.max_streams,
    waiting = {}, -- { run id, key } of streams waiting for their turn, in listing order
    resume = opts.resume or {},
    streams = {}, -- run id -> key -> stream
    order = {},   -- { run id, key, stream } in opening order (fair polling)
    latest = {},  -- run id -> latest run object
    finished_runs = {}, -- run id -> clock time the run was seen finished
    queue = {}, head = 1, tail = 0, -- items ready: queue[head..tail]
    closed = false, finished = false,
  }
  local obj = setmetatable({ closed = false, finished = false }, RunStreams)
  private[obj] = r
  driver.close_when_collected(obj, close_state, r) -- dropped without close(), on LuaJIT too
  -- Resumed: the streams of the position go on at once, not when their run next changes (a
  -- finished run's only to their end); their items carry the run as last handed out. Those of
  -- a run the subscription no longer holds (it left the shape) wait until it comes back.
  for id, keys in pairs(r.resume) do
    local run = given_run and given_run(id) or nil
    r.latest[id] = run
    for key in pairs(run and keys or {}) do
      if type(key) == "string" and key ~= "" then open_stream(r, run, key) end
    end
    if run and run_object.FINAL[run.status] then
      r.finished_runs[id] = clock.now()
      for _, stream in pairs(r.streams[id] or {}) do stream:settle() end
      forget_if_over(r, id)
    end
  end
  return obj
end

-- A stream that is over (drained, failed, closed): only its position is kept, so that it is
-- never read again (from its beginning) and a saved position still has it.
local Over = {}
Over.__index = Over
function Over:position() return self.pos end
function Over.settle() end
function Over.close() end

local function retire(r, id, key, stream)
  r.streams[id][key] = setmetatable({ pos = stream:position(), over = true, closed = true }, Over)
  forget_if_over(r, id)
end

local function push(r, item)
  r.tail = r.tail + 1
  r.queue[r.tail] = item
end

-- A run came from the subscription: hand it out, open the streams it lists, and when it is
-- finished let its streams end at their tail.
local function on_run(r, run)
  push(r, { type = "run", run = run })
  local keys = stream_keys(run)
  -- Kept for the chunk items of its streams only: a tag's runs without streams, or whose
  -- streams are over, are not held for ever.
  local per_run, wanted = r.streams[run.id], false
  for _, key in ipairs(keys) do
    local s = per_run and per_run[key]
    if not (s and s.over) then wanted = true end
  end
  for _, s in pairs(per_run or {}) do
    if not s.over then wanted = true end
  end
  if wanted then r.latest[run.id] = run end
  for _, key in ipairs(keys) do
    if type(key) == "string" and key ~= "" then open_stream(r, run, key) end
  end
  if run_object.FINAL[run.status] and not r.finished_runs[run.id] then
    r.finished_runs[run.id] = clock.now()
    for _, stream in pairs(r.streams[run.id] or {}) do stream:settle() end
    forget_if_over(r, run.id)
  end
end

-- One round of polls: the subscription, then every open stream (each drained of what is ready).
-- A stream that fails for good is reported and dropped; the others go on.
local function poll_round(self, r)
  if not r.sub.closed then
    local run = r.sub:poll()
    while run do
      on_run(r, run)
      run = r.sub:poll()
    end
  end
  local keep = {}
  for _, entry in ipairs(r.order) do
    local id, key, stream = entry[1], entry[2], entry[3]
    local ok, chunk = pcall(stream.poll, stream)
    while ok and chunk ~= nil do
      push(r, { type = key, stream = key, chunk = chunk, run = r.latest[id] })
      ok, chunk = pcall(stream.poll, stream)
    end
    if not ok then
      local err = errors.is(chunk) and chunk
        or errors.new("protocol", "stream " .. key .. ": " .. tostring(chunk), {})
      err.run_id, err.stream = id, key
      report(r, err)
      stream:close()
    elseif not stream.closed then
      local since = r.finished_runs[id]
      if since and clock.now() - since > r.drain_timeout then
        stream:close() -- a finished run's stream that never showed its end
      end
    end
    if stream.closed then retire(r, id, key, stream) else keep[#keep + 1] = entry end
  end
  r.order = keep
  -- Streams that waited for their turn: opened as others end, in the order runs listed them;
  -- a finished run's that waited past its drain deadline are over unread.
  local now, still = clock.now(), {}
  for _, entry in ipairs(r.waiting) do
    local id, key = entry[1], entry[2]
    local since = r.finished_runs[id]
    if since and now - since > r.drain_timeout then
      retire(r, id, key, r.streams[id][key])
    elseif #r.order < r.max_streams then
      start_stream(r, id, key)
    else
      still[#still + 1] = entry
    end
  end
  r.waiting = still
  -- Over when the subscription ended by itself (a finished run) and every stream is drained.
  if r.sub.finished and #r.order == 0 and r.head > r.tail then
    r.finished = true
    self.finished = true
    self:close()
  elseif r.sub.closed and not r.sub.finished then
    self:close() -- closed from outside, or failed (its error is raised by poll/next)
  end
end

local function state(obj, fn)
  local r = private[obj]
  if r == nil then
    error(string.format("bad argument #1 to '%s' (run streams expected, got %s)", fn,
      type(obj)), 3)
  end
  return r
end

local function take(r)
  if r.head > r.tail then return nil end
  local item = r.queue[r.head]
  r.queue[r.head] = nil
  r.head = r.head + 1
  if r.head > r.tail then r.head, r.tail = 1, 0 end
  return item
end

--- The next item, never blocking (see `Subscription:poll`).
-- @treturn table|nil an item, or nil when none is ready (or it ended: see `finished`)
-- @raise the subscription's fatal error
function RunStreams:poll()
  local r = state(self, "poll")
  local item = take(r)
  if item then return item end
  if r.closed then
    if r.failure then errors.raise(r.failure) end
    return nil
  end
  local ok, err = pcall(poll_round, self, r)
  if not ok then
    r.failure = err
    self:close()
    errors.raise(err)
  end
  return take(r)
end

--- Seconds until the object needs attention even if its descriptor stays quiet (cqueues
-- pollable protocol): the least of its subscription's and its streams'.
-- @treturn number|nil
function RunStreams:timeout()
  local r = state(self, "timeout")
  if r.closed or r.head <= r.tail then return 0 end
  local t -- a closed subscription says 0 (its poll returns at once), but has nothing to give
  if not r.sub.closed then t = r.sub:timeout() end
  for _, entry in ipairs(r.order) do
    local s = entry[3]:timeout()
    if s and (t == nil or s < t) then t = s end
  end
  local now = clock.now()
  for _, since in pairs(r.finished_runs) do -- the nearest drain deadline
    local left = math.max(0, since + r.drain_timeout - now)
    if t == nil or left < t then t = left end
  end
  return t
end

--- The descriptor to watch (the hub's, shared by every subscription and stream).
-- @function RunStreams:pollfd
-- @treturn integer fd

--- The events to watch on `pollfd`.
-- @function RunStreams:events
-- @treturn string "r"

--- The next item, waiting at most `timeout` seconds (yielding to cqueues inside a cqueues
-- coroutine).
-- @tparam[opt] number timeout seconds; nil waits as long as it takes
-- @treturn[1] table an item
-- @treturn[2] nil
-- @treturn[2] string "timeout", "closed" or "finished"
-- @raise the subscription's fatal error
function RunStreams:next(timeout)
  local r = state(self, "next")
  local deadline = driver.deadline_of(timeout, 3)
  while true do
    local item = self:poll()
    if item then return item end
    if r.closed then return nil, r.finished and "finished" or "closed" end
    if not driver.wait(self, r, deadline) then return nil, "timeout" end
  end
end

--- Where it stands: the subscription's position and each open stream's, for a later
-- `subscribe_…{resume = p.subscription}:with_streams{resume = p.streams}`.
-- @treturn table `{subscription = …, streams = {[run id] = {[key] = …}}}`
function RunStreams:position()
  local r = state(self, "position")
  local out = {}
  -- A resumed object's streams not reopened yet (their run is not back) stand where they were.
  for id, keys in pairs(r.resume) do
    for key, pos in pairs(keys) do
      out[id] = out[id] or {}
      out[id][key] = pos
    end
  end
  for id, per_run in pairs(r.streams) do
    for key, stream in pairs(per_run) do
      out[id] = out[id] or {}
      out[id][key] = stream:position()
    end
  end
  return { subscription = r.sub:position(), streams = out }
end

--- Close the subscription and every stream. Idempotent; also `__close` and `__gc` (dropped
-- without `close()`, it is closed once collected, on LuaJIT too).
function RunStreams:close()
  local r = private[self]
  if r then close_state(r) end
  self.closed = true
end

function close_state(r)
  if r.closed then return end
  r.closed = true
  r.sub:close()
  for _, per_run in pairs(r.streams) do
    for _, stream in pairs(per_run) do stream:close() end
  end
end

--- The same as `close` (the TypeScript SDK's name).
-- @function RunStreams:unsubscribe

--- Calling it gives the next item, as the generic for does (waiting as the subscription's
-- `timeout` option says).
-- @function RunStreams.__call
driver.pollable(RunStreams, state, "item", "run streams")

function RunStreams.__tostring(self)
  return "trigger.streams.run_streams(" .. tostring(private[self] and private[self].sub or "?") .. ")"
end

M.RunStreams = RunStreams
M._stream_keys = stream_keys
return M
