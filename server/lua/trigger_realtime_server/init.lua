-- trigger_realtime_server: a local emulator of the Trigger.dev realtime API (see README.md beside this).
--
-- Design choice: the HTTP/1.1 server is written directly on cqueues.socket instead of on an HTTP
-- library. Fault injection needs full control over every byte on the wire (a body cut in half, a
-- response dripped one byte per chunk, headers a proxy would strip, a connection dropped while a
-- long-poll is held), which libraries deliberately hide; and lua-http, the cqueues HTTP library,
-- is not packaged for Lua 5.4 anyway. cqueues gives us one coroutine per connection, conditions
-- to wake held long-polls the moment a run changes, and a loop that can be stepped from a host.
local cqueues = require "cqueues"
local condition = require "cqueues.condition"
local errno = require "cqueues.errno"
local socket = require "cqueues.socket"
local admin = require "trigger_realtime_server.admin"
local api = require "trigger_realtime_server.api"
local faults = require "trigger_realtime_server.faults"
local http = require "trigger_realtime_server.http"
local json = require "trigger_realtime_server.json"
local native = require "trigger_realtime_server.native"
local persist = require "trigger_realtime_server.persist"
local realtime = require "trigger_realtime_server.realtime"
local shape = require "trigger_realtime_server.shape"
local store = require "trigger_realtime_server.store"
local streams = require "trigger_realtime_server.streams"
local util = require "trigger_realtime_server.util"
local values = require "trigger_realtime_server.values"
local worker = require "trigger_realtime_server.worker"

local server = {}

server.NULL = json.null   -- "set this field to NULL" in create_run/update_run fields

server.DEFAULTS = {
  host = "127.0.0.1",
  port = 0,
  hold_ms = 20000,
  secret_key = "tr_dev_local_emulator_secret_key",
  environment_id = "env_local_emulator",
  chunk_rows = 1000,
  max_connections = 100000,
  bool_style = "t",
  timestamp_style = "space",
  legacy_packets_only = false,
  verbose = false,
  idle_timeout = 300,   -- seconds a kept-alive connection may sit idle between requests
  stream_version = "v2",       -- framing of streams whose run names none (streams.lua)
  stream_timeout_s = 60,       -- idle wait before a stream response ends (Timeout-Seconds overrides)
  stream_ping_ms = false,      -- keep-alive interval; false: as the real server (v2 5 s, v1 10 s)
  stream_batch_records = 1000, -- v2: records per `batch` event at most
  stream_v1_max_length = 1000, -- v1: XADD MAXLEN (older entries are trimmed)
  backend = "electric", -- "electric" | "native" (native.lua); set_backend flips a running server
  native_coalesce_ms = native.DEFAULT_COALESCE_MS, -- native: change wakes coalesced over this window
  native_max_runs = native.DEFAULT_MAX_RUNS,       -- native: tag/batch feeds keep the newest N runs
  state_file = false,   -- a path: keep the state there across restarts (persist.lua)
}

server.BACKENDS = { electric = true, native = true }

local WRITE_TIMEOUT = 30
local LOG_SIZE = 200

local Server = {}
Server.__index = Server

