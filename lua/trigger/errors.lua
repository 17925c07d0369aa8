--- Error objects raised by subscriptions and returned by calls that can fail.
-- Every error is an `Error` table (its fields are below) with a `__tostring`, e.g.
-- `trigger: forbidden error HTTP 403: the access token does not allow this (GET https://…)`;
-- `is` tells them from other values, and their `kind` from each other.
--
-- Anything that looks like a credential (a secret key, a bearer token, a JWT) is masked in
-- `message` and `request`: no token ever reaches an error, a log line or `tostring(sub)`.
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

--- The error object: what a subscription, a stream or `trigger.auth.create_public_token`
-- raises or returns, what `on_error` is called with, and what `next` returns as its third
-- value while requests are failing. A table of plain fields (and a `__tostring`); `is` tells
-- it from other values.
-- @table Error
-- @field kind string: one of `kinds` (`"auth"`, `"forbidden"`, `"not_found"`,
--   `"bad_request"`, `"protocol"`, `"network"`, `"rate_limited"`, `"timeout"`)
-- @field status integer or nil: the HTTP status, nil when there was no response (a
--   connection failure, a timeout, a missing access token)
-- @field message string: what went wrong, with the server's own words when it gave some
--   (`{"error": …}`), credentials masked
-- @field request string or nil: the method and URL of the request (`GET https://…`),
--   credentials masked; nil when no request was made
-- @field code string or nil: for a request that got no HTTP answer (kind `"network"`), the
--   transport's machine-readable name of the failure, to branch on instead of the message:
--   socket errors as luv names them (`"ECONNREFUSED"`, `"ECONNRESET"`, `"ETIMEDOUT"`, `"EOF"`,
--   `"EAI_NONAME"`: inside nginx), libcurl's CURLcode names (`"CURLE_COULDNT_CONNECT"`,
--   `"CURLE_OPERATION_TIMEDOUT"`, `"CURLE_PEER_FAILED_VERIFICATION"`...), or the library's own
--   (`"body_too_large"`, `"bad_url"`, `"cert_verify"`...); see `trigger.transport`
-- @field fatal boolean or nil: true when the subscription or stream ended because of it (the
--   error the iteration raises: a 401/403/404/400, a protocol error it cannot recover from, a
--   certificate that does not verify, a body over `max_body`, `max_retries` used up); false
--   or nil for an error `on_error` sees before a retry, and false for warnings (a packet or
--   column value that does not decode: the subscription goes on)
-- @field attempt integer or nil: for a failure that is retried, its place in the current
--   streak of failures (1 for the first; the count starts again after a success); with
--   `max_retries = n` the error of attempt n + 1 is raised, `fatal`, its message ending
--   "(gave up after n retries)"
-- @field retry_after number or nil: seconds the server asked to wait, when an error is made
--   with it (`new(kind, message, {retry_after = …})`); the library's own retries read
--   `Retry-After` from the response as the backoff's floor, so the errors they report do not
--   carry it today
-- @field idle boolean or nil: true for a streak of answers that bring nothing (a resync after a
--   resync, a live request answered at once with nothing new, ...: the request budget, see
--   `trigger.shape.loop`), told to `on_error` once per streak, kind `"protocol"`
-- @field run_id string or nil: for a stream that failed for good under `sub:with_streams()`
--   (reported to `on_error`, or once on stderr, and dropped), the run whose stream it was
-- @field stream string or nil: with `run_id`, the key of that stream
-- @field where string or nil: for an error raised to the code that iterates or drives a
--   subscription or stream (`for … in sub`, `next`, `poll`), the script's line that did
--   (`"watch.lua:12"`); `tostring` starts with it, as Lua's own errors do
-- @usage
-- trigger.configure { on_error = function(err)
--   print(err.kind, err.status, err.attempt, err.message)   -- e.g. network nil 3 connection refused
-- end }

local Error = {}
Error.__index = Error
Error.__name = "trigger.error"

-- The error without the "trigger: " prefix and the script line: "auth error HTTP 401: … (GET …)",
-- for a message that quotes it inside one of its own.
local function describe(e)
  local request = e.request and (" (" .. e.request .. ")") or ""
  local status = e.status and (" HTTP " .. e.status) or ""
  return string.format("%s error%s: %s%s", e.kind, status, e.message, request)
end

