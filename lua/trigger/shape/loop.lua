--- The protocol loop of one upstream shape (shared by the subscriptions that read it, see
-- `trigger.fanout.upstream`), run as a coroutine: ask the shape core which request comes next, perform
-- it through `trigger.transport.request`, apply the answer to the rows, and at each up-to-date boundary
-- publish the batch of what changed and yield `"batch"` (`"wait"` while waiting for I/O).
--
-- One loop serves both of Trigger.dev's realtime backends with no setting: the Electric shape
-- log and the native runs feed (a state poller dressed as a shape: up to date only in the
-- body, full rows, no deletes, and a per-handle record of what was sent, kept on the server).
-- What makes that safe:
--  * up to date is read from the body's last control message as well as the header (the one
--    rule: `shape_body.up_to_date`);
--  * a page is asked for ahead only while the body does not end up to date;
--  * a failed live poll is asked again non-live with the same handle (`shape:interrupted`);
--  * a row older (by `updatedAt`) than the one already handed out is not yielded.
--
-- The request budget: whatever the server answers, the loop never asks in a tight loop. The
-- shape core (csrc/lib/shape.c, `TR_SHAPE_HELD_S`) counts each answer as progress (a live answer
-- with changes, or one held as a long-poll is: 0.25 s or more), neutral (a page of a sync or a
-- catch-up) or idle: a resync (409 must-refetch, 400 "offset out of bounds", a must-refetch in
-- a 200 body), a live answer in under 0.25 s with nothing new (204, a bare up-to-date, `[]`),
-- an answer under another handle than the one asked for without a 409, a non-live answer at
-- the same offset that is not up to date. The first idle answer of a streak is free (a shape
-- rotation costs no wait); every later one, until an answer makes progress, backs off as a
-- transient failure does (`retry_base` doubled per attempt up to `retry_cap`, full jitter,
-- `max_retries` bounding the streak), and `on_error` hears of the streak once (an error of kind
-- `"protocol"`, `idle = true`), or one warning goes to stderr without `on_error`.
-- @module trigger.shape.loop
local clock = require "trigger.clock"
local errors = require "trigger.errors"
local request = require "trigger.transport.request"
local retry = require "trigger.retry"
local shape_body = require "trigger.shape.body"
local shape_rows = require "trigger.shape.rows"
local transport_contract = require "trigger.transport"

local ends_up_to_date = shape_body.ends_up_to_date

local M = {}

-- on_error closed the loop's object (and with it this loop, its last reader gone): yield once
-- so that the reader sees it closed; the loop is never resumed again (`Upstream:step`).
local function stop_if_closed(r)
  if r.closed then
    coroutine.yield("wait")
    error("the shape loop was resumed after it closed") -- never: step refuses a closed one
  end
end

