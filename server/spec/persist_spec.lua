-- The server's state file (--state, persist.lua): a kill -9 and a restart is a real restart.
-- Over real HTTP against the server in a child process (spec/helper.lua: start_server{state_file},
-- srv:kill9(), srv:restart()), plus a few in-process checks where only the process can tell.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"

package.path = helper.root .. "/server/lua/?.lua;" .. helper.root .. "/server/lua/?/init.lua;" ..
  package.path

local HEADERS = { ["x-trigger-electric-version"] = "1.0.0-beta.1",
                  ["x-trigger-api-version"] = "2025-07-16" }

-- One GET with the secret key. -> { status, headers, body, json }
local function get(srv, target)
  local conn = assert(socket.connect("127.0.0.1", srv.port))
  conn:settimeout(15)
  local lines = { "GET " .. target .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
                  "Authorization: Bearer " .. srv.secret_key }
  for k, v in pairs(HEADERS) do lines[#lines + 1] = k .. ": " .. v end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  local status_line = assert(conn:receive("*l"))
  local res = { status = tonumber(status_line:match("^HTTP/1%.1 (%d+)")), headers = {} }
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s?(.*)$")
    res.headers[name:lower()] = value
  end
  res.body = conn:receive(tonumber(res.headers["content-length"] or "0")) or ""
  conn:close()
  local ok, decoded = pcall(cjson.decode, res.body)
  if ok then res.json = decoded end
  return res
end

local function shape_url(path, offset, handle, extra)
  local url = path .. (path:find("?", 1, true) and "&" or "?") .. "offset=" .. offset
  if handle then url = url .. "&handle=" .. handle end
  return url .. (extra or "")
end

-- Initial sync until up to date. -> { handle, offset, rows = { id = value } }
local function sync(srv, path)
  local offset, handle, rows = "-1", nil, {}
  for _ = 1, 20 do
    local res = get(srv, shape_url(path, offset, handle))
    assert.are.equal(200, res.status, res.body)
    handle, offset = res.headers["electric-handle"], res.headers["electric-offset"]
    for _, m in ipairs(res.json) do
      if m.value then rows[m.value.id] = m.value end
    end
    if res.headers["electric-up-to-date"] then
      return { handle = handle, offset = offset, rows = rows }
    end
  end
  error("no up-to-date after 20 requests")
end

local function tmpname()
  local path = os.tmpname()
  os.remove(path)
  return path
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- Run the server command itself with `args` until it exits (it must not start).
-- -> exit status, stdout+stderr
local function run_server_cmd(args)
  local cmd = ("%s %s/server/bin/trigger-realtime-server %s 2>&1; echo \"status=$?\"")
    :format(helper.lua, helper.root, args)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  local status = tonumber(out:match("status=(%d+)%s*$"))
  return status, out:gsub("status=%d+%s*$", "")
end

describe("the state file (--state)", function()
  local srv, path

  before_each(function()
    path = tmpname()
    srv = helper.start_server { state_file = path, hold_ms = 400, chunk_rows = 2 }
  end)

  after_each(function()
    srv:stop()
    os.remove(path)
    os.remove(path .. ".tmp")
  end)

  it("keeps runs, batches and blobs across kill -9 and restart", function()
    local a = srv:create_run { tags = { "p:1", "x" }, batchId = "batch_p1", costInCents = 0.1 + 0.2,
                               metadata = '{"a":"line\\nbreak"}', error = { message = "e", n = 1.5 } }
    local b = srv:create_run { tags = { "p:1" }, payload = "bytes \0\1\255 end" }
    local c = srv:create_run { tags = { "p:1" } }
    srv:update_run(a, { status = "EXECUTING", output = '{"ok":true}', tags = { "p:1", "y" } })
    srv:delete_run(c)
    srv:put_blob("packets/out.json", "application/json", '{"big":"' .. ("z"):rep(50000) .. '"}')
    local before_a, before_b = srv:get_run(a), srv:get_run(b)
    local pid = srv.pid
    srv:restart()
    assert.are_not.equal(pid, srv.pid)
    assert.are.same(before_a, srv:get_run(a))
    assert.are.same(before_b, srv:get_run(b))
    assert.is_nil(srv:get_run(c))
    local batch = get(srv, shape_url("/realtime/v1/batches/batch_p1", "-1"))
    assert.are.equal(200, batch.status)
    assert.are.equal(a, batch.json[1].value.friendlyId)
    local blob = get(srv, "/_blobs/packets/out.json")
    assert.are.equal(200, blob.status)
    assert.are.equal(50010, #blob.body)
    -- Run numbers go on where they were.
    local d = srv:create_run {}
    assert.are.equal("4", srv:get_run(d).number)
  end)

  it("keeps handles and offsets: a catch-up after the restart is the one before it", function()
    local a = srv:create_run { tags = { "h:1" } }
    srv:create_run { tags = { "h:1" } }
    srv:create_run { tags = { "h:1" } }
    local state = sync(srv, "/realtime/v1/runs?tags=h:1")
    srv:update_run(a, { status = "EXECUTING" })
    local e = srv:create_run { tags = { "h:1" } }
    srv:create_run { tags = { "other" } }
    local target = shape_url("/realtime/v1/runs?tags=h:1", state.offset, state.handle)
    local before = get(srv, target)
    assert.are.equal(200, before.status)
    srv:restart()
    local after = get(srv, target)
    assert.are.equal(200, after.status)
    assert.are.equal(state.handle, after.headers["electric-handle"])
    assert.are.equal(before.headers["electric-offset"], after.headers["electric-offset"])
    assert.are.equal(before.body, after.body)
    -- Exactly the changes since: the update of a and the insert of e, then up to date.
    local ops = {}
    for _, m in ipairs(after.json) do
      if m.headers.operation then ops[#ops + 1] = m.headers.operation .. ":" .. m.value.id end
    end
    assert.are.same({ "update:" .. srv:get_run(a).id, "insert:" .. srv:get_run(e).id }, ops)
    assert.is_string(after.headers["electric-up-to-date"])
    -- The same shape asked afresh keeps its handle; a live request at the head is held and
    -- woken by the next change.
    local fresh = get(srv, shape_url("/realtime/v1/runs?tags=h:1", "-1"))
    assert.are.equal(state.handle, fresh.headers["electric-handle"])
    local live = get(srv, shape_url("/realtime/v1/runs?tags=h:1", after.headers["electric-offset"],
                                    state.handle, "&live=true"))
    assert.are.equal(200, live.status)
    assert.are.same({ { headers = { control = "up-to-date" } } }, live.json)
  end)

  it("keeps what a client was told right before the kill -9", function()
    local state
    for i = 1, 5 do
      local id = srv:create_run { tags = { "k:1" }, idempotencyKey = "k" .. i }
      state = sync(srv, "/realtime/v1/runs?tags=k:1")
      srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
      srv:kill9()
      srv:restart()
      assert.are.equal("COMPLETED_SUCCESSFULLY", srv:get_run(id).status)
      local res = get(srv, shape_url("/realtime/v1/runs?tags=k:1", state.offset, state.handle))
      assert.are.equal(200, res.status)
      assert.are.equal(state.handle, res.headers["electric-handle"])
      assert.are.equal(1, #res.json - 1) -- the update, then up-to-date
      assert.are.equal("COMPLETED_SUCCESSFULLY", res.json[1].value.status)
    end
  end)

  it("saves changes nobody was told about within moments (scenario changes)", function()
    srv:stop()
    local scenario = tmpname() .. ".lua"
    write_file(scenario, [[
return function(s, sleep)
  sleep(0.05)
  if not s.store:find("run_from_scenario") then
    s:create_run { friendlyId = "run_from_scenario", metadata = tostring(math.random()) }
  end
end]])
    srv = helper.start_server { state_file = path, scenario = scenario }
    socket.sleep(0.6) -- the scenario runs and the saver saves: no request in between
    srv:kill9()
    srv = helper.start_server { state_file = path }
    local row = srv:get_run("run_from_scenario")
    os.remove(scenario)
    assert.is_table(row)
  end)

  it("answers 409 when the file is older than what the client was told", function()
    srv:create_run { tags = { "o:1" } }
    local state = sync(srv, "/realtime/v1/runs?tags=o:1")
    local old = read_file(path)
    srv:create_run { tags = { "o:1" } }
    srv:create_run { tags = { "o:1" } }
    local newer = sync(srv, "/realtime/v1/runs?tags=o:1")
    assert.are.equal(state.handle, newer.handle)
    assert.are_not.equal(state.offset, newer.offset)
    srv:kill9()
    write_file(path, old) -- as if the last changes never reached the disk
    srv:restart()
    local res = get(srv, shape_url("/realtime/v1/runs?tags=o:1", newer.offset, newer.handle))
    assert.are.equal(409, res.status)
    assert.are_not.equal(state.handle, res.headers["electric-handle"])
    -- A client at an offset the file still has keeps going (on the new handle after a 409).
    local again = sync(srv, "/realtime/v1/runs?tags=o:1")
    assert.are.equal(res.headers["electric-handle"], again.handle)
  end)

  it("answers 409 to a live request beyond what the file holds", function()
    srv:create_run { tags = { "o:2" } }
    local old_state = sync(srv, "/realtime/v1/runs?tags=o:2")
    local old = read_file(path)
    srv:create_run { tags = { "o:2" } }
    local newer = sync(srv, "/realtime/v1/runs?tags=o:2")
    srv:kill9()
    write_file(path, old)
    srv:restart()
    local res = get(srv, shape_url("/realtime/v1/runs?tags=o:2", newer.offset, newer.handle,
                                   "&live=true"))
    assert.are.equal(409, res.status)
    assert.are.same({ { headers = { control = "must-refetch" } } }, res.json)
    -- The offset the old file has is still fine for the old handle's holders... until the 409
    -- above made the shape forget it: from then on they refetch too, as on Electric.
    local stale = get(srv, shape_url("/realtime/v1/runs?tags=o:2", old_state.offset,
                                     old_state.handle))
    assert.are.equal(409, stale.status)
  end)

  it("keeps the backend set at run time", function()
    srv:set_backend("native")
    srv:restart()
    assert.are.equal("native", srv:stats().backend)
  end)

  it("keeps the change log compacted as it was", function()
    local id = srv:create_run { tags = { "c:1" } }
    for i = 1, 5 do srv:update_run(id, { usageDurationMs = i }) end
    local r = srv:admin("POST", "/_emulator/compact", { keep = 2 })
    srv:restart()
    local state = sync(srv, "/realtime/v1/runs?tags=c:1")
    assert.are.equal("5", state.rows[srv:get_run(id).id].usageDurationMs)
    local floor = r.floor
    assert.are.equal(floor, srv:admin("POST", "/_emulator/compact", { keep = 1000 }).floor)
  end)

  it("saves on a clean exit (SIGTERM) and leaves no temporary file", function()
    local id = srv:create_run { tags = { "s:1" } }
    srv:stop()
    assert.is_true(exists(path))
    assert.is_false(exists(path .. ".tmp"))
    srv = helper.start_server { state_file = path }
    assert.is_table(srv:get_run(id))
  end)

  it("saves a reset too", function()
    srv:create_run { tags = { "r:1" } }
    srv:reset()
    srv:restart()
    local state = sync(srv, "/realtime/v1/runs?tags=r:1")
    assert.are.same({}, state.rows)
  end)
end)

describe("a state file that cannot be read", function()
  local path

  before_each(function() path = tmpname() end)
  after_each(function() os.remove(path) end)

  local function refuses(why_pattern)
    local status, out = run_server_cmd("--port 0 --state " .. path)
    assert.are.equal(1, status, out)
    assert.truthy(out:find("cannot load state file " .. path, 1, true), out)
    assert.truthy(out:find(why_pattern), out)
    assert.falsy(out:find("traceback", 1, true), out)
    assert.falsy(out:find("usage:", 1, true), out)
    assert.falsy(out:find("listening", 1, true), out)
  end

  it("is a clear error at start: garbage", function()
    write_file(path, "\0\1 this is not a state file {{{")
    refuses("not readable")
  end)

  it("is a clear error at start: cut short", function()
    local srv = helper.start_server { state_file = path }
    srv:create_run { tags = { "t" }, payload = ("p"):rep(5000) }
    srv:stop()
    local text = read_file(path)
    write_file(path, text:sub(1, #text // 2))
    refuses("not readable")
  end)

  it("is a clear error at start: some other Lua data", function()
    write_file(path, "return { format = 'something else' }")
    refuses("not a trigger%-realtime%-server%-state file")
  end)

  it("is a clear error at start: references that do not hold", function()
    local srv = helper.start_server { state_file = path }
    srv:create_run {}
    srv:stop()
    write_file(path, (read_file(path):gsub("runs={\n1,1,", "runs={\n7,1,")))
    refuses("out of range")
  end)

  it("is a clear error at start: written with other value styles", function()
    local srv = helper.start_server { state_file = path }
    srv:stop()
    local status, out = run_server_cmd("--port 0 --bool-style true --state " .. path)
    assert.are.equal(1, status, out)
    assert.truthy(out:find("bool_style=t", 1, true), out)
  end)

  it("is a clear error at start: not a file", function()
    assert(os.execute("mkdir " .. path))
    refuses("Is a directory")
    os.execute("rmdir " .. path)
  end)

  it("is a clear error at start when it cannot be created", function()
    local status, out = run_server_cmd("--port 0 --state /nonexistent-dir/state")
    assert.are.equal(1, status, out)
    assert.truthy(out:find("cannot save state file /nonexistent-dir/state", 1, true), out)
  end)
end)

describe("without a state file", function()
  it("writes nothing", function()
    local dir = tmpname()
    assert(os.execute("mkdir " .. dir))
    local root = helper.root:sub(1, 1) == "/" and helper.root or
      (os.getenv("PWD") .. "/" .. helper.root)
    local cmd = ("cd %s && exec sh -c 'echo $$; exec %s %s/server/bin/trigger-realtime-server --port 0'")
      :format(dir, helper.lua, root)
    local p = assert(io.popen(cmd, "r"))
    local pid = p:read("l")
    local line = p:read("l")
    local port = tonumber(line:match(":(%d+)$"))
    assert.are.equal(200, (helper.http("127.0.0.1", port, "POST", "/_emulator/runs",
                                       '{"tags":["n:1"]}')))
    assert.are.equal(200, (helper.http("127.0.0.1", port, "POST", "/_emulator/blobs",
                                       '{"path":"p","body":"b"}')))
    socket.sleep(0.3)
    os.execute("kill " .. pid)
    p:close()
    local ls = io.popen("ls -A " .. dir)
    local listing = ls:read("a")
    ls:close()
    os.execute("rmdir " .. dir)
    assert.are.equal("", listing)
  end)
end)

describe("the state file in process", function()
  local server = require "trigger_realtime_server"
  local persist = require "trigger_realtime_server.persist"
  local path

  before_each(function() path = tmpname() end)
  after_each(function() os.remove(path) end)

  it("is saved by close() when nothing else saved it", function()
    local s = server.new { state_file = path }
    s:create_run { friendlyId = "run_closed", costInCents = 1 / 3 }  -- no loop ran: no save yet
    assert.is_true(s.persist:dirty())
    s:close()
    local s2 = server.new { state_file = path }
    local rec = s2.store:find("run_closed")
    assert.are.equal(1 / 3, rec.row.costInCents)
    assert.are.equal("float", math.type(rec.row.costInCents))
    assert.are.equal("integer", math.type(rec.row.createdAt))
    assert.is_false(s2.persist:dirty())
  end)

  it("reads back exactly what it wrote, sharing rows as in memory", function()
    local s = server.new { state_file = path }
    local id = s:create_run { tags = { "a", "b" }, error = { message = "x", list = { 1, 2.5 } },
                              metadata = "\0\r\n\"\\ \255" }
    for i = 1, 3 do s:update_run(id, { usageDurationMs = i, costInCents = i / 10 }) end
    s.store:compact(2)
    s:put_blob("p", "text/plain", "body")
    local text = persist.encode(s)
    local state = assert(persist.decode(text, s.opts))
    local s2 = server.new {}
    persist.apply(s2, state)
    assert.are.same(s.store.runs, s2.store.runs)
    assert.are.same(s.store.log, s2.store.log)
    assert.are.same(s.store.base, s2.store.base)
    assert.are.same(s.store.blobs, s2.store.blobs)
    assert.are.equal(s.store.floor, s2.store.floor)
    local rec = s2.store:find(id)
    assert.are.equal(rec.row, s2.store.log[s2.store.head].after)
    assert.are.equal(rec.enc, s2.store.log[s2.store.head].after_enc)
    assert.are.equal(#text, #persist.encode(s2))
  end)
end)
