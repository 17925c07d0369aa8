-- Fault injection: things real networks, proxies and servers do to a client.
--
-- A fault spec is { kind = ..., match = { path_prefix, live, initial }, count = n, ... }.
-- Each request takes the first pending fault that matches it (in injection order) and uses up
-- one of its `count`. Faults never touch the /_emulator admin routes.
local api = require "trigger_realtime_server.api"
local json = require "trigger_realtime_server.json"
local http = require "trigger_realtime_server.http"

local faults = {}

faults.KINDS = {
  status = true,          -- answer `status` (retry_after, body optional) instead of the real thing;
                          -- at once, also with status 200/204 (the storm answers of a hostile
                          -- server): `echo` = electric-handle/-offset/-cursor of the request,
                          -- `fresh_handle` = a new electric-handle every time, `up_to_date` =
                          -- an electric-up-to-date header
  reset_mid_body = true,  -- headers and half the body, then the connection is closed at once
  drip = true,            -- the real response, chunked, chunk_size bytes at a time, delay_ms apart
  truncate = true,        -- Content-Length of the whole body, half of it sent, then a clean close
  invalid_json = true,    -- a 200 with the real electric headers and a body that is not JSON
  strip_headers = true,   -- the real response without any electric-* header (a meddling proxy)
  stale_handle = true,    -- the real response, but electric-handle = the request's expired_handle
  delay = true,           -- wait delay_ms, then answer normally
  -- stream responses (streams.lua); `after` = records sent before a cutting fault strikes
  sse_error = true,       -- after `after` records: `event: error` (data = body), close without [DONE]
  overlap = true,         -- a resumed read first sends again the record at the cursor
  v1_id = true,           -- v1: every event carries `id: <id>` (any text) instead of its entry's
  -- the management API (api.lua)
  drop_response = true,   -- the request is served (a trigger creates its run), then the
                          -- connection closes without an answer
}

local List = {}
List.__index = List

function faults.new()
  -- generation: how many times the list was cleared (a drip under way ends when it changes)
  return setmetatable({ pending = {}, generation = 0 }, List)
end

local function check_number(spec, name, min)
  local v = spec[name]
  if v ~= nil and (type(v) ~= "number" or v < min) then
    return nil, ("fault %s must be a number >= %d"):format(name, min)
  end
  return true
end

local function optional_bool(v)
  if v == json.null then return nil end
  return v
end

