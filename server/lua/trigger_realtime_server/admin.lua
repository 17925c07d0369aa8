-- /_emulator/*: the scenario API over HTTP, so that tests in another process can drive the
-- server. No auth: the server only listens on the loopback interface.
local json = require "trigger_realtime_server.json"
local http = require "trigger_realtime_server.http"
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"

local admin = {}

local function reply(status, value)
  return http.response(status, { { "content-type", "application/json; charset=utf-8" } },
                       json.encode(value))
end

local OK = { ok = true }

-- exact: keep `[]` apart from `{}` and the key order (json.decode_exact), for bodies whose values
-- are shown again as they were given (task outputs, payloads).
local function body_object(req, exact)
  if req.body == "" then return {} end
  local v, err = (exact and json.decode_exact or json.decode)(req.body)
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

local function with_body(req, fn, exact)
  local body, err = body_object(req, exact)
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

-- Bulk routes, so a benchmark can make thousands of runs and changes in one request.
-- In a `template` (or in bulk-update `fields`) every "{{i}}" inside a string (at any depth) is
-- replaced by the 1-based index of the run it is for.
local function expand(value, i)
  if type(value) == "string" then
    return (value:gsub("{{i}}", tostring(i)))
  elseif type(value) == "table" and value ~= json.null then
    local out = {}
    for k, v in pairs(value) do out[k] = expand(v, i) end
    return out
  end
  return value
end

local MAX_BULK = 1000000

-- A JSON array of field objects, or { count = N, template = fields }: the list of field objects.
local function bulk_list(body)
  if body[1] ~= nil or next(body) == nil then return body end
  local n = body.count
  if math.type(n) ~= "integer" and not (type(n) == "number" and n % 1 == 0) then
    return nil, "bulk needs a JSON array of runs, or an integer count and a template"
  end
  n = math.tointeger(n)
  if n < 0 or n > MAX_BULK then return nil, "count must be between 0 and " .. MAX_BULK end
  if body.template ~= nil and type(body.template) ~= "table" then
    return nil, "template must be an object"
  end
  local template = body.template or {}
  local list = {}
  for i = 1, n do list[i] = expand(template, i) end
  return list
end

-- POST /_emulator/runs/bulk: create many runs, listeners woken once at the end.
-- -> {"ids": [friendlyId, ...]} in order. Every entry is checked first, so bad fields create
-- none (a duplicate id found half-way leaves the runs before it).
ROUTES["POST /_emulator/runs/bulk"] = function(srv, req)
  return with_body(req, function(body)
    local list, bad = bulk_list(body)
    if not list then return reply(400, { error = bad }) end
    for i, fields in ipairs(list) do
      local patch, why = values.normalize(fields)
      if not patch then return reply(400, { error = ("run %d: %s"):format(i, why) }) end
    end
    local ids = {}
    local ok, err = attempt(function()
      for i, fields in ipairs(list) do ids[i] = srv.store:create_run(fields) end
    end)
    srv:notify()
    if not ok then return err end
    return reply(200, { ids = json.array(ids) })
  end)
end

-- POST /_emulator/runs/bulk_update: change many runs, listeners woken once at the end.
-- Body: {"ids": [...], "fields": {...}} (the same change for each, "{{i}}" expanded), or
-- {"updates": [{"id": ..., "fields": {...}}, ...]}; optional "repeat": N applies the whole list
-- N times over (each time a separate change of each run). -> {"updated": n, "offset": "<seq>_0"}
ROUTES["POST /_emulator/runs/bulk_update"] = function(srv, req)
  return with_body(req, function(body)
    local updates = body.updates
    if updates == nil and type(body.ids) == "table" then
      if type(body.fields) ~= "table" then return reply(400, { error = "fields must be an object" }) end
      updates = {}
      for i, id in ipairs(body.ids) do updates[i] = { id = id, fields = expand(body.fields, i) } end
    end
    if type(updates) ~= "table" then
      return reply(400, { error = "bulk_update needs ids and fields, or a list of updates" })
    end
    local times = body["repeat"] or 1
    if not (type(times) == "number" and times % 1 == 0 and times >= 1) or
       #updates * times > MAX_BULK then
      return reply(400, { error = "repeat must be a positive integer (at most "
        .. MAX_BULK .. " changes in all)" })
    end
    for i, u in ipairs(updates) do
      if type(u) ~= "table" or type(u.id) ~= "string" then
        return reply(400, { error = ("update %d: needs a string id"):format(i) })
      end
      if not srv.store:find(u.id) then
        return reply(404, { error = ("update %d: no run %q"):format(i, u.id) })
      end
      local patch, why = values.normalize(u.fields or {})
      if not patch then return reply(400, { error = ("update %d: %s"):format(i, why) }) end
    end
    local ok, err = attempt(function()
      for _ = 1, times do
        for _, u in ipairs(updates) do srv.store:update_run(u.id, u.fields or {}) end
      end
    end)
    srv:notify()
    if not ok then return err end
    return reply(200, json.ordered({ updated = #updates * times, offset = srv.store.head .. "_0" },
                                   { "updated", "offset" }))
  end)
end

-- POST /_emulator/compact {"keep": N}: forget all but the last N entries of the change log
-- (their effect stays in a base snapshot), so a long benchmark does not keep every change in
-- memory. A client still behind the dropped entries can no longer catch up: only for callers
-- that know where their clients are.
ROUTES["POST /_emulator/compact"] = function(srv, req)
  return with_body(req, function(body)
    local keep = body.keep or 0
    if not (type(keep) == "number" and keep % 1 == 0 and keep >= 0) then
      return reply(400, { error = "keep must be a non-negative integer" })
    end
    local dropped = srv.store:compact(srv.store.head - math.tointeger(keep))
    return reply(200, json.ordered({ dropped = dropped, floor = srv.store.floor },
                                   { "dropped", "floor" }))
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

-- Forget the faults still pending (e.g. ones no request matched), so that "the faults stopped"
-- holds from now on. -> {"cleared": n}
ROUTES["DELETE /_emulator/faults"] = function(srv)
  return reply(200, { cleared = srv:clear_faults() })
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

-- Zero the counters and the request log (runs, handles and faults stay), e.g. before an idle window.
ROUTES["POST /_emulator/stats/reset"] = function(srv)
  srv:reset_stats()
  return reply(200, OK)
end

-- GET: {"backend": "electric"|"native"}. POST {"backend": name}: flip a running server; the
-- next realtime request is served by that backend (held requests keep theirs).
ROUTES["GET /_emulator/backend"] = function(srv)
  return reply(200, { backend = srv.backend })
end

ROUTES["POST /_emulator/backend"] = function(srv, req)
  return with_body(req, function(body)
    local ok, err = attempt(srv.set_backend, srv, body.backend)
    if not ok then return err end
    return reply(200, { backend = srv.backend })
  end)
end

-- The management API's task catalogue (worker.lua). POST {"tasks": {id: definition}, "replace"?:
-- true} -> {"defined": [ids]}; GET -> {"tasks": {…}}.
ROUTES["POST /_emulator/tasks"] = function(srv, req)
  return with_body(req, function(body)
    local ok, names = attempt(srv.define_tasks, srv, body.tasks, body.replace == true)
    if not ok then return names end
    return reply(200, { defined = json.array(names) })
  end, true)
end

ROUTES["GET /_emulator/tasks"] = function(srv)
  return reply(200, { tasks = srv.tasks.catalogue })
end

-- The management API's switches and limits: POST a partial config -> the whole config; GET reads.
ROUTES["POST /_emulator/api_config"] = function(srv, req)
  return with_body(req, function(body)
    local ok, cfg = attempt(srv.tasks_config, srv, body)
    if not ok then return cfg end
    return reply(200, cfg)
  end)
end

ROUTES["GET /_emulator/api_config"] = function(srv)
  return reply(200, srv.tasks.config)
end

-- Trigger in-process: {"task", "payload"?, "options"?} -> {"id"} (no checks: a scenario's shortcut).
ROUTES["POST /_emulator/trigger"] = function(srv, req)
  return with_body(req, function(body)
    if type(body.task) ~= "string" then return reply(400, { error = "task must be a string" }) end
    local ok, id, why = attempt(srv.trigger, srv, body.task, body)
    if not ok then return id end
    if not id then return reply(422, { error = why }) end
    return reply(200, { id = id })
  end, true)
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
