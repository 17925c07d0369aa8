--- The one retry policy: every request the library tries again — a shape request
-- (`trigger.shape.loop`), a stream read (`trigger.streams`), a management call (`trigger.api`),
-- a batch waiting to be sealed (`trigger.tasks`) — gives up, tells and waits the same way:
--
--  * the wait before the n-th retry of a streak: full jitter on
--    `min(retry_cap, retry_base·2^(n−1))` seconds, never below the server's `Retry-After`
--    (`core.backoff_delay`: the shape core's own formula, `tr_backoff_delay`);
--  * past `max_retries` failures in a row the last error ends it (`fatal = true`, "(gave up
--    after n retries)");
--  * each failure goes to `on_error`; without it the first of each streak is written once to
--    stderr (`ngx.log` at WARN inside nginx), so a wrong URL or a server down is never silent.
-- @module trigger.retry
-- @local
local core = require "trigger.core"
local errors = require "trigger.errors"

local M = {}

local backoff_delay = core.backoff_delay

--- The first failure of a streak, once, on stderr (`state.streak_reported` remembers it).
-- @param state the retrying object's state
-- @param err the error
function M.warn_once(state, err)
  if state.streak_reported then return end
  state.streak_reported = true
  local line = "trigger-realtime: " .. errors.describe(err) .. " (retrying; pass on_error to handle"
    .. " failures yourself)"
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.log then
    ngx.log(ngx.WARN, line)
  else
    io.stderr:write(line, "\n")
  end
end

--- Tell of a failure about to be retried: `on_error`, else once per streak on stderr.
function M.tell(settings, state, err)
  if settings.on_error then settings.on_error(err) else M.warn_once(state, err) end
end

--- A streak is over (a request made progress): the next failure is told again.
function M.recovered(state)
  state.streak_reported = false
end

--- The `attempts`-th failure in a row (1 for the first): true when it is past `max` (default
-- `settings.max_retries`), and then `err` says so and is fatal. Sets `err.attempt`.
function M.gave_up(settings, err, attempts, max)
  err.attempt = attempts
  max = max or settings.max_retries
  if max and attempts > max then
    err.message = err.message .. string.format(" (gave up after %d %s)", max,
      max == 1 and "retry" or "retries")
    err.fatal = true
    return true
  end
  return false
end

--- The server's `Retry-After` in seconds (a floor for the wait; capped at 300 s), 0 when it
-- sent none that reads as a number of seconds.
-- @tparam[opt] table headers the answer's headers (lower-case names)
-- @treturn number
function M.retry_after(headers)
  local n = headers and tonumber(headers["retry-after"] or "")
  if n and n >= 0 then return math.min(n, 300) end
  return 0
end

--- Seconds to wait before the retry that follows the `attempts`-th failure in a row.
-- @param settings `retry_base` and `retry_cap`, unless `base` and `cap` are given
-- @tparam integer attempts 1 for the first failure
-- @tparam[opt] number retry_after the server's `Retry-After`, a floor
function M.delay(settings, attempts, retry_after, base, cap)
  return backoff_delay(attempts - 1, base or settings.retry_base, cap or settings.retry_cap,
    retry_after or 0, math.random())
end

return M
