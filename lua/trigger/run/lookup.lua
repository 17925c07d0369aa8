--- Looking runs up through the management API (`retrieve`, `cancel`, `list`, `list_page`),
-- and waiting for a run to finish on the realtime feed (`wait`). They are functions of
-- `trigger.runs` (this file is documented as part of it: `trigger.runs.retrieve`, …).
-- @submodule trigger.runs
local api = require "trigger.api"
local clock = require "trigger.clock"
local config = require "trigger.config"
local core = require "trigger.core"
local errors = require "trigger.errors"
local run_object = require "trigger.run.object"

local M = {}

--- Statuses after which a run never changes: the realtime side's final statuses (`EXPIRED`
-- and `TIMED_OUT` included), and the legacy `INTERRUPTED`. Internal: `wait` stops on them
-- (not copied into `trigger.runs`; the statuses are listed at `ApiRun` and `wait`).
-- @local
M.FINAL = { INTERRUPTED = true }
for k in pairs(run_object.FINAL) do M.FINAL[k] = true end

local function runs_mod() return require "trigger.runs" end

local function settings_of(fn, n, opts, own, token)
  if opts ~= nil and type(opts) ~= "table" then
    errors.bad_argument(fn, n, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  config.check(opts, fn, own)
  local s, mine = {}, {}
  for k, v in pairs(opts) do
    if own and own[k] then mine[k] = v else s[k] = v end
  end
  local settings, err = config.resolve(s, token)
  if not settings then error(err, 3) end
  return settings, mine
end

-- A stored packet (payloadPresignedUrl / outputPresignedUrl): fetched once, decoded by its
-- content type, as the realtime side decodes packets.
local function fetch_packet(settings, url, field)
  local body, headers = api.call(settings, { url = url, auth = false, json = false })
  if not body then
    headers.message = "fetching the stored " .. field .. ": " .. headers.message
    return nil, headers
  end
  local ctype = (headers["content-type"] or "application/json"):match("^[^;%s]+")
  local value, warning = run_object.packet(body, ctype)
  if warning then
    return nil, errors.new("protocol", "the stored " .. field .. " " .. warning, { fatal = true })
  end
  return value
end

--- A run as the management API gives it: what `retrieve` returns, and (without `payload`,
-- `output`, `error`, `schedule`, `attemptCount`, `attempts` and `relatedRuns`, with `env` and
-- `taskKind`) each run of `list` and `list_page`. Timestamps are ISO 8601 strings with
-- milliseconds and `Z`; a field marked "or nil" is absent when the run has none.
--
-- **Status names.** Requests carry `x-trigger-api-version: 2025-07-16`, so statuses have the
-- names of the SDK's `RunStatus` (the realtime feed's names): `DELAYED`, `PENDING_VERSION`,
-- `QUEUED`, `DEQUEUED`, `EXECUTING`, `WAITING`, `COMPLETED`, `CANCELED`, `FAILED`, `CRASHED`,
-- `SYSTEM_FAILURE`, `EXPIRED`, `TIMED_OUT`. The booleans the management API adds
-- (`isCompleted`, `isFailed`…) are its own and differ from the realtime run object's (`Run`):
-- an EXPIRED or TIMED_OUT run has every one false here, and CANCELED counts as completed and
-- failed. Decide "finished" from `status` (`COMPLETED`, `CANCELED`, `FAILED`, `CRASHED`,
-- `SYSTEM_FAILURE`, `EXPIRED`, `TIMED_OUT`, and the legacy `INTERRUPTED`), as `wait` does.
-- @table ApiRun
-- @field id string: the run's id (`run_…`; opaque)
-- @field status string: its status (above)
-- @field taskIdentifier string: the task's id
-- @field idempotencyKey string or nil: the user's key when one was given (`retrieve`), else
--   the stored (hashed) key
-- @field version string or nil: the deployed version the run is locked to
-- @field createdAt string: when it was created
-- @field updatedAt string: when it last changed
-- @field startedAt string or nil: when it started
-- @field finishedAt string or nil: when it finished
-- @field expiredAt string or nil: when it expired
-- @field delayedUntil string or nil: until when it is delayed
-- @field ttl string or nil: its time to live (`"10m"`)
-- @field costInCents number: its cost in cents
-- @field baseCostInCents number: its base cost in cents
-- @field durationMs number: its compute time in milliseconds
-- @field isTest boolean: a test run
-- @field depth integer: 0 for a root run, else how deep under its root
-- @field tags {string,...}: its tags, sorted
-- @field isQueued boolean: the management API's flag (see above)
-- @field isExecuting boolean: the management API's flag
-- @field isWaiting boolean: the management API's flag
-- @field isCompleted boolean: the management API's flag (CANCELED included, EXPIRED and
--   TIMED_OUT not)
-- @field isSuccess boolean: the management API's flag
-- @field isFailed boolean: the management API's flag (CANCELED included)
-- @field isCancelled boolean: the management API's flag
-- @field triggerFunction string: `trigger`, `triggerAndWait`, `batchTrigger` or
--   `batchTriggerAndWait`
-- @field batchId string or nil: its batch (`batch_…`)
-- @field metadata table or nil: its metadata (decoded JSON)
-- @field region string or nil: the region it ran in
-- @field payload the input payload, decoded (one kept in object storage is fetched once);
--   `retrieve` only
-- @field output the output, decoded as `payload`; only when the status is COMPLETED;
--   `retrieve` only
-- @field error table or nil: why it failed, `{message, name, stackTrace}`; `retrieve` only
-- @field schedule table or nil: `{id, externalId, deduplicationKey, generator = {type,
--   expression, description}}` for a scheduled run; `retrieve` only
-- @field attemptCount integer: attempts so far; `retrieve` only
-- @field attempts table: always empty (deprecated); `retrieve` only
-- @field relatedRuns table: `{root = run or nil, parent = run or nil, children = {run,...}}`,
--   each run with the fields above up to `region`; `retrieve` only
-- @field env table: `{id, name, user}`, the run's environment; `list` and `list_page` only
-- @field taskKind string: the kind of task (`STANDARD`…); `list` and `list_page` only

