--- The default transport: every subscription of a Lua state shares one libcurl multi hub,
-- so one thread drives any number of them through one pollable fd.
-- @module trigger.transport.curl
local curl = require "trigger.curl"
local transport = require "trigger.transport"

local M = {}

local hub -- one per Lua state, made on first use
local steps = 0 -- times the hub's I/O was looked at

local function the_hub()
  if hub == nil then hub = curl.hub() end
  return hub
end

--- Requests run in the background: `start` returns at once, `step` moves them along.
M.background = true

-- CURLcode numbers as their names (the failure's `code`), read once here; whether one is
-- permanent is decided by name (`trigger.transport.failure`). A number not listed is
-- "CURLE_<n>".
local CURLCODE = {
  [1] = "CURLE_UNSUPPORTED_PROTOCOL", [2] = "CURLE_FAILED_INIT", [3] = "CURLE_URL_MALFORMAT",
  [4] = "CURLE_NOT_BUILT_IN", [5] = "CURLE_COULDNT_RESOLVE_PROXY",
  [6] = "CURLE_COULDNT_RESOLVE_HOST", [7] = "CURLE_COULDNT_CONNECT",
  [8] = "CURLE_WEIRD_SERVER_REPLY", [16] = "CURLE_HTTP2", [18] = "CURLE_PARTIAL_FILE",
  [23] = "CURLE_WRITE_ERROR", [26] = "CURLE_READ_ERROR", [27] = "CURLE_OUT_OF_MEMORY",
  [28] = "CURLE_OPERATION_TIMEDOUT", [35] = "CURLE_SSL_CONNECT_ERROR",
  [42] = "CURLE_ABORTED_BY_CALLBACK", [43] = "CURLE_BAD_FUNCTION_ARGUMENT",
  [45] = "CURLE_INTERFACE_FAILED", [47] = "CURLE_TOO_MANY_REDIRECTS", [52] = "CURLE_GOT_NOTHING",
  [55] = "CURLE_SEND_ERROR", [56] = "CURLE_RECV_ERROR", [58] = "CURLE_SSL_CERTPROBLEM",
  [59] = "CURLE_SSL_CIPHER", [60] = "CURLE_PEER_FAILED_VERIFICATION",
  [61] = "CURLE_BAD_CONTENT_ENCODING", [77] = "CURLE_SSL_CACERT_BADFILE",
  [80] = "CURLE_SSL_SHUTDOWN_FAILED", [83] = "CURLE_SSL_ISSUER_ERROR",
  [90] = "CURLE_SSL_PINNEDPUBKEYNOTMATCH", [91] = "CURLE_SSL_INVALIDCERTSTATUS",
  [92] = "CURLE_HTTP2_STREAM", [95] = "CURLE_HTTP3",
}

--- The name of a CURLcode number (`"CURLE_COULDNT_CONNECT"` for 7).
-- @tparam integer n
-- @treturn string
function M.code_name(n)
  return CURLCODE[n] or ("CURLE_" .. tostring(n))
end

--- Start a request in the background; drive it with `step`.
-- @tparam table req see `trigger.transport`
-- @treturn[1] userdata a request: `done()`, `close()`; its answer comes from `result`
-- @treturn[2] nil
-- @treturn[2] table the failure (`trigger.transport.failure`; code `"bad_request"`: the hub
--   cannot make this request)
function M.start(req)
  local r, err = the_hub():request(req)
  if not r then return nil, transport.failure("bad_request", err) end
  return r
end

--- The answer of a finished request.
-- @return status, headers (lower-case names), body; or nil and the failure
--   (`trigger.transport.failure`, its code the CURLcode's name)
function M.result(r)
  local status, headers, body = r:result()
  if status then return status, headers, body end
  return nil, transport.failure(M.code_name(body), headers)
end

--- Perform a request and wait for it (yielding to cqueues inside a cqueues coroutine).
-- @return as `result`
function M.perform(req)
  return require("trigger.transport.request").perform(M, req)
end

--- Perform whatever I/O is ready, waiting at most `seconds`: 0, a negative number or NaN wait
-- not at all (a game loop that overran its tick must not freeze), `math.huge` until something
-- happens.
function M.step(seconds)
  seconds = seconds or 0
  if not (seconds > 0) then seconds = 0 end -- luacheck: ignore 581 (NaN)
  the_hub():step(seconds)
  steps = steps + 1
end

--- How many times `step` ran: a subscription polled after another one's step needs no step
-- of its own (a game tick polling 1,000 subscriptions looks at the network once, not 1,000
-- times).
function M.steps()
  return steps
end

--- The hub's epoll fd: readable whenever `step` has work to do.
function M.pollfd()
  return the_hub():fd()
end

--- Seconds until `step` must run even if the fd stays quiet, or nil.
function M.timeout()
  return the_hub():timeout()
end

--- Number of requests in flight.
function M.active()
  return the_hub():active()
end

--- Counters of this Lua state's hub: `wakeups` (times `step` ran: the host's wake-ups, whoever
-- drove them), `idle_wakeups` (those that brought no request a byte, a head or an end) and
-- `active` (requests in flight). A few idle wake-ups per second of waiting are timers coming
-- due; thousands are a busy wait.
function M.stats()
  local h = the_hub()
  local wakeups, idle = h:counts()
  return { wakeups = wakeups, idle_wakeups = idle, active = h:active() }
end

return M
