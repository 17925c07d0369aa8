-- A small HTTP/1.1 layer on cqueues sockets: read one request, write one response.
--
-- It does only what the emulator needs (keep-alive, Content-Length and chunked bodies, Expect:
-- 100-continue) and hands the caller the means to break a response on purpose: chunked "drip"
-- delivery and bodies cut short. That is why this is not a general HTTP library.
local cqueues = require "cqueues"

local http = {}

http.REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [304] = "Not Modified", [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [409] = "Conflict",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type", [422] = "Unprocessable Entity",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout",
}

local MAX_LINE = 16384
http.MAX_LINE = MAX_LINE
local MAX_HEADERS = 100
local MAX_BODY = 16 * 1024 * 1024

local function read_line(sock, timeout)
  local line, err = sock:xread("*L", "b", timeout)
  if not line then return nil, err and "timeout" or "closed" end
  -- cqueues hands back at most maxline bytes: a line without its end is longer than that.
  if line:sub(-1) ~= "\n" then return nil, "line too long" end
  return (line:gsub("\r?\n$", ""))
end

local function read_headers(sock, timeout)
  local headers, count = {}, 0
  while true do
    local line, err = read_line(sock, timeout)
    if not line then return nil, err end
    if line == "" then return headers end
    count = count + 1
    if count > MAX_HEADERS then return nil, "too many headers" end
    local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
    if not name then return nil, "malformed header line" end
    name = name:lower()
    headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
  end
end

local function read_chunked(sock, timeout)
  local parts, total = {}, 0
  while true do
    local line, err = read_line(sock, timeout)
    if not line then return nil, err end
    local size = tonumber(line:match("^%x+"), 16)
    if not size then return nil, "malformed chunk size" end
    if size == 0 then
      local _, terr = read_headers(sock, timeout) -- trailers, ignored
      if terr then return nil, terr end
      return table.concat(parts)
    end
    total = total + size
    if total > MAX_BODY then return nil, "body too large" end
    local data = sock:xread(size, "b", timeout)
    if not data or #data < size then return nil, "closed" end
    parts[#parts + 1] = data
    read_line(sock, timeout)
  end
end

local function read_body(sock, req, timeout)
  if (req.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    return read_chunked(sock, timeout)
  end
  local length = req.headers["content-length"]
  if not length then return "" end
  local n = tonumber(length:match("^%d+$"))
  if not n then return nil, "malformed content-length" end
  if n > MAX_BODY then return nil, "body too large" end
  if n == 0 then return "" end
  local data = sock:xread(n, "b", timeout)
  if not data or #data < n then return nil, "closed" end
  return data
end

local function wants_keep_alive(version, connection)
  connection = (connection or ""):lower()
  if version == "1.0" then return connection:find("keep-alive", 1, true) ~= nil end
  return not connection:find("close", 1, true)
end

-- Read one request. -> req { method, target, path, query, headers, body, version, keep_alive }
-- or nil, reason ("closed" for a clean end between requests, "timeout", or a parse error).
function http.read_request(sock, timeout)
  local line, err
  repeat -- RFC 9112: ignore empty lines before a request line
    line, err = read_line(sock, timeout)
    if not line then return nil, err end
  until line ~= ""
  local method, target, version = line:match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return nil, "malformed request line" end
  local headers, herr = read_headers(sock, timeout)
  if not headers then return nil, herr end
  local req = {
    method = method, target = target, version = version, headers = headers,
    path = target:match("^[^?#]*"), query = target:match("%?([^#]*)") or "",
  }
  req.keep_alive = wants_keep_alive(version, headers["connection"])
  if (headers["expect"] or ""):lower() == "100-continue" then
    sock:xwrite("HTTP/1.1 100 Continue\r\n\r\n", "b", timeout)
    sock:flush()
  end
  local body, berr = read_body(sock, req, timeout)
  if not body then return nil, berr end
  req.body = body
  return req
end

---------------------------------------------------------------------------------------------------
-- Responses: { status = n, headers = { {name, value}, ... }, body = "..." }

function http.response(status, headers, body)
  return { status = status, headers = headers or {}, body = body or "" }
end

function http.get_header(res, name)
  for _, h in ipairs(res.headers) do
    if h[1] == name then return h[2] end
  end
end

function http.set_header(res, name, value)
  for i, h in ipairs(res.headers) do
    if h[1] == name then
      if value == nil then table.remove(res.headers, i) else h[2] = value end
      return
    end
  end
  if value ~= nil then res.headers[#res.headers + 1] = { name, value } end
end

local function head_text(res, framing, keep_alive)
  local lines = { ("HTTP/1.1 %d %s"):format(res.status, http.REASONS[res.status] or "Unknown") }
  for _, h in ipairs(res.headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  lines[#lines + 1] = framing
  lines[#lines + 1] = "date: " .. os.date("!%a, %d %b %Y %H:%M:%S GMT")
  if not keep_alive then lines[#lines + 1] = "connection: close" end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

local function send(sock, data, timeout)
  local ok, err = sock:xwrite(data, "b", timeout)
  if not ok then return nil, err end
  return sock:flush(timeout)
end

-- Write a response. plan (optional):
--   mode = "normal" | "chunked" | "truncate" | "reset"
--   chunk_size, delay_ms  (chunked: bytes per chunk, pause between chunks)
--   keep_alive            (false: say "connection: close")
--   cancelled()           (a drip stops early when it returns true)
--   hurried()             (a drip sends the rest at once when it returns true)
-- Returns true when the connection may be reused, false when the caller must close it.
function http.write_response(sock, res, plan, timeout)
  plan = plan or {}
  local mode = plan.mode or "normal"
  local keep_alive = plan.keep_alive ~= false and mode ~= "truncate" and mode ~= "reset"
  local body = res.body or ""
  if mode == "chunked" then
    if not send(sock, head_text(res, "transfer-encoding: chunked", keep_alive), timeout) then
      return false
    end
    local size = math.max(1, plan.chunk_size or 1)
    local i = 1
    while i <= #body do
      if plan.cancelled and plan.cancelled() then return false end
      if plan.hurried and plan.hurried() then size = #body end -- the rest in one chunk
      local piece = body:sub(i, i + size - 1)
      if not send(sock, ("%x\r\n%s\r\n"):format(#piece, piece), timeout) then return false end
      i = i + #piece
      if plan.delay_ms and plan.delay_ms > 0 and i <= #body then cqueues.sleep(plan.delay_ms / 1000) end
    end
    return send(sock, "0\r\n\r\n", timeout) and keep_alive or false
  end
  local head = head_text(res, "content-length: " .. #body, keep_alive)
  if mode == "truncate" or mode == "reset" then
    -- The head promises the whole body; half of it comes, then the connection ends.
    send(sock, head .. body:sub(1, #body // 2), timeout)
    return false
  end
  return send(sock, head .. body, timeout) and keep_alive or false
end

return http
