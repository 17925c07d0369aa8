-- /_emulator/*: the scenario API over HTTP, so that tests in another process can drive the
-- server. No auth: the server only listens on the loopback interface.
local json = require "trigger.server.json"
local http = require "trigger.server.http"
local util = require "trigger.server.util"

local admin = {}

local function reply(status, value)
  return http.response(status, { { "content-type", "application/json; charset=utf-8" } },
                       json.encode(value))
end

local OK = { ok = true }

local function body_object(req)
  if req.body == "" then return {} end
  local v, err = json.decode(req.body)
  if type(v) ~= "table" then return nil, "body must be a JSON object" .. (err and (": " .. err) or "") end
  return v
end

-- Runs a scenario call, turning a raised message into a 400 (or a 404 for an unknown run).
local function attempt(fn, ...)
  local ok, a, b = pcall(fn, ...)
  if ok then return true, a, b end
  local message = tostring(a)
  return false, reply(message:match("^no run ") and 404 or 400, { error = message })
end

local function with_body(req, fn)
  local body, err = body_object(req)
  if not body then return reply(400, { error = err }) end
  return fn(body)
end

local ROUTES = {}

ROUTES["POST /_emulator/runs"] = function(srv, req)
  return with_body(req, function(fields)
    local ok, friendly, internal = attempt(srv.create_run, srv, fields)
    if not ok then return friendly end
    return reply(200, json.ordered({ id = friendly, internalId = internal }, { "id", "internalId" }))
  end)
end

ROUTES["PATCH /_emulator/runs/*"] = function(srv, req, id)
  return with_body(req, function(fields)
    local ok, err = attempt(srv.update_run, srv, id, fields)
    if not ok then return err end
    return reply(200, OK)
  end)
end

ROUTES["DELETE /_emulator/runs/*"] = function(srv, _, id)
  local ok, err = attempt(srv.delete_run, srv, id)
  if not ok then return err end
  return reply(200, OK)
end

ROUTES["GET /_emulator/runs/*"] = function(srv, _, id)
  local row = srv:get_run(id)
  if not row then return reply(404, { error = "Run not found" }) end
  return reply(200, row)
end

ROUTES["POST /_emulator/rotate"] = function(srv)
  srv:rotate_handles()
  return reply(200, OK)
end

ROUTES["POST /_emulator/faults"] = function(srv, req)
  return with_body(req, function(spec)
    local ok, err = attempt(srv.inject_fault, srv, spec)
    if not ok then return err end
    return reply(200, OK)
  end)
end

ROUTES["POST /_emulator/blobs"] = function(srv, req)
  return with_body(req, function(b)
    if type(b.path) ~= "string" or type(b.body) ~= "string" then
      return reply(400, { error = "blobs need a string path and a string body" })
    end
    local ok, err = attempt(srv.put_blob, srv, b.path, b.contentType, b.body)
    if not ok then return err end
    return reply(200, OK)
  end)
end

ROUTES["GET /_emulator/stats"] = function(srv)
  local stats = srv:stats()
  json.array(stats.log)
  return reply(200, stats)
end

ROUTES["POST /_emulator/reset"] = function(srv)
  srv:reset()
  return reply(200, OK)
end

ROUTES["POST /_emulator/drop_connections"] = function(srv, _, _, conn)
  srv:drop_connections(conn)
  return reply(200, OK)
end

-- -> response, or false when the path is not an admin route.
function admin.dispatch(srv, conn, req)
  local path = req.path
  if path:sub(1, 11) ~= "/_emulator/" then return false end
  local handler = ROUTES[req.method .. " " .. path]
  if handler then return handler(srv, req, nil, conn) end
  local id = path:match("^/_emulator/runs/([^/]+)$")
  if id then
    handler = ROUTES[req.method .. " /_emulator/runs/*"]
    if handler then return handler(srv, req, util.path_decode(id), conn) end
  end
  return reply(404, { error = "No such emulator route: " .. req.method .. " " .. path })
end

return admin
