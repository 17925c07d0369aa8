--- Realtime streams: the chunks a task writes with `streams.pipe`/`streams.append` (or the older
-- `metadata.stream`), read live.
--
--     for chunk in trigger.streams.read("run_1234", "default") do io.write(tostring(chunk)) end
--
-- A stream (what `read` returns: a `Stream`, whose methods have a page of their own) is driven
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
--   (the TypeScript SDK loses the rest of the entry there). Ids are text, compared and counted
--   down as decimals of any size (Redis ids are two 64-bit numbers); one that cannot be sent
--   back (more than 512 bytes, or anything but visible ASCII) ends the stream with a
--   `protocol` error.
--
-- A body that ends between events (the server's idle close after `Timeout-Seconds`, `[DONE]`)
-- is reopened from the last position while the caller reads (`opts.reopen`, default true),
-- unless its run is finished: at each idle close the run is looked at once (a subscription to
-- it, which shares a subscription of this Lua state that already follows it), and a finished
-- run's stream is read once more to its end, then the read ends (`opts.stop_on_completion`);
-- a cut (mid-event, a reset, `event: error`, 5xx, 429, no `[DONE]` on v2) is retried by the
-- library's one retry policy (`trigger.retry`, as subscriptions are): attempt n waits a full
-- jitter on `min(retry_base · 2^(n−1), retry_cap)`, Retry-After as a floor, the count reset by
-- each record; `max_retries` bounds a streak; each failure goes to `on_error`, or the first of
-- a streak once to stderr. A stream's own `retry_base` and `retry_cap` are the SDK's (0.1 s,
-- 5 s) unless you give them. 400, 401, 403, 404, 409, 410, 422 are not retried: the stream
-- raises an error object (`kind`, `status`, `request`; never the token).
-- @module trigger.streams
local clock = require "trigger.clock"
local config = require "trigger.config"
local core = require "trigger.core"
local driver = require "trigger.driver"
local errors = require "trigger.errors"
local json = require "trigger.json"
local request = require "trigger.transport.request"
local retry = require "trigger.retry"
local transport_of = require "trigger.transport"

local M = {}

--- The reconnect backoff's first ceiling, in seconds, when no `retry_base` is given (as the
-- TypeScript SDK's).
M.retry_base = 0.1
--- The reconnect backoff's cap, in seconds, when no `retry_cap` is given (as the TypeScript
-- SDK's).
M.retry_cap = 5
--- Bytes a stream may hold unread before its transfer pauses (libcurl).
-- @local
M.pause_at = 1024 * 1024
--- Envelope ids remembered to drop duplicates (as the SDK's window).
-- @local
M.id_window = 5000

local Stream = {}
Stream.__index = Stream
Stream.__name = "trigger.stream"

-- Each stream's state, out of reach of the stream table (credentials, cursor, coroutine).
local private = setmetatable({}, { __mode = "k" })
local close_state -- closes a private state (below)

local OPTIONS = { from = "string", timeout_seconds = "number", resume = "table",
  reopen = "boolean", stop_on_completion = "boolean" }

--- The options that make a stream's requests (credentials and transport included): what a
-- stream takes from the subscription that opens it (`with_streams`), and what a look at its
-- run takes from the stream (with its retry settings and `on_error`).
-- @local
M.INHERITED = { "access_token", "base_url", "ca_file", "read_timeout", "connect_timeout",
  "max_body", "transport", "preview_branch" }
local LOOK_ALSO = { "retry_base", "retry_cap", "max_retries", "on_error" }

--- The stream keys a run lists: the legacy metadata `$$streams` when it is a non-empty array
-- of strings, else the `realtimeStreams` column (streams.md §1).
-- @tparam table run a run object
-- @treturn table the keys
-- @local
function M.stream_keys(run)
  local legacy = type(run.metadata) == "table" and run.metadata["$$streams"]
  if type(legacy) == "table" and #legacy > 0 then
    local ok = true
    for _, k in ipairs(legacy) do
      if type(k) ~= "string" then ok = false end
    end
    if ok then return legacy end
  end
  return type(run.realtimeStreams) == "table" and run.realtimeStreams or {}
end

local unpack = table.unpack or unpack -- luacheck: ignore

-- -------------------------------------------------------------------------------------------------
-- Cursors

-- A v1 id is text to resume from, not a number. A Redis id "ms-seq" is two unsigned 64-bit
-- numbers, past what a Lua number holds exactly (2^53 on LuaJIT, 2^63 on 5.4), so its parts are
-- compared and counted down as decimal strings. A part past 2^64-1 is no Redis id, but it is
-- handled the same way, exactly (the id sent back is the one just before it, so nothing is
-- lost, and the server answers that Last-Event-ID as it will); any other id is compared as text
-- and sent back as it came. Every id goes back in a request header, so it must be a header token
-- (`bad_id`).

local function decimal(s) return (s:gsub("^0+(%d)", "%1")) end -- leading zeros off

-- A Redis stream id "ms-n" -> ms, n (decimal strings, no leading zeros), or nil.
local function redis_id(s)
  local ms, n = s:match("^(%d+)%-(%d+)$")
  if not ms then return nil end
  return decimal(ms), decimal(n)
end

local function compare_decimals(a, b) -- -1, 0, 1
  if #a ~= #b then return #a < #b and -1 or 1 end
  return a < b and -1 or (a == b and 0 or 1)
end

local function compare_ids(a, b) -- -1, 0, 1; ids that are not Redis ids compare as text
  local am, an = redis_id(a)
  local bm, bn = redis_id(b)
  if not (am and bm) then return a < b and -1 or (a == b and 0 or 1) end
  local c = compare_decimals(am, bm)
  if c ~= 0 then return c end
  return compare_decimals(an, bn)
end

-- A decimal string other than "0", minus one.
local function decrement(s)
  local head, zeros = s:match("^(.-)(0*)$")
  return decimal(head:sub(1, -2) .. string.char(head:byte(-1) - 1) .. ("9"):rep(#zeros))
end

-- The id just before a Redis id: XREAD after it starts at that id's entry again.
local function before_id(id)
  local ms, n = redis_id(id)
  if not ms then return id end
  if n ~= "0" then return ms .. "-" .. decrement(n) end
  if ms ~= "0" then return decrement(ms) .. "-18446744073709551615" end -- (2^64-1)
  return nil -- the very first id: ask from the start
end

-- Why a v1 id cannot be resumed from, or nil. It goes back in Last-Event-ID: the one check of
-- what the server may have us send back (core.is_token, as for a shape's handle, offset and
-- cursor): visible ASCII, no space, control byte or DEL, and a length limit (512 bytes).
local function bad_id(id)
  if type(id) ~= "string" then return "an id that is not a string" end
  if core.is_token(id) then return nil end
  if #id > 512 then return "an id of " .. #id .. " bytes (at most 512)" end
  return "an id that is empty or holds a space, a control byte or DEL"
end

-- An id from the server that cannot be sent back ends the stream: a request that carries it
-- would be refused (or worse), on every reconnect.
local function check_id(r, id)
  local why = bad_id(id)
  if why then
    error(errors.new("protocol", "stream " .. r.run_id .. "/" .. r.key .. ": the server sent "
      .. why .. ", which cannot be sent back to resume from",
      { request = "GET " .. r.url, status = 200, fatal = true }), 0)
  end
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

-- Wait `seconds` in the reading coroutine, never past the caller's deadline.
local pause = request.sleep

-- The wait before the next reconnect: the library's one retry policy, with the stream's own
-- first ceiling and cap unless the user gave `retry_base`/`retry_cap`.
local function backoff(r, attempts, retry_after)
  return retry.delay(r.settings, attempts, retry_after, r.retry_base, r.retry_cap)
end

-- A failure worth retrying (the one retry policy, `trigger.retry`): give up after max_retries,
-- else tell on_error (or warn once per streak) and back off.
local function transient(r, err, retry_after)
  local s = r.settings
  r.attempts = r.attempts + 1
  r.last_error = err
  if retry.gave_up(s, err, r.attempts) then error(err, 0) end
  if r.attempts == 1 then retry.recovered(r) end -- a new streak: told again
  retry.tell(s, r, err)
  pause(r, backoff(r, r.attempts, retry_after))
end

-- The body of one response as a source of bytes: the library's one body reader
-- (`request.open_body`). libcurl: in the background, taken as it comes (settled: a read that
-- finds nothing new ends the connection); nginx cosockets: the transport's stream reader.
local function source(r, req)
  local p = request.in_background(r.transport) and request.begin(r, req) or nil
  local src, failure = request.open_body(r, p, req, {
    idle = function() return r.settled and not r.short end })
  if not src then return nil, failure end
  local read = src.read
  src.read = function() -- bytes | nil (the end) | nil, failure | nil, nil, "settled"
    local bytes, why, idle = read()
    if idle then return nil, nil, "settled" end
    return bytes, why
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
  if id then check_id(r, id) end
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
  -- Settled (no chunk will be written any more): whatever the stream holds comes at once, and
  -- a quiet second then ends it, instead of waiting for the server's usual idle close.
  r.short = r.settled
  -- Only what this connection says of the tail counts: a ping or an idle close that left the
  -- server before the run finished (and its last chunks were written) says nothing of them.
  r.tail = nil
  local idle = r.short and 1 or r.timeout_seconds
  if idle then headers[#headers + 1] = "Timeout-Seconds: " .. string.format("%d", idle) end
  local where = "GET " .. r.url
  local req = { url = r.url, headers = headers, timeout = 0, pause_at = M.pause_at,
    idle_timeout = (idle or 60) + s.read_timeout }
  r.requests = r.requests + 1
  local src, failure = source(r, req)
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
      return "failed", err, retry.retry_after(hd)
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
      local bytes, fail, settled = src.read()
      if settled then return "settled" end -- reopened at once from the position, briefly
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
          if r.short and r.tail and r.tail <= r.seq + 1 then return "caught_up" end
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

-- The run, looked at once through a subscription (which ends by itself on a finished run; it
-- shares an upstream of this Lua state that already follows the run). Nil when the run left.
local function look_at_run(r)
  local o = { stop_on_completion = true }
  for _, name in ipairs(M.INHERITED) do o[name] = r.settings[name] end
  for _, name in ipairs(LOOK_ALSO) do o[name] = r.settings[name] end
  local sub = require("trigger.runs").subscribe_to_run(r.run_id, o)
  r.look = sub
  local ok, run = pcall(function()
    while not sub.closed do
      if request.in_background(r.transport) then
        local run = sub:poll()
        if run then return run end
        if not sub.closed then coroutine.yield("wait") end
      else
        local left = r.deadline and r.deadline - clock.now()
        if left and left <= 0 then
          coroutine.yield("wait")
        else
          local run, why = sub:next(left)
          if run or why ~= "timeout" then return run end
        end
      end
    end
  end)
  r.look = nil
  sub:close()
  if not ok then error(run, 0) end
  return run
end

local function has_read(r)
  return r.seq >= 0 or r.v1_id ~= nil
end

-- After an idle close of a stream read on its own: is its run finished? Then the stream is
-- settled (read once more, to its end); a key the finished run never listed is an error. An
-- unfinished run that does not list the key yet is told to on_error once.
local function look_after_idle_close(r)
  local run = look_at_run(r)
  if run == nil then return end
  local listed = false
  for _, key in ipairs(M.stream_keys(run)) do
    if key == r.key then listed = true end
  end
  local finished = require("trigger.run.object").FINAL[run.status]
  if not listed and not has_read(r) then
    local message = string.format("run %s %s no stream %q", r.run_id,
      finished and "is " .. run.status .. " and has" or "has", r.key)
    if finished then
      error(errors.new("not_found", message, { request = "GET " .. r.url, fatal = true }), 0)
    elseif not r.told_missing then
      r.told_missing = true
      if r.settings.on_error then
        r.settings.on_error(errors.new("not_found", message .. " yet: waiting for it",
          { request = "GET " .. r.url, fatal = false }))
      end
    end
  end
  if finished then r.settled = true end
end

local function loop(r)
  local quiet = 0 -- clean ends in a row without a record
  while true do
    r.got = false
    local outcome, err, retry_after = connection(r)
    if outcome == "caught_up" then return end
    if outcome == "failed" then
      transient(r, err, retry_after)
    elseif outcome ~= "settled" then
      r.attempts = 0
      r.last_error = nil
      if not r.reopen then return end
      -- settled: the end of a connection opened since then ends the stream; one opened before
      -- may have closed before the run's last chunks were written: read once more
      if r.short then return end
      if r.stop_on_completion and not r.settled then look_after_idle_close(r) end
      -- Reopen from the last position (the server closed an idle stream). A server closing
      -- at once, again and again, is not hammered: the backoff grows while no record comes.
      if r.got or r.settled then
        quiet = 0
      else
        quiet = quiet + 1
        pause(r, backoff(r, quiet))
      end
    end
  end
end

-- -------------------------------------------------------------------------------------------------
-- The stream object (the driving API of a subscription)

function close_state(r)
  if r.closed then return end
  r.closed = true
  if r.look then r.look:close() end
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

local raise = errors.raise

--- One realtime stream of a run, as `trigger.streams.read` returns it: driven like a
-- `Subscription` (its own iterator and, on Lua 5.4, closing value; `next`, `poll`,
-- `pollfd`/`events`/`timeout`, `position`, `close`), handing out the stream's chunks. Two
-- fields can be read: `closed` and `finished` (see `trigger.streams`).
-- @classmod Stream

--- Seconds until the stream needs attention even if its descriptor stays quiet (the cqueues
-- pollable protocol): 0 when it has work to do now.
-- @treturn number|nil seconds, or nil when nothing is timed
function Stream:timeout()
  local r = state(self, "timeout")
  if r.closed or r.ready then return 0 end
  local t = request.in_background(r.transport) and r.transport.timeout() or nil
  if r.wake_at then
    local w = math.max(0, r.wake_at - clock.now())
    if not t or w < t then t = w end
  end
  local look = r.look and not r.look.closed and r.look:timeout()
  if look and (not t or look < t) then t = look end
  return t
end

--- The descriptor an event loop should watch (the hub's; the same for every stream and
-- subscription of this Lua state).
-- @function Stream:pollfd
-- @treturn integer fd

--- The events to watch on `pollfd`.
-- @function Stream:events
-- @treturn string "r"

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

--- The stream's owner says no more chunks will be written (its run is finished): the stream
-- is reopened at once from its position with a one-second idle close, and ends at that clean
-- end of the body, or, on v2, as soon as a batch or ping shows that every record up to the
-- tail was read. (A subscription's `with_streams` calls it.)
-- @local
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
-- `__close` and `__gc` (a stream dropped without `close()` is closed once collected, on LuaJIT
-- too).
function Stream:close()
  local r = private[self]
  if r then close_state(r) end
  self.closed = true
end

--- The same as `close` (the TypeScript SDK's name).
-- @function Stream:unsubscribe

--- Calling the stream gives the next chunk, as the generic for does; like `next`, waiting as
-- long as the `timeout` option says (default: for ever).
-- @function Stream.__call
-- @raise as `next`; a `timeout` error object when the `timeout` option is set and no chunk
--   came in time
driver.pollable(Stream, state, "chunk", "stream")

function Stream.__tostring(self)
  local r = private[self]
  return string.format("trigger.stream(%s%s)", r and (r.run_id .. "/" .. r.key) or "?",
    self.closed and ", closed" or "")
end

-- -------------------------------------------------------------------------------------------------

-- (end of the Stream class: make doc gives LDoc the lines from `@classmod Stream` to here as a
-- file of its own, tools/doc/split.lua, as LDoc takes one module or class per file)

local function is_integer(v)
  return type(v) == "number" and v == math.floor(v) and v > -math.huge and v < math.huge
end

local function check_resume(fn, pos)
  local v = pos.version
  if v == nil and next(pos) == nil then return end
  if v == "v2" and is_integer(pos.seq_num) and pos.seq_num >= -1 then return end
  if v == "v1" and not bad_id(pos.id) and is_integer(pos.count) and pos.count >= 1 then
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
-- @tparam[opt=true] boolean opts.stop_on_completion at an idle close, look at the run: once
--   it is finished, read the stream to its end and end the iteration (`next` then says
--   "finished"). A key that the finished run never listed ends it with a `not_found` error;
--   one that an unfinished run does not list yet is told to `on_error` once. False reads for
--   ever (until `close`), as a stream of an unfinished run is read
-- @tparam[opt] table opts.resume what `Stream:position` returned earlier: only later chunks
--   come
-- @param[opt] opts.... and every option of `trigger.configure` (`access_token`, `base_url`,
--   `timeout`, `on_error`, `max_retries`…) for this stream alone
-- @treturn Stream the stream, its own iterator and the generic for's closing value (the call
--   returns `stream, nil, nil, stream`)
-- @raise (a string) on misuse (a bad run id, key or option); an error object (`auth` when no
--   access token is set, `bad_request` when `base_url` is not a URL)
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
  -- (the stream's own backoff unless the user gave one: see `M.retry_base`)
  local retry_base = config.given(copts, "retry_base") or M.retry_base
  local retry_cap = config.given(copts, "retry_cap") or M.retry_cap
  if not settings then errors.raise(err) end
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
    stop_on_completion = opts.stop_on_completion ~= false,
    version = pos.version,
    seq = pos.version == "v2" and pos.seq_num or -1,
    v1_id = pos.version == "v1" and pos.id or nil,
    v1_count = pos.version == "v1" and pos.count or 0,
    ids = { set = {}, ring = {}, first = 1, n = 0 },
    attempts = 0,
    retry_base = retry_base,
    retry_cap = retry_cap,
    requests = 0,
    closed = false,
    finished = false,
    ready = true,
    inflight = {},
  }
  r.headers[#r.headers + 1] = "Accept: text/event-stream"
  r.is_closed = function() return r.closed end
  r.co = coroutine.create(function() return loop(r) end)
  local stream = setmetatable({ closed = false, finished = false }, Stream)
  private[stream] = r
  driver.close_when_collected(stream, close_state, r) -- dropped without close(), on LuaJIT too
  return stream, nil, nil, stream
end

--- The `Stream` class table.
-- @local
M.Stream = Stream
return M
