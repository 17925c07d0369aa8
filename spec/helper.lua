-- Shared by every spec: module paths, and a local realtime server in a child process.
--
--   local helper = require "spec.helper"
--   local srv = helper.start_server{ hold_ms = 2000 }
--   local id, internal = srv:create_run{ tags = { "user:1" } }
--   ...
--   srv:stop()
--
-- The server runs as a separate process (server/bin/trigger-realtime-server) so that a client under
-- test can block on it freely; the spec drives it over the /_emulator admin routes.
local cjson = require "cjson"
local socket = require "socket"

local helper = {}

-- The repository root: where this file's spec/ directory lives.
local source = debug.getinfo(1, "S").source:gsub("^@", "")
helper.root = source:match("^(.*)/spec/helper%.lua$") or "."

-- BUILD (set by `make test`) names the build of the C modules for the Lua running the specs.
local build = os.getenv("BUILD") or (jit and "build/luajit" or "build/5.4") -- luacheck: ignore jit
helper.lua_path = "lua/?.lua;lua/?/init.lua;"
helper.cpath = build .. "/?.so;"
if helper.root ~= "." then
  helper.lua_path = helper.root .. "/lua/?.lua;" .. helper.root .. "/lua/?/init.lua;" ..
    helper.lua_path
  helper.cpath = helper.root .. "/" .. build .. "/?.so;" .. helper.cpath
end
package.path = helper.lua_path .. package.path
package.cpath = helper.cpath .. package.cpath

helper.null = cjson.null
helper.lua = os.getenv("TRIGGER_SERVER_LUA") or "lua5.4"
helper.DEFAULT_SECRET_KEY = "tr_dev_local_emulator_secret_key"
helper.DEFAULT_ENVIRONMENT_ID = "env_local_emulator"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- server option -> command-line flag
local FLAGS = {
  hold_ms = "--hold-ms", chunk_rows = "--chunk-rows", max_connections = "--max-connections",
  secret_key = "--secret-key", environment_id = "--environment-id", bool_style = "--bool-style",
  timestamp_style = "--timestamp-style", scenario = "--scenario", host = "--host",
  backend = "--backend", native_coalesce_ms = "--native-coalesce-ms",
  native_max_runs = "--native-max-runs",
  stream_version = "--stream-version", stream_timeout_s = "--stream-timeout-s",
  stream_ping_ms = "--stream-ping-ms", stream_batch_records = "--stream-batch-records",
  state_file = "--state",
}
local SWITCHES = { legacy_packets_only = "--legacy-packets-only", verbose = "--verbose" }

