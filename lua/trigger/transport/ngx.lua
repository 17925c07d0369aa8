--- The OpenResty transport: HTTP/1.1 over `ngx.socket.tcp` cosockets, parsed by the C
-- HTTP/1.1 parser of `trigger.core`. Same interface as `trigger.transport.curl`, but every
-- wait (connect, TLS handshake, send, receive, sleep) yields to nginx by itself, so a
-- subscription never blocks the worker. libcurl is never loaded here.
--
-- Works wherever cosockets do: `rewrite_by_lua*`, `access_by_lua*`, `content_by_lua*`,
-- `ngx.timer.at` callbacks, `ssl_certificate_by_lua*`… (not in `init_by_lua*`,
-- `init_worker_by_lua*`, `set_by_lua*`, header/body filters or `log_by_lua*`).
--
-- nginx configuration this transport relies on:
--
--  * TLS verification is always on. The CA bundle comes from nginx, not from the request:
--    `lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;` (the per-request
--    `ca_file` option of the library cannot be honoured by cosockets: put that file there),
--    and `lua_ssl_verify_depth 5;` (ngx_lua's default depth of 1 rejects most real chains).
--  * Host names are resolved by nginx: `resolver 1.1.1.1 ipv6=off;` (or your DNS server).
--    IP literals need no resolver.
--  * Connections are kept in the worker's cosocket pool (`setkeepalive`) and reused by
--    later requests to the same scheme, host and port.
--  * `lua_socket_log_errors off;` keeps a waiting subscription out of error.log. While a
--    long-poll is held (20 s on Trigger.dev), the read wakes every `cancel_check_s` to see
--    whether the subscription was closed from another light thread, and ngx_lua logs each such
--    read timeout as "lua tcp socket read timed out" at error level: one line per second per
--    subscription. Nothing else can wake the read: another light thread's `close()` of the
--    socket gets "socket busy reading", and a light thread of its own to do the read (killed
--    to give up) crashes nginx (ngx_lua 0.10.23) when spawned from a coroutine, as the library
--    reads in one, and the request then ends with `ngx.exit` from `ngx.on_abort`. Real failures
--    still reach you: the library hands them to `on_error` (the example logs them).
--
-- @module trigger.transport.ngx
local core = require "trigger.core"
local transport = require "trigger.transport"

local ngx = ngx -- luacheck: ignore

local M = {}

--- Idle connections kept per scheme/host/port in each worker.
M.pool_size = 32
--- Milliseconds an idle pooled connection is kept.
M.keepalive_ms = 60 * 1000
--- Most bytes read per receive.
M.receive_size = 64 * 1024
--- Seconds between two looks, while a response is awaited, at whether the request was given
-- up (`req.cancelled()`): a subscription closed from another light thread cannot interrupt a
-- cosocket read in progress, so the read wakes up this often to ask. Each wake-up is a read
-- timeout, which ngx_lua logs at error level unless `lua_socket_log_errors off` (see above).
M.cancel_check_s = 1

-- Phases where ngx_lua disables cosockets (and ngx.sleep).
local NO_COSOCKETS = { init = true, init_worker = true, set = true, header_filter = true,
  body_filter = true, log = true, exit_worker = true }

-- The requests in flight in this worker, one entry each (`sock`: its connected cosocket). The
-- light thread running a request can be killed and never come back to say it is done (ngx.exit
-- from ngx.on_abort when a browser leaves, a client abort, ngx.thread.kill): ngx_lua then closes
-- its cosocket, which `active()` notices; and its entry, held only by the dead thread, also goes
-- with the next garbage collection (killed before it had a connection).
local inflight = setmetatable({}, { __mode = "k" })
local told_ca_file = false
local stats = { requests = 0, connects = 0, reused = 0, retried = 0, wakeups = 0, idle_wakeups = 0 }

--- Requests run inside `perform`, in the caller's light thread: there is no `start`.
M.background = false

-- Subscriptions of a worker asking for the same runs share one upstream all the same: the
-- fan-out layer above (`trigger.fanout.upstream`) runs its loop in an `ngx.timer` of its own (the pump,
-- `trigger.fanout.ngx_pump`). This transport knows nothing of it.

-- ngx_lua's cosocket error strings (of connect, sslhandshake, send, receive) as failure codes:
-- the one place they are read. The first pattern found in the string names it; whether the
-- failure is permanent follows from the code (`trigger.transport.failure`): a certificate
-- that does not verify ("certificate host mismatch", "18: self signed certificate"...) is.
local SOCKET_ERRORS = {
  { "^timeout", "ETIMEDOUT" },
  { "^closed", "EOF" },
  { "connection refused", "ECONNREFUSED" },
  { "connection reset", "ECONNRESET" },
  { "could not be resolved", "EAI_NONAME" },
  { "no resolver defined", "EAI_NONAME" },
  { "host is unreachable", "EHOSTUNREACH" },
  { "no route to host", "EHOSTUNREACH" },
  { "network is unreachable", "ENETUNREACH" },
  { "certificate", "cert_verify" },
  { "handshake failed", "tls_handshake" },
  { "busy", "EBUSY" },
  { "no memory", "ENOMEM" },
}

--- The failure code of one of ngx_lua's cosocket error strings (`"ECONNREFUSED"` for
-- "connection refused"; `"socket_error"` for one not known).
-- @tparam string err
-- @treturn string
function M.code_of(err)
  err = tostring(err):lower()
  for _, known in ipairs(SOCKET_ERRORS) do
    if err:find(known[1]) then return known[2] end
  end
  return "socket_error"
