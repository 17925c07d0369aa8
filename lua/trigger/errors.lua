--- Error objects raised by subscriptions and returned by calls that can fail.
-- Every error is a table with `kind`, `status` (HTTP status or nil), `message` and `request`
-- (method and URL, never the token), printable with `tostring`.
-- @module trigger.errors
local M = {}

--- The error kinds.
-- `auth` (401), `forbidden` (403), `not_found` (404), `bad_request` (400 and bad options),
-- `protocol` (a response we cannot make sense of), `network` (connection failures, 5xx,
-- bodies cut short), `rate_limited` (429), `timeout`.
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
-- @tparam[opt] table extra `status`, `request`, `retry_after`, `fatal`, `body`
-- @treturn table the error
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
function M.is(v)
  return getmetatable(v) == Error
end

return M
