-- A minimal HTTP/1.1 client on luasocket for the bench scripts: admin calls and the bare
-- long-poll baseline. Keep-alive, Content-Length bodies only (what the local server sends).
local socket = require "socket"

local M = {}

-- What a bare realtime request to the local server carries (its default secret key).
M.REALTIME_HEADERS = {
  "Authorization: Bearer tr_dev_local_emulator_secret_key",
  "x-trigger-electric-version: 1.0.0-beta.1",
  "x-trigger-api-version: 2025-07-16",
}

-- The shape path of a tag subscription, the tag URL-encoded as the bench's tags need.
function M.tag_path(tag)
  return "/realtime/v1/runs?tags=" .. tag:gsub(":", "%%3A")
end

local Conn = {}
Conn.__index = Conn

function M.connect(host, port)
  local sock = assert(socket.connect(host, port))
  sock:setoption("tcp-nodelay", true)
  sock:settimeout(120)
  return setmetatable({ sock = sock, host = host, port = port }, Conn)
end

-- -> status, headers (lower-case names), body
function Conn:request(method, target, body, headers)
  local lines = { method .. " " .. target .. " HTTP/1.1", "Host: " .. self.host .. ":" .. self.port }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  if body then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  assert(self.sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local line = assert(self.sock:receive("*l"))
  local status = tonumber(line:match("^HTTP/1%.1 (%d+)"))
  local h = {}
  while true do
    local l = assert(self.sock:receive("*l"))
    if l == "" then break end
    local name, value = l:match("^([^:]+):%s*(.-)%s*$")
    if name then h[name:lower()] = value end
  end
  local len = tonumber(h["content-length"] or "0")
  local data = len > 0 and assert(self.sock:receive(len)) or ""
  return status, h, data
end

function Conn:close() self.sock:close() end

-- One request on its own connection.
function M.request(host, port, method, target, body)
  local c = M.connect(host, port)
  local status, h, data = c:request(method, target, body, { "Connection: close" })
  c:close()
  assert(status and status >= 200 and status < 300,
    method .. " " .. target .. " -> " .. tostring(status) .. " " .. tostring(data))
  return status, h, data
end

return M
