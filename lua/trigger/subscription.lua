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
-- With the default (libcurl) transport all subscriptions of a Lua state share one connection
-- hub: driving one (`next`, `poll`, `trigger.step`) moves the network I/O of all of them along.
-- @classmod Subscription
local core = require "trigger.core"
local errors = require "trigger.errors"
local json = require "trigger.json"
local run_object = require "trigger.run_object"
local shape_rows = require "trigger.shape_rows"
local clock = require "trigger.clock"

local M = {}
local Subscription = {}
Subscription.__index = Subscription
Subscription.__name = "trigger.subscription"

local unpack = table.unpack or unpack -- luacheck: ignore

-- Electric and Trigger.dev headers every realtime request carries.
local PROTOCOL_HEADERS = {
  "x-trigger-electric-version: 1.0.0-beta.1",
  "x-trigger-api-version: 2025-07-16",
}

local function describe(method, url)
  return method .. " " .. url
end

-- The server's own words from an error body: {"error": "..."} or {"message": "..."}.
local function server_says(body)
  if type(body) ~= "string" or body == "" then return nil end
  local doc = json.decode(body)
  if type(doc) == "table" then
    local said = doc.error or doc.message
    if type(said) == "string" then return said end
  end
  if #body <= 200 and not body:find("[%c]") then return body end
  return nil
end

-- libcurl failures that no retry can mend: a certificate that does not verify, a CA file that
-- cannot be read, a URL that is not one, a body over max_body (the write callback refused it).
local PERMANENT_CURL_CODES = {
  [1] = true, [3] = true, [23] = true, [58] = true, [60] = true, [77] = true,
}

local function retry_after_seconds(headers)
  local v = headers and headers["retry-after"]
  local n = v and tonumber(v)
  if n and n >= 0 then return math.min(n, 300) end
  return 0
end