-- Validate and copy a spec. -> fault or nil, message
local function normalize(spec)
  if type(spec) ~= "table" then return nil, "fault spec must be a table" end
  if not faults.KINDS[spec.kind] then
    return nil, ("unknown fault kind %q"):format(tostring(spec.kind))
  end
  for _, name in ipairs({ "count", "chunk_size" }) do
    local ok, err = check_number(spec, name, 1)
    if not ok then return nil, err end
  end
  for _, name in ipairs({ "delay_ms", "retry_after", "after", "reset_ms" }) do
    local ok, err = check_number(spec, name, 0)
    if not ok then return nil, err end
  end
  local status = math.tointeger(spec.status)
  if spec.kind == "status" and not (status and status >= 100 and status <= 599) then
    return nil, "a status fault needs an HTTP status (100-599)"
  end
  local match = spec.match or {}
  if type(match) ~= "table" then return nil, "fault match must be a table" end
  if match.path_prefix ~= nil and match.path_prefix ~= json.null and
     type(match.path_prefix) ~= "string" then
    return nil, "match.path_prefix must be a string"
  end
  if spec.kind == "v1_id" and type(spec.id) ~= "string" then
    return nil, "a v1_id fault needs an id string"
  end
  local body = spec.body
  if body ~= nil and type(body) ~= "string" then body = json.encode(body) end
  local headers = {}
  if spec.headers ~= nil and spec.headers ~= json.null then
    if type(spec.headers) ~= "table" then return nil, "fault headers must be an object" end
    for name, value in pairs(spec.headers) do
      if type(name) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
        return nil, "fault headers must map names to strings"
      end
      headers[#headers + 1] = { name:lower(), tostring(value) }
    end
    table.sort(headers, function(a, b) return a[1] < b[1] end)
  end
  for _, name in ipairs({ "echo", "fresh_handle", "up_to_date" }) do
    local v = spec[name]
    if v ~= nil and v ~= json.null and type(v) ~= "boolean" then
      return nil, ("fault %s must be a boolean"):format(name)
    end
  end
  return {
    echo = spec.echo == true, fresh_handle = spec.fresh_handle == true,
    up_to_date = spec.up_to_date == true,
    kind = spec.kind, count = math.floor(spec.count or 1), status = status, body = body,
    headers = headers, reset_ms = spec.reset_ms,
    retry_after = spec.retry_after, chunk_size = spec.chunk_size and math.floor(spec.chunk_size),
    delay_ms = spec.delay_ms, after = spec.after and math.floor(spec.after),
    id = spec.kind == "v1_id" and spec.id or nil,
    path_prefix = match.path_prefix ~= json.null and match.path_prefix or nil,
    live = optional_bool(match.live), initial = optional_bool(match.initial),
  }
end

function List:add(spec)
  local fault, err = normalize(spec)
  if not fault then return nil, err end
  self.pending[#self.pending + 1] = fault
  return true
end

-- Forget the pending faults; drips already under way finish at full speed (`hurried`), so
-- "no fault from now on" holds for the responses being written too.
function List:clear()
  self.pending = {}
  self.generation = self.generation + 1
end

-- For a response written under a fault taken now: true once the list has been cleared since.
function List:hurried()
  local at = self.generation
  return function() return self.generation ~= at end
end

local function matches(f, req)
  if req.path:sub(1, 11) == "/_emulator/" then return false end
  if f.path_prefix and req.path:sub(1, #f.path_prefix) ~= f.path_prefix then return false end
  local params = req.params
  if f.live ~= nil and (params.live == "true") ~= f.live then return false end
  if f.initial ~= nil and (params.offset == "-1") ~= f.initial then return false end
  -- A stale cache entry only exists for a request that names the handle that expired.
  if f.kind == "stale_handle" and not params.expired_handle then return false end
  return true
end

-- The fault this request gets, if any (using up one of its count).
function List:take(req)
  for i, f in ipairs(self.pending) do
    if matches(f, req) then
      f.count = f.count - 1
      if f.count <= 0 then table.remove(self.pending, i) end
      return f
    end
  end
end

local fresh_handles = 0

-- The canned answer of a `status` fault. On an /api/ route a 429 without a body is the API
-- limiter's (problem+json, x-ratelimit-* with the reset `reset_ms` (default 1000) from now, in
-- Unix ms); `headers` are added as given (x-should-retry, retry-after…).
function faults.status_response(f, req, now_ms)
  local headers = { { "content-type", "application/json; charset=utf-8" } }
  if f.retry_after then headers[#headers + 1] = { "retry-after", json.number_text(f.retry_after) } end
  local p = req.params
  local handle = f.echo and (p.handle or p.shape_id) or nil
  if f.fresh_handle then
    fresh_handles = fresh_handles + 1
    handle = ("%d-%d"):format(1000000 + fresh_handles, os.time())
  end
  if handle then headers[#headers + 1] = { "electric-handle", handle } end
  if f.echo then
    headers[#headers + 1] = { "electric-offset", p.offset or "-1" }
    -- a cursor other than the request's, as Electric's (and as short, however long the storm)
    local cursor = tostring((math.tointeger(tonumber(p.cursor)) or 0) % 1000 + 1)
    if p.live == "true" then headers[#headers + 1] = { "electric-cursor", cursor } end
  end
  if f.up_to_date then headers[#headers + 1] = { "electric-up-to-date", "" } end
  if f.status == 204 and not f.body then return http.response(204, headers, "") end
  local body = f.body
  if not body and f.status == 429 and req and req.path:sub(1, 5) == "/api/" then
    local reset = now_ms + math.floor(f.reset_ms or 1000)
    headers[1][2] = "application/problem+json; charset=utf-8"
    headers[#headers + 1] = { "x-ratelimit-limit", "750" }
    headers[#headers + 1] = { "x-ratelimit-remaining", "0" }
    headers[#headers + 1] = { "x-ratelimit-reset", ("%d"):format(reset) }
    body = api.rate_limit_body(reset, now_ms, 750)
  end
  if not body then
    local message = f.status == 429 and "Too many concurrent requests"
      or http.REASONS[f.status] or "Injected fault"
    body = json.encode({ error = message })
  end
  for _, h in ipairs(f.headers or {}) do headers[#headers + 1] = h end
  return http.response(f.status, headers, body)
end

-- Change the real response as the fault says; returns the write plan for http.write_response.
function faults.apply(f, req, res)
  local kind = f.kind
  if kind == "invalid_json" then
    res.body = '[{"headers":{"control":"up-to-da'
  elseif kind == "strip_headers" then
    local kept = {}
    for _, h in ipairs(res.headers) do
      if h[1]:sub(1, 9) ~= "electric-" then kept[#kept + 1] = h end
    end
    res.headers = kept
  elseif kind == "stale_handle" then
    http.set_header(res, "electric-handle", req.params.expired_handle)
  elseif kind == "drip" then
    return { mode = "chunked", chunk_size = f.chunk_size or 1, delay_ms = f.delay_ms }
  elseif kind == "truncate" then
    return { mode = "truncate" }
  elseif kind == "reset_mid_body" then
    return { mode = "reset" }
  end
  return { mode = "normal" }
end

return faults
