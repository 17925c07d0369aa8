--- Calls of Trigger.dev's management API (trigger a task, batches, run look-ups): one JSON
-- request through the library's one request path (`trigger.transport.request.perform`: blocks the thread,
-- or yields to cqueues or nginx), retried by the SDK's rules (management-api.md §1.5) with the
-- library's one retry policy (`trigger.retry`: full jitter from `retry_base`, doubling up to
-- `retry_cap`; `on_error`, or one warning a streak).
--
-- What is retried: a failed connection, 408, 409, 429 and 5xx, and whatever status carries
-- `x-should-retry: true` (a retrieve right after a trigger: the replica lags); never a status
-- with `x-should-retry: false`, never another 4xx. A 429 waits until `x-ratelimit-reset` (Unix
-- milliseconds) or `Retry-After` (seconds) says. At most `max_retries` retries (default 4:
-- five attempts, as the SDK). A call whose retry could do something twice says so (`retry`):
-- then only what never reached the point of doing anything is retried (429).
-- @module trigger.api
local core = require "trigger.core"
local errors = require "trigger.errors"
local json = require "trigger.json"
local request = require "trigger.transport.request"
local retry_policy = require "trigger.retry"
local clock = require "trigger.clock"

local M = {}

local unpack = table.unpack or unpack -- luacheck: ignore

--- The API version this library reads (status names of §4.3).
M.API_VERSION = "2025-07-16"

--- Retries of a management call when `max_retries` is not set.
M.DEFAULT_RETRIES = 4

--- Longest wait a server may ask for before a retry, in seconds.
M.MAX_SERVER_WAIT = 60

--- A random UUID v4 (the request-idempotency header; the library's own idempotency keys).
-- @treturn string
function M.uuid4()
  local b = { core.random_bytes(16):byte(1, 16) }
  b[7] = b[7] % 16 + 64   -- version 4
  b[9] = b[9] % 64 + 128  -- variant 10
  local hex = string.format(string.rep("%02x", 16), unpack(b))
  return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-" .. hex:sub(13, 16) .. "-"
    .. hex:sub(17, 20) .. "-" .. hex:sub(21)
end

--- SHA-256 of a string, as lower-case hex.
-- @tparam string s
-- @treturn string 64 hex digits
function M.sha256_hex(s)
  return (core.sha256(s):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Wait `seconds` outside a reading coroutine: yields to cqueues or nginx when inside them;
-- otherwise moves the other requests of the thread on (curl's step) while it waits.
local function pause(transport, seconds)
  if not (seconds > 0) then return end -- luacheck: ignore 581 (NaN)
  local cq = request.cqueues_running()
  if cq and cq.sleep then return cq.sleep(seconds) end
  if transport.sleep then return transport.sleep(seconds) end
  local deadline = clock.now() + seconds
  while true do
    local left = deadline - clock.now()
    if left <= 0 then return end
    transport.step(left)
  end
end
M._pause = pause

-- Seconds the server asked to wait (x-ratelimit-reset in Unix ms on a 429, else Retry-After),
-- or 0.
local function server_wait(status, headers)
  if status == 429 then
    local reset = tonumber(headers["x-ratelimit-reset"] or "")
    if reset then
      local w = reset / 1000 - os.time() + math.random()
      if w > 0 then return math.min(w, M.MAX_SERVER_WAIT) end
    end
  end
  local after = tonumber(headers["retry-after"] or "")
  if after and after > 0 then return math.min(after, M.MAX_SERVER_WAIT) end
  return 0
end

-- What a status that is not a success means here: retry (true/false), and the error kind
-- and message. The statuses the realtime side knows keep its kinds (`request.status_verdict`);
-- the management API adds 409 (a lock timed out: retry) and 413/415/422 (refused as sent).
local function verdict(status, headers)
  local action, kind, message = request.status_verdict(status)
  if status == 409 then
    action, kind, message = "retry", "network", "conflict (a lock timed out on the server)"
  elseif status == 413 or status == 415 or status == 422 then
    action, kind, message = "fatal", "bad_request", "the server refused the request"
  end
  local should = headers["x-should-retry"]
  if should == "true" then
    action = "retry"
  elseif should == "false" then
    action = "fatal"
  end
  return action == "retry", kind, message
end

--- Perform one management call.
-- @tparam table settings what `trigger.config.resolve` gave
-- @tparam table spec `method` ("GET", "POST", "PUT"), `url` (absolute) or `path` (under
--   `base_url`), `body` (a string) and `content_type` (default `application/json` when there
--   is a body), `headers` (more "Name: value" lines), `auth` (false: no credential nor API
--   headers, for a presigned URL), `retry` (`"all"`, the default, or `"rate_limit"`: only 429s,
--   for a request a retry could carry out twice; it goes on a fresh connection, which the
--   transport never sends again by itself), `json` (false: the body is not decoded)
-- @return the decoded body (or the raw body with `json = false`), the response headers and
--   the status; or nil and an error object (`trigger.errors`, `fatal = true`)
function M.call(settings, spec)
  local transport = settings.transport or require("trigger.transport").current()
  local method = spec.method or "GET"
  local url = spec.url or (settings.base_url .. spec.path)
  local where = method .. " " .. url
  local headers = {}
  if spec.auth ~= false then
    headers = request.api_headers(settings)
    headers[#headers + 1] = "x-trigger-api-version: " .. M.API_VERSION
    headers[#headers + 1] = "x-trigger-source: sdk"
  end
  if spec.body then
    headers[#headers + 1] = "Content-Type: " .. (spec.content_type or "application/json")
    -- libcurl would wait for a "100 Continue" before a large body; the API never sends one
    if request.in_background(transport) then headers[#headers + 1] = "Expect:" end
  end
  for _, h in ipairs(spec.headers or {}) do headers[#headers + 1] = h end
  local max_retries = settings.max_retries or M.DEFAULT_RETRIES
  local retry_all = spec.retry ~= "rate_limit"
  local state = {} -- the once-per-streak warning (trigger.retry)
  local attempt = 0
  while true do
    attempt = attempt + 1
    local status, rheaders, body = request.perform(transport, {
      url = url, method = method, body = spec.body, headers = headers,
      timeout = settings.read_timeout, connect_timeout = settings.connect_timeout,
      ca_file = settings.ca_file, max_body = spec.max_body or settings.max_body,
      fresh_connect = not retry_all or nil, -- no silent resend by the transport either
    })
    local err, retry
    local wait = 0
    if not status then
      err = request.failure_error(rheaders, where)
      retry = retry_all and not err.fatal
    elseif status >= 200 and status <= 299 then
      if spec.json == false then return body, rheaders, status end
      local doc = json.decode(body)
      if doc == nil then
        return nil, errors.new("protocol", "the answer is not JSON",
          { status = status, request = where, fatal = true })
      end
      return doc, rheaders, status
    else
      local kind, message
      retry, kind, message = verdict(status, rheaders)
      local said = request.server_says(body)
      err = errors.new(kind, said and (message .. ": " .. said) or message,
        { status = status, request = where })
      retry = retry and (retry_all or status == 429)
      wait = server_wait(status, rheaders)
      if wait > 0 then err.retry_after = wait end
    end
    err.attempt = attempt
    if not retry or retry_policy.gave_up(settings, err, attempt, max_retries) then
      err.fatal = true
      return nil, err
    end
    retry_policy.tell(settings, state, err)
    pause(transport, retry_policy.delay(settings, attempt, wait))
  end
end

return M