function Error.__tostring(e)
  return (e.where and (e.where .. ": ") or "") .. "trigger: " .. describe(e)
end

--- The error in words without the library's "trigger: " prefix (nor the script line), for a
-- message that quotes it (`"… (last failure: network error: …)"`); `tostring(v)` for any other
-- value.
-- @param e an error object (or any value)
-- @treturn string
-- @local
function M.describe(e)
  if getmetatable(e) == Error then return describe(e) end
  return tostring(e)
end

-- Values a user or a server gave (a tag, an option name, a URL, a server's message) are quoted
-- in messages at most this long: a 100 KB tag must not make a 100 KB error.
local MAX_VALUE = 200

--- A value cut for a message: at most `max` bytes (default 200) of it, then how long it was.
-- @tparam string s
-- @tparam[opt] integer max
-- @treturn string
-- @local
function M.cut(s, max)
  max = max or MAX_VALUE
  if type(s) ~= "string" or #s <= max then return s end
  return s:sub(1, max) .. "… (" .. #s .. " bytes)"
end

local ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["\0"] = "\\0", ["'"] = "\\'",
  ["\\"] = "\\\\" }

--- A value as a message shows it: a string quoted (`'a b'`, control characters escaped, cut
-- as `cut` does), any other value with its type (`number 2`, `a table`).
-- @param v any value
-- @treturn string
-- @local
function M.quote(v)
  if type(v) == "string" then
    local s = M.cut(v, MAX_VALUE)
    local cut = s ~= v and s:sub(MAX_VALUE + 1) or ""
    s = v:sub(1, math.min(#v, MAX_VALUE)):gsub("[%c'\\\127]", function(c)
      return ESCAPES[c] or string.format("\\%d", c:byte())
    end)
    return "'" .. s .. "'" .. cut
  elseif type(v) == "number" or type(v) == "boolean" then
    return type(v) .. " " .. tostring(v)
  end
  return type(v) == "nil" and "nil" or ("a " .. type(v))
end

--- Mask anything that looks like a credential before it can reach a message.
-- @local
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
-- @tparam[opt] table extra `status`, `request`, `retry_after`, `fatal`, `idle`, `code`
-- @treturn table the error
-- @raise when `kind` is not one of `kinds`
function M.new(kind, message, extra)
  assert(M.kinds[kind], "unknown error kind " .. tostring(kind))
  local e = setmetatable({ kind = kind, message = M.cut(redact(message), 1000) }, Error)
  if extra then
    e.status = extra.status
    e.request = M.cut(redact(extra.request))
    e.retry_after = extra.retry_after
    e.fatal = extra.fatal
    e.idle = extra.idle
    e.code = extra.code
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
-- @local
function M.bad_argument(fn, n, msg)
  local which = n and ("#" .. n .. " ") or ""
  error(string.format("bad argument %sto '%s' (%s)", which, fn, msg), caller_level())
end

--- A copy of an error object (its own, to mark as fatal or place with `raise`: a shared
-- upstream's failure is copied for each subscription it ends).
-- @tparam table e an error object
-- @treturn table
-- @local
function M.copy(e)
  local copy = setmetatable({}, Error)
  for k, v in pairs(e) do copy[k] = v end
  return copy
end

--- Raise an error object at the code that called the library: the first time it is raised,
-- its `where` is set to that line (the first frame outside the library), so that with several
-- subscriptions one can tell which failed (a level given to `error` adds nothing to a table).
-- Raised again (`next` after a fatal error), it is the same object, still naming the line
-- where it first came. Any other value is raised as it is.
-- @param err the error object
-- @raise always
-- @local
function M.raise(err)
  if getmetatable(err) == Error and err.where == nil then
    local level = 2 -- 1: raise
    while true do -- the first Lua frame outside the library (a pcall inside it is skipped)
      local info = debug.getinfo(level, "Sl")
      if not info then break end
      if info.what ~= "C" and not (LIBRARY and info.source:sub(1, #LIBRARY) == LIBRARY) then
        if info.currentline > 0 then err.where = info.short_src .. ":" .. info.currentline end
        break
      end
      level = level + 1
    end
  end
  error(err, 0)
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
    M.bad_argument("is", 2, "unknown error kind " .. M.quote(kind))
  end
  return getmetatable(v) == Error and (kind == nil or v.kind == kind)
end

return M
