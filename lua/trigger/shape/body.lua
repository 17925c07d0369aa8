--- One response of the shape log, read as it arrives (issue 16): the body of a 200 goes piece
-- by piece into `core.shape_reader`, so it is decoded while the rest is still on the wire and
-- never held whole (only the message still coming); other answers are read whole (they are
-- small: an error's words, a 409's body). The result is what the protocol loop needs:
-- status, headers, the flat message list of `shape_rows.parse` (or the problem that refuses
-- the body) and the tail check of `core.ends_up_to_date`.
--
-- The list is exactly the one `core.shape_messages(body, null, true)` gives for the whole body
-- (rows as blobs: `trigger.shape.rows`), and a refusal the same words, for any split of the body
-- (spec/c/test_shape_reader.c, the fuzz target fuzz/fuzz_shape_reader.c); nothing is applied
-- here, so a bad body still leaves the store as it was.
--
-- Works on every transport: with one that streams (transport.curl: `head()`/`take()` on a
-- started request) the body is read incrementally; otherwise (nginx cosockets, a transport
-- without `take`) the answer is awaited whole as `request.await` does and decoded at once.
-- Runs inside a reading coroutine: yields `"wait"` while bytes are coming.
-- @module trigger.shape.body
local core = require "trigger.core"
local request = require "trigger.transport.request"
local transport_contract = require "trigger.transport"
local null = require("trigger.json").null

local shape_reader = core.shape_reader
local shape_messages = core.shape_messages
local ends_up_to_date = core.ends_up_to_date

local M = {}

