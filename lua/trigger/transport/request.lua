--- The one request path of the library: every HTTP request (shape polls, stored packets,
-- token claims) goes through here, whatever the transport (see `trigger.transport` for the
-- contract), and every HTTP status means the same error kind wherever it comes back.
--
-- Two ways to wait:
--  * inside a reading coroutine (a subscription's loop): `begin` + `await` yield `"wait"`
--    while the request runs, so the driver (`next`, `poll`, cqueues, a game tick) decides
--    how to wait;
--  * outside one (`perform`): blocks the thread, or yields to cqueues when called from a
--    cqueues coroutine, so a token request never stalls an event loop.
-- @module trigger.transport.request
local clock = require "trigger.clock"
local core = require "trigger.core"
local errors = require "trigger.errors"
local transport_contract = require "trigger.transport"

local M = {}

--- The headers every request of the library to the Trigger.dev API carries (shape requests,
-- streams, stored packets, token claims, the management API): the credential, the library's
-- version and, when `preview_branch` is set, `x-trigger-branch`. The one place they are made.
-- @tparam table settings what `trigger.config.resolve` gave
-- @treturn {string,...} a fresh list of "Name: value" lines the caller may add to
function M.api_headers(settings)
  local h = { "Authorization: Bearer " .. settings.access_token,
    "trigger-version: trigger-realtime-lua/" .. require("trigger")._VERSION }
  if settings.preview_branch then h[#h + 1] = "x-trigger-branch: " .. settings.preview_branch end
  return h
end

--- What an HTTP status that is not a success means: `"retry"` or `"fatal"`, the error kind
-- and a short message. The same table the shape protocol core uses (csrc/lib/shape.c).
-- @tparam integer status
-- @treturn string action
-- @treturn string kind
-- @treturn string message
function M.status_verdict(status)
  -- The core's own table of statuses (tr_status_verdict, which the shape state starts from):
  -- one place says what a status means. For a single request there is no shape to fetch
  -- again, so 409 is a protocol error.
  local action, kind, message = core.status_verdict(status)
  if action == "resync" or action == "apply" then
    return "fatal", "protocol", "unexpected HTTP status " .. status
  end
  return action, kind, message
end

--- Whether requests of `transport` run in the background (libcurl: started at once, moved on
-- by `step`, their bodies readable as they come) or in the caller (nginx cosockets: performed
-- where they are awaited). The one place the contract's `background` flag is read: this layer
-- and the ones above it (shape loop, shape bodies, streams) ask here.
-- @param transport a transport module
-- @treturn boolean
function M.in_background(transport)
  return transport.background and true or false
end

local function cqueues_running()
  local cq = package.loaded.cqueues
  return cq and cq.running and cq.running() and cq
end
M.cqueues_running = cqueues_running

--- Wait for the transport's I/O, at most `seconds` (nil: until something happens; never a
-- negative wait, which would block). Yields to cqueues inside a cqueues coroutine.
-- @param transport a transport module
-- @tparam number|nil seconds
-- @param[opt] pollable what cqueues should wait on (default: the transport's descriptor)
function M.wait_io(transport, seconds, pollable)
  if seconds ~= nil and not (seconds > 0) then seconds = 0 end -- luacheck: ignore 581 (NaN)
  local cq = cqueues_running()
  if cq then
    cq.poll(pollable or { pollfd = transport.pollfd, events = function() return "r" end,
      timeout = function() return seconds end }, seconds)
    transport.step(0)
  else
    transport.step(seconds or 3600) -- "until something happens": the caller loops
  end
end

--- Perform a request outside any reading coroutine.
-- @param transport a transport module
-- @tparam table req see `trigger.transport`
-- @return status, headers, body; or nil and the transport's failure
--   (`trigger.transport.failure`: `{kind, code, permanent, message}`)
function M.perform(transport, req)
  if not M.in_background(transport) then return transport.perform(req) end
  local h, err = transport.start(req)
  if not h then return nil, err end
  local ok, status, headers, body = pcall(function()
    while not h:done() do
      local t = transport.timeout()
      M.wait_io(transport, t == nil and 1 or math.min(t, 1))
    end
    return transport.result(h)
  end)
  h:close()
  if not ok then error(status, 0) end
  return status, headers, body
end

--- Turn a failed request into an error object of the library.
-- @param failure the transport's failure (`trigger.transport.failure`: `{kind, code, permanent,
--   message}`; a user's transport may give a table without `code`, or a string)
-- @tparam string where "GET url"
-- @return the error (its `fatal` field set when no retry can mend it, its `code` the failure's)
function M.failure_error(failure, where)
  if type(failure) ~= "table" then
    failure = { kind = "network", permanent = false, message = tostring(failure) }
  end
  local kind = failure.kind
  if not errors.kinds[kind] then kind = "network" end
  return errors.new(kind, failure.message or "request failed",
    { request = where, fatal = failure.permanent or nil, code = failure.code })
end

--- The server's own words from an error body: {"error": "..."} or {"message": "..."}.
-- @tparam string body
-- @treturn string|nil
function M.server_says(body)
  if type(body) ~= "string" or body == "" then return nil end
  local doc = require("trigger.json").decode(body)
  if type(doc) == "table" then
    local said = doc.error or doc.message
    if type(said) == "string" then
      -- {"error": "Query Error", "details": [{"message": …}, …]}: the details say what
      if type(doc.details) == "table" then
        for _, d in ipairs(doc.details) do
          if type(d) == "table" and type(d.message) == "string" then
            said = said .. "; " .. d.message
          end
        end
      end
      return said
    end
  end
  if #body <= 200 and not body:find("[%c]") then return body end
  return nil
end

--- An error object for an HTTP status that is not a success.
-- @tparam integer status
-- @tparam string body
-- @tparam string where "GET url"
-- @return the error; its `fatal` field says whether a retry could help
function M.status_error(status, body, where)
  local action, kind, message = M.status_verdict(status)
  local said = M.server_says(body)
  if said then message = message .. ": " .. said end
  return errors.new(kind, message, { status = status, request = where,
    fatal = action ~= "retry" or nil })
end

---------------------------------------------------------------------------------------------------
-- Inside a reading coroutine. `owner` is the reader's private state: `transport`, `settings`,
-- `inflight` (requests to abort on close), `is_closed`, `deadline` (the driver's), `awaiting`.

--- Start a request. With a background transport (curl) it is in flight at once; otherwise
-- (cosockets) it runs when awaited.
function M.begin(owner, req)
  local s = owner.settings
  req.timeout = req.timeout or s.read_timeout
  req.connect_timeout = s.connect_timeout
  req.ca_file = s.ca_file
  req.max_body = s.max_body
  local transport = owner.transport
  if not M.in_background(transport) then
    req.cancelled = owner.is_closed -- close() from another light thread ends the wait
    return { req = req }
  end
  local handle, err = transport.start(req)
  if not handle then return { err = err } end
  owner.inflight[handle] = true
  return { handle = handle, url = req.url, since = clock.now() }
end

-- A transport without background requests (nginx cosockets) performs the request right here.
-- The driver's `next(timeout)` deadline bounds it: when the wait runs out mid-request, nothing
-- was applied, so yielding and sending the same request again on the next call loses nothing.
local function perform_within_deadline(owner, req)
  local read_timeout = owner.settings.read_timeout
  while true do
    local left = owner.deadline and owner.deadline - clock.now()
    if left and left <= 0 then
      coroutine.yield("wait")
    else
      req.timeout = (left and left < read_timeout) and left or read_timeout
      req.sent_at = clock.now() -- (how long the answer took: the shape loop's request budget)
      local status, headers, body = owner.transport.perform(req)
      -- Closed meanwhile (from another light thread): the caller's next() says "closed", and
      -- this coroutine is never resumed again.
      while owner.closed do coroutine.yield("wait") end
      if status or not (owner.deadline and clock.now() >= owner.deadline) then
        return status, headers, body
      end
    end
  end
end

--- The result of a started request, yielding `"wait"` while it runs.
-- @return status, headers, body; or nil and the failure (`trigger.transport.failure`; code
--   `"interrupted"` when a reader asked for a fresh read meanwhile)
function M.await(owner, p)
  if p.err then return nil, p.err end
  if p.req then return perform_within_deadline(owner, p.req) end
  local h = p.handle
  owner.awaiting = h -- poll() checks it before resuming the coroutine just to yield again
  owner.awaited = p  -- what it is (url, since): for diagnostics only
  while true do
    if owner.interrupt then -- a reader asked for a fresh read: give this request up
      owner.interrupt = nil
      owner.awaiting, owner.awaited = nil, nil
      M.abort(owner, p)
      return nil, transport_contract.interrupted()
    end
    if h:done() then break end
    coroutine.yield("wait")
  end
  owner.awaiting, owner.awaited = nil, nil
  owner.inflight[h] = nil
  local status, headers, body = owner.transport.result(h)
  h:close()
  return status, headers, body
end

--- Give up a started request (closes its connection).
function M.abort(owner, p)
  if p.handle then
    owner.inflight[p.handle] = nil
    p.handle:close()
  end
end

---------------------------------------------------------------------------------------------------
-- The one streaming body reader: the answer of a request read as it comes, inside a reading
-- coroutine (shape bodies, realtime streams).

-- A background request's handle (`head()`, `take()`: libcurl).
local function handle_reader(owner, p, opts)
  local h, transport = p.handle, owner.transport
  local stop, idle, most = opts.stop, opts.idle, opts.take
  local watch = opts.watch_head and
    { done = function() return h:done() or h:head() ~= nil end } or nil
  local reader = {}
  local function ended()
    owner.awaiting, owner.awaited = nil, nil
    owner.inflight[h] = nil
    h:close()
  end
  reader.close = ended
  function reader.head()
    -- poll() skips resuming the coroutine while nothing can have changed: "done" once the head
    -- is in (or the request ended)
    if watch then owner.awaiting, owner.awaited = watch, p end
    while true do
      local failure = stop and stop()
      if failure then
        ended()
        return nil, failure
      end
      local status, headers = h:head()
      if status then
        if watch then owner.awaiting = nil end -- bytes may come at any step now
        return status, headers
      end
      if h:done() then
        local st, hd = transport.result(h)
        if watch then owner.awaiting = nil end
        if not st then ended() end
        return st, hd
      end
      coroutine.yield("wait")
    end
  end
  local over, last -- the request ended (`last`: its failure, if it failed): read says so again
  function reader.read()
    if over then return nil, last end
    while true do
      local failure = stop and stop()
      if failure then
        ended()
        over, last = true, failure
        return nil, failure
      end
      local bytes = h:take(most)
      if bytes then return bytes end
      if h:done() then
        local st, failed, rest = transport.result(h)
        ended()
        over, last = true, not st and failed or nil
        if last then return nil, last end
        if rest and rest ~= "" then return rest end
        return nil
      end
      if idle and idle() then return nil, nil, "idle" end
      coroutine.yield("wait")
    end
  end
  return reader
end

-- nginx cosockets: the transport's stream reader (`open_stream`), its waits bounded by the
-- driver's deadline, given up once the owner is closed.
local function stream_reader(owner, req)
  -- Nothing is opened once the owner is closed (from another light thread, while this one
  -- slept) or past the driver's deadline (the request's connect would not look at it).
  while owner.closed or (owner.deadline and owner.deadline <= clock.now()) do
    coroutine.yield("wait")
  end
  req.cancelled = owner.is_closed
  req.connect_timeout = owner.settings.connect_timeout
  local stream, failure = owner.transport.open_stream(req)
  if not stream then return nil, failure end
  -- close() of the owner closes the connection at once (the reading coroutine may never run
  -- again to do it: it waits to hand something out, or in a read another light thread gave up)
  local handle = { close = function() stream.close() end }
  owner.inflight[handle] = true
  local function wait_for(fn)
    while true do
      local left = owner.deadline and owner.deadline - clock.now()
      if left and left <= 0 then
        coroutine.yield("wait")
      else
        local a, b, c = fn(left)
        while owner.closed do coroutine.yield("wait") end
        if a ~= nil or b ~= "timeout" then return a, b, c end
      end
    end
  end
  return {
    head = function() return wait_for(stream.head) end,
    read = function() return wait_for(stream.read) end,
    close = function()
      owner.inflight[handle] = nil
      stream.close()
    end,
  }
end

--- Open the body of a request to read it as it comes (yields `"wait"` while nothing came).
-- A background transport's pending request `p` (of `begin`) is read through its handle
-- (`head()`, `take()`); without one (`p` nil: a transport that is not background) `req` is
-- opened here with the transport's `open_stream`.
-- @param owner the reader's private state (see above)
-- @param p the pending request (`begin`) whose handle streams; nil: open `req` as a stream
-- @tparam table req the request, when `p` is nil
-- @tparam[opt] table opts (background only) `stop` (a function giving a failure to give the
--   request up with now, or nil: asked at every look), `idle` (a function: true to stop waiting
--   for bytes, `read` then gives `nil, nil, "idle"`), `take` (most bytes a read gives),
--   `watch_head` (`owner.awaiting` says when the head is in, for `poll()`)
-- @return a reader `{head, read, close}`: `head()` → status, headers | nil, failure (the
--   request then closed); `read()` → bytes | nil at the end | nil, failure | nil, nil, "idle";
--   `close()` gives the request up (idempotent); or nil and the failure
function M.open_body(owner, p, req, opts)
  if p == nil then return stream_reader(owner, req) end
  if p.err then return nil, p.err end
  return handle_reader(owner, p, opts or {})
end

--- `begin` then `await`.
function M.http(owner, req)
  return M.await(owner, M.begin(owner, req))
end

--- Wait without I/O (a backoff) inside a reading coroutine, never past the caller's deadline:
-- with a background transport it yields `"wait"` until the time is up (the driver waits, as
-- long as `timeout()` and `next`'s deadline allow); a transport that sleeps in the caller
-- (nginx) sleeps in slices bounded by the driver's deadline and yields once it has passed, so
-- `next(timeout)` returns in time even in a backoff of 32 s.
function M.sleep(owner, seconds)
  local t = owner.transport
  local wake = clock.now() + seconds
  if M.in_background(t) or not t.sleep then
    owner.wake_at = wake
    while clock.now() < owner.wake_at do coroutine.yield("wait") end
    owner.wake_at = nil
    return
  end
  while not owner.closed do
    local now = clock.now()
    if now >= wake then return end
    local left = owner.deadline and owner.deadline - now
    if left and left <= 0 then
      coroutine.yield("wait")
    else
      t.sleep(math.min(wake - now, left or wake - now))
    end
  end
end

return M