--- Retrieve a run as the management API gives it (`GET /api/v3/runs/{id}`): an `ApiRun`. A
-- payload or output kept in object storage is fetched once and decoded, so `payload`/`output`
-- hold values either way. A run not found yet right after its trigger (the server's replica
-- lags: 404 with `x-should-retry: true`) is asked again with the usual backoff.
-- @tparam string|table id the run's id, or its handle (`trigger.tasks.trigger`): its
--   `publicAccessToken` is used when no access token is configured
-- @tparam[opt] table opts the options of `trigger.configure`, for this call
-- @treturn[1] ApiRun the run
-- @treturn[2] nil
-- @treturn[2] table an error object (`not_found`, `auth`, `forbidden`, `network`…)
-- @raise (a string) on a bad argument
-- @usage
-- local run = assert(trigger.runs.retrieve("run_1234"))
-- print(run.status, run.output)
function M.retrieve(id, opts)
  local token
  id, token = runs_mod()._id_of("retrieve", id, "run")
  local settings = settings_of("retrieve", 2, opts, nil, token)
  local run, err = api.call(settings, { path = "/api/v3/runs/" .. core.url_encode(id) })
  if not run then return nil, err end
  if type(run) ~= "table" or type(run.id) ~= "string" or type(run.status) ~= "string" then
    return nil, errors.new("protocol", "the run answer has no id or status",
      { request = "GET " .. settings.base_url .. "/api/v3/runs/" .. id, fatal = true })
  end
  for _, field in ipairs { "payload", "output" } do
    local url = run[field .. "PresignedUrl"]
    if type(url) == "string" and run[field] == nil then
      run[field], err = fetch_packet(settings, url, field)
      if err then return nil, err end
    end
  end
  return run
end

--- Cancel a run (`POST /api/v2/runs/{id}/cancel`). The server answers at once and the status
-- becomes `CANCELED` shortly after; a run that had already finished stays as it was (and this
-- still succeeds). A handle's own token cannot cancel (it only reads): configure a key.
-- @tparam string|table id the run's id, or its handle
-- @tparam[opt] table opts the options of `trigger.configure`, for this call
-- @treturn[1] string the run's id
-- @treturn[2] nil
-- @treturn[2] table an error object (`not_found`, `forbidden`…)
-- @raise (a string) on a bad argument
-- @usage assert(trigger.runs.cancel("run_1234"))
function M.cancel(id, opts)
  local token
  id, token = runs_mod()._id_of("cancel", id, "run")
  local settings = settings_of("cancel", 2, opts, nil, token)
  local doc, err = api.call(settings, { method = "POST", body = "",
    path = "/api/v2/runs/" .. core.url_encode(id) .. "/cancel" })
  if not doc then return nil, err end
  return type(doc) == "table" and type(doc.id) == "string" and doc.id or id
end

-- filter → query parameter, for the comma lists and single values of §5.3.
local LIST_FILTERS = {
  status = "filter[status]", task = "filter[taskIdentifier]", version = "filter[version]",
  tag = "filter[tag]", queue = "filter[queue]", machine = "filter[machine]",
  region = "filter[region]", batch = "filter[batch]", schedule = "filter[schedule]",
  bulk_action = "filter[bulkAction]", error = "filter[error]",
}
local LIST_OPTIONS = { is_test = "boolean", created_at = "any", from = "any", to = "any",
  page_size = "number", after = "string", before = "string" }
