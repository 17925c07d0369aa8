--- Realtime streams: the chunks a task writes with `streams.pipe`/`streams.append` (or the older
-- `metadata.stream`), read live.
--
--     for chunk in trigger.streams.read("run_1234", "default") do io.write(tostring(chunk)) end
--
-- A stream (what `read` returns; its methods are the `Stream:…` functions below) is driven
-- like a subscription: it is its own iterator and, on Lua 5.4, closing value, with
-- `next(timeout)`, `poll()`, `pollfd()`/`events()`/`timeout()` (the cqueues pollable protocol),
-- `position()` (resumable with `opts.resume`) and `close()`. Two fields can be read: `closed`
-- (true once closed or over) and `finished` (true once it ended by itself: the server's idle
-- close with `reopen = false`, or the end of a settled stream); its credentials and cursor are
-- out of reach of the table. With the default (libcurl)
-- transport every stream and subscription of a Lua state shares one connection hub (one
-- pollable fd; HTTP/2 streams multiplexed on one connection when the server offers it).
--
-- The wire (shared/protocol/streams.md): `GET /realtime/v1/streams/{run}/{key}` answers
-- Server-Sent Events, parsed in C (`trigger.core.sse_parser`), in one of two framings told
-- apart by the `X-Stream-Version` header:
--
-- * v2 (S2, `X-Stream-Version: v2`): `batch` events of records `{seq_num, body}`, where the
--   body is the envelope `{"data": chunk, "id": part id}`; the chunk is `data`. Resumes from
--   the last `seq_num` (never from the `id:` line, an S2 triple a server reads as "from the
--   start"); records at or below it are dropped, and so are envelope ids already seen, so an
--   overlapping replay or a writer's retried append is handed out once.
-- * v1 (Redis, no header): one event per chunk line, `id:` a Redis id; the chunk is the line
--   decoded as JSON (the raw line when it is not JSON). Several lines can share one id (one
--   Redis entry held them), so a reconnect asks for the entries after the id *before* the last
--   one handed out and drops the lines of that entry already handed out: none lost, none twice
--   (the TypeScript SDK loses the rest of the entry there).
--
-- A body that ends between events (the server's idle close after `Timeout-Seconds`, `[DONE]`)
-- is reopened from the last position while the caller reads (`opts.reopen`, default true);
-- a cut (mid-event, a reset, `event: error`, 5xx, 429, no `[DONE]` on v2) is retried with the
-- SDK's backoff: attempt n waits min(0.1 s · 2^(n−1), 5 s) · (1 − U/2), Retry-After as a floor,
-- the count reset by each record. 400, 401, 403, 404, 409, 410, 422 are not retried: the
-- stream raises an error object (`kind`, `status`, `request`; never the token).
-- @module trigger.streams
local clock = require "trigger.clock"
local config = require "trigger.config"
local core = require "trigger.core"
local driver = require "trigger.driver"
local errors = require "trigger.errors"
local json = require "trigger.json"
local request = require "trigger.request"
local transport_of = require "trigger.transport"

local M = {}

--- The reconnect backoff: first ceiling and cap, in seconds (as the TypeScript SDK).
M.retry_base = 0.1
M.retry_cap = 5
--- Bytes a stream may hold unread before its transfer pauses (libcurl).
M.pause_at = 1024 * 1024
--- Envelope ids remembered to drop duplicates (as the SDK's window).
M.id_window = 5000

local Stream = {}
Stream.__index = Stream
Stream.__name = "trigger.stream"

-- Each stream's state, out of reach of the stream table (credentials, cursor, coroutine).
local private = setmetatable({}, { __mode = "k" })

local OPTIONS = { from = "string", timeout_seconds = "number", resume = "table",
  reopen = "boolean" }

local unpack = table.unpack or unpack -- luacheck: ignore

-- -------------------------------------------------------------------------------------------------
-- Cursors

-- A Redis stream id "ms-n" -> ms, n (integers), or nil.
local function redis_id(s)
  local ms, n = tostring(s):match("^(%d+)%-(%d+)$")
  if not ms then return nil end
  return tonumber(ms), tonumber(n)
end

local function compare_ids(a, b) -- -1, 0, 1; ids that are not Redis ids compare as text
  local am, an = redis_id(a)
  local bm, bn = redis_id(b)
  if not (am and bm) then return a < b and -1 or (a == b and 0 or 1) end
  if am ~= bm then return am < bm and -1 or 1 end
  if an ~= bn then return an < bn and -1 or 1 end
  return 0
end

-- The id just before a Redis id: XREAD after it starts at that id's entry again.
local function before_id(id)
  local ms, n = redis_id(id)
  if not ms then return id end
  if n > 0 then return string.format("%d-%d", ms, n - 1) end
  if ms > 0 then return string.format("%d-18446744073709551615", ms - 1) end
  return nil -- the very first id: ask from the start
end

-- Last-Event-ID for the next request, or nil.
local function cursor_header(r)
  if r.version == "v1" then
    if r.v1_id then return before_id(r.v1_id) end
  elseif r.seq >= 0 then
    return tostring(r.seq)
  end
  return nil
end

local function remember_id(r, id)
  local w = r.ids
  if w.set[id] then return false end
  w.set[id] = true
  w.n = w.n + 1
  w.ring[w.n] = id
  if w.n - w.first >= M.id_window then
    w.set[w.ring[w.first]] = nil
    w.ring[w.first] = nil
    w.first = w.first + 1
  end
  return true
end

-- -------------------------------------------------------------------------------------------------
-- Reading, inside the stream's coroutine

local function backoff(attempt, retry_after)
  local ceiling = math.min(M.retry_base * 2 ^ (attempt - 1), M.retry_cap)
  local d = ceiling * (1 - 0.5 * math.random())
  if retry_after and retry_after > d then d = retry_after end
  return d
end

local function retry_after_of(headers)
  local n = headers and tonumber(headers["retry-after"] or "")
  if n and n >= 0 then return math.min(n, 300) end
  return nil
end

-- Wait `seconds` in the reading coroutine. A transport that sleeps in the caller (nginx:
-- ngx.sleep) sleeps in slices bounded by the driver's deadline, yielding once it has passed, so
-- next(timeout) returns in time even while every attempt fails before a response comes.
local function pause(r, seconds)
  local t = r.transport
  if t.background or not t.sleep then return request.sleep(r, seconds) end
  local wake = clock.now() + seconds
  while not r.closed do
    local now = clock.now()
    if now >= wake then return end
    local left = r.deadline and r.deadline - now
    if left and left <= 0 then
      coroutine.yield("wait")
    else
      t.sleep(math.min(wake - now, left or wake - now))
    end
  end
end

-- A failure worth retrying: tell on_error, give up after max_retries, else back off.
local function transient(r, err, retry_after)
  local s = r.settings
  r.attempts = r.attempts + 1
  err.attempt = r.attempts
  r.last_error = err
  if s.max_retries and r.attempts > s.max_retries then
    err.message = err.message .. string.format(" (gave up after %d retries)", s.max_retries)
    err.fatal = true
    error(err, 0)
  end
  if s.on_error then s.on_error(err) end
  pause(r, backoff(r.attempts, retry_after))
end

-- The body of one response as a source of bytes. libcurl: in the background, taken as it comes.
local function curl_source(r, req)
  local p = request.begin(r, req)
  if p.err then return nil, p.err end
  local h, t = p.handle, r.transport
  local src = {}
  function src.head() -- status, headers | nil, failure
    while true do
      local status, headers = h:head()
      if status then return status, headers end
      if h:done() then
        local st, hd = t.result(h)
        if not st then return nil, hd end
        return st, hd
      end
      coroutine.yield("wait")
    end
  end
  function src.read() -- bytes | nil (the end) | nil, failure
    while true do
      local b = h:take()
      if b then return b end
      if h:done() then
        local st, failure, rest = t.result(h)
        if not st then return nil, failure end
        if rest ~= "" then return rest end
        return nil
      end
      coroutine.yield("wait")
    end
  end
  function src.close()
    r.inflight[h] = nil
    h:close()
  end
  return src
end

-- nginx cosockets: the transport's stream reader, its waits bounded by the caller's deadline.
local function cosocket_source(r, req)
  -- Nothing is opened once the stream is closed (from another light thread, while this one
  -- slept) or past the driver's deadline (the request's connect would not look at it).
  while r.closed or (r.deadline and r.deadline <= clock.now()) do coroutine.yield("wait") end
  req.cancelled = r.is_closed
  req.connect_timeout = r.settings.connect_timeout
  local reader, failure = r.transport.open_stream(req)
  if not reader then return nil, failure end
  -- close() of the stream closes the connection at once (the reading coroutine may never run
  -- again to do it: it waits in deliver(), or in a read another light thread gave up)
  local handle = { close = function() reader.close() end }
  r.inflight[handle] = true
  local src = {}
  local function wait_for(fn)
    while true do
      local left = r.deadline and r.deadline - clock.now()
      if left and left <= 0 then
        coroutine.yield("wait")
      else
        local a, b, c = fn(left)
        while r.closed do coroutine.yield("wait") end
        if a ~= nil or b ~= "timeout" then return a, b, c end
      end
    end
  end
  function src.head() return wait_for(reader.head) end
  function src.read() return wait_for(reader.read) end
  function src.close()
    r.inflight[handle] = nil
    reader.close()
  end
  return src
end

-- Hand out one chunk (the position counts it from now on).
local function deliver(r, chunk)
  r.ready = true
  coroutine.yield("chunk", chunk)
end

local function decode_v1(data)
  local v = json.decode(data)
  if v == nil then return data end
  return v
end

-- A v2 batch or ping payload: hand out its new records.
local function on_batch(r, parser, data, where)
  local batch, why = parser:batch(data)
  if not batch then
    return errors.new("protocol", "bad batch event: " .. why, { request = where })
  end
  for _, rec in ipairs(batch.records) do
    if rec.seq_num > r.seq then
      r.seq = rec.seq_num -- advanced for every record, skipped ones too
      r.attempts = 0
      r.got = true
      if rec.kind == "data" then
        local env = json.decode(rec.body)
        local chunk, fresh = rec.body, true
        if type(env) == "table" and env.data ~= nil then
          chunk = env.data
          if type(env.id) == "string" then fresh = remember_id(r, env.id) end
        end
        if fresh then deliver(r, chunk) end
      end
    end
  end
  if batch.tail then r.tail = batch.tail.seq_num end
  return nil
end

local function on_v1(r, ev, conn)
  local id = ev.id
  if id and r.v1_id then
    local c = compare_ids(id, r.v1_id)
    if c < 0 then return end -- replayed: handed out before
    if c == 0 then
      conn.same = conn.same + 1
      if conn.same <= r.v1_count then return end -- a line of that entry handed out before
      r.v1_count = conn.same
    else
      r.v1_id, r.v1_count, conn.same = id, 1, 1
    end
  elseif id then
    r.v1_id, r.v1_count, conn.same = id, 1, 1
  end
  r.attempts = 0
  r.got = true
  if ev.data == "<<CLOSE_STREAM>>" then return end -- legacy end marker, skipped
  deliver(r, decode_v1(ev.data))
end

-- One request: "ended" (a clean end between events), or "failed", err, retry_after. Raises
-- an error that no retry can mend.
local function connection(r)
  local s = r.settings
  local headers = { unpack(r.headers) }
  local cursor = cursor_header(r)
  if cursor then
    headers[#headers + 1] = "Last-Event-ID: " .. cursor
  elseif r.latest then
    headers[#headers + 1] = "X-Trigger-Stream-Start: latest"
  end
  local where = "GET " .. r.url
  local req = { url = r.url, headers = headers, timeout = 0, pause_at = M.pause_at,
    idle_timeout = (r.timeout_seconds or 60) + s.read_timeout }
  r.requests = r.requests + 1
  local src, failure = (r.transport.background and curl_source or cosocket_source)(r, req)
  if not src then
    local err = request.failure_error(failure, where)
    if err.fatal then error(err, 0) end
    return "failed", err
  end
  local ok, a, b, c = pcall(function()
    local status, hd = src.head()
    if not status then return "failed", request.failure_error(hd, where) end
    if status ~= 200 then
      local body = {}
      while true do
        local bytes = src.read()
        if not bytes then break end
        body[#body + 1] = bytes
      end
      local err = request.status_error(status, table.concat(body), where)
      if err.fatal then error(err, 0) end
      return "failed", err, retry_after_of(hd)
    end
    local v2 = (hd["x-stream-version"] or ""):lower() == "v2"
    local version = v2 and "v2" or "v1"
    if r.version and r.version ~= version then
      error(errors.new("protocol", "the stream changed framing from " .. r.version .. " to "
        .. version, { request = where, fatal = true }), 0)
    end
    r.version = version
    local parser = core.sse_parser()
    r.parser = parser
    local conn, done = { same = 0 }, false
    while true do
      local bytes, fail = src.read()
      if not bytes then
        local dropped = parser:finish()
        if fail then return "failed", request.failure_error(fail, where) end
        if dropped > 0 then
          return "failed", errors.new("network", "the stream was cut in the middle of an event",
            { request = where, status = 200 })
        end
        if v2 and not done then
          return "failed", errors.new("network", "the stream ended without [DONE]",
            { request = where, status = 200 })
        end
        return "ended"
      end
      local events, why, _, partial = parser:feed(bytes)
      for _, ev in ipairs(events or partial) do
        if not v2 then
          if ev.type == "message" then on_v1(r, ev, conn) end
        elseif ev.type == "batch" or ev.type == "ping" then
          local err = on_batch(r, parser, ev.data, where)
          if err then return "failed", err end
          if r.settled and r.tail and r.tail <= r.seq + 1 then return "caught_up" end
        elseif ev.type == "error" then
          return "failed", errors.new("network", "the stream server reported: " .. ev.data,
            { request = where, status = 200 })
        elseif ev.type == "message" and ev.data == "[DONE]" then
          done = true
        end
      end
      if not events then
        return "failed", errors.new("protocol", "bad event stream: " .. why,
          { request = where, status = 200 })
      end
    end
  end)
  src.close()
  if r.parser then
    r.parser:close()
    r.parser = nil
  end
  if not ok then error(a, 0) end
  return a, b, c
end

local function loop(r)
  local quiet = 0 -- clean ends in a row without a record
  while true do
    r.got = false
    local outcome, err, retry_after = connection(r)
    if outcome == "caught_up" then return end
    if outcome == "failed" then
      transient(r, err, retry_after)
    else
      r.attempts = 0
      r.last_error = nil
      if not r.reopen or r.settled then return end
      -- Reopen from the last position (the server closed an idle stream). A server closing
      -- at once, again and again, is not hammered: the backoff grows while no record comes.
      if r.got then
        quiet = 0
      else
        quiet = quiet + 1
        pause(r, backoff(quiet))
      end
    end
  end
end

-- -------------------------------------------------------------------------------------------------
-- The stream object (the driving API of a subscription)

local function close_state(r)
  if r.closed then return end
  r.closed = true
  for handle in pairs(r.inflight) do handle:close() end
  r.inflight = {}
  if r.parser then
    r.parser:close()
    r.parser = nil
  end
end

local resume = driver.resume

local function state(stream, fn)
  return driver.state(private, stream, fn, "stream")
end

local function raise(err)
  error(err, 3)
end

--- Seconds until the stream needs attention even if its descriptor stays quiet (the cqueues
-- pollable protocol): 0 when it has work to do now.
-- @treturn number|nil seconds, or nil when nothing is timed
function Stream:timeout()
  local r = state(self, "timeout")
  if r.closed or r.ready then return 0 end
  local t = r.transport.background and r.transport.timeout() or nil
  if r.wake_at then
    local w = math.max(0, r.wake_at - clock.now())
    if not t or w < t then t = w end
  end
  return t
end

--- The descriptor an event loop should watch (the hub's; the same for every stream and
-- subscription of this Lua state).
-- @treturn integer fd
function Stream:pollfd()
  local r = state(self, "pollfd")
  driver.need_background(r, "pollfd")
  return r.transport.pollfd()
end

--- The events to watch on `pollfd`.
-- @treturn string "r"
function Stream:events() -- luacheck: ignore 212
  return "r"
end

--- The next chunk, never blocking: performs whatever I/O is ready (once per round, as
-- `Subscription:poll` does), then returns a chunk if one is ready.
-- @return a chunk, or nil when none is ready (or the stream ended: see `finished`)
-- @raise a fatal error object
function Stream:poll()
  local r = state(self, "poll")
  if r.closed then
    if r.failure then raise(r.failure) end
    return nil
  end
  driver.need_background(r, "poll")
  r.deadline = nil
  driver.look_at_network(r)
  if not r.ready and r.wake_at and clock.now() < r.wake_at then return nil end
  local what, value = resume(self, r)
  if what == "chunk" then return value end
  if what == "error" then raise(value) end
  return nil
end

--- The next chunk, waiting at most `timeout` seconds (yielding to cqueues inside a cqueues
-- coroutine; to nginx under OpenResty).
-- @tparam[opt] number timeout seconds; nil waits as long as it takes
-- @return[1] the chunk (a decoded JSON value; `cjson.null` for a JSON null)
-- @treturn[2] nil
-- @treturn[2] string "timeout", "closed" or "finished"
-- @treturn[2] table|nil with "timeout": the error being retried, if requests are failing
-- @raise a fatal error object (401, 403, 404, 400, max_retries); a string when `timeout` is
--   not a non-negative number
function Stream:next(timeout)
  -- not a tail call: a misuse error names the caller's line
  local item, why, err = driver.next(self, state(self, "next"), timeout, "chunk", resume,
    function(r) return r.last_error end)
  return item, why, err
end

--- Where the stream stands: a table that `opts.resume` accepts later (plain strings and
-- numbers, saveable with `cjson.encode`). It counts every chunk handed out so far.
-- @treturn table `{version = "v2", seq_num = n}`, `{version = "v1", id = "ms-n", count = k}`
--   (k lines of entry `id` handed out), or `{}` before anything came
function Stream:position()
  local r = state(self, "position")
  if r.version == "v1" and r.v1_id then
    return { version = "v1", id = r.v1_id, count = r.v1_count }
  elseif r.version == "v2" and r.seq >= 0 then
    return { version = "v2", seq_num = r.seq }
  end
  return {}
end

--- The stream's owner says no more chunks will be written (its run is finished): end at the
-- next clean end of the body instead of reopening it, or, on v2, as soon as a batch or ping
-- shows that every record up to the tail was read. (A subscription's `with_streams` calls it.)
function Stream:settle()
  local r = state(self, "settle")
  r.settled = true
  r.ready = true
end

--- How many HTTP requests the stream has made (the first, and each reopen or retry).
-- @treturn integer
function Stream:requests()
  return state(self, "requests").requests
end

--- Close the stream: aborts its request (closing the connection) at once. Idempotent; also
-- `__close` and `__gc`.
function Stream:close()
  local r = private[self]
  if r then close_state(r) end
  self.closed = true
end

Stream.__close = Stream.close
Stream.__gc = Stream.close

--- Calling the stream gives the next chunk, as the generic for does; like `next`, waiting as
-- long as the `timeout` option says (default: for ever).
-- @raise as `next`; a `timeout` error object when the `timeout` option is set and no chunk
--   came in time
function Stream.__call(self)
  local r = state(self, "stream")
  local chunk, why, last = self:next(r.settings.timeout)
  if chunk == nil and why == "timeout" then
    local message = "no chunk within " .. r.settings.timeout .. " s"
    if last then message = message .. " (last failure: " .. tostring(last) .. ")" end
    error(errors.new("timeout", message, {}), 2)
  end
  return chunk
end

function Stream.__tostring(self)
  local r = private[self]
  return string.format("trigger.stream(%s%s)", r and (r.run_id .. "/" .. r.key) or "?",
    self.closed and ", closed" or "")
end

-- -------------------------------------------------------------------------------------------------

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function check_resume(fn, pos)
  local v = pos.version
  if v == nil and next(pos) == nil then return end
  if v == "v2" and is_integer(pos.seq_num) and pos.seq_num >= -1 then return end
  if v == "v1" and type(pos.id) == "string" and redis_id(pos.id)
      and is_integer(pos.count) and pos.count >= 1 then
    return
  end
  errors.bad_argument(fn, 3, "opts.resume is not a position of a stream (what position() returned)")
end

--- Read one stream of a run.
-- @tparam string|table run_id the run's id (`run_…`), or its handle (`trigger.tasks.trigger`):
--   its `publicAccessToken` is used when no access token is configured
-- @tparam[opt="default"] string key the stream's key
-- @tparam[opt] table opts the options:
-- @tparam[opt] string opts.from `"latest"`: start at the end of the stream (new chunks only;
--   the server may still send the most recent one); default: from the beginning
-- @tparam[opt] number opts.timeout_seconds how long (1–600 s) the server keeps a quiet stream
--   open before it closes it (`Timeout-Seconds`; default: the server's, 60 s); the stream is
--   then reopened from where it was, unless `opts.reopen` is false
-- @tparam[opt=true] boolean opts.reopen reopen a stream the server closed for idleness; false
--   ends the iteration there instead (as the TypeScript SDK's `streams.read` does)
-- @tparam[opt] table opts.resume what `Stream:position` returned earlier: only later chunks
--   come
-- @param[opt] opts.... and every option of `trigger.configure` (`access_token`, `base_url`,
--   `timeout`, `on_error`, `max_retries`…) for this stream alone
-- @treturn Stream the stream, its own iterator and the generic for's closing value (the call
--   returns `stream, nil, nil, stream`)
-- @raise (a string) on misuse (a bad run id, key or option); an error object when no access
--   token is set or `base_url` is not a URL
-- @usage
-- for chunk in trigger.streams.read(run_id, "default", { from = "latest" }) do
--   io.write(type(chunk) == "string" and chunk or require("cjson").encode(chunk))
-- end
function M.read(run_id, key, opts)
  local fn = "read"
  local handle_token
  run_id, handle_token = require("trigger.runs")._id_of(fn, run_id, "run")
  if key == nil then key = "default" end
  if type(key) ~= "string" or key == "" then
    errors.bad_argument(fn, 2, "stream key string expected")
  end
  if opts ~= nil and type(opts) ~= "table" then
    errors.bad_argument(fn, 3, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  config.check(opts, fn, OPTIONS)
  if opts.from ~= nil and opts.from ~= "latest" then
    errors.bad_argument(fn, 3, "opts.from must be \"latest\"")
  end
  local tsec = opts.timeout_seconds
  if tsec ~= nil and not (tsec >= 1 and tsec <= 600 and tsec == math.floor(tsec)) then
    errors.bad_argument(fn, 3, "opts.timeout_seconds must be a whole number from 1 to 600")
  end
  if opts.resume then check_resume(fn, opts.resume) end
  local copts = {}
  for k, v in pairs(opts) do
    if not OPTIONS[k] then copts[k] = v end
  end
  local settings, err = config.resolve(copts, handle_token)
  if not settings then error(err, 2) end
  local pos = opts.resume or {}
  local r = {
    settings = settings,
    transport = settings.transport or transport_of.current(),
    run_id = run_id,
    key = key,
    url = settings.base_url .. "/realtime/v1/streams/" .. core.url_encode(run_id) .. "/"
      .. core.url_encode(key),
    headers = request.api_headers(settings),
    timeout_seconds = tsec,
    latest = opts.from == "latest",
    reopen = opts.reopen ~= false,
    version = pos.version,
    seq = pos.version == "v2" and pos.seq_num or -1,
    v1_id = pos.version == "v1" and pos.id or nil,
    v1_count = pos.version == "v1" and pos.count or 0,
    ids = { set = {}, ring = {}, first = 1, n = 0 },
    attempts = 0,
    requests = 0,
    closed = false,
    finished = false,
    ready = true,
    inflight = {},
  }
  r.headers[#r.headers + 1] = "Accept: text/event-stream"
  if tsec then r.headers[#r.headers + 1] = "Timeout-Seconds: " .. string.format("%d", tsec) end
  r.is_closed = function() return r.closed end
  r.co = coroutine.create(function() return loop(r) end)
  local stream = setmetatable({ closed = false, finished = false }, Stream)
  private[stream] = r
  return stream, nil, nil, stream
end

M.Stream = Stream
return M
