--- Realtime subscriptions to runs: by tag, one run, one batch.
-- Each returns a `Subscription` that hands out run objects (`Run`): first every matching run as
-- it is now, then each run again whenever its state changed, each distinct state once, each
-- time as a fresh table.
--
-- **Both of Trigger.dev's realtime backends, with no setting.** Trigger.dev answers these
-- routes from the Electric shape log or from its native runs feed (a state poller dressed as a
-- shape), chosen per organisation on its side; no request header selects it and it can change
-- under a live connection. The client works on both as they are: it reads "up to date" from
-- the body's last control message as well as from the header, asks for a page ahead only while
-- a body does not end up to date, asks again after a failed live poll with a non-live request on
-- the same handle (the native feed marks rows as sent before its answer leaves, so repeating
-- the live request would lose them), never hands out a row older (by `updatedAt`) than one it
-- already handed out (a lagging replica), and takes a 409 after a flip as a resync that hands
-- out only what changed.
--
-- **Fan-out.** Subscriptions of one Lua state with the same path, filter (tags, `created_at`,
-- `skip_columns`), credentials and request settings (`base_url`, `ca_file`, the timeouts,
-- `retry_base`, `retry_cap`, `max_retries`, `max_body`, the transport) share one upstream
-- shape: one request in flight and the rows stored once. Each keeps its own delivery: the runs
-- it was given and its `position()`, its own `resume`, `timeout`, `on_error` (a shared
-- upstream's failures go to every consumer's `on_error`; the default warning is written once
-- per streak) and stop condition. A late one first gets every run as it is now, then the
-- changes, exactly what it would get alone; `close()` or `break` of one leaves the others
-- running; the upstream closes with its last consumer. `share = false` gives a subscription an
-- upstream of its own. Inside nginx the subscriptions of a worker share an upstream read by an
-- `ngx.timer`, and with `lua_shared_dict trigger_realtime` one worker reads for all of them
-- (docs/fan-out.md).
--
-- **Look-ups.** `retrieve`, `cancel`, `list` and `list_page` ask the management API for runs
-- as it keeps them (an `ApiRun`: its own field set and status flags), and `wait` follows one run
-- to its end on the realtime feed. `retrieve`, `cancel` and `wait` take a run's id or its handle
-- (`trigger.tasks.trigger`).
-- @module trigger.runs
local config = require "trigger.config"
local core = require "trigger.core"
local errors = require "trigger.errors"
local run_object = require "trigger.run.object"
local subscription = require "trigger.subscription"
local transport = require "trigger.transport"

local M = {}

-- Columns the server always sends.
local UNSKIPPABLE = { id = true, taskIdentifier = true, friendlyId = true, status = true,
  createdAt = true }