for k in pairs(LIST_FILTERS) do LIST_OPTIONS[k] = "any" end

local function time_param(fn, name, v)
  if type(v) == "number" and v == v and v >= 0 then
    return string.format("%d", math.floor(v * 1000)) -- seconds → the wire's milliseconds
  end
  if type(v) == "string" and v:match("^%d%d%d%d%-%d%d%-%d%d") then return v end
  errors.bad_argument(fn, 1, name .. " must be seconds since the epoch or an ISO 8601 date")
end

local function list_query(fn, f)
  local q = {}
  for name, param in pairs(LIST_FILTERS) do
    local v = f[name]
    if v ~= nil then
      local list = type(v) == "table" and v or { v }
      if #list == 0 then errors.bad_argument(fn, 1, name .. " must not be an empty list") end
      for i, item in ipairs(list) do
        if type(item) ~= "string" or item == "" or item:find(",", 1, true) then
          errors.bad_argument(fn, 1, string.format("%s[%d] must be a non-empty string without "
            .. "commas", name, i))
        end
      end
      q[#q + 1] = { param, table.concat(list, ",") }
    end
  end
  if f.is_test ~= nil then q[#q + 1] = { "filter[isTest]", tostring(f.is_test) } end
  if f.created_at ~= nil then
    if type(f.created_at) ~= "string" or not runs_mod()._is_duration(f.created_at) then
      errors.bad_argument(fn, 1, "created_at must be a duration such as \"1h\", \"7d\"")
    end
    q[#q + 1] = { "filter[createdAt][period]", f.created_at }
  end
  if f.from ~= nil then q[#q + 1] = { "filter[createdAt][from]", time_param(fn, "from", f.from) } end
  if f.to ~= nil then q[#q + 1] = { "filter[createdAt][to]", time_param(fn, "to", f.to) } end
  if f.page_size ~= nil then
    local n = f.page_size
    if not (n >= 1 and n <= 100 and n == math.floor(n)) then
      errors.bad_argument(fn, 1, "page_size must be a whole number from 1 to 100")
    end
    q[#q + 1] = { "page[size]", string.format("%d", n) }
  end
  if f.after then q[#q + 1] = { "page[after]", f.after } end
  if f.before then q[#q + 1] = { "page[before]", f.before } end
  table.sort(q, function(a, b) return a[1] < b[1] end)
  return q
end

local function query_string(q)
  local parts = {}
  for i, kv in ipairs(q) do parts[i] = core.url_encode(kv[1]) .. "=" .. core.url_encode(kv[2]) end
  return #parts > 0 and ("?" .. table.concat(parts, "&")) or ""
end

local function page(settings, q, where)
  local doc, err = api.call(settings, { path = "/api/v1/runs" .. query_string(q) })
  if not doc then return nil, err end
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    return nil, errors.new("protocol", "the list answer has no data",
      { request = where, fatal = true })
  end
  local p = type(doc.pagination) == "table" and doc.pagination or {}
  return { data = doc.data, next = p.next, previous = p.previous }
end

--- One page of runs (`GET /api/v1/runs`).
-- @tparam[opt] table filters as for `list`, plus `after` / `before`: a page's `next` /
--   `previous` cursor
-- @treturn[1] table `{data = {run, …}, next = cursor or nil, previous = cursor or nil}`, each
--   run an `ApiRun`
-- @treturn[2] nil
-- @treturn[2] table an error object
-- @raise (a string) on a bad filter
function M.list_page(filters)
  local settings, mine = settings_of("list_page", 1, filters, LIST_OPTIONS)
  return page(settings, list_query("list_page", mine), "GET " .. settings.base_url .. "/api/v1/runs")
end

--- Every run that matches, newest first, page after page (each page asked for when the
-- previous one is used up, by its cursor). The list is eventually consistent: a run triggered
-- a moment ago may not be in it yet. Without a time filter the server looks at the last
-- 7 days.
-- @tparam[opt] table filters the filters (all optional; a list means any of them):
-- @tparam string|{string,...} filters.status statuses (`"COMPLETED"`, `{"FAILED","CRASHED"}`)
-- @tparam string|{string,...} filters.task task ids
-- @tparam string|{string,...} filters.tag tags
-- @tparam string|{string,...} filters.version deployed versions
-- @tparam string|{string,...} filters.queue queues (`task/<id>` for a task's own)
-- @tparam string|{string,...} filters.machine machine presets
-- @tparam string|{string,...} filters.region regions
-- @tparam string filters.batch a batch id
-- @tparam string filters.schedule a schedule id
-- @tparam string filters.bulk_action a bulk action id
-- @tparam string filters.error an error text
-- @tparam boolean filters.is_test test runs only (or none)
-- @tparam string filters.created_at created within this duration (`"1d"`)
-- @param filters.from created at or after: seconds since the epoch or an ISO 8601 date
-- @param filters.to created at or before: as `from`
-- @tparam integer filters.page_size runs per request, 1 to 100 (default 25)
-- @param filters.... and the options of `trigger.configure`, for these requests
-- @treturn function an iterator: each call gives the next run (an `ApiRun`), nil after the last
-- @raise (a string) on a bad filter; the iterator raises an error object when a page cannot
--   be had
-- @usage
-- for run in trigger.runs.list { status = "FAILED", created_at = "1d" } do
--   print(run.id, run.taskIdentifier, run.createdAt)
-- end
function M.list(filters)
  local settings, mine = settings_of("list", 1, filters, LIST_OPTIONS)
  local q = list_query("list", mine)
  local where = "GET " .. settings.base_url .. "/api/v1/runs"
  local current, i, cursor, done = nil, 0, nil, false
  return function()
    while true do
      if current and i < #current.data then
        i = i + 1
        return current.data[i]
      end
      if done then return nil end
      local qq = q
      if cursor then
        qq = {}
        for _, kv in ipairs(q) do
          if kv[1] ~= "page[after]" and kv[1] ~= "page[before]" then qq[#qq + 1] = kv end
        end
        qq[#qq + 1] = { "page[after]", cursor }
      end
      local err
      current, err = page(settings, qq, where)
      if not current then
        done = true
        error(err, 2)
      end
      i = 0
      cursor = current.next
      done = type(cursor) ~= "string" or cursor == ""
    end
  end
end

local WAIT_OPTIONS = { timeout = "number", on_change = "function", skip_columns = "table" }

--- Wait for a run to finish, following it on the realtime feed (`subscribe_to_run`: no
-- polling), and give its final state. Finished means a final status (`COMPLETED`, `CANCELED`,
-- `FAILED`, `CRASHED`, `SYSTEM_FAILURE`, `EXPIRED`, `TIMED_OUT`): judge it by `status` or by
-- the realtime run object's `isSuccess`/`isFailed`/`isCancelled`.
-- @tparam string|table run the run's id, or its handle (`trigger.tasks.trigger`): its
--   `publicAccessToken` is used when no access token is configured
-- @tparam[opt] table opts the options:
-- @tparam number opts.timeout give up after this many seconds (a `timeout` error); default:
--   wait as long as it takes
-- @tparam function opts.on_change `function(run)`, called with each state of the run as it
--   comes (the final one included)
-- @tparam {string,...} opts.skip_columns as for `subscribe_to_run`
-- @param opts.... and the options of `trigger.configure` for this wait
-- @treturn[1] table the run in its final state (a realtime run object, `trigger.runs.Run`)
-- @treturn[2] nil
-- @treturn[2] table an error object (`timeout`, `not_found`, `auth`…)
-- @raise (a string) on a bad argument
-- @usage
-- local run, err = trigger.runs.wait(trigger.tasks.trigger("hello", { name = "Ada" }))
-- if run and run.status == "COMPLETED" then print(run.output) end
function M.wait(run, opts)
  local fn = "wait"
  if opts ~= nil and type(opts) ~= "table" then
    errors.bad_argument(fn, 2, "table expected for options, got " .. type(opts))
  end
  opts = opts or {}
  config.check(opts, fn, WAIT_OPTIONS)
  local timeout = opts.timeout
  if timeout ~= nil and not (timeout >= 0) then -- luacheck: ignore 581 (NaN)
    errors.bad_argument(fn, 2, "timeout must be a non-negative number of seconds")
  end
  local sub_opts = {}
  for k, v in pairs(opts) do
    if k ~= "timeout" and k ~= "on_change" then sub_opts[k] = v end
  end
  local ok, sub = pcall(runs_mod().subscribe_to_run, run, sub_opts)
  if not ok then
    if errors.is(sub) then return nil, sub end
    error(sub, 2)
  end
  local deadline = timeout and clock.now() + timeout
  local last
  local done, result, err = pcall(function()
    while true do
      local left = deadline and math.max(0, deadline - clock.now())
      local r, why, cause = sub:next(left)
      if r then
        last = r
        if opts.on_change then opts.on_change(r) end
        if M.FINAL[r.status] then return r end
      elseif why == "timeout" then
        local id = type(run) == "table" and run.id or run
        return nil, errors.new("timeout", string.format("run %s did not finish within %g s "
          .. "(last status %s)%s", id, timeout, last and last.status or "unknown",
          cause and ("; meanwhile: " .. tostring(cause)) or ""), { fatal = true })
      else
        return last, nil
      end
    end
  end)
  sub:close()
  if not done then
    if errors.is(result) then return nil, result end
    error(result, 0)
  end
  return result, err
end

return M
