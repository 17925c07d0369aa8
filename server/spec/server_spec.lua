-- Specs of the local realtime server itself, spoken to with a raw HTTP client so that every
-- byte it sends (headers, framing, broken bodies) is visible.
local helper = require "spec.helper"
local cjson = require "cjson"
local hmac = require "openssl.hmac"
local socket = require "socket"

local NULL = cjson.null

---------------------------------------------------------------------------------------------------
-- A raw HTTP/1.1 client

-- Open a connection and send one request. headers: { name = value }.
local function send(port, method, target, headers, body, conn)
  conn = conn or assert(socket.connect("127.0.0.1", port))
  conn:settimeout(15)
  local lines = { ("%s %s HTTP/1.1"):format(method, target), "Host: 127.0.0.1:" .. port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")))
  return conn
end

-- Read one response: { status, headers = {lower-case name = value}, body, complete, chunks }.
-- `complete` is false when the body broke off before its announced end; status is nil when the
-- connection closed before any answer.
local function receive(conn)
  local line = conn:receive("*l")
  if not line then return { status = nil, complete = false } end
  local res = { status = tonumber(line:match("^HTTP/1%.1 (%d+)")), headers = {}, complete = true }
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s?(.*)$")
    res.headers[name:lower()] = value
  end
  if res.headers["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local size_line = conn:receive("*l")
      if not size_line then res.complete = false break end
      local size = tonumber(size_line, 16)
      if size == 0 then conn:receive("*l") break end
      parts[#parts + 1] = conn:receive(size)
      conn:receive("*l")
    end
    res.body, res.chunks = table.concat(parts), #parts
  else
    local n = tonumber(res.headers["content-length"] or "0")
    local data, _, partial = conn:receive(n)
    res.body = data or partial or ""
    res.complete = data ~= nil
  end
  local ok, decoded = pcall(cjson.decode, res.body)
  if ok then res.json = decoded end
  return res
end

local function request(port, method, target, headers, body)
  local conn = send(port, method, target, headers, body)
  local res = receive(conn)
  conn:close()
  return res
end

---------------------------------------------------------------------------------------------------
-- Tokens, signed here with luaossl independently of the server's code

local function b64url(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local count = c and 4 or (b and 3 or 2)
    for j = 0, count - 1 do
      local k = (n >> (18 - 6 * j)) & 63
      out[#out + 1] = alphabet:sub(k + 1, k + 1)
    end
  end
  return table.concat(out)
end

local function sign_jwt(claims, key)
  local header = b64url(cjson.encode({ alg = "HS256", typ = "JWT" }))
  local body = b64url(cjson.encode(claims))
  local sig = hmac.new(key, "sha256"):final(header .. "." .. body)
  return header .. "." .. body .. "." .. b64url(sig)
end

local function public_token(srv, overrides)
  local claims = {
    sub = srv.environment_id, pub = true, iss = "https://id.trigger.dev",
    aud = "https://api.trigger.dev", iat = os.time(), exp = os.time() + 900, scopes = {},
  }
  for k, v in pairs(overrides or {}) do claims[k] = v end
  return sign_jwt(claims, srv.secret_key)
end

---------------------------------------------------------------------------------------------------
-- Shape helpers

local function headers_for(token)
  return {
    Authorization = "Bearer " .. token,
    ["x-trigger-electric-version"] = "1.0.0-beta.1",
    ["x-trigger-api-version"] = "2025-07-16",
  }
end

local function get(srv, target, token)
  return request(srv.port, "GET", target, headers_for(token or srv.secret_key))
end

local function with_params(path, params)
  local parts = {}
  for k, v in pairs(params) do parts[#parts + 1] = k .. "=" .. v end
  table.sort(parts)
  return path .. (path:find("?", 1, true) and "&" or "?") .. table.concat(parts, "&")
end

local function changes_of(res)
  local out = {}
  for _, m in ipairs(res.json or {}) do
    if m.key then out[#out + 1] = m end
  end
  return out
end

local function is_up_to_date(res)
  local last = res.json and res.json[#res.json]
  return res.headers["electric-up-to-date"] ~= nil and last ~= nil and last.headers.control == "up-to-date"
end

-- Follow a shape from offset -1 until up to date. -> state { rows = id -> value, handle, offset,
-- responses = { ... } }
local function sync(srv, path, token)
  local state = { rows = {}, responses = {}, offset = "-1" }
  for _ = 1, 100 do
    local res = get(srv, with_params(path, { offset = state.offset, handle = state.handle }), token)
    assert.are.equal(200, res.status, res.body)
    state.responses[#state.responses + 1] = res
    state.handle, state.offset = res.headers["electric-handle"], res.headers["electric-offset"]
    for _, m in ipairs(changes_of(res)) do
      local id = m.value.id
      if m.headers.operation == "delete" then
        state.rows[id] = nil
      else
        local row = state.rows[id] or {}
        for k, v in pairs(m.value) do row[k] = v end
        state.rows[id] = row
      end
    end
    if is_up_to_date(res) then return state end
  end
  error("never up to date")
end

local function live_target(path, state, cursor)
  return with_params(path, { offset = state.offset, handle = state.handle, live = "true",
                             cursor = cursor or "" })
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function keys_of(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- Wait (briefly, polling) until the server's stats satisfy `pred`.
local function eventually(srv, pred)
  for _ = 1, 200 do
    local st = srv:stats()
    if pred(st) then return st end
    socket.sleep(0.02)
  end
  error("condition never held")
end

local TAG_PATH = "/realtime/v1/runs?tags=user%3A1"

---------------------------------------------------------------------------------------------------

describe("trigger_realtime_server over HTTP", function()
  local srv

  setup(function()
    srv = helper.start_server { hold_ms = 600, chunk_rows = 3 }
  end)

  teardown(function()
    srv:stop()
  end)

  before_each(function()
    srv:reset()
  end)

  describe("shape log", function()
    it("serves the initial sync in chunks, up to date only at the end", function()
      for i = 1, 7 do srv:create_run { tags = { "user:1" }, payload = '{"i":' .. i .. "}" } end
      local state = sync(srv, TAG_PATH)
      assert.are.equal(7, count(state.rows))
      assert.are.equal(3, #state.responses)
      local first, second, last = table.unpack(state.responses)
      assert.are.equal(3, #changes_of(first))
      assert.is_nil(first.headers["electric-up-to-date"])
      assert.is_nil(second.headers["electric-up-to-date"])
      assert.are.equal(1, #changes_of(last))
      assert.are.equal("7_0", last.headers["electric-offset"])
      for _, r in ipairs(state.responses) do
        assert.is_string(r.headers["electric-schema"])
        assert.are.equal(state.handle, r.headers["electric-handle"])
        assert.is_nil(r.headers["electric-cursor"])
      end
      assert.are.equal("insert", changes_of(first)[1].headers.operation)
      assert.are.same({ "public", "TaskRun" }, changes_of(first)[1].headers.relation)
    end)

    it("never answers offset=-1 up to date, even when everything fits", function()
      srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      assert.are.equal(2, #state.responses)
      assert.are.equal(1, #changes_of(state.responses[1]))
      assert.is_nil(state.responses[1].headers["electric-up-to-date"])
      assert.are.equal(0, #changes_of(state.responses[2]))
    end)

    it("keys messages by the internal id in Electric's form", function()
      local _, internal = srv:create_run { tags = { "user:1" } }
      local res = get(srv, TAG_PATH .. "&offset=-1")
      assert.are.equal('"public"."TaskRun"/"' .. internal .. '"', res.json[1].key)
      assert.are.equal(internal, res.json[1].value.id)
    end)

    it("wakes a held live request as soon as a matching run changes", function()
      local state = sync(srv, TAG_PATH)
      local conn = send(srv.port, "GET", live_target(TAG_PATH, state), headers_for(srv.secret_key))
      local id = srv:create_run { tags = { "user:1" } }
      local res = receive(conn)
      conn:close()
      assert.are.equal(200, res.status)
      local msgs = changes_of(res)
      assert.are.equal(1, #msgs)
      assert.are.equal(id, msgs[1].value.friendlyId)
      assert.is_true(is_up_to_date(res))
      assert.is_string(res.headers["electric-cursor"])
      assert.is_nil(res.headers["electric-schema"])
      assert.are_not.equal(state.offset, res.headers["electric-offset"])
    end)

    it("ends a quiet live request with up-to-date at the same offset", function()
      local state = sync(srv, TAG_PATH)
      srv:create_run { tags = { "someone-else" } }
      local res = get(srv, live_target(TAG_PATH, state))
      assert.are.equal(200, res.status)
      assert.are.equal(0, #changes_of(res))
      assert.is_true(is_up_to_date(res))
      assert.are.equal(state.offset, res.headers["electric-offset"])
      local cursor = res.headers["electric-cursor"]
      local again = get(srv, live_target(TAG_PATH, state, cursor))
      assert.are_not.equal(cursor, again.headers["electric-cursor"])
    end)

    it("sends partial updates: id plus the changed columns, NULL as null", function()
      local id = srv:create_run { tags = { "user:1" }, metadata = '{"p":1}' }
      local state = sync(srv, TAG_PATH)
      srv:update_run(id, { status = "EXECUTING", startedAt = "2025-01-10T12:00:00.5Z",
                           metadata = NULL })
      local res = get(srv, live_target(TAG_PATH, state))
      local msgs = changes_of(res)
      assert.are.equal(1, #msgs)
      assert.are.equal("update", msgs[1].headers.operation)
      assert.are.same({ "id", "metadata", "startedAt", "status", "updatedAt" }, keys_of(msgs[1].value))
      assert.are.equal(NULL, msgs[1].value.metadata)
      assert.are.equal("2025-01-10 12:00:00.5", msgs[1].value.startedAt)
      assert.are.equal("EXECUTING", msgs[1].value.status)
    end)

    it("turns a run that gains the tag into an insert and one that loses it into a delete", function()
      local a = srv:create_run { tags = { "other" } }
      local b, b_internal = srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      srv:update_run(a, { tags = { "other", "user:1" } })
      srv:update_run(b, { tags = {} })
      local res = get(srv, with_params(TAG_PATH, { offset = state.offset, handle = state.handle }))
      local msgs = changes_of(res)
      assert.are.equal(2, #msgs)
      assert.are.equal("insert", msgs[1].headers.operation)
      assert.are.equal(a, msgs[1].value.friendlyId)
      assert.is_string(msgs[1].value.payload) -- a full row
      assert.are.equal("delete", msgs[2].headers.operation)
      assert.are.same({ id = b_internal }, msgs[2].value)
    end)

    it("reports a deleted run as a delete", function()
      local id, internal = srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      srv:delete_run(id)
      local res = get(srv, live_target(TAG_PATH, state))
      local msgs = changes_of(res)
      assert.are.equal("delete", msgs[1].headers.operation)
      assert.are.same({ id = internal }, msgs[1].value)
    end)

    it("answers a non-live request at an older offset with the changes since", function()
      local id = srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      srv:update_run(id, { status = "DEQUEUED" })
      srv:update_run(id, { status = "EXECUTING" })
      local res = get(srv, with_params(TAG_PATH, { offset = state.offset, handle = state.handle }))
      assert.are.equal(2, #changes_of(res))
      assert.is_true(is_up_to_date(res))
      assert.is_string(res.headers["electric-schema"])
    end)

    it("chunks a long catch-up too", function()
      local id = srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      for i = 1, 5 do srv:update_run(id, { usageDurationMs = i }) end
      local res = get(srv, with_params(TAG_PATH, { offset = state.offset, handle = state.handle }))
      assert.are.equal(3, #changes_of(res))
      assert.is_nil(res.headers["electric-up-to-date"])
      local rest = get(srv, with_params(TAG_PATH, { offset = res.headers["electric-offset"],
                                                     handle = state.handle }))
      assert.are.equal(2, #changes_of(rest))
      assert.is_true(is_up_to_date(rest))
    end)

    it("answers 409 must-refetch with a new handle after rotation", function()
      srv:create_run { tags = { "user:1" } }
      local state = sync(srv, TAG_PATH)
      srv:rotate()
      local res = get(srv, with_params(TAG_PATH, { offset = state.offset, handle = state.handle }))
      assert.are.equal(409, res.status)
      assert.are.same({ { headers = { control = "must-refetch" } } }, res.json)
      local new_handle = res.headers["electric-handle"]
      assert.is_string(new_handle)
      assert.are_not.equal(state.handle, new_handle)
      local again = get(srv, with_params(TAG_PATH, { offset = "-1", handle = new_handle,
                                                      expired_handle = state.handle }))
      assert.are.equal(200, again.status)
      assert.are.equal(new_handle, again.headers["electric-handle"])
    end)

    it("answers 409 to a held live request when the handle rotates", function()
      local state = sync(srv, TAG_PATH)
      local conn = send(srv.port, "GET", live_target(TAG_PATH, state), headers_for(srv.secret_key))
      eventually(srv, function(st) return st.active_realtime == 1 end)
      srv:rotate()
      local res = receive(conn)
      conn:close()
      assert.are.equal(409, res.status)
    end)

    it("answers 409 to an unknown handle", function()
      local res = get(srv, with_params(TAG_PATH, { offset = "0_0", handle = "123-456" }))
      assert.are.equal(409, res.status)
      assert.is_string(res.headers["electric-handle"])
    end)

    it("rejects bad offsets with 400", function()
      local state = sync(srv, TAG_PATH)
      local beyond = get(srv, with_params(TAG_PATH, { offset = "99_0", handle = state.handle }))
      assert.are.equal(400, beyond.status)
      assert.truthy(beyond.body:find("out of bounds", 1, true))
      local malformed = get(srv, with_params(TAG_PATH, { offset = "abc", handle = state.handle }))
      assert.are.equal(400, malformed.status)
      assert.falsy(malformed.body:find("out of bounds", 1, true))
      local no_handle = get(srv, with_params(TAG_PATH, { offset = "0_0" }))
      assert.are.equal(400, no_handle.status)
    end)

    it("keeps connections alive across requests", function()
      srv:create_run { tags = { "user:1" } }
      local conn = send(srv.port, "GET", TAG_PATH .. "&offset=-1", headers_for(srv.secret_key))
      local first = receive(conn)
      send(srv.port, "GET", TAG_PATH .. "&offset=-1", headers_for(srv.secret_key), nil, conn)
      local second = receive(conn)
      conn:close()
      assert.are.equal(200, first.status)
      assert.are.equal(200, second.status)
      local st = eventually(srv, function(s) return s.connections_closed >= 1 end)
      assert.are.equal(1, st.connections_opened)
      assert.are.equal(0, st.active_realtime)
    end)

    it("counts connections the client closes", function()
      local before = srv:stats().connections_closed
      local conn = send(srv.port, "GET", TAG_PATH .. "&offset=-1", headers_for(srv.secret_key))
      receive(conn)
      conn:close()
      eventually(srv, function(st) return st.connections_closed > before end)
    end)

    it("drops every connection on request, held or idle", function()
      local state = sync(srv, TAG_PATH)
      local conn = send(srv.port, "GET", live_target(TAG_PATH, state), headers_for(srv.secret_key))
      eventually(srv, function(st) return st.active_realtime == 1 end)
      srv:drop_connections()
      local res = receive(conn)
      conn:close()
      assert.is_nil(res.status)
    end)
  end)

  describe("bulk admin routes (make bench)", function()
    local function post(path, value)
      return request(srv.port, "POST", path, { ["Content-Type"] = "application/json" },
                     cjson.encode(value))
    end

    local function by_friendly(state)
      local out = {}
      for _, row in pairs(state.rows) do out[row.friendlyId] = row end
      return out
    end

    it("creates runs from a count and a template, {{i}} expanded, in one response", function()
      local res = post("/_emulator/runs/bulk", { count = 5, template = {
        tags = { "bulk", "n:{{i}}" }, payload = '{"i":{{i}}}', idempotencyKey = "k-{{i}}" } })
      assert.are.equal(200, res.status, res.body)
      assert.are.equal(5, #res.json.ids)
      local rows = by_friendly(sync(srv, "/realtime/v1/runs?tags=bulk"))
      for i, id in ipairs(res.json.ids) do
        assert.are.equal("{bulk,n:" .. i .. "}", rows[id].runTags)
        assert.are.equal('{"i":' .. i .. "}", rows[id].payload)
        assert.are.equal("k-" .. i, rows[id].idempotencyKey)
      end
    end)

    it("creates runs from a JSON array, and none when an entry is bad", function()
      local res = post("/_emulator/runs/bulk", { { tags = { "arr" } }, { tags = { "arr" },
        status = "COMPLETED_SUCCESSFULLY" } })
      assert.are.equal(200, res.status, res.body)
      assert.are.equal(2, #res.json.ids)
      local bad = post("/_emulator/runs/bulk", { { tags = { "arr" } }, { status = "NOPE" } })
      assert.are.equal(400, bad.status)
      assert.matches("run 2", bad.json.error)
      assert.are.equal(2, count(sync(srv, "/realtime/v1/runs?tags=arr").rows))
      assert.are.equal(400, post("/_emulator/runs/bulk", { count = "many" }).status)
    end)

    it("updates many runs in one request, repeated, and wakes a live request once", function()
      local ids = post("/_emulator/runs/bulk", { count = 3, template = { tags = { "up" } } }).json.ids
      local state = sync(srv, "/realtime/v1/runs?tags=up")
      local conn = send(srv.port, "GET", live_target("/realtime/v1/runs?tags=up", state),
                        headers_for(srv.secret_key))
      local res = post("/_emulator/runs/bulk_update", { ids = ids,
        fields = { metadata = '{"n":{{i}}}', status = "EXECUTING" }, ["repeat"] = 2 })
      assert.are.equal(200, res.status, res.body)
      assert.are.equal(6, res.json.updated)
      assert.are.equal("9_0", res.json.offset)
      local live = receive(conn)
      conn:close()
      assert.are.equal("9_0", live.headers["electric-offset"])
      -- the first round changes metadata and status, the second only updatedAt
      assert.are.equal(6, #changes_of(live))
      local rows = by_friendly(sync(srv, "/realtime/v1/runs?tags=up"))
      for i, id in ipairs(ids) do
        assert.are.equal('{"n":' .. i .. "}", rows[id].metadata)
        assert.are.equal("EXECUTING", rows[id].status)
      end
      local list = post("/_emulator/runs/bulk_update", { updates = {
        { id = ids[1], fields = { status = "COMPLETED_SUCCESSFULLY" } },
        { id = ids[2], fields = { status = "CANCELED" } } } })
      assert.are.equal(2, list.json.updated)
      assert.are.equal("CANCELED", srv:get_run(ids[2]).status)
      assert.are.equal(404, post("/_emulator/runs/bulk_update",
        { ids = { "run_nope" }, fields = {} }).status)
      assert.are.equal(400, post("/_emulator/runs/bulk_update",
        { ids = ids, fields = { status = "NOPE" } }).status)
      assert.are.equal("CANCELED", srv:get_run(ids[2]).status) -- nothing applied
    end)

    it("compacts the change log and still serves snapshots and live changes", function()
      local ids = post("/_emulator/runs/bulk", { count = 4, template = { tags = { "cp" } } }).json.ids
      post("/_emulator/runs/bulk_update", { ids = ids, fields = { metadata = '{"v":1}' } })
      local state = sync(srv, "/realtime/v1/runs?tags=cp")
      local res = post("/_emulator/compact", { keep = 0 })
      assert.are.equal(200, res.status, res.body)
      assert.are.equal(8, res.json.dropped)
      assert.are.equal(8, res.json.floor)
      local again = sync(srv, "/realtime/v1/runs?tags=cp")
      assert.are.equal(4, count(again.rows))
      for _, row in pairs(again.rows) do assert.are.equal('{"v":1}', row.metadata) end
      local conn = send(srv.port, "GET", live_target("/realtime/v1/runs?tags=cp", state),
                        headers_for(srv.secret_key))
      srv:update_run(ids[4], { metadata = '{"v":2}' })
      local live = receive(conn)
      conn:close()
      assert.are.equal(1, #changes_of(live))
      assert.are.equal('{"v":2}', changes_of(live)[1].value.metadata)
    end)
  end)

  describe("routes", function()
    it("ANDs tags", function()
      srv:create_run { tags = { "a" } }
      local both = srv:create_run { tags = { "b", "a" } }
      srv:create_run { tags = { "b" } }
      local state = sync(srv, "/realtime/v1/runs?tags=a,b")
      assert.are.equal(1, count(state.rows))
      local _, row = next(state.rows)
      assert.are.equal(both, row.friendlyId)
    end)

    it("filters on createdAt: default and cap 24h, unparseable ignored", function()
      local now = os.time() * 1000
      srv:create_run { tags = { "t" }, createdAt = now - 30 * 60000, friendlyId = "run_recent" }
      srv:create_run { tags = { "t" }, createdAt = now - 2 * 3600000, friendlyId = "run_2h" }
      srv:create_run { tags = { "t" }, createdAt = now - 48 * 3600000, friendlyId = "run_2d" }
      local function ids(query)
        local list = {}
        for _, row in pairs(sync(srv, "/realtime/v1/runs?tags=t" .. query).rows) do
          list[#list + 1] = row.friendlyId
        end
        table.sort(list)
        return list
      end
      assert.are.same({ "run_recent" }, ids("&createdAt=1h"))
      assert.are.same({ "run_2h", "run_recent" }, ids("&createdAt=1d"))
      assert.are.same({ "run_2h", "run_recent" }, ids(""))
      assert.are.same({ "run_2h", "run_recent" }, ids("&createdAt=2w"))
      assert.are.same({ "run_2h", "run_recent" }, ids("&createdAt=1hr90m"))
      assert.are.same({ "run_2d", "run_2h", "run_recent" }, ids("&createdAt=yesterday"))
    end)

    it("leaves out skipColumns, except the unskippable ones", function()
      srv:create_run { tags = { "user:1" } }
      local res = get(srv, TAG_PATH .. "&skipColumns=payload,output,id,status&offset=-1")
      local value = res.json[1].value
      assert.is_nil(value.payload)
      assert.is_nil(value.output)
      assert.is_string(value.id)
      assert.is_string(value.status)
      assert.is_string(value.outputType)
      local schema = cjson.decode(res.headers["electric-schema"])
      assert.is_nil(schema.payload)
      assert.are.same({ type = "text", not_null = true, pk_index = 0 }, schema.id)
      assert.are.same({ type = "text", dims = 1 }, schema.runTags)
      assert.are.same({ type = "bool", not_null = true }, schema.isTest)
    end)

    it("follows one run, and 404s an unknown one", function()
      local id = srv:create_run { tags = { "x" } }
      srv:create_run { tags = { "x" } }
      local state = sync(srv, "/realtime/v1/runs/" .. id)
      assert.are.equal(1, count(state.rows))
      local missing = get(srv, "/realtime/v1/runs/run_nope?offset=-1")
      assert.are.equal(404, missing.status)
      assert.are.same({ error = "Run not found" }, missing.json)
    end)

    it("follows a batch, and 404s an unknown one", function()
      srv:create_run { batchId = "batch_1" }
      srv:create_run { batchId = "batch_1" }
      srv:create_run { batchId = "batch_2" }
      local state = sync(srv, "/realtime/v1/batches/batch_1")
      assert.are.equal(2, count(state.rows))
      assert.are.equal(404, get(srv, "/realtime/v1/batches/batch_9?offset=-1").status)
    end)

    it("answers the claims route for the secret key only", function()
      local res = request(srv.port, "POST", "/api/v1/auth/jwt/claims",
                          { Authorization = "Bearer " .. srv.secret_key }, "{}")
      assert.are.equal(200, res.status)
      assert.are.same({ sub = srv.environment_id, pub = true }, res.json)
      local token = public_token(srv, { scopes = { "read:all" } })
      local refused = request(srv.port, "POST", "/api/v1/auth/jwt/claims",
                              { Authorization = "Bearer " .. token }, "{}")
      assert.are.equal(401, refused.status)
    end)

    it("presigns offloaded packets and serves the blob without auth", function()
      srv:put_blob("run_x/payload.json", "application/json", '{"big":true}')
      local id = srv:create_run { payload = "run_x/payload.json", payloadType = "application/store" }
      local res = get(srv, "/api/v1/runs/" .. id .. "/packets/payload")
      assert.are.equal(200, res.status)
      local url = res.json.presignedUrl
      assert.truthy(url:find(srv.base_url .. "/_blobs/run_x/payload.json?sig=", 1, true))
      local blob = request(srv.port, "GET", url:sub(#srv.base_url + 1))
      assert.are.equal(200, blob.status)
      assert.are.equal("application/json", blob.headers["content-type"])
      assert.are.equal('{"big":true}', blob.body)
      local legacy = get(srv, "/api/v1/packets/run_x%2Fpayload.json")
      assert.are.equal(url, legacy.json.presignedUrl)
      assert.are.equal(404, get(srv, "/api/v1/runs/" .. id .. "/packets/output").status)
      assert.are.equal(404, request(srv.port, "GET", "/_blobs/nothing/here").status)
    end)

    it("takes URLs longer than cqueues' default line limit", function()
      local tags = {}
      for i = 1, 800 do tags[i] = "tag" .. i end
      local res = get(srv, "/realtime/v1/runs?offset=-1&tags=" .. table.concat(tags, ","))
      assert.are.equal(200, res.status)
    end)

    it("404s unknown paths", function()
      assert.are.equal(404, get(srv, "/nope").status)
    end)
  end)

  describe("values on the wire", function()
    it("uses Postgres text forms", function()
      local id = srv:create_run {
        tags = { "a", "b c", 'q"d', "NULL", "back\\slash", "", "{x}", "comma,y" },
        isTest = true, number = 42, costInCents = 1.5, baseCostInCents = 0.1,
        usageDurationMs = 1234, createdAt = "2025-01-10T12:00:00.123Z",
        startedAt = "2025-01-10T12:00:00.120Z", completedAt = "2025-01-10T13:00:00+01:00",
        error = { type = "BUILT_IN_ERROR", name = "Error", message = "boom", stackTrace = "at x" },
        realtimeStreams = {},
      }
      local row = srv:get_run(id)
      assert.are.equal('{a,"b c","q\\"d","NULL","back\\\\slash","","{x}","comma,y"}', row.runTags)
      assert.are.equal("t", row.isTest)
      assert.are.equal("42", row.number)
      assert.are.equal("1.5", row.costInCents)
      assert.are.equal("0.1", row.baseCostInCents)
      assert.are.equal("1234", row.usageDurationMs)
      assert.are.equal("2025-01-10 12:00:00.123", row.createdAt)
      assert.are.equal("2025-01-10 12:00:00.12", row.startedAt)
      assert.are.equal("2025-01-10 12:00:00", row.completedAt)
      assert.are.equal("{}", row.realtimeStreams)
      assert.are.equal(NULL, row.ttl)
      assert.are.equal('{"name": "Error", "type": "BUILT_IN_ERROR", "message": "boom", ' ..
                       '"stackTrace": "at x"}', row.error)
      -- and the same on a shape
      local res = get(srv, "/realtime/v1/runs/" .. id .. "?offset=-1")
      assert.are.equal(row.runTags, res.json[1].value.runTags)
      assert.are.equal(row.error, res.json[1].value.error)
    end)

    it("applies create_run defaults", function()
      local id, internal = srv:create_run {}
      local row = srv:get_run(id)
      assert.truthy(id:match("^run_%w+$"))
      assert.truthy(internal:match("^cm%w+$"))
      assert.are.equal("PENDING", row.status)
      assert.are.equal("demo-task", row.taskIdentifier)
      assert.are.equal("f", row.isTest)
      assert.are.equal("{}", row.payload)
      assert.are.equal("application/json", row.payloadType)
      assert.are.equal("{}", row.runTags)
      assert.are.equal(row.createdAt, row.updatedAt)
      local second = srv:create_run {}
      assert.are.equal(tonumber(row.number) + 1, tonumber(srv:get_run(second).number))
    end)

    it("rejects bad fields through the admin API", function()
      local status = helper.http("127.0.0.1", srv.port, "POST", "/_emulator/runs",
                                 '{"status":"RUNNING_FAST"}')
      assert.are.equal(400, status)
      status = helper.http("127.0.0.1", srv.port, "POST", "/_emulator/runs", '{"nope":1}')
      assert.are.equal(400, status)
      status = helper.http("127.0.0.1", srv.port, "PATCH", "/_emulator/runs/run_missing", '{}')
      assert.are.equal(404, status)
    end)

    it("reports DEQUEUED as EXECUTING to clients without x-trigger-api-version", function()
      local id = srv:create_run { status = "DEQUEUED" }
      local old = request(srv.port, "GET", "/realtime/v1/runs/" .. id .. "?offset=-1", {
        Authorization = "Bearer " .. srv.secret_key, ["x-trigger-electric-version"] = "1.0.0-beta.1",
      })
      assert.are.equal("EXECUTING", old.json[1].value.status)
      local new = get(srv, "/realtime/v1/runs/" .. id .. "?offset=-1")
      assert.are.equal("DEQUEUED", new.json[1].value.status)
    end)

    it("speaks the legacy header dialect without x-trigger-electric-version", function()
      local id = srv:create_run {}
      local res = request(srv.port, "GET", "/realtime/v1/runs/" .. id .. "?offset=-1",
                          { Authorization = "Bearer " .. srv.secret_key })
      assert.is_string(res.headers["electric-shape-id"])
      assert.is_string(res.headers["electric-chunk-last-offset"])
      assert.is_nil(res.headers["electric-handle"])
    end)
  end)

  describe("auth", function()
    local run_id

    before_each(function()
      run_id = srv:create_run { tags = { "user:1", "team:7" }, taskIdentifier = "resize",
                                batchId = "batch_42" }
    end)

    local function status_with(token, target)
      return get(srv, target or (TAG_PATH .. "&offset=-1"), token)
    end

    it("accepts the secret key and refuses others with 401", function()
      assert.are.equal(200, status_with(srv.secret_key).status)
      local wrong = status_with("tr_dev_not_the_key")
      assert.are.equal(401, wrong.status)
      assert.is_string(wrong.json.error)
      local none = request(srv.port, "GET", TAG_PATH .. "&offset=-1")
      assert.are.equal(401, none.status)
    end)

    it("accepts a valid public token with a matching tag scope", function()
      local token = public_token(srv, { scopes = { "read:tags:user:1" } })
      assert.are.equal(200, status_with(token).status)
    end)

    it("says when a public token expired", function()
      local token = public_token(srv, { scopes = { "read:all" }, exp = os.time() - 10 })
      local res = status_with(token)
      assert.are.equal(401, res.status)
      assert.are.equal("Public Access Token has expired", res.json.error)
    end)

    it("refuses a token with a bad signature, wrong sub, iss, aud or pub", function()
      local good = public_token(srv, { scopes = { "read:all" } })
      local h, p = good:match("^([^.]+)%.([^.]+)%.")
      local forged = h .. "." .. p .. "." .. b64url(("x"):rep(32))
      for _, token in ipairs({
        forged,
        sign_jwt({ sub = srv.environment_id, pub = true, iss = "https://id.trigger.dev",
                   aud = "https://api.trigger.dev", exp = os.time() + 60, scopes = { "read:all" } },
                 "another key"),
        public_token(srv, { scopes = { "read:all" }, sub = "env_other" }),
        public_token(srv, { scopes = { "read:all" }, iss = "https://evil" }),
        public_token(srv, { scopes = { "read:all" }, aud = "https://evil" }),
        public_token(srv, { scopes = { "read:all" }, pub = false }),
        "not.a.jwt",
      }) do
        local res = status_with(token)
        assert.are.equal(401, res.status)
        assert.truthy(res.json.error:find("Invalid Public Access Token", 1, true))
      end
    end)

    it("refuses scopes that don't cover the route with 403", function()
      local token = public_token(srv, { scopes = { "read:tags:someone-else" } })
      local res = status_with(token)
      assert.are.equal(403, res.status)
      assert.are.same({ error = "Unauthorized", code = "unauthorized", param = "access_token",
                        type = "authorization" }, res.json)
    end)

    it("applies the scope rules of each route", function()
      local run_path = "/realtime/v1/runs/" .. run_id .. "?offset=-1"
      local batch_path = "/realtime/v1/batches/batch_42?offset=-1"
      local cases = {
        { "read:runs", TAG_PATH .. "&offset=-1", 200 },
        { "read:tags", TAG_PATH .. "&offset=-1", 200 },
        { "read:all", TAG_PATH .. "&offset=-1", 200 },
        { "admin", batch_path, 200 },
        { "read:runs:" .. run_id, run_path, 200 },
        { "read:runs:run_other", run_path, 403 },
        { "read:tasks:resize", run_path, 200 },
        { "read:tasks:other", run_path, 403 },
        { "read:tags:team:7", run_path, 200 },
        { "read:batch:batch_42", run_path, 200 },
        { "read:batch:batch_42", batch_path, 200 },
        { "read:batch", batch_path, 200 },
        { "read:runs", batch_path, 200 },
        { "read:batch:batch_1", batch_path, 403 },
        { "read:tags:user:1", batch_path, 403 },
        { "read:runs:" .. run_id, TAG_PATH .. "&offset=-1", 403 },
      }
      for _, c in ipairs(cases) do
        local res = status_with(public_token(srv, { scopes = { c[1] } }), c[2])
        assert.are.equal(c[3], res.status, c[1] .. " on " .. c[2])
      end
    end)

    it("applies a token's realtime.skipColumns", function()
      local token = public_token(srv, { scopes = { "read:runs" },
                                        realtime = { skipColumns = { "payload", "metadata" } } })
      local res = status_with(token)
      assert.are.equal(200, res.status)
      assert.is_nil(res.json[1].value.payload)
      assert.is_nil(res.json[1].value.metadata)
      assert.is_string(res.json[1].value.payloadType)
    end)
  end)

  describe("faults", function()
    before_each(function()
      srv:create_run { tags = { "user:1" }, payload = ('{"pad":"%s"}'):format(("x"):rep(200)) }
    end)

    local function initial()
      return get(srv, TAG_PATH .. "&offset=-1")
    end

    it("answers an injected status with retry-after, count times", function()
      srv:fault { kind = "status", status = 503, retry_after = 2, count = 2,
                  match = { path_prefix = "/realtime/v1/runs" } }
      for _ = 1, 2 do
        local res = initial()
        assert.are.equal(503, res.status)
        assert.are.equal("2", res.headers["retry-after"])
      end
      assert.are.equal(200, initial().status)
    end)

    it("forgets pending faults on DELETE /_emulator/faults, runs and handles kept", function()
      srv:fault { kind = "status", status = 503, count = 5 }
      srv:fault { kind = "status", status = 500, match = { live = true } }
      assert.are.equal(503, initial().status) -- one of five used up
      assert.are.equal(2, srv:clear_faults())
      local res = initial()
      assert.are.equal(200, res.status) -- the rest of the count is gone too
      assert.is_table(res.json[1].value) -- the run is still there
      assert.are.equal(0, srv:clear_faults())
    end)

    it("answers 429 with the real server's body", function()
      srv:fault { kind = "status", status = 429 }
      local res = initial()
      assert.are.equal(429, res.status)
      assert.are.same({ error = "Too many concurrent requests" }, res.json)
    end)

    it("matches on live and initial", function()
      srv:fault { kind = "status", status = 500, match = { live = true } }
      srv:fault { kind = "status", status = 502, match = { initial = false } }
      local first = get(srv, TAG_PATH .. "&offset=-1") -- initial and not live: no fault
      assert.are.equal(200, first.status)
      local second = get(srv, with_params(TAG_PATH, { offset = first.headers["electric-offset"],
                                                      handle = first.headers["electric-handle"] }))
      assert.are.equal(502, second.status)
      srv:reset()
      srv:create_run { tags = { "user:1" } }
      srv:fault { kind = "status", status = 500, match = { live = true } }
      local state = sync(srv, TAG_PATH)
      assert.are.equal(500, get(srv, live_target(TAG_PATH, state)).status)
    end)

    it("resets a connection mid-body", function()
      srv:fault { kind = "reset_mid_body" }
      local res = initial()
      assert.are.equal(200, res.status)
      assert.is_false(res.complete)
      assert.is_true(#res.body > 0)
      assert.is_nil(res.json)
    end)

    it("truncates a body", function()
      srv:fault { kind = "truncate" }
      local res = initial()
      assert.are.equal(200, res.status)
      assert.is_false(res.complete)
      assert.is_true(#res.body < tonumber(res.headers["content-length"]))
    end)

    it("drips the real response in small chunks", function()
      local normal = initial()
      srv:fault { kind = "drip", chunk_size = 7, delay_ms = 1 }
      local res = initial()
      assert.are.equal(200, res.status)
      assert.are.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      assert.are.equal(math.ceil(#normal.body / 7), res.chunks)
      assert.are.same(normal.json, res.json)
      assert.are.equal(normal.headers["electric-handle"], res.headers["electric-handle"])
    end)

    -- Soak seed 21: a 120 KB body dripping 7 bytes a millisecond went on for 17 s after the
    -- soak had cleared the faults and started counting its catch-up window.
    it("finishes a drip under way at full speed once the faults are cleared", function()
      local normal = initial()
      srv:fault { kind = "drip", chunk_size = 1, delay_ms = 50 }
      local conn = send(srv.port, "GET", TAG_PATH .. "&offset=-1", headers_for(srv.secret_key))
      eventually(srv, function(st)
        for _, e in ipairs(st.in_flight) do
          if e.path == "/realtime/v1/runs" then return true end
        end
      end)
      assert.are.equal(1, srv:clear_faults() + 1) -- the drip was taken: nothing left pending
      local res = receive(conn)
      conn:close()
      assert.is_true(res.complete)
      assert.are.same(normal.json, res.json)
      assert.is_true(res.chunks < #normal.body / 4, "still dripping: " .. tostring(res.chunks) .. " chunks")
    end)

    it("sends invalid JSON with proper electric headers", function()
      srv:fault { kind = "invalid_json" }
      local res = initial()
      assert.are.equal(200, res.status)
      assert.is_string(res.headers["electric-handle"])
      assert.is_string(res.headers["electric-offset"])
      assert.is_nil(res.json)
    end)

    it("strips the electric headers", function()
      srv:fault { kind = "strip_headers" }
      local res = initial()
      assert.are.equal(200, res.status)
      for name in pairs(res.headers) do assert.is_nil(name:match("^electric%-")) end
      assert.is_table(res.json)
    end)

    it("serves a stale handle after a 409", function()
      local state = sync(srv, TAG_PATH)
      srv:rotate()
      local conflict = get(srv, with_params(TAG_PATH, { offset = state.offset, handle = state.handle }))
      srv:fault { kind = "stale_handle" }
      local target = with_params(TAG_PATH, { offset = "-1", handle = conflict.headers["electric-handle"],
                                             expired_handle = state.handle })
      local res = get(srv, target)
      assert.are.equal(200, res.status)
      assert.are.equal(state.handle, res.headers["electric-handle"])
      local fine = get(srv, target)
      assert.are.equal(conflict.headers["electric-handle"], fine.headers["electric-handle"])
    end)

    it("delays an answer", function()
      srv:fault { kind = "delay", delay_ms = 300 }
      local t0 = socket.gettime()
      assert.are.equal(200, initial().status)
      -- a lower bound only (never an upper one): the answer waited for the delay
      assert.is_true(socket.gettime() - t0 >= 0.3, "the answer was not delayed")
    end)

    it("refuses an unknown fault kind", function()
      local status = helper.http("127.0.0.1", srv.port, "POST", "/_emulator/faults",
                                 '{"kind":"meteor"}')
      assert.are.equal(400, status)
    end)
  end)

  describe("stats", function()
    it("logs requests without the token", function()
      get(srv, TAG_PATH .. "&offset=-1")
      local st = srv:stats()
      local entry
      for _, e in ipairs(st.log) do
        if e.path == "/realtime/v1/runs" then entry = e end
      end
      assert.are.equal("GET", entry.method)
      assert.are.equal(200, entry.status)
      assert.are.equal("tags=user%3A1&offset=-1", entry.query)
      assert.is_false(entry.live)
      assert.is_true(entry.headers.has_authorization)
      assert.are.equal("1.0.0-beta.1", entry.headers["x-trigger-electric-version"])
      assert.are.equal("2025-07-16", entry.headers["x-trigger-api-version"])
      assert.falsy(cjson.encode(st):find(srv.secret_key, 1, true))
    end)

    it("logs status 0 for a request dropped before it was answered", function()
      srv:fault { kind = "delay", delay_ms = 300 }
      local conn = send(srv.port, "GET", TAG_PATH .. "&offset=-1", headers_for(srv.secret_key))
      eventually(srv, function(st) return st.open_connections == 1 end) -- being handled
      srv:drop_connections()
      local res = receive(conn)
      conn:close()
      assert.is_nil(res.status)
      local st = eventually(srv, function(st)
        for _, e in ipairs(st.log) do
          if e.path == "/realtime/v1/runs" then return true end
        end
      end)
      local entry
      for _, e in ipairs(st.log) do
        if e.path == "/realtime/v1/runs" then entry = e end
      end
      assert.are.equal(0, entry.status)
    end)
  end)
end)

describe("trigger_realtime_server options", function()
  it("answers 429 past max_connections and notices a client hanging up", function()
    local srv = helper.start_server { hold_ms = 10000, max_connections = 2 }
    local finally_stop = srv
    local ok, err = pcall(function()
      local state = sync(srv, TAG_PATH)
      local held = {}
      for i = 1, 2 do
        held[i] = send(srv.port, "GET", live_target(TAG_PATH, state), headers_for(srv.secret_key))
      end
      eventually(srv, function(st) return st.active_realtime == 2 end)
      local res = get(srv, TAG_PATH .. "&offset=-1")
      assert.are.equal(429, res.status)
      assert.are.same({ error = "Too many concurrent requests" }, res.json)
      for _, c in ipairs(held) do c:close() end
      eventually(srv, function(st) return st.active_realtime == 0 end)
    end)
    finally_stop:stop()
    assert(ok, err)
  end)

  it("serves only the legacy packet route with legacy_packets_only", function()
    local srv = helper.start_server { legacy_packets_only = true }
    local ok, err = pcall(function()
      local id = srv:create_run { payload = "p/x.txt", payloadType = "application/store" }
      srv:put_blob("p/x.txt", "text/plain", "hello")
      assert.are.equal(404, get(srv, "/api/v1/runs/" .. id .. "/packets/payload").status)
      local res = get(srv, "/api/v1/packets/p%2Fx.txt")
      assert.are.equal(200, res.status)
      local blob = request(srv.port, "GET", res.json.presignedUrl:sub(#srv.base_url + 1))
      assert.are.equal("text/plain", blob.headers["content-type"])
      assert.are.equal("hello", blob.body)
    end)
    srv:stop()
    assert(ok, err)
  end)

  it("prints booleans as true/false and timestamps with T when asked", function()
    local srv = helper.start_server { bool_style = "true", timestamp_style = "T",
                                      secret_key = "tr_dev_other", environment_id = "env_x" }
    local ok, err = pcall(function()
      local id = srv:create_run { isTest = true, createdAt = "2025-01-10 12:00:00.123" }
      local res = get(srv, "/realtime/v1/runs/" .. id .. "?offset=-1")
      assert.are.equal("true", res.json[1].value.isTest)
      assert.are.equal("2025-01-10T12:00:00.123", res.json[1].value.createdAt)
      local token = public_token(srv, { scopes = { "read:runs" } })
      assert.are.equal(200, get(srv, "/realtime/v1/runs/" .. id .. "?offset=-1", token).status)
    end)
    srv:stop()
    assert(ok, err)
  end)
end)

describe("trigger_realtime_server in process", function()
  local server = require "trigger_realtime_server"
  local cqueues = require "cqueues"

  it("runs on a host-driven loop and exposes the scenario API", function()
    local s = server.new { hold_ms = 100 }
    s:start()
    assert.is_number(s.port)
    assert.are.equal("http://127.0.0.1:" .. s.port, s.base_url)
    local id, internal = s:create_run { tags = { "x" }, isTest = true }
    s:update_run(id, { status = "EXECUTING", output = '{"ok":true}', ttl = server.NULL })
    assert.are.equal("EXECUTING", s:get_run(id).status)
    assert.are.equal("t", s:get_run(id).isTest)
    assert.truthy(internal:match("^cm"))
    assert.has_error(function() s:inject_fault { kind = "nope" } end)
    s:inject_fault { kind = "status", status = 503 }

    -- a client on the same loop
    local answer
    s:spawn(function()
      local sock = require("cqueues.socket").connect("127.0.0.1", s.port)
      sock:setmode("b", "b")
      sock:write("GET /realtime/v1/runs/" .. id .. "?offset=-1 HTTP/1.1\r\nHost: x\r\n" ..
                 "Authorization: Bearer " .. s.opts.secret_key .. "\r\n\r\n")
      sock:flush()
      answer = sock:read("*l")
      sock:close()
    end)
    for _ = 1, 100 do
      if answer then break end
      s:step(0.05)
    end
    assert.are.equal("HTTP/1.1 503 Service Unavailable\r", answer)
    assert.are.equal(1, s:stats().requests)
    s:delete_run(id)
    assert.is_nil(s:get_run(id))
    s:close()
    for _ = 1, 10 do s:step(0) end
    assert.are.equal(0, s:stats().open_connections)
    assert.is_function(cqueues.monotime)
  end)

  it("parses and prints Postgres values", function()
    local values = require "trigger_realtime_server.values"
    assert.are.equal("{}", values.array_literal({}))
    assert.are.equal('{a,NULL,"NULL","null",""}',
                     values.array_literal({ "a", server.NULL, "NULL", "null", "" }))
    assert.are.equal(1736510400123, values.parse_timestamp("2025-01-10T12:00:00.123Z"))
    assert.are.equal(1736510400000, values.parse_timestamp("2025-01-10 13:00:00+01:00"))
    assert.are.equal("2025-01-10 12:00:00.1", values.format_timestamp(1736510400100))
    assert.are.equal(3600000 + 1800000, values.parse_duration("1hr30m"))
    assert.are.equal(604800000, values.parse_duration("1w"))
    assert.is_nil(values.parse_duration("1y"))
    assert.is_nil(values.parse_duration("h1"))
  end)
end)

-- A client that resets its connection (RST) during a held live request: the server takes it as
-- gone at once. It used to read the error as input and spin on it until cqueues raised
-- ("exceeded unchecked error limit", soak seed 13), answering 500 into the dead connection.
for _, backend in ipairs { "electric", "native" } do
  describe("a live request reset by the client (" .. backend .. ")", function()
    local srv
    setup(function() srv = helper.start_server { hold_ms = 20000, backend = backend } end)
    teardown(function() srv:stop() end)

    it("is dropped unanswered, and listed in flight until then", function()
      srv:create_run { tags = { "user:1" } }
      local res = get(srv, TAG_PATH .. "&offset=-1")
      assert.are.equal(200, res.status)
      local state = { handle = res.headers["electric-handle"], offset = res.headers["electric-offset"] }
      if backend == "electric" then -- Electric's first answer is never up to date
        res = get(srv, with_params(TAG_PATH, state))
        state.offset = res.headers["electric-offset"]
      end
      srv:reset_stats()
      -- The stats request is in flight itself while it is answered: only realtime ones count.
      local function realtime(list)
        local out = {}
        for _, e in ipairs(list) do
          if e.path == "/realtime/v1/runs" then out[#out + 1] = e end
        end
        return out
      end
      local conn = send(srv.port, "GET", live_target(TAG_PATH, state), headers_for(srv.secret_key))
      local st0 = eventually(srv, function(st) return #realtime(st.in_flight) == 1 end)
      local held = realtime(st0.in_flight)[1]
      assert.truthy(held.query:find("live=true", 1, true))
      assert.is_true(held.age_ms >= 0)
      assert(conn:setoption("linger", { on = true, timeout = 0 }))
      conn:close()
      local st = eventually(srv, function(s) return #realtime(s.in_flight) == 0 end)
      local log = realtime(st.log)
      local last = log[#log]
      assert.truthy(last.query:find("live=true", 1, true))
      assert.are.equal(0, last.status) -- no answer: not a 500, not a 200 after the hold
    end)
  end)
end