--- A failure worth retrying: give up after max_retries, else tell on_error (or warn once per
-- streak) and back off. `idle`: a streak of idle answers (see the module's request budget),
-- which on_error hears of once.
function M.transient(r, err, retry_after, idle)
  local s = r.settings
  r.last_error = err
  if retry.gave_up(s, err, r.shape:attempts() + 1) then error(err, 0) end
  if not (idle and r.idle_reported) then
    r.idle_reported = idle or r.idle_reported
    retry.tell(s, r, err)
    stop_if_closed(r)
  end
  local delay = r.shape:backoff(s.retry_base, s.retry_cap, retry_after, math.random())
  request.sleep(r, delay)
end

-- A response made progress: the failure streak (if any) is over.
local function recovered(r)
  r.last_error = nil
  retry.recovered(r)
  r.idle_reported = false
end

-- The change messages of a flat message list, and whether it holds a must-refetch.
local function list_summary(list)
  local changes, refetch = 0, false
  for i = 2, #list, 3 do
    if list[i] ~= false then
      changes = changes + 1
    elseif list[i - 1] == "must-refetch" then
      refetch = true
    end
  end
  return changes, refetch
end

-- An idle answer that must be backed off from (the core's pace "backoff"): the error on_error
-- hears of the streak with, kept until the loop is about to ask again.
local function idle_error(r, message, status, where)
  r.idle_due = errors.new("protocol", "no progress from the server (" .. message
    .. "): backing off", { status = status, request = where, idle = true })
end

-- At an up-to-date boundary: hand the batch of what changed, with the position it reaches, to
-- the readers (`r.publish`), then let the driving reader take it.
local function publish(r, url)
  r.mid_sync = false
  local batch = r.rows:publish()
  batch.position = { r.shape:position() }
  batch.refreshed, r.rebuilt = r.rebuilt, nil
  batch.url = url
  r.publish(batch)
  coroutine.yield("batch")
end

-- What one response of the shape log means: true when a batch of runs is ready to be handed
-- out, false otherwise (applied, retried after a backoff, or to be fetched again). `failure`:
-- the transport's (`trigger.transport.failure`), when there is no answer; `between`: for
-- `shape_rows.parse`; `parsed`: the answer as `shape_body.read` read it (its list, no body);
-- `elapsed`: seconds the request took (for the request budget).
local function handle(r, url, failure, status, headers, body, between, parsed, elapsed)
  local where = "GET " .. url
  if transport_contract.is_interrupted(failure) then
    -- A reader joined a shared native feed: read the whole shape again (see `Upstream:refresh`).
    r.shape:interrupted()
    r.rebuild_next = r.refresh_ticket -- the refresh this read answers
    return false
  end
  if failure then
    local err = request.failure_error(failure, where)
    if err.fatal then error(err, 0) end
    r.shape:interrupted()
    M.transient(r, err)
    return false
  end
  local messages, problem
  if parsed then
    messages, problem = parsed.list, parsed.problem
  elseif status == 200 then
    messages, problem = shape_rows.parse(body, between)
  end
  if problem then
    r.shape:interrupted()
    M.transient(r, errors.new("protocol", "bad response body: " .. problem,
      { status = status, request = where }))
    return false
  end
  -- (up to date: decided in `shape_body.up_to_date`, for both backends)
  local boundary, body_up_to_date, native = shape_body.up_to_date(status, headers, messages)
  local changes, refetch = 0, false
  if messages then changes, refetch = list_summary(messages) end
  local action, kind, message, pace = r.shape:response(status, headers, body, body_up_to_date,
    changes, refetch, elapsed)
  if pace == "go" then recovered(r) end
  if pace == "backoff" and (action == "apply" or action == "resync") then
    idle_error(r, message, status, where)
  end
  if action == "apply" then
    -- Rows may change from here on: until the batch is published they are not a whole state
    -- of the shape (a page of a resync, say), which a reader joining now must not take as one.
    r.mid_sync = true
    -- The native feed says up to date in the body only; Electric in a header as well. Which
    -- one answered is read off each answer: the server can flip between the two.
    if body_up_to_date then r.native_dialect = native end
    if r.rebuild_next and status == 200 then
      r.rebuilt = r.rebuild_next
      r.rebuild_next = nil
      -- A non-live answer of the native feed is the whole shape: what it lacks has left. (A
      -- page of Electric's log is not: taken for one, it dropped the pages before it.)
      if native then r.rows:reset() end
    end
    if headers["electric-schema"] then r.schema = headers["electric-schema"] end
    if messages then r.rows:apply(messages) end
    if boundary then return true end
  elseif action == "resync" then
    r.mid_sync = true
    r.rows:reset()
  else
    local said = request.server_says(body)
    if said then message = message .. ": " .. said end
    local err = errors.new(kind, message, { status = status, request = where })
    if action == "retry" then
      M.transient(r, err, retry.retry_after(headers))
    else
      err.fatal = true
      error(err, 0)
    end
  end
  return false
end

-- While catching up (initial sync, resync, resume), the request for the next page depends only
-- on this response's headers: begin it before this body is decoded, so the server and the
-- network work on it meanwhile. Only while the page is really not up to date: on the native
-- feed (no up-to-date header, every body ends up to date) a speculative non-live request would
-- reset what the server records as sent to this handle. Never after a live request (whose body,
-- when good, always ends up to date). Asked of a copy of the shape state; if
-- the body then turns out bad or says must-refetch, the loop wants another URL and aborts it.
-- Never during a streak of idle answers (the request budget): the next request waits for the
-- verdict on this one.
local function request_ahead(r, base, was_live, status, headers, body_up_to_date)
  if was_live or status ~= 200 or not request.in_background(r.transport) or body_up_to_date ~= false
      or shape_body.up_to_date(status, headers) or r.shape:idle() > 0 then
    return nil -- (up to date by its header: the body is not decoded yet)
  end
  local peek = r.shape:clone()
  local url = peek:response(status, headers) == "apply" and base .. peek:query(r.params)
  peek:close()
  if not url then return nil end
  return { url = url, pending = request.begin(r, { url = url, headers = r.headers }) }
end

--- The loop itself (the body of the reading coroutine).
function M.run(r)
  local base = r.settings.base_url .. r.path .. "?"
  local started -- a request begun early: { url =, pending = }
  -- While a large page is decoded, the one begun early goes on arriving (a non-blocking step).
  local function step_network() r.transport.step(0) end
  -- The pending request for `url`: the one begun early if it asked for the same, else a new one
  -- (`streamed`: to be read by `shape_body.read`, which takes its bytes as they come; one read
  -- whole must never pause at `pause_at`).
  local function request_for(url, streamed)
    local p
    if started and started.url == url then
      p = started.pending
    else
      if started then request.abort(r, started.pending) end
      p = (streamed and shape_body or request).begin(r, { url = url, headers = r.headers })
    end
    started = nil
    return p
  end
  while true do
    if r.idle_due then
      -- an idle answer again: wait before asking again (the request budget); nothing was
      -- begun ahead for it (see below)
      local err = r.idle_due
      r.idle_due = nil
      M.transient(r, err, 0, true)
    end
    local url = base .. r.shape:query(r.params)
    local was_live = select(4, r.shape:position())
    local fresh = not (started and started.url == url) and request.in_background(r.transport)
    local p = request_for(url, fresh)
    local sent = p.since or clock.now()
    local status, headers, body, parsed, failure
    if fresh then
      -- Nothing was begun ahead for it (the first page of a sync, the native feed's one
      -- snapshot): read as it arrives, decoded while the rest is on the wire, never held whole.
      parsed = shape_body.read(r, p, { on_complete = function(st, hd, up_to_date)
        started = request_ahead(r, base, was_live, st, hd, up_to_date)
      end })
      status, headers, body, failure = parsed.status, parsed.headers, parsed.body, parsed.failure
    else
      status, headers, body = request.await(r, p)
      if not status then failure, headers = headers, nil end -- (nil, failure)
      started = request_ahead(r, base, was_live, status, headers,
        type(body) ~= "string" or ends_up_to_date(body))
    end
    local elapsed = clock.now() - (p.req and p.req.sent_at or sent)
    local batch = handle(r, url, failure, status, headers, body, started and step_network, parsed,
      elapsed)
    body, parsed = nil, nil -- luacheck: ignore 311 (not kept alive while the batch is handed out)
    if batch then
      -- The following request starts before the runs are handed out, so the user's work
      -- overlaps the next long-poll and closing the subscription aborts a live request.
      if request.in_background(r.transport) and not r.idle_due then
        local nurl = base .. r.shape:query(r.params)
        started = { url = nurl, pending = request_for(nurl) }
      end
      publish(r, url)
    end
  end
end

return M