end

local failure = transport.failure

-- The failure of a cosocket call that said `err`, described by `what` (words before it).
local function socket_failure(what, err)
  return failure(M.code_of(err), what .. tostring(err))
end

local function now()
  ngx.update_time()
  return ngx.now()
end

local function ms(seconds)
  return math.max(1, math.floor(seconds * 1000 + 0.5))
end

-- scheme, host (IPv6 literal in brackets), port, request target, Host header value
local function parse_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute http(s) URL: " .. url end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "unsupported URL scheme '" .. scheme .. "' in " .. url
  end
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  if authority:find("@", 1, true) then return nil, "credentials in URLs are not supported" end
  if target == "" then
    target = "/"
  elseif target:sub(1, 1) == "?" then
    target = "/" .. target
  end
  if target:find("[%s%c]") then return nil, "spaces or control characters in URL " .. url end
  local host, port = authority:match("^(%[[%x:.]+%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:%[%]]+):?(%d*)$") end
  if not host or host == "" then return nil, "no host in URL " .. url end
  local default_port = scheme == "https" and 443 or 80
  local n = port ~= "" and tonumber(port) or default_port
  if n < 1 or n > 65535 then return nil, "bad port in URL " .. url end
  local host_header = n == default_port and host or (host .. ":" .. n)
  return { scheme = scheme, host = host, port = n, target = target, host_header = host_header }
end
M._parse_url = parse_url