local function check_options(opts)
  local o = {}
  for k, v in pairs(server.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if server.DEFAULTS[k] == nil and k ~= "now_ms" then
      error(("trigger_realtime_server: unknown option %q"):format(tostring(k)), 3)
    end
    o[k] = v
  end
  assert(o.bool_style == "t" or o.bool_style == "true", "bool_style must be 't' or 'true'")
  assert(o.timestamp_style == "space" or o.timestamp_style == "T",
         "timestamp_style must be 'space' or 'T'")
  assert(server.BACKENDS[o.backend], "backend must be 'electric' or 'native'")
  for _, k in ipairs({ "port", "hold_ms", "chunk_rows", "max_connections", "native_coalesce_ms",
                       "native_max_runs" }) do
    assert(math.type(o[k]) == "integer" and o[k] >= 0, k .. " must be a non-negative integer")
  end
  assert(o.chunk_rows >= 1, "chunk_rows must be at least 1")
  assert(o.stream_version == "v1" or o.stream_version == "v2", "stream_version must be 'v1' or 'v2'")
  for _, k in ipairs({ "stream_timeout_s", "stream_batch_records", "stream_v1_max_length" }) do
    assert(math.type(o[k]) == "integer" and o[k] >= 1, k .. " must be a positive integer")
  end
  assert(o.stream_ping_ms == false or (math.type(o.stream_ping_ms) == "integer" and
         o.stream_ping_ms >= 1), "stream_ping_ms must be a positive integer or false")
  return o
end

function server.new(opts)
  local o = check_options(opts)
  local self = setmetatable({ opts = o, now_ms = o.now_ms or util.now_ms }, Server)
  self.cq = cqueues.new()
  self.store = store.new({ bool_style = o.bool_style, timestamp_style = o.timestamp_style,
                           now_ms = self.now_ms })
  self.shapes = shape.registry()
  self.faults = faults.new()
  self.changed = condition.new()
  self.conns = {}
  self.active_realtime = 0
  self.backend = o.backend
  self.native = native.new(self)
  self.streams = streams.new(self)
  self.tasks = worker.new(self)
  self:reset_stats()
  if o.state_file then
    assert(type(o.state_file) == "string" and o.state_file ~= "", "state_file must be a path")
    self.persist = persist.new(self, o.state_file)
    if not self.persist:load() then
      local saved, err = self.persist:save() -- a first start: fail now if it cannot be written
      if not saved then error("trigger_realtime_server: " .. err, 0) end
    end
  end
  return self
end

---------------------------------------------------------------------------------------------------
-- Stats

function Server:reset_stats()
  self.counters = { requests = 0, connections_opened = 0, connections_closed = 0,
                    realtime_requests = 0, live_requests = 0, non_live_requests = 0,
                    routes = { runs = 0, run = 0, batch = 0, admin = 0, other = 0 },
                    backends = { electric = 0, native = 0 }, paths = {} }
  self.request_log = {}
  -- req -> monotime it arrived, until it is answered (weak: a connection that dies unanswered)
  self.in_flight = self.in_flight or setmetatable({}, { __mode = "k" })
end

function Server:stats()
  local open = 0
  for conn in pairs(self.conns) do
    if conn.counted then open = open + 1 end
  end
  local log = {}
  for i, e in ipairs(self.request_log) do log[i] = e end
  -- Requests not answered yet (held long-polls, slow bodies), oldest first.
  local in_flight, now = {}, cqueues.monotime()
  for req, since in pairs(self.in_flight) do
    in_flight[#in_flight + 1] = { method = req.method, path = req.path, query = req.query,
                                  age_ms = math.floor((now - since) * 1000) }
  end
  table.sort(in_flight, function(a, b) return a.age_ms > b.age_ms end)
  return {
    requests = self.counters.requests,
    connections_opened = self.counters.connections_opened,
    connections_closed = self.counters.connections_closed,
    open_connections = open,
    active_realtime = self.active_realtime,
    -- Requests per route (runs = the tag feed, run, batch, admin = /_emulator/*, other), and the
    -- realtime ones split live / non-live and by the backend that got them.
    routes = util.copy(self.counters.routes),
    realtime_requests = self.counters.realtime_requests,
    live_requests = self.counters.live_requests,
    non_live_requests = self.counters.non_live_requests,
    backends = util.copy(self.counters.backends),
    -- Realtime requests per path (a subscription to one run or batch has a path of its own).
    paths = util.copy(self.counters.paths),
    backend = self.backend,
    active_native = self.native.active,   -- native live polls being held
    log = log,
    in_flight = in_flight,
  }
end

-- Request headers the log keeps (never Authorization: only whether one was sent).
local LOGGED_HEADERS = {
  "x-trigger-electric-version", "x-trigger-api-version", "last-event-id", "timeout-seconds",
  "x-trigger-stream-start", "accept",
  -- the management API's (management-api.md §1.2)
  "x-trigger-branch", "trigger-version", "x-trigger-source", "x-trigger-realtime-streams-version",
  "x-trigger-request-idempotency-key", "x-trigger-client", "idempotency-key", "idempotency-key-ttl",
  "content-type", "content-length", "transfer-encoding",
}
local LOGGED_BODY = 65536 -- bytes of an /api/ request body kept in the log

local function log_entry(req, status)
  local h = req.headers
  local headers = { has_authorization = h["authorization"] ~= nil }
  for _, name in ipairs(LOGGED_HEADERS) do headers[name] = h[name] end
  local entry = {
    method = req.method, path = req.path, query = req.query, status = status,
    live = req.params.live == "true", headers = headers,
  }
  if req.path:sub(1, 5) == "/api/" and req.body and req.body ~= "" then
    entry.body = req.body:sub(1, LOGGED_BODY)
    if #req.body > LOGGED_BODY then entry.body_truncated = true end
  end
  return entry
end

local function route_name(path)
  if path == "/realtime/v1/runs" then return "runs" end
  if path:match("^/realtime/v1/runs/[^/]+$") then return "run" end
  if path:match("^/realtime/v1/batches/[^/]+$") then return "batch" end
  if path:sub(1, 11) == "/_emulator/" then return "admin" end
  return "other"
end

function Server:count_request(req)
  local c = self.counters
  c.requests = c.requests + 1
  local route = route_name(req.path)
  c.routes[route] = c.routes[route] + 1
  if route == "runs" or route == "run" or route == "batch" then
    c.realtime_requests = c.realtime_requests + 1
    if req.params.live == "true" then
      c.live_requests = c.live_requests + 1
    else
      c.non_live_requests = c.non_live_requests + 1
    end
    c.backends[self.backend] = c.backends[self.backend] + 1
    c.paths[req.path] = (c.paths[req.path] or 0) + 1
  end
end

function Server:record(req, status, started)
  self.in_flight[req] = nil
  local log = self.request_log
  log[#log + 1] = log_entry(req, status)
  if #log > LOG_SIZE then table.remove(log, 1) end
  if self.opts.verbose then
    io.stderr:write(("%s %s%s -> %s (%.0f ms)\n"):format(req.method, req.path,
      req.query ~= "" and ("?" .. req.query) or "", status == 0 and "no answer" or status,
      (cqueues.monotime() - started) * 1000))
  end
end

---------------------------------------------------------------------------------------------------
-- Waiting for changes

function Server:notify()
  self.changed:signal()
  self.native:changed()
end

-- A pollable that is ready when the client's socket is readable: during a long-poll that means
-- the client hung up (or pipelined its next request).
local function readable(sock)
  local fd = sock:pollfd()
  return { pollfd = function() return fd end, events = function() return "r" end }
end

-- Wait until something changes, `deadline` (monotonic seconds) passes, or the client goes away.
-- `cond` (default: every change) is the condition to wait on.
-- -> "changed" | "timeout" | "gone"
function Server:wait_change(conn, deadline, cond)
  cond = cond or self.changed
  local left = deadline - cqueues.monotime()
  if left <= 0 then return "timeout" end
  if conn.watch_input then
    local ready = cqueues.poll(cond, conn.watch, left)
    if ready == conn.watch then
      local data, err = conn.sock:xread(-4096, "b", 0)
      if data then
        conn.sock:unget(data)      -- a pipelined request: keep it, stop watching
        conn.watch_input = false
      elseif not err then
        return "gone"              -- end of input: the client closed its side
      elseif err ~= errno.ETIMEDOUT and err ~= errno.EAGAIN then
        -- Reset by the peer (say): gone too. Cleared, or cqueues raises once unchecked
        -- errors pile up ("exceeded unchecked error limit", soak seed 13).
        conn.sock:clearerr()
        return "gone"
      end
      return "changed"
    end
    return ready == cond and "changed" or "timeout"
  end
  local ready = cqueues.poll(cond, left)
  return ready == cond and "changed" or "timeout"
end

---------------------------------------------------------------------------------------------------
-- Requests

local function not_found()
  return realtime.json_response(404, { error = "Not found" })
end

function Server:route(conn, req)
  local res = streams.dispatch(self, conn, req) -- /realtime/v1/streams/*, /_emulator/stream*
  if res == false then res = admin.dispatch(self, conn, req) end
  if res == false and self.persist then self.persist:check_request(req) end
  if res == false then res = api.dispatch(self, conn, req) end -- /api/v*/… management, signed blobs
  if res == false then res = realtime.dispatch(self, conn, req) end
  if res == false then res = not_found() end
  return res
end

local function internal_error(err)
  io.stderr:write("trigger_realtime_server: internal error: ", tostring(err), "\n")
  return realtime.json_response(500, { error = "Internal server error" })
end

-- Answer one request. -> true when the connection can serve another.
function Server:handle(conn, req)
  local started = cqueues.monotime()
  self.in_flight[req] = started
  req.params = util.parse_query(req.query)
  self:count_request(req)
  -- Connection counts leave out the admin API's own connections, so that a spec can tell
  -- whether the client under test closed its socket.
  if not conn.counted and req.path:sub(1, 11) ~= "/_emulator/" then
    conn.counted = true
    self.counters.connections_opened = self.counters.connections_opened + 1
  end
  local fault = self.faults:take(req)
  req.fault = fault -- a stream response applies its own (streams.lua)
  local res
  if fault and fault.kind == "status" then
    res = faults.status_response(fault, req, self.now_ms())
  else
    if fault and fault.kind == "delay" then cqueues.sleep((fault.delay_ms or 0) / 1000) end
    local ok, r = xpcall(self.route, debug.traceback, self, conn, req)
    if ok then res = r else res = internal_error(r) end
  end
  if fault and fault.kind == "drop_response" then
    -- The request did its work (a run was created…); the answer is lost on the way.
    res = nil
  end
  if not res or conn.dropped then
    -- Nothing to answer: the client went away, or the connections were dropped meanwhile.
    self:record(req, 0, started)
    return false
  end
  if self.persist then
    -- Nothing a response reveals may be lost by a kill -9 once it is sent (persist.lua).
    local saved, err = self.persist:commit()
    if not saved then res = internal_error(err) end
    if conn.dropped then
      self:record(req, 0, started)
      return false
    end
  end
  if res.stream then
    -- An SSE body written as it goes (streams.lua); logged when it starts.
    self:record(req, res.status, started)
    return res.stream(conn) and not conn.dropped
  end
  local plan = fault and faults.apply(fault, req, res) or { mode = "normal" }
  plan.keep_alive = req.keep_alive
  plan.cancelled = function() return conn.dropped end
  plan.hurried = self.faults:hurried()
  local reusable = http.write_response(conn.sock, res, plan, WRITE_TIMEOUT)
  self:record(req, res.status, started)
  conn.close_mode = plan.mode
  return reusable and not conn.dropped
end

function Server:serve(sock)
  sock:setmode("b", "bf")
  sock:setmaxline(http.MAX_LINE) -- cqueues' default (4 KiB) is short for a URL with many tags
  sock:onerror(function(_, _, why) return why end) -- errors come back as values, never raised
  local conn = { sock = sock, dropped = false, watch_input = true }
  conn.watch = readable(sock)
  self.conns[conn] = true
  while not conn.dropped and not self.closed do
    local req, err = http.read_request(sock, self.opts.idle_timeout)
    if not req then
      if err ~= "closed" and err ~= "timeout" and not conn.dropped then
        http.write_response(sock, realtime.json_response(400, { error = err }),
                            { keep_alive = false }, WRITE_TIMEOUT)
      end
      break
    end
    local ok, again = xpcall(self.handle, debug.traceback, self, conn, req)
    if not ok then io.stderr:write("trigger_realtime_server: ", tostring(again), "\n") end
    if not (ok and again) then break end
  end
  if conn.close_mode == "truncate" then pcall(sock.shutdown, sock, "w") end
  sock:close()
  self.conns[conn] = nil
  if conn.counted then
    self.counters.connections_closed = self.counters.connections_closed + 1
  end
end

---------------------------------------------------------------------------------------------------
-- Lifecycle

function Server:start()
  local listener = socket.listen({ host = self.opts.host, port = self.opts.port, reuseaddr = true })
  listener:onerror(function(_, _, why) return why end)
  local ok, err = listener:listen()
  if not ok then
    error(("trigger_realtime_server: cannot listen on %s:%d: %s"):format(self.opts.host, self.opts.port,
          type(err) == "number" and errno.strerror(err) or tostring(err)), 2)
  end
  local _, host, port = listener:localname()
  self.listener, self.host, self.port = listener, host, port
  self.base_url = ("http://%s:%d"):format(host, port)
  if self.persist then self.cq:wrap(function() self.persist:run() end) end
  self.cq:wrap(function()
    while not self.closed do
      -- close() cancels the wait; accepting on the closed listener then raises: that ends us.
      local accepted, sock = pcall(listener.accept, listener, nil, 3600)
      if not accepted then break end
      if sock and not self.closed then
        self.cq:wrap(function() self:serve(sock) end)
      elseif sock then
        sock:close()
      end
    end
  end)
  return self
end

-- Run `fn(...)` in its own coroutine on the server's loop (scenarios use this); errors are
-- reported on stderr and do not stop the server.
function Server:spawn(fn, ...)
  local args = table.pack(...)
  self.cq:wrap(function()
    local ok, err = xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
    if not ok then io.stderr:write("trigger_realtime_server: scenario error: ", tostring(err), "\n") end
  end)
end

-- Pause the calling coroutine (for scenarios running on the server's loop).
server.sleep = cqueues.sleep

-- Run the loop once: wait up to `timeout` seconds for work, do it, return.
function Server:step(timeout)
  local ok, err = self.cq:step(timeout)
  if not ok then error(err, 2) end
end

function Server:run_forever()
  while not self.closed do
    local ok, err = self.cq:step(1)
    if not ok then io.stderr:write("trigger_realtime_server: ", tostring(err), "\n") end
  end
end

function Server:close()
  if self.closed then return end
  self.closed = true
  if self.persist and self.persist:dirty() then
    local saved, err = self.persist:save()
    if not saved then io.stderr:write("trigger_realtime_server: ", err, "\n") end
  end
  self:drop_connections()
  if self.listener then
    cqueues.cancel(self.listener:pollfd())
    self.listener:close()
  end
end

---------------------------------------------------------------------------------------------------
-- Scenario API

function Server:create_run(fields)
  local friendly, internal = self.store:create_run(fields)
  self:notify()
  return friendly, internal
end

function Server:update_run(friendly_id, fields)
  self.store:update_run(friendly_id, fields)
  self:notify()
end

function Server:delete_run(friendly_id)
  self.store:delete_run(friendly_id)
  self:notify()
end

-- The stored row in its wire (Postgres text) form, plus batchId; nil for an unknown run.
function Server:get_run(friendly_id)
  local rec = self.store:find(friendly_id)
  if not rec then return nil end
  local row, order = {}, {}
  for _, col in ipairs(values.COLUMNS) do
    row[col.name] = rec.enc[col.name]
    order[#order + 1] = col.name
  end
  row.batchId = rec.row.batchId or json.null
  order[#order + 1] = "batchId"
  return json.ordered(row, order)
end

-- Every shape gets a new handle: clients holding an old one get 409 must-refetch.
function Server:rotate_handles()
  self.shapes:clear()
  self:notify()
end

-- Which dialect serves the realtime routes from the next request on: "electric" or "native".
-- Requests already being held keep theirs.
function Server:set_backend(name)
  if not server.BACKENDS[name] then
    error(("unknown backend %q (electric or native)"):format(tostring(name)), 2)
  end
  self.backend = name
end

function Server:inject_fault(spec)
  local ok, err = self.faults:add(spec)
  if not ok then error(err, 2) end
end

-- Forget every pending fault (runs, handles and stats stay). -> how many were pending
function Server:clear_faults()
  local n = #self.faults.pending
  self.faults:clear()
  return n
end

function Server:put_blob(path, content_type, body)
  self.store:put_blob(path, content_type, body)
end

-- Run streams (streams.lua). create_stream lists `key` in the run's realtimeStreams as the PUT
-- route does (opts: version, legacy = true for metadata $$streams, list = false) -> version.
function Server:create_stream(friendly_id, key, opts)
  return self.streams:create(friendly_id, key, opts).version
end

-- Append chunks (JSON values) as the SDK writer would (opts: ids, timestamps, list = false).
-- -> version, cursors (v2 seq_nums / v1 Redis ids as strings)
function Server:append_stream(friendly_id, key, chunks, opts)
  return self.streams:append_chunks(friendly_id, key, chunks, opts)
end

-- Append raw records: v2 { body, headers, timestamp }, v1 { body = entry data, timestamp }.
function Server:append_stream_records(friendly_id, key, records, opts)
  return self.streams:append_records(friendly_id, key, records, opts)
end

-- Change the stream defaults: { version, timeout_s, ping_ms, batch_records, v1_max_length }.
function Server:stream_config(cfg)
  return self.streams:configure(cfg)
end

-- The management API's task catalogue (worker.lua): tasks = { ["task-id"] = { steps = {…},
-- queue_ms, ttl } }; replace = true forgets the tasks defined before. -> the names defined
function Server:define_tasks(tasks, replace)
  return self.tasks:define(tasks, replace)
end

-- The management API's switches and limits (worker.DEFAULT_CONFIG). -> the whole config
function Server:tasks_config(cfg)
  return self.tasks:configure(cfg)
end

-- Trigger a run as POST /api/v1/tasks/{task}/trigger would with the secret key: body =
-- { payload, options = {…} } as on the wire (not checked). -> friendlyId, or nil, message
function Server:trigger(task, body)
  local run, e = api.create_run(self, task, body or {}, { headers = {}, principal = { kind = "secret" } })
  if not run then return nil, e.message end
  return run.id
end

-- A batch of runs, as if both phases had come: items = { { task =, payload =, options = }, … }.
-- Its runs are made on the loop right after. -> the batch id
function Server:trigger_batch(items)
  assert(type(items) == "table" and #items > 0, "trigger_batch needs a list of items")
  return api.create_batch(self, items)
end

-- Forget runs, blobs, shapes, faults and stats (open connections stay open).
function Server:reset()
  self.tasks:clear()
  self.store:clear()
  self.shapes:clear()
  self.native:reset()
  self.streams:clear()
  self.faults:clear()
  self:reset_stats()
  self:notify()
end

-- Close every open connection at once, mid-request or not, as a server restart would; the data
-- and handles stay. `except` (a connection) is spared: the admin request asking for it.
function Server:drop_connections(except)
  for conn in pairs(self.conns) do
    if conn ~= except then
      conn.dropped = true
      pcall(conn.sock.shutdown, conn.sock, "rw")
    end
  end
  self:notify()
end

return server