--- Up to date: the one place the shape loop's answers are judged by it, for both of
-- Trigger.dev's backends, with no setting. There are two questions:
--
--  * Does the body end up to date (its last message is the control message `up-to-date`)? The
--    native runs feed says up to date there only: every answer of it ends so, and it sends no
--    header. Electric ends a caught-up body so as well. This is what the shape core hears
--    (`shape:response`), what says a page is whole (no page is asked for ahead of it), and
--    what tells the native feed from Electric (up to date in the body without the header).
--    Asked of the bytes before they are decoded (`core.ends_up_to_date`, the streaming
--    reader's `ends_up_to_date()`) and of a decoded list (`up_to_date`): the same rule.
--  * Is a batch of changes complete (an up-to-date boundary: hand out what changed)? Electric
--    says so in the `electric-up-to-date` header (a 204 is a live answer with nothing new: up
--    to date too); either backend with an up-to-date control message in the body.
--
-- @tparam integer status the answer's HTTP status
-- @tparam table headers its headers (lower-case names)
-- @tparam[opt] table list its messages, as `shape_rows.parse` gives them (nil: no body read)
-- @treturn boolean a batch is complete (the boundary)
-- @treturn boolean the body ends up to date
-- @treturn boolean the answer is the native feed's (up to date in the body only); false when
--   the body does not end up to date (nothing is known then)
function M.up_to_date(status, headers, list)
  local n = list and #list or 0
  local body_ends = n >= 3 and list[n - 2] == "up-to-date" and list[n - 1] == false
  local in_body = body_ends
  for i = 1, n - 3, 3 do -- (the last message is looked at above)
    if in_body then break end
    in_body = list[i] == "up-to-date" and list[i + 1] == false
  end
  local header = headers and headers["electric-up-to-date"] ~= nil
  return in_body or header or status == 204, body_ends, body_ends and not header
end

--- Does a whole body (bytes, not decoded yet) end up to date? The first rule of `up_to_date`,
-- asked of the bytes (`core.ends_up_to_date`).
-- @tparam string body
-- @treturn boolean
M.ends_up_to_date = ends_up_to_date

--- Bytes a streaming transfer may hold untaken before it pauses (`pause_at` of `begin`): the
-- reader takes them at every resume, so this only bounds what piles up while nobody reads (a
-- request begun ahead while the previous batch is handed out).
M.PAUSE_AT = 4 * 1024 * 1024

--- Bytes taken from the transfer at a time: a piece is copied into a string and read while it
-- is still in the cache, where a page that came whole while the one before was decoded made a
-- string of megabytes (fresh memory: a third of the native snapshot's time was page faults).
M.TAKE = 64 * 1024

--- `request.begin` for a shape request read by `read`: the same, with `pause_at` set (unless
-- the caller set one) so that a body nobody reads yet waits on the network, not in memory.
-- @param owner the reader's private state (see `trigger.transport.request`)
-- @tparam table req `{url =, headers =}` as for `request.begin`
-- @return the pending request
function M.begin(owner, req)
  if req.pause_at == nil then req.pause_at = M.PAUSE_AT end
  return request.begin(owner, req)
end

local function too_large(max)
  return { failure = transport_contract.failure("body_too_large",
    ("response body larger than the %d-byte limit"):format(max)) }
end

-- The whole answer at once (a transport without streaming, or an answer that was complete
-- before its head was looked at).
local function decoded(status, headers, body)
  if not status then return { failure = headers } end -- (nil, failure)
  local res = { status = status, headers = headers }
  if status == 200 and type(body) == "string" then
    res.list, res.problem = shape_messages(body, null, true) -- rows as blobs: trigger.shape.rows
    res.body_up_to_date = ends_up_to_date(body)
  else
    res.body = body
  end
  return res
end

--- Read the response of a pending request (from `begin` or `request.begin`).
-- @param owner the reader's private state (`transport`, `settings`, `inflight`, ...)
-- @param p the pending request
-- @tparam[opt] table opts `on_complete = function(status, headers, body_up_to_date)`: called
--   once every byte of a 200 is in and before its last messages are decoded (the place to
--   begin the next request early)
-- @treturn table `{status, headers, failure, list, problem, body_up_to_date, body}`:
--   * `failure` (and no `status`): the request failed, as `trigger.transport.failure` says
--     (code `"body_too_large"` for a 200 whose body went past `max_body`: permanent;
--     `"interrupted"` when a reader asked for a fresh read meanwhile);
--   * 200: `list` (as `shape_rows.parse` gives it) or `problem` (the body is refused; `list` nil),
--     `body_up_to_date` (the body's last message is up-to-date: `core.ends_up_to_date`), no `body`;
--   * any other status: `body`, the whole body as a string.
function M.read(owner, p, opts)
  if p.err then return { failure = p.err } end
  local h = p.handle
  if p.req or not (h and h.head and h.take) then -- (nginx: the answer whole, see above)
    return decoded(request.await(owner, p))
  end
  -- A reader asked for a fresh read (`Upstream:refresh` sets owner.interrupt): this request is
  -- given up, as `request.await` gives it up, even when its answer is in.
  local body = request.open_body(owner, p, nil, { take = M.TAKE, watch_head = true,
    stop = function()
      if not owner.interrupt then return nil end
      owner.interrupt = nil
      return transport_contract.interrupted()
    end })
  local status, headers = body.head()
  if not status then return { failure = headers } end
  local max = owner.settings and owner.settings.max_body
  if max and max <= 0 then max = nil end
  local reader = status == 200 and shape_reader(null, true) or nil
  local pieces = not reader and {} or nil
  local total, problem = 0, nil
  local function take(bytes)
    total = total + #bytes
    if max and total > max then return false end
    if reader then
      local ok, why = reader:feed(bytes)
      if not ok then problem = why end
    else
      pieces[#pieces + 1] = bytes
    end
    return true
  end
  while true do
    local bytes, failure = body.read()
    if bytes then
      if not take(bytes) then
        body.close()
        if reader then reader:close() end
        return too_large(max)
      end
      if problem then -- refused: the rest of the body cannot mend it
        body.close()
        reader:close()
        return { status = status, headers = headers, problem = problem }
      end
    elseif failure then
      if reader then reader:close() end
      return { failure = failure }
    else
      break
    end
  end
  if not reader then
    return { status = status, headers = headers, body = table.concat(pieces) }
  end
  if problem then
    reader:close()
    return { status = status, headers = headers, problem = problem }
  end
  local body_up_to_date = reader:ends_up_to_date()
  if opts and opts.on_complete then opts.on_complete(status, headers, body_up_to_date) end
  local list, why = reader:finish()
  return { status = status, headers = headers, list = list, problem = why,
    body_up_to_date = body_up_to_date }
end

return M