--- Create a subscription (called by `trigger.runs`).
-- @tparam table spec `path`, `params`, `settings`, `transport`, `stop_when` (function(run))
-- @local
function M.new(spec)
  local s = spec.settings
  local self = setmetatable({
    settings = s,
    path = spec.path,
    params = spec.params or {},
    transport = spec.transport,
    stop_when = spec.stop_when,
    shape = core.shape(),
    headers = { "Authorization: Bearer " .. s.access_token, unpack(PROTOCOL_HEADERS) },
    closed = false,
    finished = false,
    ready = true, -- the coroutine may have work to do without waiting for I/O
    wake_at = nil,
    inflight = {}, -- requests in flight: closing the subscription aborts them
    packets = {}, -- store-packet cache: "field\0path" → {value}
  }, Subscription)
  self.headers[#self.headers + 1] = "trigger-version: trigger-realtime-lua/" .. spec.version
  local resume = s.resume
  if resume ~= nil then
    local ok, err = self.shape:restore(resume.handle, resume.offset, resume.cursor)
    if not ok then error(errors.new("bad_request", "opts.resume: " .. err), 0) end
  end
  self.rows = shape_rows.new(resume and resume.rows)
  self.schema = resume and resume.schema
  -- Made once, not per run: they read which run is being built from the subscription.
  self.fetch_for_run = function(field, path)
    return self:_fetch_packet(self.delivering_id, field, path)
  end
  self.warn_for_run = function(message)
    self:_warn("run " .. tostring(self.delivering_id) .. " " .. message, self.delivering_url)
  end
  self.is_closed = function() return self.closed end
  self.co = coroutine.create(function() return self:_loop() end)
  return self
end

-- Start a request. With a transport that can run requests in the background (curl), it is in
-- flight at once; otherwise (cosockets) it runs when awaited.
function Subscription:_begin(req)
  local s = self.settings
  req.timeout = req.timeout or s.read_timeout
  req.connect_timeout = s.connect_timeout
  req.ca_file = s.ca_file
  req.max_body = s.max_body
  if not self.transport.start then
    req.cancelled = self.is_closed -- close() from another light thread ends the wait
    return { req = req }
  end
  local handle, err = self.transport.start(req)
  if not handle then return { err = err } end
  self.inflight[handle] = true
  return { handle = handle }
end

-- Inside the coroutine: the result of a started request, yielding while it runs.
-- Returns status, headers, body, or nil and a message.
function Subscription:_await(p)
  if p.err then return nil, p.err end
  if p.req then return self:_perform_within_deadline(p.req) end
  local h = p.handle
  self.awaiting = h -- poll() checks it before resuming the coroutine just to yield again
  while not h:done() do coroutine.yield("wait") end
  self.awaiting = nil
  self.inflight[h] = nil
  local status, headers, body = h:result()
  h:close()
  return status, headers, body -- on failure: nil, message, libcurl code
end

-- A transport without background requests (nginx cosockets) performs the request right here.
-- The caller's `next(timeout)` deadline bounds it: when the wait runs out mid-request, nothing
-- was applied, so yielding and sending the same request again on the next call loses nothing.
function Subscription:_perform_within_deadline(req)
  local read_timeout = self.settings.read_timeout
  while true do
    local left = self.deadline and self.deadline - clock.now()
    if left and left <= 0 then
      coroutine.yield("wait")
    else
      req.timeout = (left and left < read_timeout) and left or read_timeout
      local status, headers, body = self.transport.perform(req)
      -- Closed meanwhile (from another light thread): the caller's next() says "closed", and
      -- this coroutine is never resumed again.
      while self.closed do coroutine.yield("wait") end
      if status or not (self.deadline and clock.now() >= self.deadline) then
        return status, headers, body
      end
    end
  end
end

function Subscription:_http(req)
  return self:_await(self:_begin(req))
end

-- Inside the coroutine: wait without I/O (backoff).
function Subscription:_sleep(seconds)
  if self.transport.sleep then return self.transport.sleep(seconds) end
  self.wake_at = clock.now() + seconds
  while clock.now() < self.wake_at do coroutine.yield("wait") end
  self.wake_at = nil
end

-- A failure worth retrying: tell on_error, give up after max_retries, else back off.
function Subscription:_transient(err, retry_after)
  local s = self.settings
  local attempts = self.shape:attempts() + 1
  err.attempt = attempts
  if s.on_error then s.on_error(err) end
  if s.max_retries and attempts > s.max_retries then
    err.message = err.message .. string.format(" (gave up after %d retries)", s.max_retries)
    err.fatal = true
    error(err, 0)
  end
  local delay = self.shape:backoff(s.retry_base, s.retry_cap, retry_after, math.random())
  self:_sleep(delay)
end

-- application/store packets: ask the API for a presigned URL, then fetch it without our
-- credentials. Cached per packet path, so an unchanged packet is fetched once.
function Subscription:_fetch_packet(run_id, field, path)
  local cache_key = field .. "\0" .. path
  local cached = self.packets[cache_key]
  if cached then return cached[1], cached[2] end
  local base = self.settings.base_url
  local auth = { self.headers[1] }
  local tries = {
    base .. "/api/v1/runs/" .. core.url_encode(run_id) .. "/packets/" .. field,
    base .. "/api/v1/packets/" .. core.url_encode(path),
  }
  local presigned, last
  for _, url in ipairs(tries) do
    local status, headers, body = self:_http { url = url, headers = auth }
    if status == 200 then
      local doc = json.decode(body)
      presigned = type(doc) == "table" and doc.presignedUrl
      if type(presigned) == "string" then break end
      last = "no presignedUrl in the answer of " .. describe("GET", url)
    elseif status == 404 then
      last = "packet not found (" .. describe("GET", url) .. ")"
    else
      last = (status and ("HTTP " .. status) or tostring(headers)) .. " from "
        .. describe("GET", url)
      break
    end
    presigned = nil
  end
  if not presigned then return nil, last end
  local status, headers, body = self:_http { url = presigned }
  if status ~= 200 then
    return nil, (status and ("HTTP " .. status) or tostring(headers))
      .. " fetching the stored packet"
  end
  local ctype = (headers["content-type"] or "application/json"):match("^[^;%s]+")
  self.packets[cache_key] = { body, ctype }
  return body, ctype
end

function Subscription:_warn(message, url)
  if self.settings.on_error then
    self.settings.on_error(errors.new("protocol", message, { request = url, fatal = false }))
  end
end

-- Hand the changed runs of an up-to-date batch to the user, one yield each. The position
-- after this batch counts as reached when its last run is handed out.
function Subscription:_deliver(url)
  local reached = { self.shape:position() }
  local rows = self.rows:take()
  if #rows == 0 then self.committed = reached end
  self.delivering_url = url
  for i, row in ipairs(rows) do
    self.delivering_id = row.friendlyId
    local run = run_object.build(row, self.fetch_for_run, self.warn_for_run)
    if i == #rows then self.committed = reached end
    self.rows:handed(i) -- a position saved now holds this row, not the rest of the batch
    self.ready = true
    coroutine.yield("run", run)
    if self.stop_when and self.stop_when(run) then return true end
  end
  return false
end

-- What one response of the shape log means: true when a batch of runs is ready to be handed
-- out, false otherwise (applied, retried after a backoff, or to be fetched again).
function Subscription:_handle(url, status, headers, body)
  local where = describe("GET", url)
  if not status then
    local err = errors.new("network", headers, { request = where })
    if PERMANENT_CURL_CODES[body] then
      err.fatal = true
      error(err, 0)
    end
    self:_transient(err)
    return false
  end
  local messages, problem
  if status == 200 then messages, problem = shape_rows.parse(body) end
  if problem then
    self:_transient(errors.new("protocol", "bad response body: " .. problem,
      { status = status, request = where }))
    return false
  end
  local action, kind, message = self.shape:response(status, headers, body)
  if action == "apply" then
    if headers["electric-schema"] then self.schema = headers["electric-schema"] end
    local up_to_date, refetch = false, false
    if messages then up_to_date, refetch = self.rows:apply(messages) end
    if refetch then
      self.shape:response(409, {})
      self.rows:reset()
    elseif up_to_date or headers["electric-up-to-date"] or status == 204 then
      return true
    end
  elseif action == "resync" then
    self.rows:reset()
  else
    local said = server_says(body)
    if said then message = message .. ": " .. said end
    local err = errors.new(kind, message, { status = status, request = where })
    if action == "retry" then
      self:_transient(err, retry_after_seconds(headers))
    else
      err.fatal = true
      error(err, 0)
    end
  end
  return false
end

-- While catching up (initial sync, resync, resume), the request for the next page depends only
-- on this response's headers: begin it before this body is decoded, so the server and the
-- network work on it meanwhile. Asked of a copy of the shape state; if the body then turns out
-- bad or says must-refetch, the loop wants another URL and aborts this one.
function Subscription:_request_ahead(base, status, headers)
  if status ~= 200 or not self.transport.start or headers["electric-up-to-date"] then return nil end
  local peek = self.shape:clone()
  local url = peek:response(status, headers) == "apply" and base .. peek:query(self.params)
  peek:close()
  if not url then return nil end
  return { url = url, pending = self:_begin { url = url, headers = self.headers } }
end

function Subscription:_loop()
  local base = self.settings.base_url .. self.path .. "?"
  local started -- a request begun early: { url =, pending = }
  -- The pending request for `url`: the one begun early if it asked for the same, else a new one.
  local function request_for(url)
    local p
    if started and started.url == url then
      p = started.pending
    else
      if started then self:_abort(started.pending) end
      p = self:_begin { url = url, headers = self.headers }
    end
    started = nil
    return p
  end
  while true do
    local url = base .. self.shape:query(self.params)
    local status, headers, body = self:_await(request_for(url))
    started = self:_request_ahead(base, status, headers)
    local batch = self:_handle(url, status, headers, body)
    body = nil -- luacheck: ignore 311 (not kept alive while the batch is handed out)
    if batch then
      -- The following request starts before the runs are handed out, so the user's work
      -- overlaps the next long-poll and closing the subscription aborts a live request.
      if self.transport.start then
        local nurl = base .. self.shape:query(self.params)
        started = { url = nurl, pending = request_for(nurl) }
      end
      if self:_deliver(url) then return end
    end
  end
end

function Subscription:_abort(p)
  if p.handle then
    self.inflight[p.handle] = nil
    p.handle:close()
  end
end

-- Resume the reading coroutine once: returns "run", run | "wait" | "end"; raises fatal errors.
function Subscription:_resume()
  local ok, what, value = coroutine.resume(self.co)
  if not ok then
    self:close()
    if not errors.is(what) then
      what = errors.new("protocol", "internal error: " .. tostring(what), { fatal = true })
    end
    self.failure = what
    return "error", what
  end
  if coroutine.status(self.co) == "dead" then
    self.finished = true
    self:close()
    return "end"
  end
  if what == "wait" then self.ready = false end
  return what, value
end

--- Seconds until the subscription needs attention even if its descriptor stays quiet (the
-- cqueues pollable protocol): 0 when it has work to do now, else the network's next timer or
-- the end of a retry's backoff.
-- @treturn number|nil seconds, or nil when nothing is timed (wait for `pollfd` alone)
-- @usage
-- -- any poll loop: wait for sub:pollfd() to be readable, at most sub:timeout() seconds, then
-- local run = sub:poll()
function Subscription:timeout()
  if self.closed or self.ready then return 0 end
  local t = self.transport.timeout()
  if self.wake_at then
    local w = math.max(0, self.wake_at - clock.now())
    if not t or w < t then t = w end
  end
  return t
end

--- The descriptor an event loop should watch (the cqueues pollable protocol).
-- @treturn integer fd
function Subscription:pollfd()
  return self.transport.pollfd()
end

--- The events to watch on `pollfd` (the cqueues pollable protocol).
-- @treturn string "r"
function Subscription:events() -- luacheck: ignore 212
  return "r"
end

local function raise(err)
  error(err, 2)
end

--- The next run, never blocking: performs whatever I/O is ready for every subscription of
-- this thread (once per round: polling 1,000 subscriptions one after the other looks at the
-- network once), then returns a run if one is ready.
-- @treturn[1] table a run
-- @treturn[2] nil when none is ready (or the subscription ended: see `finished`)
-- @raise a fatal error object
function Subscription:poll()
  if self.closed then
    if self.failure then raise(self.failure) end
    return nil
  end
  if not self.transport.start then
    error("poll() needs requests that run in the background, which this transport (nginx "
      .. "cosockets) cannot do: use next(timeout) or the for-loop form", 2)
  end
  self.deadline = nil
  -- The I/O is done once per round of polls: unless the hub was stepped since this
  -- subscription last looked (by another poll, next, or trigger.step), step it now.
  local transport = self.transport
  local steps = transport.steps
  local seen = steps and steps()
  if seen == nil or seen == self.steps_seen then
    transport.step(0)
    seen = steps and steps()
  end
  self.steps_seen = seen
  -- Still waiting for the same request: nothing to do (a host polling many subscriptions
  -- after every wakeup pays this once per subscription).
  local h = self.awaiting
  if h and not h:done() then return nil end
  local what, value = self:_resume()
  if what == "run" then return value end
  if what == "error" then raise(value) end
  return nil -- waiting for I/O, or ended
end

local function cqueues_running()
  local cq = package.loaded.cqueues
  return cq and cq.running and cq.running() and cq
end

--- The next run, waiting at most `timeout` seconds.
-- Inside a cqueues coroutine the wait yields to cqueues instead of blocking the thread.
-- @tparam[opt] number timeout seconds; nil waits as long as it takes
-- @treturn[1] table a run
-- @treturn[2] nil
-- @treturn[2] string "timeout", "closed" or "finished"
-- @raise a fatal error object (401, 403, 404, bad request, protocol errors, max_retries);
--   a string when `timeout` is not a non-negative number
-- @usage
-- local run, why = sub:next(5)
-- if run then print(run.id, run.status) elseif why == "timeout" then print("nothing in 5 s") end
function Subscription:next(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #1 to 'next' (non-negative number expected)", 2)
  end
  local deadline = timeout and clock.now() + timeout
  self.deadline = deadline
  while true do
    if self.closed then
      if self.failure then raise(self.failure) end
      return nil, self.finished and "finished" or "closed"
    end
    local what, value = self:_resume()
    if what == "run" then return value end
    if what == "error" then raise(value) end
    if what ~= "end" then
      local wait = self:timeout()
      if deadline then
        local left = deadline - clock.now()
        if left <= 0 then return nil, "timeout" end
        if wait == nil or left < wait then wait = left end
      end
      local cq = cqueues_running()
      if cq then
        cq.poll(self, wait)
        self.transport.step(0)
      else
        self.transport.step(wait or -1)
      end
    end
  end
end

--- Where the subscription stands: a table of strings that `opts.resume` accepts later (it can be
-- saved with `cjson.encode`). It holds the shape position of the last batch fully delivered and
-- the rows as they were handed out, so a resumed subscription yields only what changed since.
-- @treturn table `{handle=, offset=, cursor=, schema=, rows=}`
function Subscription:position()
  local c = self.committed
  local pos = { rows = self.rows:snapshot(), schema = self.schema }
  if c then pos.handle, pos.offset, pos.cursor = c[1], c[2], c[3] end
  return pos
end

--- Close the subscription: aborts its request (closing the connection) at once.
-- Idempotent; also called by `__close` (a to-be-closed variable, or `break` out of a generic
-- for on Lua 5.4) and `__gc`.
function Subscription:close()
  if self.closed then return end
  self.closed = true
  for handle in pairs(self.inflight) do handle:close() end
  self.inflight = {}
  self.shape:close()
end

Subscription.__close = Subscription.close
Subscription.__gc = Subscription.close

--- Calling the subscription gives the next run, as the generic for does in `for run in sub do … end`.
-- Like `next`, waiting as long as the `timeout` option says (default: for ever).
-- @tparam Subscription self
-- @treturn table|nil the next run; nil ends the loop (the subscription finished or was closed)
-- @raise a fatal error object, as `next` does; a `timeout` error object when the `timeout`
--   option is set and no run came in time
function Subscription.__call(self)
  local run, why = self:next(self.settings.timeout)
  if run == nil and why == "timeout" then
    raise(errors.new("timeout", "no run within " .. self.settings.timeout .. " s", {}))
  end
  return run
end

function Subscription.__tostring(self)
  return string.format("trigger.subscription(%s%s)", self.path,
    self.closed and ", closed" or "")
end

M.Subscription = Subscription
return M
