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
-- if not ok and trigger.errors.is(err, "not_found") then print("no such run") end
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

-- Where this library's own files live (the source prefix of this file's folder): a misuse
-- error is reported at the first frame outside it, the caller's line.
local LIBRARY = (debug.getinfo(1, "S").source:match("^(@.*[/\\])errors%.lua$"))

local function caller_level()
  local level = 3 -- 1: caller_level, 2: bad_argument
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return 1 end
    if not (LIBRARY and info.source:sub(1, #LIBRARY) == LIBRARY) then return level - 1 end
    level = level + 1
  end
end

--- Raise a misuse error, `bad argument #n to 'fn' (msg)` (without `#n` when `n` is nil), at
-- the line of the code that called the library, however deep inside it the check was made.
-- @tparam string fn the public function's name
-- @tparam[opt] integer n the argument's position
-- @tparam string msg what is wrong
-- @raise always (a string)
function M.bad_argument(fn, n, msg)
  local which = n and ("#" .. n .. " ") or ""
  error(string.format("bad argument %sto '%s' (%s)", which, fn, msg), caller_level())
end

--- Is this value one of our error objects (of this kind)?
-- @param v any value, e.g. what `pcall` caught
-- @tparam[opt] string kind one of `kinds`: true only for an error of that kind
-- @treturn boolean
-- @raise (a string) when `kind` is given but is not one of `kinds` (a typo would otherwise
--   make every test false)
-- @usage if trigger.errors.is(err, "auth") then print("check the access token") end
function M.is(v, kind)
  if kind ~= nil and not M.kinds[kind] then
    M.bad_argument("is", 2, "unknown error kind '" .. tostring(kind) .. "'")
  end
  return getmetatable(v) == Error and (kind == nil or v.kind == kind)
end

return M