local function command_line(opts)
  local args = { helper.lua, shell_quote(helper.root .. "/server/bin/trigger-realtime-server"),
                 "--port", tostring(opts.port or 0) }
  for k, v in pairs(opts) do
    if FLAGS[k] then
      args[#args + 1] = FLAGS[k]
      args[#args + 1] = shell_quote(v)
    elseif SWITCHES[k] then
      if v then args[#args + 1] = SWITCHES[k] end
    elseif k ~= "port" then
      error("helper.start_server: unknown option " .. tostring(k), 3)
    end
  end
  return table.concat(args, " ")
end

---------------------------------------------------------------------------------------------------
-- A minimal HTTP client for the admin routes: one connection per call, Connection: close.

local function read_response(conn)
  local status_line, err = conn:receive("*l")
  if not status_line then return nil, "no response: " .. tostring(err) end
  local status = tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)"))
  local headers = {}
  while true do
    local line = conn:receive("*l")
    if not line or line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then headers[name:lower()] = value end
  end
  local body = ""
  local length = tonumber(headers["content-length"] or "")
  if length and length > 0 then body = conn:receive(length) or "" end
  return status, body, headers
end

-- -> status, body (string), headers
--- A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot pick their own).
function helper.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Run a shell command quietly; true when it succeeded.
function helper.sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

--- A throwaway directory with a self-signed certificate for 127.0.0.1 and localhost:
-- dir .. "/cert.pem" and dir .. "/key.pem". Remove it with helper.sh("rm -rf " .. dir).
function helper.self_signed_cert()
  local dir = os.tmpname()
  os.remove(dir)
  assert(helper.sh("mkdir -p " .. dir))
  assert(helper.sh(string.format("openssl req -x509 -newkey rsa:2048 -nodes -days 1 "
    .. "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
    .. "-keyout %s/key.pem -out %s/cert.pem", dir, dir)))
  return dir
end

function helper.http(base_host, port, method, path, body)
  local conn = assert(socket.connect(base_host, port))
  conn:settimeout(30)
  local lines = {
    ("%s %s HTTP/1.1"):format(method, path),
    "Host: " .. base_host .. ":" .. port,
    "Connection: close",
  }
  if body then
    lines[#lines + 1] = "Content-Type: application/json"
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  local status, rbody, headers = read_response(conn)
  conn:close()
  if not status then error(rbody, 2) end
  return status, rbody, headers
end

---------------------------------------------------------------------------------------------------

local Server = {}
Server.__index = Server

local running = {}

-- Admin call; raises unless the answer is 2xx. -> decoded JSON body
function Server:admin(method, path, value)
  local body = value ~= nil and cjson.encode(value) or nil
  local status, rbody = helper.http("127.0.0.1", self.port, method, path, body)
  if status < 200 or status > 299 then
    error(("%s %s -> %d %s"):format(method, path, status, rbody), 3)
  end
  return cjson.decode(rbody)
end

local function encode_id(id)
  return (id:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

function Server:create_run(fields)
  local r = self:admin("POST", "/_emulator/runs", fields or {})
  return r.id, r.internalId
end

function Server:update_run(id, fields)
  self:admin("PATCH", "/_emulator/runs/" .. encode_id(id), fields)
end

function Server:delete_run(id)
  self:admin("DELETE", "/_emulator/runs/" .. encode_id(id))
end

-- The stored row in wire form (strings or cjson.null), plus batchId; nil for an unknown run.
function Server:get_run(id)
  local status, body = helper.http("127.0.0.1", self.port, "GET", "/_emulator/runs/" .. encode_id(id))
  if status == 404 then return nil end
  assert(status == 200, body)
  return cjson.decode(body)
end

function Server:rotate() self:admin("POST", "/_emulator/rotate") end
function Server:fault(spec) self:admin("POST", "/_emulator/faults", spec) end
-- Forget the pending faults (ones no request has taken yet). -> how many there were
function Server:clear_faults() return self:admin("DELETE", "/_emulator/faults").cleared end
function Server:stats() return self:admin("GET", "/_emulator/stats") end
function Server:reset() self:admin("POST", "/_emulator/reset") end
function Server:drop_connections() self:admin("POST", "/_emulator/drop_connections") end
-- Flip the running server to the "electric" or "native" backend (from its next request on).
function Server:set_backend(name) self:admin("POST", "/_emulator/backend", { backend = name }) end
function Server:get_backend() return self:admin("GET", "/_emulator/backend").backend end
-- Zero the request counters and log (before counting requests over an idle window).
function Server:reset_stats() self:admin("POST", "/_emulator/stats/reset") end

function Server:put_blob(path, content_type, body)
  self:admin("POST", "/_emulator/blobs", { path = path, contentType = content_type, body = body })
end

-- Run streams (server/README.md, "Streams"). create_stream lists `key` in the run's
-- realtimeStreams (opts: version = "v1"|"v2", legacy = true for metadata $$streams, list = false)
-- -> version
function Server:create_stream(run_id, key, opts)
  local path = "/_emulator/streams/" .. encode_id(run_id) .. "/" .. encode_id(key)
  return self:admin("POST", path, opts or {}).version
end

-- Append chunks (JSON values) as the SDK writer would; opts: ids (envelope ids), timestamps (ms),
-- list = false. -> { version = "v1"|"v2", ids = { cursor, ... } } (v2 seq_nums / v1 Redis ids)
function Server:append_stream(run_id, key, chunks, opts)
  local body = {}
  for k, v in pairs(opts or {}) do body[k] = v end
  body.chunks = chunks
  return self:admin("POST", "/_emulator/streams/" .. encode_id(run_id) .. "/" .. encode_id(key)
                    .. "/append", body)
end

-- Raw records: v2 { body = "…", headers = {{"", "trim"}}, timestamp = ms }; v1 { body = entry
-- data (several lines, or part of one) }. -> { version, ids }
function Server:append_stream_records(run_id, key, records, opts)
  local body = {}
  for k, v in pairs(opts or {}) do body[k] = v end
  body.records = records
  return self:admin("POST", "/_emulator/streams/" .. encode_id(run_id) .. "/" .. encode_id(key)
                    .. "/append", body)
end

-- What a stream holds: { version, records = { … } }, nil when it was never made.
function Server:get_stream(run_id, key)
  local status, body = helper.http("127.0.0.1", self.port, "GET",
    "/_emulator/streams/" .. encode_id(run_id) .. "/" .. encode_id(key))
  if status == 404 then return nil end
  assert(status == 200, body)
  return cjson.decode(body)
end

-- Change the stream defaults: { version, timeout_s, ping_ms, batch_records, v1_max_length }.
function Server:stream_config(cfg)
  return self:admin("POST", "/_emulator/stream_config", cfg or {})
end

function Server:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  self.pipe:close() -- waits for the child
  running[self] = nil
end

-- SIGKILL the server: no clean exit, no last save (with state_file, what it told anyone is
-- already on disk).
function Server:kill9()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
  self.pipe:close()
  running[self] = nil
end

local launch

-- kill -9, then start the same command again (same options, same state file) on the same port;
-- returns once it listens (with a state file: once the state is read back). Raises if it
-- cannot start.
function Server:restart()
  self:kill9()
  local pid, pipe, base_url = launch(self.opts, 2)
  self.pid, self.pipe, self.base_url, self.stopped = pid, pipe, base_url, false
  running[self] = true
  return self
end

-- -> pid, pipe, base_url of a started server (raises at `level` when it does not start)
function launch(opts, level)
  -- exec: no shell stays between us and the server (one would report a kill -9 on stderr).
  local cmd = "exec sh -c " .. shell_quote("echo $$; exec " .. command_line(opts))
  local pipe = assert(io.popen(cmd, "r"))
  local pid = tonumber(pipe:read("l"))
  local line = pipe:read("l")
  local base_url = line and line:match("^listening (http://%S+)$")
  if not (pid and base_url) then
    pipe:close()
    error("trigger-realtime-server did not start (got " .. tostring(line) .. ")", level + 1)
  end
  return pid, pipe, base_url
end

-- Start server/bin/trigger-realtime-server on a free port. opts: hold_ms, chunk_rows, max_connections,
-- secret_key, environment_id, bool_style, timestamp_style, legacy_packets_only, scenario, verbose,
-- backend ("electric" | "native"), native_coalesce_ms, native_max_runs, state_file (--state: the
-- state survives srv:restart(), a kill -9 and start again on the same port).
function helper.start_server(opts)
  opts = opts or {}
  local pid, pipe, base_url = launch(opts, 2)
  local port = tonumber(base_url:match(":(%d+)$"))
  local again = {} -- what restart() starts: the same options, on the port it has now
  for k, v in pairs(opts) do again[k] = v end
  again.port = port
  local self = setmetatable({
    opts = again, pid = pid, pipe = pipe, base_url = base_url,
    port = port,
    secret_key = opts.secret_key or helper.DEFAULT_SECRET_KEY,
    environment_id = opts.environment_id or helper.DEFAULT_ENVIRONMENT_ID,
  }, Server)
  running[self] = true
  return self
end

---------------------------------------------------------------------------------------------------
-- Client side, for the specs that follow runs (they require trigger lazily: the server's own
-- specs load this file too).

-- Options for a subscription against `srv`: its key and URL, fast retries.
function helper.client_opts(srv, opts)
  opts = opts or {}
  opts.access_token = opts.access_token or srv.secret_key
  opts.base_url = opts.base_url or srv.base_url
  opts.retry_base = opts.retry_base or 0.01
  opts.retry_cap = opts.retry_cap or 0.05
  return opts
end

-- Options for a spec that makes no request that matters (nothing listens on port 9: what it
-- opens is closed before it could), with `extra` on top: a fresh table each call.
function helper.offline_opts(name, extra)
  local t = { access_token = "tr_dev_" .. name, base_url = "http://127.0.0.1:9" }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

-- The next n runs of `sub`, failing clearly if they do not come.
function helper.collect(sub, n, timeout)
  local out = {}
  while #out < n do
    local run, why, err = sub:next(timeout or 10)
    if not run then
      error(string.format("got %d of %d runs: %s %s", #out, n, tostring(why), tostring(err)), 2)
    end
    out[#out + 1] = run
  end
  return out
end

local tag_seq = 0
-- A tag no other spec uses.
function helper.fresh_tag(prefix)
  tag_seq = tag_seq + 1
  return (prefix or "user:") .. tag_seq .. "-" .. os.time()
end

-- Stop every server still running (specs that failed half-way leave some behind).
function helper.stop_all()
  for s in pairs(running) do s:stop() end
end

-- Last resort when the Lua state closes: never leave a server process behind.
helper._reaper = setmetatable({}, { __gc = function() helper.stop_all() end })

return helper
