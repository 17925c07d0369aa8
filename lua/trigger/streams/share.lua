--- Streams shared by the `with_streams` objects of one Lua state (fan-out of run streams).
-- Consumers of a shared subscription see a run list its stream in the same batch, so each
-- opens (run, key) from the beginning at about the same time: they share one request here,
-- each with its own place in the chunks (a tap). The chunks one tap has not taken yet are
-- kept, with the stream position after each, until every tap has them.
--
-- A tap joins a stream while every chunk from the beginning is still kept (none read yet, or
-- another tap has not taken the first); a reader that comes later, or resumes from a position,
-- reads on its own. Settings that change the request (credentials, URL, timeouts) must be equal to share;
-- `share = false` (the subscription's option) opens a stream of its own. No I/O of its own:
-- the stream (`trigger.streams`) does it.
-- @module trigger.streams.share
local streams = require "trigger.streams"

local M = {}
local Tap = {}
Tap.__index = Tap

-- The options that make a stream's request (the rest are its caller's). The key holds the
-- credentials: this table is never reachable from outside the module.
local KEYED = { "access_token", "base_url", "ca_file", "read_timeout", "connect_timeout",
  "max_body", "preview_branch" }
local open = {} -- key -> source, while it has taps and no chunk has been read

local function sharing_key(run_id, key, o)
  local parts = { run_id, key, tostring(o.transport) }
  for _, name in ipairs(KEYED) do parts[#parts + 1] = tostring(o[name]) end
  return table.concat(parts, "\0")
end

-- source: { stream, chunks and positions (by chunk number: first..last are kept), first, last,
--           taps (tap -> true), n_taps, failure, key, initial, trimmed_position }
local function new_source(run_id, key, o, share_key)
  local stream = streams.read(run_id, key, o)
  return { stream = stream, chunks = {}, positions = {}, first = 1, last = 0, taps = {},
    n_taps = 0, key = share_key, initial = stream:position() }
end

local function tap_on(src)
  -- at: the number of the next chunk this tap takes
  local tap = setmetatable({ src = src, at = src.first, closed = false }, Tap)
  src.taps[tap] = true
  src.n_taps = src.n_taps + 1
  return tap
end

--- A tap on stream `key` of run `run_id`: a shared one when a stream with the same request is
-- open and still keeps every chunk from its beginning, else one on a stream of its own.
-- @tparam string run_id
-- @tparam string key
-- @tparam table o the options of `trigger.streams.read` (with `transport`)
-- @tparam boolean share false: a stream of its own
-- @return the tap: `poll`, `timeout`, `position`, `settle`, `close`, field `closed`
function M.open(run_id, key, o, share)
  if not share or o.resume ~= nil or o.from ~= nil then return tap_on(new_source(run_id, key, o)) end
  local k = sharing_key(run_id, key, o)
  local src = open[k]
  if not (src and src.first == 1 and not src.failure) then
    src = new_source(run_id, key, o, k)
    open[k] = src
  end
  return tap_on(src)
end

-- A chunk was dropped (a tap joining now could not start at the beginning), or the last tap
-- left: the stream is no longer open to taps.
local function no_joining(src)
  if src.key and open[src.key] == src then open[src.key] = nil end
end

-- Forget the chunks every tap has taken.
local function trim(src)
  local low = math.huge
  for tap in pairs(src.taps) do
    if tap.at < low then low = tap.at end
  end
  if low == math.huge then return end
  local chunks, positions = src.chunks, src.positions
  if low > src.first then src.trimmed_position = positions[low - 1] end
  for i = src.first, low - 1 do chunks[i], positions[i] = nil, nil end
  if low > src.first then
    src.first = low
    no_joining(src)
  end
end

-- Read what the stream has ready into the kept chunks (one look at the network, as `poll`).
local function fill(src)
  local stream = src.stream
  local ok, chunk = pcall(stream.poll, stream)
  while ok and chunk ~= nil do
    local n = src.last + 1
    src.chunks[n], src.positions[n], src.last = chunk, stream:position(), n
    ok, chunk = pcall(stream.poll, stream)
  end
  if not ok then src.failure = chunk end
end

-- The tap's next kept chunk, or nil.
local function take(tap)
  local src = tap.src
  local i = tap.at
  if i > src.last then return nil end
  local chunk = src.chunks[i]
  tap.at = i + 1
  if i == src.first then trim(src) end
  return chunk
end

--- The next chunk, never blocking.
-- @return a chunk or nil
-- @raise the stream's fatal error (to every tap, after the chunks before it)
function Tap:poll()
  if self.closed then return nil end
  local src = self.src
  local chunk = take(self)
  if chunk ~= nil then return chunk end
  if src.failure then error(src.failure, 0) end
  if src.n_taps == 1 then
    -- Alone (and every kept chunk taken): straight from the stream, nothing kept.
    local stream = src.stream
    local ok, c = pcall(stream.poll, stream)
    if not ok then
      src.failure = c
      error(c, 0)
    end
    if c ~= nil then
      no_joining(src)
      src.last = src.last + 1
      src.first, self.at = src.last + 1, src.last + 1
      return c
    end
  else
    fill(src)
    chunk = take(self)
    if chunk ~= nil then return chunk end
    if src.failure then error(src.failure, 0) end
  end
  if src.stream.closed then self.closed = true end -- ended, and this tap has every chunk
  return nil
end

--- Seconds until the tap needs attention (0 while it has chunks waiting).
-- @treturn number|nil
function Tap:timeout()
  local src = self.src
  if self.at <= src.last or src.stream.closed then return 0 end
  return src.stream:timeout()
end

--- Where this tap stands: the stream position after the last chunk it took.
-- @treturn table as `Stream:position`
function Tap:position()
  local src = self.src
  local taken = self.at - 1
  if taken == src.last then return src.stream:position() end
  if taken >= src.first then return src.positions[taken] end
  if taken > 0 and src.trimmed_position then return src.trimmed_position end
  return src.initial
end

--- The run is finished: the stream ends at its tail (see `Stream:settle`).
function Tap:settle()
  self.src.stream:settle()
end

--- Leave the stream; the last tap closes it. Idempotent.
function Tap:close()
  if self.left then return end
  self.left, self.closed = true, true
  local src = self.src
  src.taps[self] = nil
  src.n_taps = src.n_taps - 1
  if src.n_taps == 0 then
    no_joining(src)
    src.stream:close()
  else
    trim(src)
  end
end

return M