local function has_header(headers, name)
  local prefix = name:lower() .. ":"
  for _, h in ipairs(headers) do
    if h:sub(1, #prefix):lower() == prefix then return true end
  end
  return false
end

local function build_request(req, u)
  local method = req.method or (req.body and "POST" or "GET")
  if not method:match("^%u+$") then return nil, "bad HTTP method " .. tostring(method) end
  local headers = req.headers or {}
  local out = { method, " ", u.target, " HTTP/1.1\r\nHost: ", u.host_header, "\r\n" }
  for i, h in ipairs(headers) do
    if type(h) ~= "string" or not h:match("^[%w!#$%%&'*+.^_`|~-]+:") or h:find("[\r\n]")
        or h:find("\0", 1, true) then
      return nil, "request header " .. i .. " is not a single 'Name: value' line"
    end
    out[#out + 1] = h
    out[#out + 1] = "\r\n"
  end
  if not has_header(headers, "accept") then out[#out + 1] = "Accept: */*\r\n" end
  if not has_header(headers, "user-agent") then
    out[#out + 1] = "User-Agent: trigger-realtime-lua (ngx_lua)\r\n"
  end
  local body = req.body
  if body ~= nil or method == "POST" or method == "PUT" or method == "PATCH" then
    body = body or ""
    out[#out + 1] = "Content-Length: " .. #body .. "\r\n"
  end
  out[#out + 1] = "\r\n"
  if body then out[#out + 1] = body end
  return table.concat(out), method
end
M._build_request = build_request

-- One attempt on one connection. Returns status, headers, body | nil, failure, retryable
-- (retryable: a pooled connection the server had closed before answering anything).
-- `entry`: the request's entry in `inflight`.
local function attempt(req, u, request, method, deadline, entry)
  entry.sock = nil
  local sock, err = ngx.socket.tcp()
  if not sock then return nil, socket_failure("cannot create a cosocket: ", err) end
  local where = u.host .. ":" .. u.port
  local connect_s = math.min(req.connect_timeout or 10, math.max(deadline - now(), 0.001))
  sock:settimeout(ms(connect_s))
  local ok
  ok, err = sock:connect(u.host, u.port, { pool = u.scheme .. "://" .. where,
    pool_size = M.pool_size })
  if not ok then return nil, socket_failure("connect to " .. where .. " failed: ", err) end
  entry.sock = sock
  local reused = (sock:getreusedtimes() or 0) > 0
  if reused then
    stats.reused = stats.reused + 1
  else
    stats.connects = stats.connects + 1
  end
  if u.scheme == "https" and not reused then
    local name = u.host:match("^%[") and nil or u.host
    ok, err = sock:sslhandshake(false, name, true)
    if not ok then
      sock:close()
      return nil, socket_failure("TLS handshake with " .. where .. " failed: ", err)
    end
  end
  local left = deadline - now()
  if left <= 0 then
    sock:close()
    return nil, failure("ETIMEDOUT", "timeout: no time left to send the request to " .. where)
  end
  sock:settimeout(ms(left))
  local sent
  sent, err = sock:send(request)
  if not sent then
    sock:close()
    return nil, socket_failure("send to " .. where .. " failed: ", err), reused
  end

  local parser = core.http1_parser { max_body = req.max_body, head = method == "HEAD" }
  local got_any = false
  while true do
    left = deadline - now()
    if left <= 0 then
      sock:close()
      parser:close()
      return nil, failure("ETIMEDOUT", "timeout: no complete response from " .. where
        .. " in time")
    end
    local cancelled = req.cancelled
    sock:settimeout(ms(cancelled and math.min(left, M.cancel_check_s) or left))
    local data, rerr = sock:receiveany(M.receive_size)
    local state, extra, code
    if rerr == "timeout" and cancelled and not cancelled() and now() < deadline then
      state = "waiting" -- only a look at cancelled(): read on
    elseif rerr == "timeout" and cancelled and cancelled() then
      sock:close()
      parser:close()
      return nil, failure("ECANCELED", "cancelled: the request to " .. where .. " was given up")
    elseif data then
      got_any = true
      state, extra, code = parser:feed(data)
    elseif rerr == "closed" then
      state, extra, code = parser:finish()
      if state == nil and not got_any and reused then
        sock:close()
        parser:close()
        return nil, failure("EOF", "the pooled connection to " .. where .. " was closed"), true
      end
    else
      sock:close()
      parser:close()
      if rerr == "timeout" then
        return nil, failure("ETIMEDOUT", "timeout: no complete response from " .. where
          .. " in time")
      end
      return nil, socket_failure("receive from " .. where .. " failed: ", rerr),
        reused and not got_any
    end
    if state == "done" then
      local status = parser:status()
      local headers, body = parser:headers(), parser:body()
      if data and extra == 0 and parser:keepalive() then
        ok = sock:setkeepalive(M.keepalive_ms, M.pool_size)
        if not ok then sock:close() end
      else
        sock:close()
      end
      parser:close()
      return status, headers, body
    elseif state == nil then
      sock:close()
      parser:close()
      if code == "body_too_large" then
        return nil, failure("body_too_large", "response body from " .. where
          .. " larger than max_body (" .. tostring(req.max_body) .. " bytes)")
      end
      return nil, failure("bad_response", "bad HTTP response from " .. where .. ": "
        .. tostring(extra))
    end
  end
end

--- Perform a request, yielding to nginx while it runs.
-- @tparam table req `url`, `method`, `body`, `headers` (list of "Name: value"), `timeout`
--   (seconds for the whole request), `connect_timeout`, `max_body`, `cancelled` (optional
--   function: true once the caller gave the request up; asked every `cancel_check_s` while the
--   response is awaited); `ca_file` is ignored (cosockets verify against
--   `lua_ssl_trusted_certificate`)
-- @param wait ignored: cosockets yield to nginx by themselves
-- @treturn[1] integer status
-- @treturn[1] table headers (lower-case names; a repeated header keeps its last value)
-- @treturn[1] string body
-- @treturn[2] nil
-- @treturn[2] table the failure `{kind, permanent, message}` (see `trigger.transport`)
function M.perform(req)
  if type(req) ~= "table" or type(req.url) ~= "string" then
    error("bad argument #1 to 'perform' (request table with a url expected)", 2)
  end
  local phase = ngx.get_phase()
  if NO_COSOCKETS[phase] then
    error("trigger-realtime: cosockets are disabled in nginx's " .. phase .. " phase: subscribe "
      .. "or mint tokens from content_by_lua*, access_by_lua*, rewrite_by_lua* or an ngx.timer "
      .. "(ngx.timer.at(0, fn) from init_worker_by_lua*)", 2)
  end
  if req.ca_file and not told_ca_file then
    told_ca_file = true
    ngx.log(ngx.NOTICE, "trigger-realtime: ca_file (", req.ca_file, ") is not used inside nginx:",
      " cosockets verify against lua_ssl_trusted_certificate")
  end
  local u, err = parse_url(req.url)
  if not u then return nil, failure("bad_url", err) end
  local request, method = build_request(req, u)
  if not request then return nil, failure("bad_request", method) end
  local deadline = now() + (req.timeout or 60)
  stats.requests = stats.requests + 1
  local entry = {}
  inflight[entry] = true
  local status, headers, body = attempt(req, u, request, method, deadline, entry)
  -- a stale pooled connection: once more, afresh (not for a request that must not run twice)
  if status == nil and body == true and not req.fresh_connect then
    stats.retried = stats.retried + 1
    status, headers, body = attempt(req, u, request, method, deadline, entry)
  end
  inflight[entry] = nil
  if status == nil then return nil, headers end
  return status, headers, body
end

--- Bytes of one streamed body held at most (the HTTP/1.1 parser keeps what it de-chunked):
-- past it the stream fails softly and its reader reopens it from where it was.
M.stream_body_max = 4 * 1024 * 1024

--- Open a streaming response (Server-Sent Events): connect and send `req` now, then read the
-- body as it comes. Every wait yields to nginx; none lasts longer than `cancel_check_s`, so a
-- caller can look at its deadline and `req.cancelled()` in between.
-- @tparam table req as for `perform`, plus `idle_timeout` (seconds without a byte before the
--   read fails); `timeout` is not used (a stream lasts as long as it lasts)
-- @treturn[1] table a reader: `head(seconds)` → status, headers | nil, "timeout" | nil,
--   failure; `read(seconds)` → bytes | nil (the body ended) | nil, "timeout" | nil, failure;
--   `close()` (idempotent; from another light thread while a read waits, the connection
--   closes when that read wakes, within `cancel_check_s`). An open stream counts in `active()`.
-- @treturn[2] nil
-- @treturn[2] table the failure `{kind, permanent, message}`
function M.open_stream(req)
  local phase = ngx.get_phase()
  if NO_COSOCKETS[phase] then
    error("trigger-realtime: cosockets are disabled in nginx's " .. phase .. " phase", 2)
  end
  local u, err = parse_url(req.url)
  if not u then return nil, failure("bad_url", err) end
  local request = build_request(req, u)
  if not request then return nil, failure("bad_request", "bad request") end
  stats.requests = stats.requests + 1
  local where = u.host .. ":" .. u.port
  local sock
  sock, err = ngx.socket.tcp()
  if not sock then return nil, socket_failure("cannot create a cosocket: ", err) end
  sock:settimeout(ms(req.connect_timeout or 10))
  local ok
  ok, err = sock:connect(u.host, u.port)
  if not ok then return nil, socket_failure("connect to " .. where .. " failed: ", err) end
  stats.connects = stats.connects + 1
  -- In flight until closed (active() also drops it once ngx_lua closed the socket: the light
  -- thread reading it was killed, as when a browser leaves and the handler calls ngx.exit).
  local entry = { sock = sock }
  inflight[entry] = true
  if u.scheme == "https" then
    ok, err = sock:sslhandshake(false, not u.host:match("^%[") and u.host or nil, true)
    if not ok then
      sock:close()
      inflight[entry] = nil
      return nil, socket_failure("TLS handshake with " .. where .. " failed: ", err)
    end
  end
  ok, err = sock:send(request)
  if not ok then
    sock:close()
    inflight[entry] = nil
    return nil, socket_failure("send to " .. where .. " failed: ", err)
  end
  local limit = math.min(req.max_body or M.stream_body_max, M.stream_body_max)
  local parser = core.http1_parser { max_body = limit }
  local given, last, ended = 0, now(), false
  local idle = req.idle_timeout
  local closed, reading = false, false
  local function shut() -- close the connection and the parser, once
    if entry.sock then
      entry.sock = nil
      inflight[entry] = nil
      sock:close()
      parser:close()
    end
  end
  local function gone()
    return failure("ECANCELED", "closed: the stream from " .. where .. " was closed")
  end
  local function pump(seconds) -- one receive: true | nil, "timeout" | nil, failure
    if closed then return nil, gone() end
    local t = math.min(seconds or M.cancel_check_s, M.cancel_check_s)
    if idle then t = math.min(t, math.max(last + idle - now(), 0.001)) end
    sock:settimeout(ms(math.max(t, 0.001)))
    reading = true
    local data, rerr = sock:receiveany(M.receive_size)
    reading = false
    if closed then -- close() came from another light thread while the read waited
      shut()
      return nil, gone()
    end
    local state, message, code
    if data then
      last = now()
      state, message, code = parser:feed(data)
    elseif rerr == "closed" then
      state, message, code = parser:finish()
    elseif rerr == "timeout" then
      if req.cancelled and req.cancelled() then
        return nil, failure("ECANCELED", "cancelled: the stream from " .. where .. " was given up")
      end
      if idle and now() - last >= idle then
        return nil, failure("ETIMEDOUT", "timeout: no byte from " .. where .. " in " .. idle
          .. " s")
      end
      return nil, "timeout"
    else
      return nil, socket_failure("receive from " .. where .. " failed: ", rerr)
    end
    if state == nil then
      -- past stream_body_max the stream fails softly (its reader reopens it): not the
      -- permanent "body_too_large" of a whole response
      return nil, failure(code == "body_too_large" and "stream_full" or "bad_response",
        "bad HTTP response from " .. where .. ": " .. tostring(message))
    end
    if state == "done" or rerr == "closed" then ended = true end
    return true
  end
  local reader = {}
  function reader.head(seconds)
    if closed then return nil, gone() end
    while not parser:headers_complete() do
      if ended then return nil, failure("EOF", "no response head from " .. where) end
      local progressed, why = pump(seconds)
      if not progressed then return nil, why end
    end
    return parser:status(), parser:headers()
  end
  function reader.read(seconds)
    while true do
      if closed then return nil, gone() end
      local body = parser:body()
      if #body > given then
        local bytes = body:sub(given + 1)
        given = #body
        return bytes
      end
      if ended then return nil end
      local progressed, why = pump(seconds)
      if not progressed then return nil, why end
    end
  end
  function reader.close()
    closed = true
    -- ngx_lua refuses to close a socket another light thread is reading ("socket busy
    -- reading"): that read then closes it when it wakes (at most cancel_check_s later).
    if not reading then shut() end
  end
  return reader
end

--- Wait without blocking the worker (at least a millisecond).
-- The library sleeps (a retry's backoff) inside a subscription's or stream's reading coroutine,
-- and a request can be killed while it sleeps there (`ngx.exit` from `ngx.on_abort` when a
-- browser leaves). ngx_lua does not clean up an `ngx.sleep` of a plain coroutine when its request
-- is killed: the sleep's timer fires later on freed memory ("http lua fake request count is
-- zero" alerts, or a worker crash). So the wait is the read timeout of a UDP cosocket that
-- nothing writes to (connected to 127.0.0.1:9, never sent on), which ngx_lua closes with its
-- request. Like the other cosocket read timeouts, it is logged at error level unless
-- `lua_socket_log_errors off` (see above).
function M.sleep(seconds)
  stats.wakeups, stats.idle_wakeups = stats.wakeups + 1, stats.idle_wakeups + 1
  local u = ngx.socket.udp()
  if u and u:setpeername("127.0.0.1", 9) then
    u:settimeout(ms(seconds or 0))
    u:receive()
    u:close()
    return
  end
  if u then u:close() end
  ngx.sleep(seconds)
end

--- Nothing to drive: cosockets progress inside nginx's event loop. A positive `seconds`
-- sleeps (yielding to nginx) so callers that "wait for I/O" still wait.
function M.step(seconds)
  stats.wakeups, stats.idle_wakeups = stats.wakeups + 1, stats.idle_wakeups + 1
  if seconds and seconds > 0 then ngx.sleep(seconds) end
end

--- There is no descriptor to poll inside nginx.
function M.pollfd()
  error("trigger.transport.ngx has no pollable fd: inside nginx, cosockets yield to nginx "
    .. "by themselves (use sub:next() or the for loop)", 2)
end

--- No timer to honour: nil.
function M.timeout()
  return nil
end

--- Number of requests in flight in this worker.
function M.active()
  local n = 0
  for entry in pairs(inflight) do
    if entry.sock and not entry.sock:getreusedtimes() then
      -- ngx_lua closed its connection under it: the light thread running it was killed
      -- (its request ended) and will never come back to say it is done
      inflight[entry] = nil
    else
      n = n + 1
    end
  end
  return n
end

--- Counters of this worker: `requests`, `connects` (new connections), `reused` (connections
-- taken from the pool), `retried` (requests sent again after a pooled connection turned out
-- closed), `wakeups` and `idle_wakeups` (the library's own waits without I/O: backoffs and
-- `step`; a cosocket's I/O waits inside nginx and is not counted), `active`.
function M.stats()
  return { requests = stats.requests, connects = stats.connects, reused = stats.reused,
    retried = stats.retried, wakeups = stats.wakeups, idle_wakeups = stats.idle_wakeups,
    active = M.active() }
end

return M
