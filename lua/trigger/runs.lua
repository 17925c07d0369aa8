--- Realtime subscriptions to runs: by tag, one run, one batch.
-- @module trigger.runs
local config = require "trigger.config"
local core = require "trigger.core"
local errors = require "trigger.errors"
local run_object = require "trigger.run_object"
local subscription = require "trigger.subscription"

local M = {}

-- Columns the server always sends.
local UNSKIPPABLE = { id = true, taskIdentifier = true, friendlyId = true, status = true,
  createdAt = true }

local SUBSCRIPTION_OPTIONS = {
  created_at = "string", skip_columns = "table", resume = "table",
  stop_on_completion = "boolean",
}

local function argerror(fn, n, msg)
  error(string.format("bad argument #%d to '%s' (%s)", n, fn, msg), 3)
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

local function list_param(fn, name, v)
  for i, item in ipairs(v) do
    if type(item) ~= "string" or item == "" or item:find(",", 1, true) then
      argerror(fn, 2, string.format("%s[%d] must be a non-empty string without commas", name, i))
    end
  end
  return table.concat(v, ",")
end

local function transport_for()
  if rawget(_G, "ngx") and ngx.socket and ngx.get_phase and ngx.get_phase() ~= "init" then -- luacheck: ignore
    return require "trigger.transport.ngx"
  end
  return require "trigger.transport.curl"
end

local function open(fn, path, params, opts, stop_when)
  if opts ~= nil and type(opts) ~= "table" then argerror(fn, 2, "table expected for options") end
  opts = opts or {}
  config.check(opts, fn, SUBSCRIPTION_OPTIONS)
  local query = params or {}
  if opts.skip_columns then
    local cols = list_param(fn, "skip_columns", opts.skip_columns)
    for _, c in ipairs(opts.skip_columns) do
      if UNSKIPPABLE[c] then argerror(fn, 2, "column '" .. c .. "' cannot be skipped") end
    end
    if cols ~= "" then query.skipColumns = cols end
  end
  local settings, err = config.resolve(opts)
  if not settings then error(err, 3) end
  local sub = subscription.new {
    settings = settings, path = path, params = query, transport = transport_for(),
    stop_when = stop_when, version = require("trigger")._VERSION,
  }
  return sub, nil, nil, sub
end

--- Follow every run that carries a tag (or all of several tags).
-- The iteration never ends by itself: `break` when done (on Lua 5.4 `break` closes the
-- connection at once; elsewhere call `sub:close()`).
-- @tparam string|{string,...} tags one tag, or a list: runs carrying all of them
-- @tparam[opt] table opts `created_at` ("1h", "2d"…: only runs created that recently; the
--   server's default and cap is 24h), `skip_columns` (e.g. `{"payload","output"}`), `resume`,
--   `timeout`, `on_error`, `max_retries`, `access_token`, `base_url`, `ca_file`,
--   `read_timeout`, `connect_timeout`, `retry_base`, `retry_cap`, `max_body`
-- @return a `Subscription` (also its own iterator and closing value)
function M.subscribe_to_tag(tags, opts)
  local fn = "subscribe_to_tag"
  local list
  if type(tags) == "string" then
    list = { tags }
  elseif type(tags) == "table" and #tags > 0 then
    list = tags
  else
    argerror(fn, 1, "tag string or non-empty list of tags expected")
  end
  for i, t in ipairs(list) do
    if type(t) ~= "string" or t == "" or t:find(",", 1, true) then
      argerror(fn, 1, string.format("tag %d must be a non-empty string without commas", i))
    end
  end
  local params = { tags = table.concat(list, ",") }
  if opts and opts.created_at ~= nil then
    if type(opts.created_at) ~= "string" or not is_duration(opts.created_at) then
      argerror(fn, 2, "created_at must be a duration such as \"1h\", \"30m\", \"2d\", \"1w\"")
    end
    params.createdAt = opts.created_at
  end
  return open(fn, "/realtime/v1/runs", params, opts)
end

--- Follow one run. The iteration ends by itself once the run reached a final state
-- (COMPLETED, CANCELED, FAILED, CRASHED, SYSTEM_FAILURE, EXPIRED, TIMED_OUT), unless
-- `opts.stop_on_completion` is false.
-- @tparam string run_id the run's id (`run_…`)
-- @tparam[opt] table opts as for `subscribe_to_tag`, plus `stop_on_completion`
-- @return a `Subscription`
function M.subscribe_to_run(run_id, opts)
  if type(run_id) ~= "string" or run_id == "" then
    argerror("subscribe_to_run", 1, "run id string expected")
  end
  local stop
  if not (opts and opts.stop_on_completion == false) then
    stop = function(run) return run_object.FINAL[run.status] end
  end
  return open("subscribe_to_run", "/realtime/v1/runs/" .. core.url_encode(run_id), nil, opts,
    stop)
end

--- Follow every run of a batch.
-- @tparam string batch_id the batch's id (`batch_…`)
-- @tparam[opt] table opts as for `subscribe_to_tag`
-- @return a `Subscription`
function M.subscribe_to_batch(batch_id, opts)
  if type(batch_id) ~= "string" or batch_id == "" then
    argerror("subscribe_to_batch", 1, "batch id string expected")
  end
  return open("subscribe_to_batch", "/realtime/v1/batches/" .. core.url_encode(batch_id), nil,
    opts)
end

M.errors = errors
return M
