--- The transport contract, and which transport this Lua state uses: nginx cosockets inside
-- OpenResty (libcurl is never loaded there), else the libcurl hub.
--
-- A transport is a table (a module) with:
--
--  * `background` (boolean): whether requests run in the background. When true it has
--    `start(req)` → request handle (or nil, failure), the handle's `done()` and `close()`,
--    and `result(handle)` → the answer; `step(seconds)` moves every background request on
--    (waiting at most `seconds`;
--    0, less or NaN: not at all), `pollfd()`
--    and `timeout()` for event loops, and `steps()` (how many times `step` ran).
--    When false it has `perform(req)`, which runs the request in the caller (yielding to its
--    scheduler, as cosockets do) and returns the answer, and optionally `sleep(seconds)`.
--  * A request `req`: `url`, `method` (default GET), `headers` (a list of "Name: value"),
--    `body`, `timeout`, `connect_timeout` (seconds), `ca_file`, `max_body` (bytes), and for
--    non-background transports `cancelled` (a function: true once the caller gave up).
--  * An answer: `status, headers, body` (header names in lower case), or `nil, failure` with
--    `failure = {kind = "network", permanent = boolean, message = string}`. Each transport
--    classifies its own failures: `permanent` is true when no retry can mend it (a certificate
--    that does not verify, a body over `max_body`, a URL that is not one). HTTP statuses are
--    never failures here: what they mean is `trigger.request`'s business.
--
-- The option `transport` of the subscribe functions accepts any table that keeps this
-- contract (a test double, or an adapter to another event loop).
-- @module trigger.transport
local M = {}

--- The transport module for the current host.
function M.current()
  if rawget(_G, "ngx") and ngx.socket then -- luacheck: ignore
    return require "trigger.transport.ngx"
  end
  return require "trigger.transport.curl"
end

return M