-- The TaskRun columns of the realtime shape (the raw row, before the run object's renames;
-- the one list is csrc/lrunfields.c's): a name outside it is a typo the server would silently
-- ignore.
local COLUMNS = core.run_columns

-- Options per call, beyond those of `trigger.configure`.
local OPTIONS = {
  subscribe_to_tag = { created_at = "string", skip_columns = "table", resume = "table" },
  subscribe_to_runs_with_tag = { created_at = "string", skip_columns = "table", resume = "table" },
  subscribe_to_run = { skip_columns = "table", resume = "table", stop_on_completion = "boolean" },
  subscribe_to_batch = { skip_columns = "table", resume = "table" },
}
-- Options that exist, but for another call: refused with a message saying where they apply.
local ELSEWHERE = {
  created_at = "subscribe_to_tag only (runs created within a duration)",
  stop_on_completion = "subscribe_to_run only (a tag or batch subscription never ends by itself)",
}

local function argerror(fn, n, msg)
  errors.bad_argument(fn, n, msg)
end

local function is_duration(s)
  if s == "" then return false end
  local rest = s
  while rest ~= "" do
    local _, e = rest:find("^%d+[wdhms]r?")
    if not e then return false end
    local unit = rest:sub(1, e):match("%a+$")
    if unit ~= "w" and unit ~= "d" and unit ~= "hr" and unit ~= "h" and unit ~= "m"
        and unit ~= "s" then
      return false
    end
    rest = rest:sub(e + 1)
  end
  return true
end
M._is_duration = is_duration

-- A run's tag is at most this long (the trigger API refuses longer ones): a longer tag matches
-- no run, and a megabyte of it would make a URL no server takes.
local MAX_TAG = 128

-- A list of names sent comma-separated: each must be a non-empty string without commas.
-- `label` formats an item's place in the argument error (e.g. "tag %d"). Tags are checked as
-- the server checks them (since its 2026-07-21 security release: no control character, DEL,
-- `\` or `"`, else a 400 "Query Error"), and for the length a run's tag can have.
local function list_param(fn, n, label, v, tags)
  for i, item in ipairs(v) do
    local why
    if type(item) ~= "string" or item == "" or item:find(",", 1, true) then
      why = "must be a non-empty string without commas"
    elseif tags and item:find('[%c\127\\"]') then
      why = "must not contain control characters, backslashes or double quotes"
    elseif tags and #item > MAX_TAG then
      why = "is longer than a run's tag can be (" .. MAX_TAG .. " characters)"
    end
    if why then
      argerror(fn, n, string.format(label, i) .. " " .. why .. ", got " .. errors.quote(item))
    end
  end
  return table.concat(v, ",")
end

-- A saved position is what `Subscription:position` returned (possibly through cjson):
-- `rows` a table of rows (tables), `handle`/`offset`/`cursor`/`schema` absent or strings, and
-- nothing else. The shape core checks the values themselves when it restores them.
local POSITION_FIELDS = { handle = true, offset = true, cursor = true, schema = true }
local function check_position(fn, pos)
  local function refuse(why)
    argerror(fn, 2, "opts.resume is not a position (" .. why .. "): pass what sub:position() "
      .. "returned")
  end
  if type(pos.rows) ~= "table" then refuse("no rows table") end
  for k, v in pairs(pos) do
    if POSITION_FIELDS[k] then
      if type(v) ~= "string" then refuse(errors.quote(k) .. " is not a string") end
    elseif k ~= "rows" then
      refuse("unexpected field " .. errors.quote(k))
    end
  end
  for key, row in pairs(pos.rows) do
    if type(key) ~= "string" or type(row) ~= "table" then refuse("rows must map keys to rows") end
  end
end

-- A run or batch handle (what `trigger.tasks` returns) in place of an id: -> id, its token.
local function id_of(fn, v, what)
  if type(v) == "table" then
    if type(v.id) ~= "string" or v.id == "" then
      argerror(fn, 1, what .. " handle without an id")
    end
    local token = v.publicAccessToken
    return v.id, type(token) == "string" and token ~= "" and token or nil
  end
  if type(v) ~= "string" or v == "" then argerror(fn, 1, what .. " id string or handle expected") end
  return v, nil
end
M._id_of = id_of

local function open(fn, path, params, opts, stop_when, handle_token)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(fn, 2, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  config.check(opts, fn, OPTIONS[fn], ELSEWHERE)
  local query = params or {}
  if opts.skip_columns then
    local cols = list_param(fn, 2, "skip_columns[%d]", opts.skip_columns)
    for _, c in ipairs(opts.skip_columns) do
      if UNSKIPPABLE[c] then argerror(fn, 2, "column '" .. c .. "' cannot be skipped") end
      if not COLUMNS[c] then
        local hint = config.suggest(c, COLUMNS)
        argerror(fn, 2, "skip_columns: " .. errors.quote(c) .. " is not a column of a run"
          .. (hint and ("; did you mean '" .. hint .. "'?") or ""))
      end
    end
    if cols ~= "" then query.skipColumns = cols end
  end
  if opts.resume then check_position(fn, opts.resume) end
  local settings, err = config.resolve(opts, handle_token)
  if not settings then errors.raise(err) end
  -- The position is read once, when the subscription begins: kept among the settings (for
  -- as long as the subscription lives) it would hold a second copy of every run it names.
  settings.resume = nil
  local sub = subscription.new {
    settings = settings, path = path, params = query, resume = opts and opts.resume,
    transport = settings.transport or transport.current(),
    stop_when = stop_when, version = require("trigger")._VERSION,
  }
  return sub, nil, nil, sub
end

-- subscribe_to_tag and its alias: `fn` is the name misuse errors give.
local function subscribe_tag(fn, tags, opts)
  if opts ~= nil and type(opts) ~= "table" then
    argerror(fn, 2, "table expected for options, got " .. type(opts))
  end
  local list
  if type(tags) == "string" then
    list = { tags }
  elseif type(tags) == "table" and #tags > 0 then
    list = tags
  else
    argerror(fn, 1, "tag string or non-empty list of tags expected")
  end
  local params = { tags = list_param(fn, 1, "tag %d", list, true) }
  if opts and opts.created_at ~= nil then
    if type(opts.created_at) ~= "string" or not is_duration(opts.created_at) then
      argerror(fn, 2, "created_at must be a duration such as \"1h\", \"30m\", \"2d\", \"1w\"")
    end
    params.createdAt = opts.created_at
  end
  return open(fn, "/realtime/v1/runs", params, opts)
end

--- Follow every run that carries a tag (or all of several tags).
-- The iteration never ends by itself: `break` when done (on Lua 5.4 `break` closes the
-- connection at once; elsewhere call `sub:close()`).
--
-- First comes every matching run as it is now, then each run again whenever it has changed
-- (changes that arrive in the same batch are merged: the run is handed out once, as it is
-- after all of them), each time as a fresh table.
-- @tparam string|{string,...} tags one tag, or a list: runs carrying all of them
-- @tparam[opt] table opts the options:
-- @tparam[opt] string opts.created_at only runs created within this duration: a number and a
--   unit `w`, `d`, `h` (or `hr`), `m`, `s`, or several of them (`"1h30m"`); the server's
--   default and cap is 24 hours
-- @tparam[opt] {string,...} opts.skip_columns columns the server should leave out, e.g.
--   `{"payload", "output"}` (`id`, `taskIdentifier`, `friendlyId`, `status` and `createdAt`
--   cannot be skipped)
-- @tparam[opt] table opts.resume what `Subscription:position` returned earlier: only what
--   changed since is handed out
-- @param[opt] opts.... and every option of `trigger.configure` (`access_token`,
--   `base_url`, `timeout`, `on_error`, `max_retries`…) for this subscription alone
-- @treturn Subscription the subscription, which is also its own iterator and the generic
--   for's closing value (the call returns `sub, nil, nil, sub`)
-- @raise (a string) when an argument is of the wrong type or malformed (an empty tag, a tag
--   with a comma, an unknown option or one of another call, a number option out of range, a
--   bad `created_at`, a column that is not one or cannot be skipped, a `resume` that is not a
--   position), at the caller's line; an error object (`trigger.errors`): `auth` when no
--   access token is set, `bad_request` when `base_url` is not a URL or `opts.resume` cannot
--   be restored.
--   Errors met while following are raised by the iteration: see `Subscription:next`.
-- @usage
-- for run in trigger.runs.subscribe_to_tag("user:1234", { created_at = "1h" }) do
--   print(run.id, run.status)
--   if run.isCompleted then break end
-- end
function M.subscribe_to_tag(tags, opts)
  return subscribe_tag("subscribe_to_tag", tags, opts)
end

--- Follow one run. The iteration ends by itself once the run reached a final state
-- (`COMPLETED`, `CANCELED`, `FAILED`, `CRASHED`, `SYSTEM_FAILURE`, `EXPIRED`, `TIMED_OUT`),
-- unless `opts.stop_on_completion` is false.
-- @tparam string|table run_id the run's id (`run_…`), or the handle `trigger.tasks.trigger`
--   returned: its `publicAccessToken` is used when no access token is configured
-- @tparam[opt] table opts as for `subscribe_to_tag` (but `created_at`, refused here), plus:
-- @tparam[opt=true] boolean opts.stop_on_completion end the iteration after handing out the
--   run in a final state
-- @treturn Subscription the subscription (its own iterator and closing value)
-- @raise as `subscribe_to_tag` does; an unknown run id ends in a `not_found` error object,
--   raised by the iteration
-- @usage
-- for run in trigger.runs.subscribe_to_run("run_1234") do print(run.status) end
function M.subscribe_to_run(run_id, opts)
  local token
  run_id, token = id_of("subscribe_to_run", run_id, "run")
  local stop
  if not (opts and opts.stop_on_completion == false) then
    stop = function(run) return run_object.FINAL[run.status] end
  end
  return open("subscribe_to_run", "/realtime/v1/runs/" .. core.url_encode(run_id), nil, opts,
    stop, token)
end

--- Follow every run of a batch. Like `subscribe_to_tag`, the iteration never ends by itself.
-- @tparam string|table batch_id the batch's id (`batch_…`), or the handle
--   `trigger.tasks.batch_trigger` returned: its `publicAccessToken` is used when no access
--   token is configured
-- @tparam[opt] table opts as for `subscribe_to_tag` (but `created_at`)
-- @treturn Subscription the subscription (its own iterator and closing value)
-- @raise as `subscribe_to_tag` does
-- @usage
-- local sub = trigger.runs.subscribe_to_batch("batch_1234")
-- local run, why = sub:next(5)   -- a run, or nil, "timeout"
-- sub:close()
function M.subscribe_to_batch(batch_id, opts)
  local token
  batch_id, token = id_of("subscribe_to_batch", batch_id, "batch")
  return open("subscribe_to_batch", "/realtime/v1/batches/" .. core.url_encode(batch_id), nil,
    opts, nil, token)
end

--- `subscribe_to_tag` under the name the TypeScript SDK gives it (`runs.subscribeToRunsWithTag`).
-- @function subscribe_to_runs_with_tag
-- @tparam string|{string,...} tags one tag, or a list: runs carrying all of them
-- @tparam[opt] table opts as for `subscribe_to_tag`
-- @treturn Subscription the subscription
-- @usage for run in trigger.runs.subscribe_to_runs_with_tag("user:1234") do print(run.id) end
function M.subscribe_to_runs_with_tag(tags, opts)
  return subscribe_tag("subscribe_to_runs_with_tag", tags, opts) -- errors name this function
end

--- The run object: what a subscription hands out for each state of a run, a fresh table per
-- change that the library never touches again. The fields and their names are the TypeScript
-- SDK's documented ones (`runs.subscribeToRunsWithTag`), made from the run's row of the
-- realtime shape (row column names in brackets where they differ). Optional fields that are
-- NULL or absent (a column left out by `skip_columns`) are nil; JSON `null` inside a decoded
-- packet is `cjson.null`. Timestamps are ISO-8601 UTC strings with milliseconds
-- (`"2025-01-10T12:00:00.123Z"`, whatever form the server sent; a value that does not parse is
-- kept as the server's text, with a warning to `on_error`).
-- @table Run
-- @field id string: the run's id, `run_…` (friendlyId)
-- @field taskIdentifier string: the task's id
-- @field status string: `QUEUED`, `PENDING_VERSION`, `DELAYED`, `DEQUEUED`, `EXECUTING`,
--   `WAITING`, `COMPLETED`, `CANCELED`, `FAILED`, `CRASHED`, `SYSTEM_FAILURE`, `EXPIRED` or
--   `TIMED_OUT`, mapped from the database's status as the SDK maps it (`PENDING`→`QUEUED`,
--   `WAITING_FOR_DEPLOY`→`PENDING_VERSION`, `PAUSED` and `WAITING_TO_RESUME`→`WAITING`,
--   `RETRYING_AFTER_FAILURE`→`EXECUTING`, `COMPLETED_SUCCESSFULLY`→`COMPLETED`, `INTERRUPTED`
--   and `COMPLETED_WITH_ERRORS`→`FAILED`; an unknown one→`QUEUED`)
-- @field payload any: the input payload, decoded by its packet type (payloadType):
--   `application/json`; `application/super+json` (Date, bigint, undefined, NaN/±Infinity, Set,
--   Map restored); `text/plain` and unknown types as the raw string; `application/store`
--   fetched through its presigned URL (cached per packet). A packet that does not decode is
--   kept as its raw text, with a warning to `on_error`
-- @field output any: the output, decoded as `payload` is (outputType); nil until there is one
-- @field metadata any: the metadata, decoded as `payload` is; only when metadataType is set
-- @field createdAt string: when the run was created
-- @field updatedAt string: when the run last changed
-- @field startedAt string or nil: when it started
-- @field queuedAt string or nil: when it was queued
-- @field expiredAt string or nil: when it expired
-- @field finishedAt string or nil: when it finished (completedAt)
-- @field delayedUntil string or nil: until when it is delayed (delayUntil)
-- @field number integer: the run's sequential number (the SDK drops it; kept here)
-- @field durationMs number: its duration in milliseconds (usageDurationMs; 0 when NULL)
-- @field costInCents number: its total cost in cents (0 when NULL)
-- @field baseCostInCents number: its base cost in cents (0 when NULL)
-- @field tags {string,...}: its tags (runTags; `{}` when NULL), marked as a JSON array so
--   `trigger.json.encode` writes an empty one as `[]`
-- @field realtimeStreams {string,...}: the keys of its realtime streams (`{}` when none; a
--   marked array as `tags`); `sub:with_streams()` opens one stream per key
-- @field isTest boolean: whether it is a test run (false when NULL)
-- @field ttl string or nil: its time-to-live, such as `"10m"` (the SDK drops it; kept here)
-- @field idempotencyKey string or nil: the key that made it idempotent
-- @field error table or nil: why it failed, as the SDK's SerializedError: `{name, message,
--   stackTrace}` for a `BUILT_IN_ERROR`, `{message}` for a `STRING_ERROR` or `CUSTOM_ERROR`
--   (the raw text), `{message = "trigger.dev internal error (CODE)"}` for an `INTERNAL_ERROR`
-- @field isQueued boolean: status is QUEUED, PENDING_VERSION or DELAYED
-- @field isExecuting boolean: status is DEQUEUED or EXECUTING
-- @field isWaiting boolean: status is WAITING
-- @field isCompleted boolean: `isSuccess` or `isFailed` (a CANCELED run is `isCancelled`,
--   not `isCompleted`: test both to stop at any final state)
-- @field isSuccess boolean: status is COMPLETED
-- @field isFailed boolean: status is `FAILED`, `CRASHED`, `SYSTEM_FAILURE`, `EXPIRED` or
--   `TIMED_OUT`
-- @field isCancelled boolean: status is CANCELED
-- @usage
-- for run in trigger.runs.subscribe_to_tag("user:1234") do
--   print(run.id, run.taskIdentifier, run.status, run.updatedAt, run.output)
--   if run.isCompleted or run.isCancelled then break end
-- end

-- Run look-ups of the management API: retrieve, cancel, list, list_page, wait
-- (`trigger.run.lookup`, documented there).
for k, v in pairs(require "trigger.run.lookup") do
  if type(v) == "function" and k:sub(1, 1) ~= "_" then M[k] = v end
end

--- The same table as `trigger.errors`.
-- @local
M.errors = errors
return M
