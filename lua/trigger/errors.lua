--- Error objects raised by subscriptions and returned by calls that can fail.
-- Every error is a table with `kind`, `status` (HTTP status or nil), `message` and `request`
-- (method and URL, never the token), printable with `tostring`.
--
-- Fields of an error object:
--
-- * `kind`: one of `kinds`
-- * `status`: the HTTP status, or nil when there was no response
-- * `message`: what went wrong, with the server's own words when it gave some
-- * `request`: method and URL of the request, or nil
-- * `fatal`: true when the subscription ended because of it (raised by the iteration); false
--   or nil for errors `on_error` sees before a retry, or for warnings
-- * `attempt`: for errors that are retried, the number of this retry (1, 2, …)
--
-- Anything that looks like a credential (a secret key, a bearer token, a JWT) is masked in
-- `message` and `request`.
-- @module trigger.errors
-- @usage
-- local ok, err = pcall(function()
--   for run in trigger.runs.subscribe_to_run("run_1234") do print(run.status) end
-- end)
-- if not ok and trigger.errors.is(err) and err.kind == "not_found" then print("no such run") end
local M = {}

--- The error kinds.
-- `auth` (401, or no access token), `forbidden` (403), `not_found` (404), `bad_request` (400
-- and bad options), `protocol` (a response we cannot make sense of), `network` (connection
-- failures, 5xx, bodies cut short), `rate_limited` (429), `timeout` (no run within the
-- `timeout` option).
-- @table kinds
M.kinds = {
  auth = true, forbidden = true, not_found = true, bad_request = true, protocol = true,
  network = true, rate_limited = true, timeout = true,
}

local Error = {}
Error.__index = Error
Error.__name = "trigger.error"

function Error.__tostring(e)
  local where = e.request and (" (" .. e.request .. ")") or ""
  local status = e.status and (" HTTP " .. e.status) or ""
  return string.format("trigger: %s error%s: %s%s", e.kind, status, e.message, where)
end

-- Anything that looks like a credential is masked before it can reach a message.
local function redact(s)
  if type(s) ~= "string" then return s end
  s = s:gsub("tr_[%w]+_[%w_%-]+", "tr_***")
  s = s:gsub("[Bb]earer%s+[%w%-_%.]+", "Bearer ***")
  s = s:gsub("eyJ[%w%-_]+%.[%w%-_]+%.[%w%-_]*", "***jwt***")
  return s
end
M.redact = redact

--- Make an error object.
-- @tparam string kind one of `kinds`
-- @tparam string message what went wrong
-- @tparam[opt] table extra `status`, `request`, `retry_after`, `fatal`
-- @treturn table the error
-- @raise when `kind` is not one of `kinds`
function M.new(kind, message, extra)
  assert(M.kinds[kind], "unknown error kind " .. tostring(kind))
  local e = setmetatable({ kind = kind, message = redact(message) }, Error)
  if extra then
    e.status = extra.status
    e.request = redact(extra.request)
    e.retry_after = extra.retry_after
    e.fatal = extra.fatal
  end
  return e
end

--- Is this value one of our error objects?
-- @param v any value, e.g. what `pcall` caught
-- @treturn boolean
function M.is(v)
  return getmetatable(v) == Error
end

return M
