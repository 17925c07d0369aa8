--- The transport contract, and which transport this Lua state uses: nginx cosockets inside
-- OpenResty (libcurl is never loaded there), else the libcurl hub.
--
-- Subscriptions, streams, stored packets and token claims all make their requests through a
-- transport. The option `transport` (of `trigger.configure`, the subscribe functions and
-- `trigger.streams.read`) accepts any table that keeps this contract: a test double, or an
-- adapter to another event loop. The library's own transports keep it, and one suite of
-- cases (spec/transport_contract.lua) holds both to it (`make test`, `make test-openresty`).
--
-- A transport is a table (a module) with:
--
--  * `background` (boolean): whether requests run in the background. When true it has
--    `start(req)` → a request handle (or nil, failure), the handle's `done()` (true once the
--    answer is in) and `close()` (abort; idempotent), and `result(handle)` → the answer;
--    `step(seconds)` moves every background request on, waiting at most `seconds` for
--    something to happen (0, less or NaN: not at all); `pollfd()` and `timeout()` for event
--    loops; and `steps()`, how many times `step` ran (so a round of polls looks at the
--    network once). Only a background transport can serve `poll()`, `pollfd()` and
--    `sub:with_streams()`.
--  * When `background` is false it has `perform(req)`, which runs the request in the caller
--    (yielding to its scheduler, as cosockets do) and returns the answer, and optionally
--    `sleep(seconds)` (a backoff that yields too). Fan-out (the `share` option) without
--    background requests is the business of the layer above (`trigger.fanout.upstream`: inside nginx
--    it runs a shared upstream in a timer of its own, `trigger.fanout.ngx_pump`).
--  * A request `req`: `url`, `method` (default GET), `headers` (a list of "Name: value"),
--    `body`, `timeout`, `connect_timeout` (seconds), `ca_file`, `max_body` (bytes),
--    `fresh_connect` (true: never send it again by itself, as on a pooled connection that
--    closed without an answer: a request that must not run twice), and for
--    non-background transports `cancelled` (a function: true once the caller gave up).
--  * An answer: `status, headers, body` (header names in lower case), or `nil, failure` with
--    `failure = {kind = "network", code = string, permanent = boolean, message = string}` (a
--    value of its own, made by `failure`; callers branch on `code` and `permanent`, never on
--    the message). Each transport names its own failures once, in one table (`code`: luv's
--    errno-style names for socket errors, `"ECONNREFUSED"`, `"ETIMEDOUT"`...; libcurl's
--    CURLcode names, `"CURLE_COULDNT_CONNECT"`...; the library's own lower-case names for
--    what no system call says: `"body_too_large"`, `"bad_url"`, `"interrupted"`...), and
--    `permanent` follows from the code (one table, in `failure`): true when no retry can mend
--    it (a certificate that does not verify, a body over `max_body`, a URL that is not one); refused,
--    reset, timed out and cut-short requests are not permanent. A transport of the user's may
--    leave `code` out; `permanent` is then its word. HTTP statuses are never failures
--    here: what they mean is the library's business, not the transport's. A failure's
--    message never holds a token.
--  * Streaming bodies (optional; realtime streams need them, shape bodies use them when
--    there): a background handle may have `head()` → status, headers once the final header
--    section is in (else nil) and `take([max])` → the body bytes that came and were not taken
--    yet, at most `max` of them if given (or nil when there are none; a transport may ignore
--    `max`), the request then also carrying `pause_at` (bytes left untaken before the transfer
--    pauses) and `idle_timeout` (seconds without a byte before it fails), with `timeout = 0`
--    for no overall limit. A non-background transport has `open_stream(req)` → a reader with
--    `head(seconds)`, `read(seconds)` (each: a value, nil and "timeout", or nil and a failure;
--    `read` gives nil alone at the body's end) and `close()`, or nil, failure. Without them a
--    shape body is read whole and `trigger.streams` cannot be used.
-- @module trigger.transport
local M = {}

-- The failure codes no retry can mend (the one decision of `permanent`, for every transport):
-- a URL that is not one or a request that cannot be made, a body over `max_body` (libcurl's
-- `CURLE_WRITE_ERROR`: the hub's write callback refuses only such a body, or a header holding a
-- NUL byte), a certificate that does not verify, a CA file that cannot be read.
local PERMANENT = {
  bad_url = true, bad_request = true, body_too_large = true, cert_verify = true,
  CURLE_UNSUPPORTED_PROTOCOL = true, CURLE_URL_MALFORMAT = true, CURLE_WRITE_ERROR = true,
  CURLE_SSL_CERTPROBLEM = true, CURLE_PEER_FAILED_VERIFICATION = true,
  CURLE_SSL_CACERT_BADFILE = true,
}

--- A failed request, as every transport and the readers above them give it: the one
-- constructor of the value (`permanent` decided by `code`, from one table: `body_too_large`, `bad_url`,
-- `bad_request`, `cert_verify` and libcurl's certificate, CA file, URL and write errors).
-- @tparam string code the machine-readable name
-- @tparam string message what failed, in words (never a token)
-- @treturn table `{kind = "network", code =, permanent =, message =}`
function M.failure(code, message)
  return { kind = "network", code = code, permanent = PERMANENT[code] == true,
    message = message }
end

--- The failure of a read given up because a reader asked for a fresh one (`Upstream:refresh`):
-- never an error, the shape loop reads the shape again (code `"interrupted"`).
-- @treturn table
function M.interrupted()
  return M.failure("interrupted", "asked again afresh")
end

--- Is `failure` the read given up by `interrupted`?
-- @param failure a failure (or nil)
-- @treturn boolean
function M.is_interrupted(failure)
  return type(failure) == "table" and failure.code == "interrupted"
end

--- The transport module for the current host.
function M.current()
  if rawget(_G, "ngx") and ngx.socket then -- luacheck: ignore
    return require "trigger.transport.ngx"
  end
  return require "trigger.transport.curl"
end

return M
